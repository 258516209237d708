//! `TokenStore` on the metadata database. Only SHA-256 digests of tokens are stored.

use crate::db::{Db, map_err};
use base::ContentHash;
use sqlx::Row;
use sqlx::any::AnyRow;
use tracking::{Error, Result, Scope, TokenInfo, TokenStore};

fn info(r: &AnyRow) -> Result<TokenInfo> {
    let scope: String = r.try_get(2).map_err(map_err)?;
    Ok(TokenInfo {
        id: r.try_get(0).map_err(map_err)?,
        name: r.try_get(1).map_err(map_err)?,
        scope: Scope::parse(&scope).ok_or_else(|| Error::Store(format!("bad scope '{scope}'")))?,
        created: r.try_get(3).map_err(map_err)?,
    })
}

#[async_trait::async_trait]
impl TokenStore for Db {
    async fn create_token(
        &self,
        name: &str,
        token_hash: &ContentHash,
        scope: Scope,
    ) -> Result<TokenInfo> {
        let _g = self.write_guard().await;
        let row = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, scope, created, revoked) VALUES ($1, $2, $3, $4, 0) \
             RETURNING id, name, scope, created",
        )
        .bind(name.to_owned())
        .bind(token_hash.as_str().to_owned())
        .bind(scope.as_str())
        .bind(base::now_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        info(&row)
    }

    async fn find_token(&self, token_hash: &ContentHash) -> Result<Option<TokenInfo>> {
        let row = sqlx::query(
            "SELECT id, name, scope, created FROM api_tokens WHERE token_hash = $1 AND revoked = 0",
        )
        .bind(token_hash.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(info).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created FROM api_tokens WHERE revoked = 0 ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(info).collect()
    }

    async fn revoke_token(&self, id: i64) -> Result<()> {
        let _g = self.write_guard().await;
        let done = sqlx::query("UPDATE api_tokens SET revoked = $1 WHERE id = $2 AND revoked = 0")
            .bind(base::now_millis())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("No active token with id {id}")));
        }
        Ok(())
    }

    async fn count_tokens(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM api_tokens WHERE revoked = 0")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.try_get::<i64, _>(0).map_err(map_err)? as u64)
    }
}
