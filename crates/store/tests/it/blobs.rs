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

#[tokio::test]
async fn s3_compatible() {
    let (_moto, endpoint) = crate::support::moto("capstan-test").await;
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
