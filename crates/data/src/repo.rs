//! A data repository: the directory holding `.dvc/` (config, cache) and the pointer files.

use crate::hashing::{DirEntry, StateCache, dir_manifest, md5_bytes, md5_file};
use crate::pointer::{Out, Pointer};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0} is not a data repository (no .dvc directory); run `capstan data init`")]
    NotARepo(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", file.display())]
    Pointer { file: PathBuf, message: String },
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("cache object {0} is missing; pull it from a remote")]
    NotInCache(String),
    #[error("object {key} failed verification: expected md5 {expected}, got {got}")]
    Corrupt {
        key: String,
        expected: String,
        got: String,
    },
    #[error("remote: {0}")]
    Remote(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What changed in the workspace against a pointer file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Unchanged(String),
    Modified(String),
    Deleted(String),
    /// The pointer names content the cache does not have (pull it).
    NotInCache(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    pub transferred: usize,
    pub skipped: usize,
}

/// Where pushed objects go: keys are cache-relative (`files/md5/ab/cdef…`).
#[async_trait::async_trait]
pub trait Remote: Send + Sync {
    async fn exists(&self, key: &str) -> Result<bool, DataError>;
    async fn put(&self, key: &str, file: &Path) -> Result<(), DataError>;
    /// Writes the object to `dest` (a temporary path the caller verifies and renames).
    async fn get(&self, key: &str, dest: &Path) -> Result<(), DataError>;
}

pub struct Repo {
    root: PathBuf,
    /// Files re-hashed by the last operation (the rest came from the stat cache).
    pub last_hashed: usize,
}

fn object_rel(hash: &str) -> String {
    format!("files/md5/{}/{}", &hash[..2], &hash[2..])
}

impl Repo {
    /// Creates `.dvc/` (as `dvc init --no-scm` does) if it is not there yet.
    pub fn init(root: &Path) -> Result<Repo, DataError> {
        let dvc = root.join(".dvc");
        std::fs::create_dir_all(dvc.join("cache")).map_err(io(&dvc))?;
        let config = dvc.join("config");
        if !config.exists() {
            std::fs::write(&config, "[core]\n    no_scm = True\n").map_err(io(&config))?;
        }
        Repo::open(root)
    }

    pub fn open(root: &Path) -> Result<Repo, DataError> {
        if !root.join(".dvc").is_dir() {
            return Err(DataError::NotARepo(root.to_owned()));
        }
        Ok(Repo {
            root: root.to_owned(),
            last_hashed: 0,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cache_dir(&self) -> PathBuf {
        self.root.join(".dvc").join("cache")
    }

    fn object_path(&self, hash: &str) -> PathBuf {
        self.cache_dir().join(object_rel(hash))
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.root
            .join(".dvc")
            .join("tmp")
            .join("capstan-state.json")
    }

    /// Stores a file's bytes under `hash` unless present; atomic (temp file + rename).
    fn store_object(&self, hash: &str, src: &Path) -> Result<(), DataError> {
        let dest = self.object_path(hash);
        if dest.exists() {
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(&dest).to_owned();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = dir.join(format!(".tmp-{}-{hash}", std::process::id()));
        std::fs::copy(src, &tmp).map_err(io(src))?;
        std::fs::rename(&tmp, &dest).map_err(io(&dest))
    }

    /// Stores many files at once, spread over the cores (small files are latency-bound).
    fn store_objects(&self, files: &[PathBuf], hashes: &[(String, u64)]) -> Result<(), DataError> {
        let todo: Vec<(&PathBuf, &str)> = files
            .iter()
            .zip(hashes)
            .filter(|(_, (h, _))| !self.object_path(h).exists())
            .map(|(f, (h, _))| (f, h.as_str()))
            .collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        let chunk = todo.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || part.iter().try_for_each(|(f, h)| self.store_object(h, f)))
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DataError::Remote("a copy thread panicked".into())))
            })
        })
    }

    fn store_bytes(&self, hash: &str, bytes: &[u8]) -> Result<(), DataError> {
        let dest = self.object_path(hash);
        if dest.exists() {
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(&dest).to_owned();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = dir.join(format!(".tmp-{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io(&dest))
    }

    fn files_under(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(io(&d))? {
                let e = e.map_err(io(&d))?;
                let p = e.path();
                let t = e.file_type().map_err(io(&p))?;
                if t.is_dir() {
                    stack.push(p);
                } else if t.is_file() {
                    out.push(p);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    }

    /// Hashes a workspace path (file or directory) into an `Out`, storing objects when `store`.
    pub(crate) fn has_object(&self, hash: &str) -> bool {
        self.object_path(hash).exists()
    }

    /// Restores one output (file or directory) from the cache.
    pub(crate) fn restore_out(&self, rel: &str, hash: &str) -> Result<(), DataError> {
        let dest = self.root.join(rel);
        if hash.ends_with(".dir") {
            for e in self.read_manifest(hash)? {
                self.restore_file(&e.md5, &dest.join(&e.relpath), false)?;
            }
            Ok(())
        } else {
            self.restore_file(hash, &dest, false)
        }
    }

    pub(crate) fn snapshot_out(
        &self,
        state: &mut StateCache,
        rel: &str,
        store: bool,
    ) -> Result<Out, DataError> {
        self.snapshot(state, rel, store)
    }

    fn snapshot(&self, state: &mut StateCache, rel: &str, store: bool) -> Result<Out, DataError> {
        let abs = self.root.join(rel);
        let meta = std::fs::metadata(&abs).map_err(|_| DataError::Missing(abs.clone()))?;
        if meta.is_file() {
            let (md5, size) = state
                .hash_files(std::slice::from_ref(&abs))
                .map_err(io(&abs))?
                .remove(0);
            if store {
                self.store_object(&md5, &abs)?;
            }
            return Ok(Out {
                md5,
                size,
                nfiles: None,
                path: rel.to_owned(),
            });
        }
        let files = Self::files_under(&abs)?;
        let hashes = state.hash_files(&files).map_err(io(&abs))?;
        if store {
            self.store_objects(&files, &hashes)?;
        }
        let mut entries = Vec::with_capacity(files.len());
        let mut size = 0;
        for (f, (md5, s)) in files.iter().zip(&hashes) {
            size += s;
            let relpath = f
                .strip_prefix(&abs)
                .unwrap_or(f)
                .to_string_lossy()
                .replace('\\', "/");
            entries.push(DirEntry {
                md5: md5.clone(),
                relpath,
            });
        }
        let (hash, manifest) = dir_manifest(entries);
        if store {
            self.store_bytes(&hash, &manifest)?;
        }
        Ok(Out {
            md5: hash,
            size,
            nfiles: Some(files.len() as u64),
            path: rel.to_owned(),
        })
    }

    /// Versions a file or directory: its content goes into the cache and `<path>.dvc` is written.
    pub fn add(&mut self, path: &Path) -> Result<Out, DataError> {
        let abs = if path.is_absolute() {
            path.to_owned()
        } else {
            self.root.join(path)
        };
        let rel = self.rel(&abs);
        let mut state = StateCache::load(&self.state_path());
        let out = self.snapshot(&mut state, &rel, true)?;
        self.last_hashed = state.hashed;
        state
            .save(&self.state_path())
            .map_err(io(&self.state_path()))?;
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (self.root.join(p), n.to_owned()),
            None => (self.root.clone(), rel.clone()),
        };
        let pointer_file = parent.join(format!("{name}.dvc"));
        let local = Out {
            path: name,
            ..out.clone()
        };
        let tmp = pointer_file.with_extension("dvc.tmp");
        std::fs::write(&tmp, Pointer { outs: vec![local] }.to_yaml()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &pointer_file).map_err(io(&pointer_file))?;
        Ok(out)
    }

    /// Every pointer file with its outs, paths made relative to the repository root.
    pub fn pointers(&self) -> Result<Vec<(PathBuf, Vec<Out>)>, DataError> {
        let mut found = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(io(&d))? {
                let e = e.map_err(io(&d))?;
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                if e.file_type().map_err(io(&p))?.is_dir() {
                    if name != ".dvc" && name != ".git" {
                        stack.push(p);
                    }
                } else if name.ends_with(".dvc") {
                    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
                    let pointer = Pointer::parse(&text, &p)?;
                    let dir = self.rel(p.parent().unwrap_or(&self.root));
                    let outs = pointer
                        .outs
                        .into_iter()
                        .map(|o| Out {
                            path: if dir.is_empty() {
                                o.path.clone()
                            } else {
                                format!("{dir}/{}", o.path)
                            },
                            ..o
                        })
                        .collect();
                    found.push((p, outs));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// What changed since each pointer was written.
    pub fn status(&mut self) -> Result<Vec<Status>, DataError> {
        let mut state = StateCache::load(&self.state_path());
        let mut out = Vec::new();
        for (_, outs) in self.pointers()? {
            for o in outs {
                if !self.object_path(&o.md5).exists() {
                    out.push(Status::NotInCache(o.path.clone()));
                    continue;
                }
                match self.snapshot(&mut state, &o.path, false) {
                    Ok(now) if now.md5 == o.md5 => out.push(Status::Unchanged(o.path)),
                    Ok(_) => out.push(Status::Modified(o.path)),
                    Err(DataError::Missing(_)) => out.push(Status::Deleted(o.path)),
                    Err(e) => return Err(e),
                }
            }
        }
        self.last_hashed = state.hashed;
        state
            .save(&self.state_path())
            .map_err(io(&self.state_path()))?;
        Ok(out)
    }

    fn read_manifest(&self, hash: &str) -> Result<Vec<DirEntry>, DataError> {
        let p = self.object_path(hash);
        let bytes = std::fs::read(&p).map_err(|_| DataError::NotInCache(hash.to_owned()))?;
        serde_json::from_slice(&bytes).map_err(|e| DataError::Corrupt {
            key: hash.to_owned(),
            expected: "a JSON manifest".into(),
            got: e.to_string(),
        })
    }

    fn restore_file(&self, md5: &str, dest: &Path, link: bool) -> Result<(), DataError> {
        let src = self.object_path(md5);
        if !src.exists() {
            return Err(DataError::NotInCache(md5.to_owned()));
        }
        if dest.is_file() && md5_file(dest).map_err(io(dest))? == md5 {
            return Ok(());
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let tmp = dest.with_extension("capstan-tmp");
        if link {
            std::fs::hard_link(&src, &tmp)
                .or_else(|_| std::fs::copy(&src, &tmp).map(|_| ()))
                .map_err(io(&tmp))?;
        } else {
            std::fs::copy(&src, &tmp).map_err(io(&tmp))?;
        }
        // A cache object whose bytes no longer match its name is refused; the workspace file
        // is left as it was.
        let got = md5_file(&tmp).map_err(io(&tmp))?;
        if got != md5 {
            let _ = std::fs::remove_file(&tmp);
            return Err(DataError::Corrupt {
                key: format!("{} (for {})", src.display(), dest.display()),
                expected: md5.to_owned(),
                got,
            });
        }
        std::fs::rename(&tmp, dest).map_err(io(dest))
    }

    /// Makes the workspace match the pointers (copies from the cache, or hard links when `link`);
    /// files inside a tracked directory that the version does not have are removed.
    pub fn checkout(&self, link: bool) -> Result<usize, DataError> {
        let mut restored = 0;
        for (_, outs) in self.pointers()? {
            for o in outs {
                let dest = self.root.join(&o.path);
                if o.is_dir() {
                    let entries = self.read_manifest(&o.md5)?;
                    let wanted: HashSet<PathBuf> =
                        entries.iter().map(|e| dest.join(&e.relpath)).collect();
                    for e in &entries {
                        self.restore_file(&e.md5, &dest.join(&e.relpath), link)?;
                    }
                    if dest.is_dir() {
                        for f in Self::files_under(&dest)? {
                            if !wanted.contains(&f) {
                                std::fs::remove_file(&f).map_err(io(&f))?;
                            }
                        }
                    }
                } else {
                    self.restore_file(&o.md5, &dest, link)?;
                }
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// Every object the pointers reference (files, manifests and their entries present in cache).
    fn referenced(&self) -> Result<BTreeSet<String>, DataError> {
        let mut keep = BTreeSet::new();
        for (_, outs) in self.pointers()? {
            for o in outs {
                if o.is_dir()
                    && let Ok(entries) = self.read_manifest(&o.md5)
                {
                    keep.extend(entries.into_iter().map(|e| e.md5));
                }
                keep.insert(o.md5);
            }
        }
        Ok(keep)
    }

    /// Deletes cache objects no pointer references; returns how many.
    pub fn gc(&self) -> Result<usize, DataError> {
        let keep = self.referenced()?;
        let base = self.cache_dir().join("files").join("md5");
        if !base.is_dir() {
            return Ok(0);
        }
        let mut removed = 0;
        for f in Self::files_under(&base)? {
            let rel = f
                .strip_prefix(&base)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('/', "");
            if !keep.contains(&rel) {
                std::fs::remove_file(&f).map_err(io(&f))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Uploads referenced objects the remote lacks, 16 at a time; already-present ones are skipped,
    /// so an interrupted push resumes where it stopped.
    pub async fn push(&self, remote: Arc<dyn Remote>) -> Result<TransferReport, DataError> {
        let keys: Vec<String> = self
            .referenced()?
            .into_iter()
            .filter(|h| self.object_path(h).exists())
            .collect();
        let mut report = TransferReport::default();
        let mut set = tokio::task::JoinSet::new();
        for h in keys {
            let (remote, path) = (remote.clone(), self.object_path(&h));
            set.spawn(async move {
                let key = object_rel(&h);
                if remote.exists(&key).await? {
                    return Ok(false);
                }
                remote.put(&key, &path).await.map(|_| true)
            });
            if set.len() >= 16
                && let Some(r) = set.join_next().await
            {
                tally(&mut report, r)?;
            }
        }
        while let Some(r) = set.join_next().await {
            tally(&mut report, r)?;
        }
        Ok(report)
    }

    async fn fetch(
        &self,
        remote: &Arc<dyn Remote>,
        hashes: Vec<String>,
    ) -> Result<TransferReport, DataError> {
        let mut report = TransferReport::default();
        let mut set = tokio::task::JoinSet::new();
        for h in hashes {
            let dest = self.object_path(&h);
            if dest.exists() {
                report.skipped += 1;
                continue;
            }
            let remote = remote.clone();
            set.spawn(async move {
                let dir = dest.parent().unwrap_or(&dest).to_owned();
                std::fs::create_dir_all(&dir).map_err(|source| DataError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let tmp = dir.join(format!(".pull-{}", &h[..8]));
                remote.get(&object_rel(&h), &tmp).await?;
                // Every object is verified on arrival before it enters the cache.
                let got = if h.ends_with(".dir") {
                    let bytes = std::fs::read(&tmp).map_err(|source| DataError::Io {
                        path: tmp.clone(),
                        source,
                    })?;
                    format!("{}.dir", md5_bytes(&bytes))
                } else {
                    md5_file(&tmp).map_err(|source| DataError::Io {
                        path: tmp.clone(),
                        source,
                    })?
                };
                if got != h {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(DataError::Corrupt {
                        key: object_rel(&h),
                        expected: h,
                        got,
                    });
                }
                std::fs::rename(&tmp, &dest).map_err(|source| DataError::Io {
                    path: dest.clone(),
                    source,
                })?;
                Ok(true)
            });
            if set.len() >= 16
                && let Some(r) = set.join_next().await
            {
                tally(&mut report, r)?;
            }
        }
        while let Some(r) = set.join_next().await {
            tally(&mut report, r)?;
        }
        Ok(report)
    }

    /// Downloads what the pointers need (manifests first, then their files), then checks out.
    pub async fn pull(&self, remote: Arc<dyn Remote>) -> Result<TransferReport, DataError> {
        let mut tops = Vec::new();
        for (_, outs) in self.pointers()? {
            tops.extend(outs.into_iter().map(|o| o.md5));
        }
        let mut report = self.fetch(&remote, tops.clone()).await?;
        let mut files = Vec::new();
        for h in tops.iter().filter(|h| h.ends_with(".dir")) {
            files.extend(self.read_manifest(h)?.into_iter().map(|e| e.md5));
        }
        files.sort();
        files.dedup();
        let more = self.fetch(&remote, files).await?;
        report.transferred += more.transferred;
        report.skipped += more.skipped;
        self.checkout(false)?;
        Ok(report)
    }
}

fn tally(
    report: &mut TransferReport,
    r: Result<Result<bool, DataError>, tokio::task::JoinError>,
) -> Result<(), DataError> {
    match r {
        Ok(Ok(true)) => report.transferred += 1,
        Ok(Ok(false)) => report.skipped += 1,
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(DataError::Remote(e.to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn add_status_checkout_gc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for i in 0..20 {
            write(root, &format!("ds/part-{i:02}.csv"), &format!("row,{i}\n"));
        }
        write(root, "ds/nested/readme.txt", "hello");
        let mut repo = Repo::init(root).expect("init");
        let first = repo.add(Path::new("ds")).expect("add");
        assert_eq!((first.nfiles, repo.last_hashed), (Some(21), 21));
        assert!(root.join("ds.dvc").exists());
        assert!(matches!(
            repo.status().expect("status")[..],
            [Status::Unchanged(_)]
        ));
        assert_eq!(
            repo.last_hashed, 0,
            "unchanged files come from the stat cache"
        );

        // One changed file: only it is hashed again, and the version changes.
        std::thread::sleep(std::time::Duration::from_millis(5));
        write(root, "ds/part-07.csv", "row,seven\n");
        assert!(matches!(
            repo.status().expect("status")[..],
            [Status::Modified(_)]
        ));
        assert_eq!(repo.last_hashed, 1);
        let second = repo.add(Path::new("ds")).expect("re-add");
        assert_ne!(second.md5, first.md5);
        assert_eq!(repo.last_hashed, 0, "already hashed by status");

        // Going back to the first version restores the file and drops extras.
        write(root, "ds/extra.tmp", "stray");
        std::fs::write(
            root.join("ds.dvc"),
            Pointer {
                outs: vec![Out {
                    path: "ds".into(),
                    ..first.clone()
                }],
            }
            .to_yaml(),
        )
        .expect("pointer");
        repo.checkout(false).expect("checkout");
        assert_eq!(
            std::fs::read_to_string(root.join("ds/part-07.csv")).expect("read"),
            "row,7\n"
        );
        assert!(!root.join("ds/extra.tmp").exists());
        // The second version's objects (its manifest and the changed file) are now garbage.
        assert_eq!(repo.gc().expect("gc"), 2);
        assert!(matches!(
            repo.status().expect("status")[..],
            [Status::Unchanged(_)]
        ));
    }

    #[test]
    fn bad_input_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Repo::open(dir.path()),
            Err(DataError::NotARepo(_))
        ));
        let mut repo = Repo::init(dir.path()).expect("init");
        let err = repo.add(Path::new("missing.csv")).expect_err("missing");
        assert!(err.to_string().contains("missing.csv"), "{err}");
        std::fs::write(dir.path().join("bad.dvc"), "outs:\n- md5: zzz\n  path: x\n")
            .expect("write");
        let err = repo.status().expect_err("bad pointer");
        assert!(err.to_string().contains("bad.dvc"), "{err}");
    }
}

#[cfg(test)]
mod damage_tests {
    use super::*;

    #[test]
    fn a_corrupted_cache_object_is_refused_and_the_workspace_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.csv"), "x\n1\n").expect("write");
        let mut repo = Repo::init(dir.path()).expect("init");
        let out = repo.add(Path::new("a.csv")).expect("add");
        std::fs::write(dir.path().join("a.csv"), "edited by hand\n").expect("edit");
        let obj = repo.object_path(&out.md5);
        std::fs::write(&obj, "bit rot").expect("corrupt");
        let err = repo.checkout(false).expect_err("corrupt");
        assert!(
            err.to_string().contains("failed verification") && err.to_string().contains("a.csv"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.csv")).expect("read"),
            "edited by hand\n"
        );
    }

    /// A remote that fails after `ok` uploads, as a dropped connection would.
    struct Flaky {
        dir: PathBuf,
        ok: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Remote for Flaky {
        async fn exists(&self, key: &str) -> Result<bool, DataError> {
            Ok(self.dir.join(key).exists())
        }
        async fn put(&self, key: &str, file: &Path) -> Result<(), DataError> {
            if self
                .ok
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_err()
            {
                return Err(DataError::Remote("connection reset".into()));
            }
            let dest = self.dir.join(key);
            std::fs::create_dir_all(dest.parent().unwrap_or(&self.dir)).map_err(|source| {
                DataError::Io {
                    path: dest.clone(),
                    source,
                }
            })?;
            std::fs::copy(file, &dest)
                .map(|_| ())
                .map_err(|source| DataError::Io { path: dest, source })
        }
        async fn get(&self, key: &str, dest: &Path) -> Result<(), DataError> {
            std::fs::copy(self.dir.join(key), dest)
                .map(|_| ())
                .map_err(|source| DataError::Io {
                    path: dest.to_owned(),
                    source,
                })
        }
    }

    #[tokio::test]
    async fn an_interrupted_push_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..30 {
            std::fs::create_dir_all(dir.path().join("ds")).expect("mkdir");
            std::fs::write(dir.path().join(format!("ds/{i}.txt")), format!("row {i}\n"))
                .expect("write");
        }
        let mut repo = Repo::init(dir.path()).expect("init");
        repo.add(Path::new("ds")).expect("add");
        let remote_dir = tempfile::tempdir().expect("remote");
        let flaky = std::sync::Arc::new(Flaky {
            dir: remote_dir.path().to_owned(),
            ok: 10.into(),
        });
        let err = repo.push(flaky.clone()).await.expect_err("interrupted");
        assert!(err.to_string().contains("connection reset"));
        flaky
            .ok
            .store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
        let resumed = repo.push(flaky).await.expect("resume");
        assert_eq!(
            resumed.transferred + resumed.skipped,
            31,
            "30 files + the manifest"
        );
        assert!(
            resumed.skipped >= 10,
            "what arrived before the interruption is not sent again: {resumed:?}"
        );
    }
}
