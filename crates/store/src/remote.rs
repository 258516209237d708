//! `data::Remote` on `object_store`: push/pull targets on a local directory or S3-compatible storage.

use data::{DataError, Remote};
use futures_util::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct ObjectRemote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

fn remote_err(e: impl std::fmt::Display) -> DataError {
    DataError::Remote(e.to_string())
}

impl ObjectRemote {
    /// A local directory (created if missing) or `s3://bucket/prefix` with the given settings.
    pub fn open(target: &str, s3: &crate::S3Config) -> Result<ObjectRemote, DataError> {
        if let Some(rest) = target.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let cfg = crate::S3Config {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                ..s3.clone()
            };
            let store = crate::blobs::s3_store(&cfg).map_err(remote_err)?;
            return Ok(ObjectRemote {
                store,
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        std::fs::create_dir_all(target).map_err(|source| DataError::Io {
            path: target.into(),
            source,
        })?;
        let store =
            object_store::local::LocalFileSystem::new_with_prefix(target).map_err(remote_err)?;
        Ok(ObjectRemote {
            store: Arc::new(store),
            prefix: String::new(),
        })
    }

    fn key(&self, key: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(key)
        } else {
            StorePath::from(format!("{}/{key}", self.prefix))
        }
    }
}

#[async_trait::async_trait]
impl Remote for ObjectRemote {
    async fn exists(&self, key: &str) -> Result<bool, DataError> {
        match self.store.head(&self.key(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(remote_err(e)),
        }
    }

    async fn put(&self, key: &str, file: &Path) -> Result<(), DataError> {
        let io = |source| DataError::Io {
            path: file.to_owned(),
            source,
        };
        let size = tokio::fs::metadata(file).await.map_err(io)?.len();
        let mut f = tokio::fs::File::open(file).await.map_err(io)?;
        if size <= 8 * 1024 * 1024 {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf).await.map_err(io)?;
            self.store
                .put(&self.key(key), PutPayload::from(buf))
                .await
                .map_err(remote_err)?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&self.key(key))
            .await
            .map_err(remote_err)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(4).await.map_err(remote_err)?;
            w.write(&buf[..n]);
        }
        w.finish().await.map_err(remote_err)?;
        Ok(())
    }

    async fn get(&self, key: &str, dest: &Path) -> Result<(), DataError> {
        let got = match self.store.get(&self.key(key)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(DataError::Remote(format!("{key} is not on the remote")));
            }
            Err(e) => return Err(remote_err(e)),
        };
        let io = |source| DataError::Io {
            path: dest.to_owned(),
            source,
        };
        let mut out = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(remote_err)?)
                .await
                .map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        Ok(())
    }
}
