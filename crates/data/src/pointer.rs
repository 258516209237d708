//! `.dvc` pointer files: the small YAML files meant for git that name a version of data.

use crate::repo::DataError;
use std::path::Path;

/// One output of a pointer file.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    /// `<md5>` for a file, `<md5>.dir` for a directory.
    pub md5: String,
    pub size: u64,
    pub nfiles: Option<u64>,
    pub path: String,
}

impl Out {
    pub fn is_dir(&self) -> bool {
        self.md5.ends_with(".dir")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pointer {
    pub outs: Vec<Out>,
}

/// An out being read: md5, size, nfiles, path.
#[derive(Default)]
struct Partial(Option<String>, Option<u64>, Option<u64>, Option<String>);

impl Pointer {
    /// Writes the same layout `dvc add` writes.
    pub fn to_yaml(&self) -> String {
        let mut s = String::from("outs:\n");
        for o in &self.outs {
            s.push_str(&format!("- md5: {}\n  size: {}\n", o.md5, o.size));
            if let Some(n) = o.nfiles {
                s.push_str(&format!("  nfiles: {n}\n"));
            }
            s.push_str(&format!("  hash: md5\n  path: {}\n", yaml_scalar(&o.path)));
        }
        s
    }

    /// Reads the pointer files `dvc` and Capstan write (block style `outs:` list); other top-level
    /// keys (`meta`, `desc`, `deps`) and unknown out keys are ignored.
    pub fn parse(text: &str, file: &Path) -> Result<Pointer, DataError> {
        let bad = |m: &str| DataError::Pointer {
            file: file.to_owned(),
            message: m.to_owned(),
        };
        let mut outs: Vec<Out> = Vec::new();
        let mut in_outs = false;
        let mut cur: Option<Partial> = None;
        let finish = |cur: &mut Option<Partial>, outs: &mut Vec<Out>| -> Result<(), DataError> {
            if let Some(Partial(md5, size, nfiles, path)) = cur.take() {
                outs.push(Out {
                    md5: md5.ok_or_else(|| bad("an out has no md5"))?,
                    size: size.unwrap_or(0),
                    nfiles,
                    path: path.ok_or_else(|| bad("an out has no path"))?,
                });
            }
            Ok(())
        };
        for line in text.lines() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if !line.starts_with(' ') && !line.starts_with('-') {
                finish(&mut cur, &mut outs)?;
                in_outs = line.trim_end() == "outs:";
                continue;
            }
            if !in_outs {
                continue;
            }
            let item = if let Some(rest) = line.strip_prefix("- ") {
                finish(&mut cur, &mut outs)?;
                cur = Some(Partial::default());
                rest
            } else {
                line.trim_start()
            };
            let Some((k, v)) = item.split_once(':') else {
                continue;
            };
            let v = unquote(v.trim());
            if let Some(c) = cur.as_mut() {
                match k.trim() {
                    "md5" => c.0 = Some(v),
                    "size" => c.1 = Some(v.parse().map_err(|_| bad("size is not a number"))?),
                    "nfiles" => c.2 = Some(v.parse().map_err(|_| bad("nfiles is not a number"))?),
                    "path" => c.3 = Some(v),
                    _ => {}
                }
            }
        }
        finish(&mut cur, &mut outs)?;
        if outs.is_empty() {
            return Err(bad("no outs"));
        }
        for o in &outs {
            let h = o.md5.trim_end_matches(".dir");
            if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(&format!("'{}' is not an md5", o.md5)));
            }
            if o.path.starts_with('/') || o.path.split('/').any(|s| s == "..") {
                return Err(bad(&format!("path '{}' leaves the project", o.path)));
            }
        }
        Ok(Pointer { outs })
    }
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2
        && ((v.starts_with('\'') && v.ends_with('\'')) || (v.starts_with('"') && v.ends_with('"')))
    {
        v[1..v.len() - 1].replace("''", "'")
    } else {
        v.to_owned()
    }
}

fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || "._-/".contains(c))
        && !s.starts_with('-');
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_dvc_pointer_files() {
        let text = "outs:\n- md5: 9203b6ce16d2b8186917007b0d0bc35b.dir\n  size: 4\n  nfiles: 3\n  hash: md5\n  path: d\n";
        let p = Pointer::parse(text, Path::new("d.dvc")).expect("parse");
        assert_eq!(p.outs[0].nfiles, Some(3));
        assert!(p.outs[0].is_dir());
        assert_eq!(p.to_yaml(), text);
        assert!(Pointer::parse("outs:\n- md5: xyz\n  path: a\n", Path::new("a.dvc")).is_err());
        assert!(
            Pointer::parse(
                "outs:\n- md5: b1946ac92492d2347c6235b4d2611184\n  path: ../etc\n",
                Path::new("a.dvc")
            )
            .is_err()
        );
        let q = Pointer::parse("meta: {}\nouts:\n- md5: b1946ac92492d2347c6235b4d2611184\n  size: 6\n  path: 'my file.txt'\n", Path::new("x.dvc")).expect("quoted");
        assert_eq!(q.outs[0].path, "my file.txt");
    }
}
