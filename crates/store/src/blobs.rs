//! Content-addressed blobs on the local filesystem or S3-compatible storage, through `object_store`.
//! Uploads stream to a staging file while they are hashed, then land under `sha256/ab/cdef…`:
//! a blob is either complete under its final name or absent.

use base::{ContentHash, Sha256Hasher};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where blobs live.
#[derive(Clone)]
pub enum BlobConfig {
    Local(PathBuf),
    S3(S3Config),
}

#[derive(Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("upload exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("blob {0} not found")]
    NotFound(ContentHash),
    #[error("upload stream failed: {0}")]
    Body(String),
    #[error("blob store I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
}

const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    staging: PathBuf,
}

impl Blobs {
    /// `staging` is a local directory for uploads in flight.
    pub fn open(config: &BlobConfig, staging: PathBuf) -> Result<Blobs, BlobError> {
        std::fs::create_dir_all(&staging)?;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match config {
            BlobConfig::Local(dir) => {
                std::fs::create_dir_all(dir)?;
                (
                    Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?),
                    String::new(),
                )
            }
            BlobConfig::S3(s3) => (s3_store(s3)?, s3.prefix.trim_matches('/').to_owned()),
        };
        Ok(Blobs {
            store,
            prefix,
            staging,
        })
    }

    fn key(&self, hash: &ContentHash) -> StorePath {
        let rel = format!("sha256/{}", hash.fanout_path());
        if self.prefix.is_empty() {
            StorePath::from(rel)
        } else {
            StorePath::from(format!("{}/{rel}", self.prefix))
        }
    }

    pub async fn contains(&self, hash: &ContentHash) -> Result<bool, BlobError> {
        match self.store.head(&self.key(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn put_bytes(&self, bytes: Bytes) -> Result<(ContentHash, u64), BlobError> {
        let size = bytes.len() as u64;
        self.put_stream(
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) }),
            size,
        )
        .await
    }

    /// Streams `body` into the store; refuses more than `max_bytes`. Returns the hash and size.
    pub async fn put_stream<S, E>(
        &self,
        body: S,
        max_bytes: u64,
    ) -> Result<(ContentHash, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        let tmp = self
            .staging
            .join(format!("upload-{}", uuid::Uuid::new_v4().simple()));
        let result = self.stage_and_store(body, max_bytes, &tmp).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        result
    }

    async fn stage_and_store<S, E>(
        &self,
        body: S,
        max_bytes: u64,
        tmp: &std::path::Path,
    ) -> Result<(ContentHash, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        let mut file = tokio::fs::File::create(tmp).await?;
        let mut hasher = Sha256Hasher::default();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > max_bytes {
                return Err(BlobError::TooLarge(max_bytes));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        drop(file);
        let hash = hasher.finish();
        if self.contains(&hash).await? {
            return Ok((hash, size));
        }
        let key = self.key(&hash);
        let mut file = tokio::fs::File::open(tmp).await?;
        if size <= MULTIPART_THRESHOLD {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await?;
            self.store.put(&key, PutPayload::from(buf)).await?;
        } else {
            let upload = self.store.put_multipart(&key).await?;
            let mut writer =
                WriteMultipart::new_with_chunk_size(upload, MULTIPART_THRESHOLD as usize);
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(4).await?;
                writer.write(&buf[..n]);
            }
            writer.finish().await?;
        }
        Ok((hash, size))
    }

    /// The blob's bytes as a stream of chunks.
    pub async fn get(
        &self,
        hash: &ContentHash,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        match self.store.get(&self.key(hash)).await {
            Ok(r) => Ok(r.into_stream().map_err(BlobError::from).boxed()),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(hash.clone())),
            Err(e) => Err(e.into()),
        }
    }

    fn named(&self, rel: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(rel)
        } else {
            StorePath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// Stores an object under a name of its own (outside the content-addressed `sha256/` tree),
    /// atomically: readers see the whole object or none. Used for the prediction log.
    pub async fn put_named(&self, rel: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.store
            .put(&self.named(rel), object_store::PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Names (relative, sorted) and sizes of the objects under `rel_prefix`.
    pub async fn list_named(&self, rel_prefix: &str) -> Result<Vec<(String, u64)>, BlobError> {
        let base = self.named(rel_prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = Vec::new();
        let mut s = self.store.list(Some(&base));
        while let Some(m) = s.next().await {
            let m = m?;
            out.push((m.location.as_ref()[strip..].to_owned(), m.size));
        }
        out.sort();
        Ok(out)
    }

    pub async fn get_named(&self, rel: &str) -> Result<Bytes, BlobError> {
        Ok(self.store.get(&self.named(rel)).await?.bytes().await?)
    }

    pub async fn get_bytes(&self, hash: &ContentHash) -> Result<Bytes, BlobError> {
        let mut s = self.get(hash).await?;
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(Bytes::from(out))
    }
}

/// An S3-compatible store from settings (shared by blobs and data remotes).
pub(crate) fn s3_store(s3: &S3Config) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_allow_http(s3.allow_http);
    if let Some(e) = &s3.endpoint {
        b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
    }
    if let Some(k) = &s3.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = &s3.secret_access_key {
        b = b.with_secret_access_key(k);
    }
    Ok(Arc::new(b.build()?))
}
