//! MD5 hashing as DVC 3 does it (`hash: md5`, raw bytes), streamed, in parallel, with a stat
//! cache (size + mtime + inode) so unchanged files are not read again.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn md5_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(base::to_hex(&h.finalize()))
}

pub fn md5_bytes(bytes: &[u8]) -> String {
    base::to_hex(&Md5::digest(bytes))
}

/// One file of a directory manifest (`.dir` object), as DVC writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub md5: String,
    pub relpath: String,
}

/// The `.dir` manifest bytes and its hash (`<md5>.dir`): entries sorted by path, serialised as
/// Python's `json.dumps(entries, sort_keys=True)` does, so the hash equals DVC's.
pub fn dir_manifest(mut entries: Vec<DirEntry>) -> (String, Vec<u8>) {
    entries.sort_by(|a, b| a.relpath.cmp(&b.relpath));
    let mut s = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!(
            "{{\"md5\": {}, \"relpath\": {}}}",
            serde_json::to_string(&e.md5).unwrap_or_default(),
            py_json_string(&e.relpath)
        ));
    }
    s.push(']');
    let bytes = s.into_bytes();
    (format!("{}.dir", md5_bytes(&bytes)), bytes)
}

/// A JSON string with non-ASCII escaped as `\uXXXX`, as Python's `json.dumps` (ensure_ascii) does.
fn py_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the stat cache remembers about a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    md5: String,
}

/// Path → stamp, persisted under `.dvc/tmp/capstan-state.json`.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct StateCache {
    files: HashMap<PathBuf, Stamp>,
    #[serde(skip)]
    pub(crate) hashed: usize,
}

fn stamp_of(meta: &std::fs::Metadata) -> (u64, i128, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        meta.len(),
        i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        meta.ino(),
    )
}

impl StateCache {
    pub(crate) fn load(path: &Path) -> StateCache {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
        std::fs::rename(tmp, path)
    }

    /// MD5 of each file: from the stat cache when size, mtime and inode are unchanged, else
    /// hashed (in parallel over the available cores).
    pub(crate) fn hash_files(&mut self, files: &[PathBuf]) -> std::io::Result<Vec<(String, u64)>> {
        let mut out: Vec<Option<(String, u64)>> = vec![None; files.len()];
        let mut todo = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let meta = std::fs::metadata(f)?;
            let (size, mtime_ns, inode) = stamp_of(&meta);
            match self.files.get(f) {
                Some(s) if s.size == size && s.mtime_ns == mtime_ns && s.inode == inode => {
                    out[i] = Some((s.md5.clone(), size))
                }
                _ => todo.push((i, size, mtime_ns, inode)),
            }
        }
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(8);
        let chunk = todo.len().div_ceil(threads).max(1);
        let results: Vec<std::io::Result<Vec<(usize, String)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(i, ..)| md5_file(&files[*i]).map(|h| (*i, h)))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("hashing thread panicked")))
                })
                .collect()
        });
        let mut by_index: HashMap<usize, String> = HashMap::new();
        for r in results {
            by_index.extend(r?);
        }
        self.hashed += todo.len();
        for (i, size, mtime_ns, inode) in todo {
            let md5 = by_index.remove(&i).unwrap_or_default();
            self.files.insert(
                files[i].clone(),
                Stamp {
                    size,
                    mtime_ns,
                    inode,
                    md5: md5.clone(),
                },
            );
            out[i] = Some((md5, size));
        }
        Ok(out.into_iter().map(|o| o.unwrap_or_default()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_matches_python_json() {
        let (h, bytes) = dir_manifest(vec![
            DirEntry {
                md5: "b".repeat(32),
                relpath: "z.txt".into(),
            },
            DirEntry {
                md5: "a".repeat(32),
                relpath: "a/é.txt".into(),
            },
        ]);
        let text = String::from_utf8(bytes.clone()).unwrap_or_default();
        assert_eq!(
            text,
            format!(
                "[{{\"md5\": \"{}\", \"relpath\": \"a/\\u00e9.txt\"}}, {{\"md5\": \"{}\", \"relpath\": \"z.txt\"}}]",
                "a".repeat(32),
                "b".repeat(32)
            )
        );
        assert_eq!(h, format!("{}.dir", md5_bytes(&bytes)));
        assert_eq!(md5_bytes(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
