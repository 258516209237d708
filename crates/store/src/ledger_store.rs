//! The gateway's budget and rate-limit ledger, in SQLite/PostgreSQL and in Redis. Reserving is
//! one conditional update — `reserved += amount WHERE spent + reserved + amount <= limit` — so
//! concurrent requests (from any number of gateway processes sharing the store) can never
//! reserve past the limit: PostgreSQL re-checks the condition on the row it locked, SQLite has
//! one writer, and Redis runs the check-and-add as one Lua script.

use crate::db::{Db, map_err};
use crate::redis::{Redis, Reply};
use gateway::budget::{EPSILON, Ledger};
use sqlx::Row;

fn err(e: sqlx::Error) -> String {
    map_err(e).to_string()
}

#[async_trait::async_trait]
impl Ledger for Db {
    async fn reserve(
        &self,
        key: &str,
        amount: f64,
        limit: f64,
        expires_ms: i64,
    ) -> Result<bool, String> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO gateway_ledger (key, spent, reserved, expires) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key.to_owned())
        .bind(0.0f64)
        .bind(0.0f64)
        .bind(expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let done = sqlx::query(
            "UPDATE gateway_ledger SET reserved = reserved + $2 WHERE key = $1 AND spent + reserved + $2 <= $3",
        )
        .bind(key.to_owned())
        .bind(amount)
        .bind(limit + EPSILON)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        // Forget windows that have ended (cheap: indexed, and rarely any).
        sqlx::query("DELETE FROM gateway_ledger WHERE expires < $1")
            .bind(base::now_millis())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn settle(&self, key: &str, reserved: f64, actual: f64) -> Result<(), String> {
        let _g = self.write_guard().await;
        sqlx::query(
            "UPDATE gateway_ledger SET spent = spent + $3, \
             reserved = CASE WHEN reserved - $2 < 0 THEN 0 ELSE reserved - $2 END WHERE key = $1",
        )
        .bind(key.to_owned())
        .bind(reserved)
        .bind(actual)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<(f64, f64), String> {
        let row = sqlx::query("SELECT spent, reserved FROM gateway_ledger WHERE key = $1")
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match row {
            Some(r) => Ok((
                r.try_get("spent").map_err(err)?,
                r.try_get("reserved").map_err(err)?,
            )),
            None => Ok((0.0, 0.0)),
        }
    }
}

/// Check and add in one step on the Redis server.
const RESERVE: &str = r#"
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[1])
if spent + reserved + amount > tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return 1
"#;

const SETTLE: &str = r#"
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0') - tonumber(ARGV[1])
if reserved < 0 then reserved = 0 end
redis.call('HSET', KEYS[1], 'reserved', tostring(reserved))
redis.call('HINCRBYFLOAT', KEYS[1], 'spent', ARGV[2])
return 1
"#;

fn bulk_f64(r: &Reply) -> f64 {
    match r {
        Reply::Bulk(Some(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
        _ => 0.0,
    }
}

impl Redis {
    fn ledger_key(&self, key: &str) -> Vec<u8> {
        format!("{}:{key}", self.prefix()).into_bytes()
    }
}

#[async_trait::async_trait]
impl Ledger for Redis {
    async fn reserve(
        &self,
        key: &str,
        amount: f64,
        limit: f64,
        expires_ms: i64,
    ) -> Result<bool, String> {
        let expires = if expires_ms == i64::MAX {
            0
        } else {
            expires_ms
        };
        let r = self
            .pipeline(&[vec![
                b"EVAL".to_vec(),
                RESERVE.as_bytes().to_vec(),
                b"1".to_vec(),
                self.ledger_key(key),
                format!("{amount}").into_bytes(),
                format!("{}", limit + EPSILON).into_bytes(),
                expires.to_string().into_bytes(),
            ]])
            .await?;
        Ok(r.first() == Some(&Reply::Int(1)))
    }

    async fn settle(&self, key: &str, reserved: f64, actual: f64) -> Result<(), String> {
        self.pipeline(&[vec![
            b"EVAL".to_vec(),
            SETTLE.as_bytes().to_vec(),
            b"1".to_vec(),
            self.ledger_key(key),
            format!("{reserved}").into_bytes(),
            format!("{actual}").into_bytes(),
        ]])
        .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<(f64, f64), String> {
        let r = self
            .pipeline(&[vec![
                b"HMGET".to_vec(),
                self.ledger_key(key),
                b"spent".to_vec(),
                b"reserved".to_vec(),
            ]])
            .await?;
        match r.first() {
            Some(Reply::Array(Some(v))) if v.len() == 2 => Ok((bulk_f64(&v[0]), bulk_f64(&v[1]))),
            _ => Ok((0.0, 0.0)),
        }
    }
}
