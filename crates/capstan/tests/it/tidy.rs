//! Project rules checked as tests: every source file says what it owns, every crate has its
//! entry in ARCHITECTURE.md, no unwrap/expect in non-test code.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("root")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap_or_default()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! line: {missing:?}"
    );
}

#[test]
fn architecture_names_every_crate() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for e in std::fs::read_dir(root().join("crates"))
        .expect("crates")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        assert!(
            arch.contains(&format!("### `{name}`")),
            "ARCHITECTURE.md has no heading for crate `{name}`"
        );
    }
}

#[test]
fn no_unwrap_outside_tests() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let mut offenders = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.components().all(|c| c.as_os_str() != "tests"))
    {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        // Code after `#[cfg(test)]` is test code.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            if line.contains(".unwrap()") || line.contains(".expect(") {
                offenders.push(format!("{}:{}", f.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unwrap/expect in non-test code: {offenders:?}"
    );
}
