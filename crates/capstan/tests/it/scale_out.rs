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

/// The online feature store on the development Redis: materialised by the CLI, served by the
/// server, both configured with `store.online = "redis://…"`.
#[tokio::test]
async fn online_features_on_redis() {
    let home = tempfile::tempdir().expect("home");
    let view = format!("w{}", uuid_like());
    std::fs::write(
        home.path().join("capstan.toml"),
        "[store]\nonline = \"redis://127.0.0.1:6379\"\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join("src.csv"),
        "driver_id,ts,rate\n1,2025-01-01T00:00:00Z,0.5\n1,2025-01-02T00:00:00Z,0.75\n2,2025-01-01T00:00:00Z,2.5\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join("defs.yaml"),
        format!("entities:\n  - {{name: driver, join_keys: [driver_id]}}\nsources:\n  - {{name: s, path: src.csv, timestamp: ts}}\nfeature_views:\n  - {{name: {view}, entities: [driver], source: s, features: [{{name: rate, type: float}}]}}\n"),
    )
    .unwrap();
    let ok = |args: &[&str]| crate::binary::cli_ok(home.path(), args);
    ok(&[
        "features",
        "apply",
        home.path().join("defs.yaml").to_str().unwrap(),
    ]);
    let text = ok(&["features", "materialize", "--end", "2025-06-01T00:00:00Z"]);
    assert!(text.contains(&format!("{view}: 2 entities")), "{text}");
    // The snapshot lives in Redis, under the view's current generation.
    let exists = std::process::Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "EXISTS",
            &format!("capstan:online:{view}:current"),
        ])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&exists.stdout).trim(), "1");
    let port = free_port();
    let mut child = capstan(home.path())
        .args(["server", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address");
    let _server = Kill(child);
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/get-online-features"))
        .json(&serde_json::json!({"features": [format!("{view}:rate")], "entities": {"driver_id": [1, 2, 3]}}))
        .send()
        .await
        .expect("lookup")
        .json()
        .await
        .expect("json");
    assert_eq!(
        r["results"][1]["values"],
        serde_json::json!([0.75, 2.5, null]),
        "{r}"
    );
    assert_eq!(
        r["results"][1]["statuses"],
        serde_json::json!(["PRESENT", "PRESENT", "NOT_FOUND"])
    );
    for k in ["current", "generation", "g1"] {
        let _ = std::process::Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "DEL",
                &format!("capstan:online:{view}:{k}"),
            ])
            .output();
    }
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", t, std::process::id())
}

/// RAG on pgvector: `store.vectors = "postgres://…"` (the pgvector server scripts/test.sh
/// starts); the CLI ingests, the server answers, both from the same PostgreSQL tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rag_on_pgvector() {
    let home = tempfile::tempdir().expect("home");
    let url = std::env::var("CAPSTAN_TEST_PGVECTOR")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5434/postgres".to_owned());
    std::fs::write(
        home.path().join("capstan.toml"),
        format!("[store]\nvectors = \"{url}\"\n"),
    )
    .unwrap();
    crate::binary::link_models(home.path());
    let docs = home.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("own.md"),
        "# Ownership\n\nWhen the owner goes out of scope, the value is dropped.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("cargo.md"),
        "# Cargo\n\nCargo downloads dependencies from crates.io.\n",
    )
    .unwrap();
    let collection = format!("pg{}", uuid_like());
    let ok = |args: &[&str]| crate::binary::cli_ok(home.path(), args);
    let out = ok(&[
        "rag",
        "ingest",
        docs.to_str().unwrap(),
        "--collection",
        &collection,
    ]);
    assert!(out.contains("2 documents (2 changed"), "{out}");
    let out = ok(&[
        "rag",
        "ingest",
        docs.to_str().unwrap(),
        "--collection",
        &collection,
    ]);
    assert!(
        out.contains("(0 changed, 2 unchanged"),
        "the manifest lives in PostgreSQL too: {out}"
    );
    let port = free_port();
    let mut child = capstan(home.path())
        .args(["server", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address");
    let _server = Kill(child);
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/rag/{collection}/query"))
        .json(&serde_json::json!({"query": "what happens when the owner goes out of scope?"}))
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert!(
        r["result"]["answer"]
            .as_str()
            .unwrap_or("")
            .contains("dropped"),
        "{r}"
    );
    assert_eq!(r["result"]["citations"][0]["source"], "own.md", "{r}");
    let r: serde_json::Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/collections/{collection}"))
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(r["result"]["points_count"], 2, "{r}");
    let r = reqwest::Client::new()
        .delete(format!("http://127.0.0.1:{port}/collections/{collection}"))
        .send()
        .await
        .expect("drop");
    assert_eq!(r.status().as_u16(), 200);
}
