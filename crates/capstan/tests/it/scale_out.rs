//! The scale-out wiring end to end: `capstan server --db postgres://… --artifacts s3://…` against
//! the development PostgreSQL and a real S3-compatible server (moto) on loopback.

use crate::binary::capstan;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[tokio::test]
async fn postgres_metadata_and_s3_artifacts() {
    // A fresh PostgreSQL database for this test.
    let admin = std::env::var("CAPSTAN_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("capstan_bin_{nanos:x}");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .expect("db url");
    let status = std::process::Command::new("psql")
        .args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(
        status.status.success(),
        "PostgreSQL must be reachable at {admin}: {}",
        String::from_utf8_lossy(&status.stderr)
    );

    let moto_port = free_port();
    let exe = std::env::var("CAPSTAN_TEST_MOTO").unwrap_or_else(|_| "moto_server".into());
    let _moto = Kill(
        std::process::Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("moto_server is needed for the S3 tests: {exe}: {e}")),
    );
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let http = reqwest::Client::new();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(r) = http.put(format!("{endpoint}/capstan-bin")).send().await {
            ok = r.status().is_success();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "could not create the bucket on moto");

    let home = tempfile::tempdir().expect("tempdir");
    let mut child = capstan(home.path())
        .args([
            "--db",
            &format!("{base}/{name}"),
            "--artifacts",
            "s3://capstan-bin/objects",
            "server",
            "--port",
            "0",
        ])
        .env("CAPSTAN_S3__ENDPOINT", &endpoint)
        .env("CAPSTAN_S3__ALLOW_HTTP", "true")
        .env("CAPSTAN_S3__ACCESS_KEY_ID", "test")
        .env("CAPSTAN_S3__SECRET_ACCESS_KEY", "test")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let _server = Kill(child);
    let url = line.trim().rsplit(' ').next().expect("url").to_owned();

    let v: serde_json::Value = http
        .post(format!("{url}/api/2.0/mlflow/experiments/create"))
        .json(&serde_json::json!({"name": "scaled"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let exp = v["experiment_id"].as_str().expect("id").to_owned();
    let body: Vec<u8> = (0..10_000_000u32).map(|i| (i % 239) as u8).collect();
    let path = format!("{url}/api/2.0/mlflow-artifacts/artifacts/{exp}/r/artifacts/model.bin");
    assert_eq!(
        http.put(&path)
            .body(body.clone())
            .send()
            .await
            .expect("put")
            .status()
            .as_u16(),
        200
    );
    let back = http
        .get(&path)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(back.len(), body.len());
    assert!(
        back.as_ref() == body.as_slice(),
        "artifact round trip through S3"
    );

    // The rows are in PostgreSQL, the bytes in the bucket.
    let out = std::process::Command::new("psql")
        .args([
            &format!("{base}/{name}"),
            "-tAc",
            "SELECT name FROM experiments WHERE name = 'scaled'",
        ])
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "scaled");
    let listing = http
        .get(format!(
            "{endpoint}/capstan-bin?list-type=2&prefix=objects/sha256/"
        ))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    assert!(
        listing.contains(&base::ContentHash::of(&body).as_str()[2..]),
        "blob stored under its hash: {listing}"
    );
}
