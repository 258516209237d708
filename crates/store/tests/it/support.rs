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
