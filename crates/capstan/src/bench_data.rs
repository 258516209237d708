//! `capstan bench data`: `add` of a directory of many files and of one large file, then `status`
//! with nothing changed — Capstan against the real `dvc`, on the same files in the same run.

use crate::platform::Error;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn write_dataset(root: &Path, files: usize, max_kb: usize, big_mb: usize) -> Result<u64, Error> {
    let mut total = 0u64;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let dir = root.join("images");
    for i in 0..files {
        let sub = dir.join(format!("{:03}", i % 100));
        std::fs::create_dir_all(&sub)?;
        let size = 1024 + (next() as usize % (max_kb.max(2) * 1024 - 1024));
        let mut buf = vec![0u8; size];
        for chunk in buf.chunks_mut(8) {
            let v = next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        std::fs::write(sub.join(format!("img-{i:05}.bin")), &buf)?;
        total += size as u64;
    }
    let mut big = std::fs::File::create(root.join("big.bin"))?;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..big_mb {
        for chunk in block.chunks_mut(8) {
            chunk.copy_from_slice(&next().to_le_bytes());
        }
        big.write_all(&block)?;
    }
    total += (big_mb as u64) << 20;
    Ok(total)
}

fn time_cmd(cmd: &mut Command) -> Result<f64, Error> {
    let t = Instant::now();
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(t.elapsed().as_secs_f64())
}

fn clean(root: &Path) -> Result<(), Error> {
    for name in [".dvc", ".dvcignore", "images.dvc", "big.bin.dvc"] {
        let p = root.join(name);
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

pub fn run(
    dvc: &str,
    files: usize,
    max_kb: usize,
    big_mb: usize,
    out: Option<&Path>,
) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    eprintln!("writing {files} files of 1 KB–{max_kb} KB and one {big_mb} MB file…");
    let total = write_dataset(root, files, max_kb, big_mb)?;
    let me = std::env::current_exe()?;
    let capstan = |args: &[&str]| {
        let mut c = Command::new(&me);
        c.arg("data").arg("-C").arg(root).args(args);
        c
    };
    // Both tools start from the same state: the data written to disk (no writeback competing
    // with the first tool) and read once into the page cache.
    let settle = || {
        let _ = Command::new("sync").status();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cat {}/big.bin {}/images/*/* > /dev/null",
                root.display(),
                root.display()
            ))
            .status();
    };
    settle();
    time_cmd(&mut capstan(&["init"]))?;
    let ours_add_dir = time_cmd(&mut capstan(&["add", "images"]))?;
    let ours_add_big = time_cmd(&mut capstan(&["add", "big.bin"]))?;
    let ours_status = time_cmd(&mut capstan(&["status"]))?;
    clean(root)?;
    settle();
    let (mut peer_dir, mut peer_big, mut peer_status) = (f64::NAN, f64::NAN, f64::NAN);
    if dvc != "none" {
        let d = |args: &[&str]| {
            let mut c = Command::new(dvc);
            c.current_dir(root).args(args);
            c
        };
        time_cmd(&mut d(&["init", "--no-scm", "-q"]))?;
        peer_dir = time_cmd(&mut d(&["add", "-q", "images"]))?;
        peer_big = time_cmd(&mut d(&["add", "-q", "big.bin"]))?;
        peer_status = time_cmd(&mut d(&["status"]))?;
    }
    let ratio = |ours: f64, peer: f64| {
        if peer.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.1}× faster", peer / ours)
        }
    };
    let cell = |v: f64| {
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.2}")
        }
    };
    let mut t = format!(
        "| measure ({files} files + {big_mb} MB file, {:.1} GB) | capstan | dvc | ratio |\n|---|---|---|---|\n",
        total as f64 / 1e9
    );
    t += &format!(
        "| add directory of {files} files (s) | {ours_add_dir:.2} | {} | {} |\n",
        cell(peer_dir),
        ratio(ours_add_dir, peer_dir)
    );
    t += &format!(
        "| add {big_mb} MB file (s) | {ours_add_big:.2} | {} | {} |\n",
        cell(peer_big),
        ratio(ours_add_big, peer_big)
    );
    t += &format!(
        "| status, nothing changed (ms, whole command) | {:.0} | {} | {} |\n",
        ours_status * 1000.0,
        if peer_status.is_nan() {
            "-".into()
        } else {
            format!("{:.0}", peer_status * 1000.0)
        },
        ratio(ours_status, peer_status)
    );
    println!("\n{t}");
    if let Some(p) = out {
        std::fs::write(p, &t)?;
    }
    Ok(())
}
