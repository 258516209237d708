//! Content hashes: the address of every blob in the artifact store.

use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 digest, always 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(String);

impl ContentHash {
    pub fn parse(s: &str) -> Option<ContentHash> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| ContentHash(s.to_owned()))
    }

    pub fn of(bytes: &[u8]) -> ContentHash {
        let mut h = Sha256Hasher::default();
        h.update(bytes);
        h.finish()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `ab/cdef…`: the fan-out layout used by blob stores so no directory gets huge.
    pub fn fanout_path(&self) -> String {
        format!("{}/{}", &self.0[..2], &self.0[2..])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Incremental SHA-256, so large uploads are hashed while they stream.
#[derive(Default)]
pub struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> ContentHash {
        ContentHash(crate::to_hex(&self.0.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            ContentHash::of(b"abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(ContentHash::parse("abc").is_none());
        assert!(ContentHash::parse(&"A".repeat(64)).is_none());
    }
}
