//! Data push/pull through `ObjectRemote` to a local directory and to S3 (moto): resumable,
//! verified on arrival.

use data::Repo;
use std::path::Path;
use std::sync::Arc;
use store::{ObjectRemote, S3Config};

fn workspace(root: &Path) -> Repo {
    for i in 0..40 {
        let p = root.join(format!("images/{:02}/img-{i}.bin", i % 4));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, vec![i as u8; 1000 + i * 37]).expect("write");
    }
    std::fs::write(root.join("labels.csv"), "id,label\n1,cat\n").expect("write");
    let mut repo = Repo::init(root).expect("init");
    repo.add(Path::new("images")).expect("add dir");
    repo.add(Path::new("labels.csv")).expect("add file");
    repo
}

async fn roundtrip(remote: Arc<dyn data::Remote>) {
    let a = tempfile::tempdir().expect("a");
    let repo = workspace(a.path());
    let first = repo.push(remote.clone()).await.expect("push");
    assert_eq!(
        (first.transferred, first.skipped),
        (42, 0),
        "40 files + manifest + labels"
    );
    let again = repo.push(remote.clone()).await.expect("push again");
    assert_eq!(
        (again.transferred, again.skipped),
        (0, 42),
        "a repeated push resumes: nothing to send"
    );

    // A clone with only the pointer files pulls everything and gets an identical workspace.
    let b = tempfile::tempdir().expect("b");
    Repo::init(b.path()).expect("init b");
    for f in ["images.dvc", "labels.csv.dvc"] {
        std::fs::copy(a.path().join(f), b.path().join(f)).expect("copy pointer");
    }
    let clone = Repo::open(b.path()).expect("open b");
    let pulled = clone.pull(remote.clone()).await.expect("pull");
    assert_eq!(pulled.transferred, 42);
    for i in [0usize, 13, 39] {
        let rel = format!("images/{:02}/img-{i}.bin", i % 4);
        assert_eq!(
            std::fs::read(b.path().join(&rel)).expect("pulled"),
            vec![i as u8; 1000 + i * 37]
        );
    }

    // A corrupted remote object is refused on arrival and never enters the cache.
    let c = tempfile::tempdir().expect("c");
    Repo::init(c.path()).expect("init c");
    std::fs::copy(
        a.path().join("labels.csv.dvc"),
        c.path().join("labels.csv.dvc"),
    )
    .expect("copy");
    let h = data::md5_bytes(b"id,label\n1,cat\n");
    let bad_file = c.path().join("tampered");
    std::fs::write(&bad_file, b"id,label\n1,dog\n").expect("write");
    remote
        .put(&format!("files/md5/{}/{}", &h[..2], &h[2..]), &bad_file)
        .await
        .expect("tamper");
    let bad = Repo::open(c.path())
        .expect("open c")
        .pull(remote)
        .await
        .expect_err("corrupt");
    assert!(bad.to_string().contains("failed verification"), "{bad}");
    assert!(!c.path().join("labels.csv").exists());
}

#[tokio::test]
async fn push_pull_local_directory() {
    let remote_dir = tempfile::tempdir().expect("remote");
    let remote = Arc::new(
        ObjectRemote::open(&remote_dir.path().to_string_lossy(), &S3Config::default())
            .expect("remote"),
    );
    roundtrip(remote).await;
}

#[tokio::test]
async fn push_pull_s3() {
    let (_moto, endpoint) = crate::support::moto("capstan-data").await;
    let cfg = S3Config {
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
        ..Default::default()
    };
    roundtrip(Arc::new(
        ObjectRemote::open("s3://capstan-data/remote", &cfg).expect("remote"),
    ))
    .await;
}
