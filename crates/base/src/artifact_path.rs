//! Artifact paths, normalised so that no request can name anything outside the artifact tree.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("artifact path '{0}' must be relative and may not contain '..'")]
    Escapes(String),
    #[error("artifact path '{0}' contains a forbidden character")]
    BadChar(String),
    #[error("artifact path is too long ({0} bytes, at most 4096)")]
    TooLong(usize),
}

/// A relative, '/'-separated path with no empty, `.` or `..` segments; may be empty (the root).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    pub fn root() -> ArtifactPath {
        ArtifactPath(String::new())
    }

    /// Accepts what clients send (`a/b`, `a//b/`, `./a`) and refuses anything that could escape:
    /// absolute paths, `..`, backslashes, NUL and other control characters.
    pub fn parse(raw: &str) -> Result<ArtifactPath, PathError> {
        if raw.len() > 4096 {
            return Err(PathError::TooLong(raw.len()));
        }
        if raw.starts_with('/') || raw.starts_with('~') {
            return Err(PathError::Escapes(raw.to_owned()));
        }
        if raw.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(PathError::BadChar(raw.to_owned()));
        }
        let mut parts = Vec::new();
        for seg in raw.split('/') {
            match seg {
                "" | "." => {}
                ".." => return Err(PathError::Escapes(raw.to_owned())),
                s if s.len() >= 2 && s.as_bytes()[1] == b':' && parts.is_empty() => {
                    // `C:` style drive prefixes are absolute on Windows clients.
                    return Err(PathError::Escapes(raw.to_owned()));
                }
                s => parts.push(s),
            }
        }
        Ok(ArtifactPath(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn join(&self, child: &ArtifactPath) -> ArtifactPath {
        match (self.is_root(), child.is_root()) {
            (true, _) => child.clone(),
            (_, true) => self.clone(),
            _ => ArtifactPath(format!("{}/{}", self.0, child.0)),
        }
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }
}

impl fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Result<&str, ()>) {
        let got = ArtifactPath::parse(raw);
        match expected {
            Ok(want) => assert_eq!(got.as_ref().map(|p| p.as_str()), Ok(want), "{raw}"),
            Err(()) => assert!(got.is_err(), "{raw} should be refused, got {got:?}"),
        }
    }

    #[test]
    fn normalises_and_refuses_escapes() {
        check("a/b.txt", Ok("a/b.txt"));
        check("./a//b/", Ok("a/b"));
        check("", Ok(""));
        check("../x", Err(()));
        check("a/../../x", Err(()));
        check("/etc/passwd", Err(()));
        check("a\\..\\b", Err(()));
        check("C:/x", Err(()));
        check("a\0b", Err(()));
        check("~/x", Err(()));
        let p = ArtifactPath::parse("a/b").unwrap_or_else(|_| ArtifactPath::root());
        assert_eq!(p.file_name(), "b");
        assert_eq!(ArtifactPath::root().join(&p).as_str(), "a/b");
    }
}
