//! Opening fresh backends for one test.

use store::Db;

/// The PostgreSQL server the development machines and CI run (trust auth).
pub fn pg_admin_url() -> String {
    std::env::var("CAPSTAN_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub struct TestDb {
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    TestDb {
        db: Db::open(&url).await.expect("open sqlite"),
        _dir: Some(dir),
    }
}

/// A new, empty PostgreSQL database for this test.
pub async fn postgres() -> TestDb {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let admin = pg_admin_url();
    let name = format!("capstan_t_{}", uuid_like());
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be running at {admin}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create db");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin.clone());
    let db = Db::open(&format!("{base}/{name}"))
        .await
        .expect("open postgres");
    TestDb { db, _dir: None }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:04x}", n, std::process::id() & 0xffff)
}

/// Runs an async test body once per metadata backend.
#[macro_export]
macro_rules! db_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                let t = $crate::support::sqlite().await;
                ($body)(t.db.clone()).await;
            }
            #[tokio::test]
            async fn postgres() {
                let t = $crate::support::postgres().await;
                ($body)(t.db.clone()).await;
            }
        }
    };
}

/// A moto S3 server on a free loopback port; killed on drop.
pub struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto and creates `bucket`; returns the server and its endpoint URL.
pub async fn moto(bucket: &str) -> (Moto, String) {
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
    let moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{}", created.status());
    (moto, endpoint)
}
