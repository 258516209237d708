//! Blob store behaviour on the local filesystem and on S3 (a moto server on loopback).

use bytes::Bytes;
use store::{BlobConfig, Blobs, S3Config};

async fn roundtrip(blobs: Blobs) {
    let small = Bytes::from_static(b"hello capstan");
    let (h, n) = blobs.put_bytes(small.clone()).await.expect("put");
    assert_eq!(n, 13);
    assert_eq!(h, base::ContentHash::of(b"hello capstan"));
    assert_eq!(blobs.get_bytes(&h).await.expect("get"), small);
    // Large enough for a multipart upload, streamed in uneven chunks.
    let big: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .chunks(777_777)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let (hb, nb) = blobs
        .put_stream(futures_util::stream::iter(chunks), u64::MAX)
        .await
        .expect("put big");
    assert_eq!(
        (hb.clone(), nb),
        (base::ContentHash::of(&big), big.len() as u64)
    );
    assert_eq!(
        blobs.get_bytes(&hb).await.expect("get big").len(),
        big.len()
    );
    // Over the limit: refused, nothing stored.
    let over = Bytes::from(vec![7u8; 100]);
    let err = blobs
        .put_stream(
            futures_util::stream::once(async { Ok::<_, std::io::Error>(over) }),
            99,
        )
        .await
        .expect_err("too large");
    assert!(err.to_string().contains("limit"), "{err}");
    assert!(
        !blobs
            .contains(&base::ContentHash::of(&[7u8; 100]))
            .await
            .expect("contains")
    );
}

#[tokio::test]
async fn local_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Blobs::open(
        &BlobConfig::Local(dir.path().join("objects")),
        dir.path().join("tmp"),
    )
    .expect("open");
    roundtrip(blobs).await;
    // Nothing is left in staging.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn s3_compatible() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let exe = std::env::var("CAPSTAN_TEST_MOTO").unwrap_or_else(|_| "moto_server".into());
    let child = std::process::Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the S3 tests need moto_server (pip install 'moto[server]'): {exe}: {e}")
        });
    let _moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/capstan-test"))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{}", created.status());
    let cfg = S3Config {
        bucket: "capstan-test".into(),
        prefix: "objects".into(),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    };
    assert!(
        !format!("{cfg:?}").contains("\"test\", allow"),
        "secret must be redacted"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    roundtrip(Blobs::open(&BlobConfig::S3(cfg), dir.path().to_path_buf()).expect("open s3")).await;
}
