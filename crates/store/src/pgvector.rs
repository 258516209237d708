//! Vector collections in PostgreSQL with pgvector: the scale-out [`VectorStore`]. Each
//! collection is a table (`key`, `embedding vector(d)`, `payload jsonb`) with an HNSW index
//! (`vector_ip_ops` on unit vectors for cosine, inner product for dot, `vector_l2_ops` for L2)
//! built with the collection's `m` and `ef_construction`; a catalogue table holds configs and
//! write sequence numbers, another the collections' metadata blobs.
//!
//! Payload filters become SQL/JSON path predicates (`jsonb_path_exists`, so arrays and nested
//! objects match as in the embedded store). pgvector applies them after the index scan; with
//! `hnsw.iterative_scan = relaxed_order` (pgvector ≥ 0.8) the scan continues until enough rows
//! pass, and results are re-sorted by distance here.
//!
//! The trait is synchronous: calls block on this store's runtime handle, so they must run on a
//! blocking thread (`spawn_blocking`) or a multi-threaded runtime's worker.

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vector::filter::Condition;
use vector::{
    CollectionConfig, CollectionInfo, Error, Filter, Metric, Point, PointId, Result, ScoredPoint,
    SearchRequest, VectorCollection, VectorStore,
};

pub struct PgVectors {
    pool: PgPool,
    handle: tokio::runtime::Handle,
}

fn db(e: sqlx::Error) -> Error {
    Error::Io(std::io::Error::other(format!("pgvector: {e}")))
}

fn block<F: std::future::Future>(handle: &tokio::runtime::Handle, f: F) -> F::Output {
    tokio::task::block_in_place(|| handle.block_on(f))
}

fn table_of(name: &str) -> String {
    let h = Sha256::digest(name.as_bytes());
    format!("capstan_vec_{}", base::to_hex(&h[..8]))
}

/// Keys sort like ids: numbers (zero-padded) before strings.
fn key_of(id: &PointId) -> String {
    match id {
        PointId::Num(n) => format!("n{n:020}"),
        PointId::Str(s) => format!("s{s}"),
    }
}

fn id_of(key: &str) -> PointId {
    match key.split_at(1) {
        ("n", n) => n
            .parse()
            .map(PointId::Num)
            .unwrap_or_else(|_| PointId::Str(key.to_owned())),
        (_, s) => PointId::Str(s.to_owned()),
    }
}

fn vec_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

fn parse_vec(s: &str) -> Vec<f32> {
    s.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

impl PgVectors {
    /// Connects, enables the extension and creates the catalogue tables.
    pub async fn connect(url: &str) -> std::result::Result<PgVectors, String> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        for sql in [
            "CREATE EXTENSION IF NOT EXISTS vector",
            "CREATE TABLE IF NOT EXISTS capstan_vector_collections (name text PRIMARY KEY, \
             config jsonb NOT NULL, sequence bigint NOT NULL DEFAULT 0)",
            "CREATE TABLE IF NOT EXISTS capstan_vector_meta (collection text NOT NULL, \
             key text NOT NULL, value bytea NOT NULL, PRIMARY KEY (collection, key))",
        ] {
            sqlx::query(sql)
                .execute(&pool)
                .await
                .map_err(|e| format!("{sql}: {e}"))?;
        }
        Ok(PgVectors {
            pool,
            handle: tokio::runtime::Handle::current(),
        })
    }

    fn collection(&self, name: &str, config: CollectionConfig) -> Arc<dyn VectorCollection> {
        Arc::new(PgCollection {
            name: name.to_owned(),
            table: table_of(name),
            config,
            pool: self.pool.clone(),
            handle: self.handle.clone(),
        })
    }
}

impl VectorStore for PgVectors {
    fn kind(&self) -> &'static str {
        "pgvector"
    }

    fn list(&self) -> Result<Vec<String>> {
        block(&self.handle, async {
            let rows = sqlx::query("SELECT name FROM capstan_vector_collections ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
        })
    }

    fn get(&self, name: &str) -> Result<Arc<dyn VectorCollection>> {
        let row = block(&self.handle, async {
            sqlx::query("SELECT config::text FROM capstan_vector_collections WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)
        })?;
        let Some(row) = row else {
            return Err(Error::NotFound(format!(
                "collection `{name}` does not exist"
            )));
        };
        let config: CollectionConfig =
            serde_json::from_str(&row.get::<String, _>(0)).map_err(|e| Error::Corrupt {
                path: format!("capstan_vector_collections/{name}"),
                why: e.to_string(),
            })?;
        Ok(self.collection(name, config))
    }

    fn create(&self, name: &str, config: CollectionConfig) -> Result<Arc<dyn VectorCollection>> {
        vector::collection::validate_name(name)?;
        config.validate()?;
        let table = table_of(name);
        let ops = match config.metric {
            Metric::Cosine | Metric::Dot => "vector_ip_ops",
            Metric::Euclid => "vector_l2_ops",
        };
        let json = serde_json::to_string(&config).map_err(|e| Error::BadRequest(e.to_string()))?;
        block(&self.handle, async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let inserted = sqlx::query(
                "INSERT INTO capstan_vector_collections (name, config) VALUES ($1, $2::jsonb) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&json)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if inserted.rows_affected() == 0 {
                return Err(Error::Conflict(format!(
                    "collection `{name}` already exists"
                )));
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {table} (key text PRIMARY KEY, embedding vector({}) NOT NULL, \
                 payload jsonb NOT NULL DEFAULT '{{}}')",
                config.dim
            )))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // pgvector indexes up to 2,000 dimensions; wider collections are scanned exactly.
            if config.dim <= 2000 {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding {ops}) \
                     WITH (m = {}, ef_construction = {})",
                    config.hnsw.m,
                    config.hnsw.ef_construction.max(2 * config.hnsw.m)
                )))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            tx.commit().await.map_err(db)
        })?;
        Ok(self.collection(name, config))
    }

    fn delete(&self, name: &str) -> Result<()> {
        let table = table_of(name);
        block(&self.handle, async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let gone = sqlx::query("DELETE FROM capstan_vector_collections WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if gone.rows_affected() == 0 {
                return Err(Error::NotFound(format!(
                    "collection `{name}` does not exist"
                )));
            }
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query("DELETE FROM capstan_vector_meta WHERE collection = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }

    fn snapshot_dir(&self) -> Option<PathBuf> {
        None
    }
}

struct PgCollection {
    name: String,
    table: String,
    config: CollectionConfig,
    pool: PgPool,
    handle: tokio::runtime::Handle,
}

/// A JSON path to a dotted payload key: `$."a"."b"`.
fn json_path(key: &str) -> String {
    let mut p = String::from("$");
    for part in key.split('.') {
        p.push_str(".\"");
        p.push_str(&part.replace('\\', "\\\\").replace('"', "\\\""));
        p.push('"');
    }
    p
}

fn key_array(key: &str) -> Vec<String> {
    key.split('.').map(str::to_owned).collect()
}

fn push_filter(qb: &mut QueryBuilder<Postgres>, f: &Filter) {
    qb.push("(TRUE");
    for c in f.must() {
        qb.push(" AND ");
        push_condition(qb, c);
    }
    if !f.should().is_empty() {
        qb.push(" AND (FALSE");
        for c in f.should() {
            qb.push(" OR ");
            push_condition(qb, c);
        }
        qb.push(")");
    }
    for c in f.must_not() {
        qb.push(" AND NOT ");
        push_condition(qb, c);
    }
    qb.push(")");
}

fn push_path_exists(qb: &mut QueryBuilder<Postgres>, path: String, vars: serde_json::Value) {
    qb.push("jsonb_path_exists(payload, ");
    qb.push_bind(path);
    qb.push("::jsonpath, ");
    qb.push_bind(vars.to_string());
    qb.push("::jsonb)");
}

fn any_of(key: &str, values: &[serde_json::Value]) -> (String, serde_json::Value) {
    let mut vars = serde_json::Map::new();
    let tests: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            vars.insert(format!("v{i}"), v.clone());
            format!("@ == $v{i}")
        })
        .collect();
    let test = if tests.is_empty() {
        "false".to_owned()
    } else {
        tests.join(" || ")
    };
    (
        format!("{} ? ({test})", json_path(key)),
        serde_json::Value::Object(vars),
    )
}

fn push_condition(qb: &mut QueryBuilder<Postgres>, c: &Condition) {
    match c {
        Condition::Match { key, values } => {
            let (path, vars) = any_of(key, values);
            push_path_exists(qb, path, vars);
        }
        Condition::Except { key, values } => {
            qb.push("(");
            push_path_exists(qb, json_path(key), serde_json::json!({}));
            qb.push(" AND NOT ");
            let (path, vars) = any_of(key, values);
            push_path_exists(qb, path, vars);
            qb.push(")");
        }
        Condition::Range { key, range } => {
            let mut vars = serde_json::Map::new();
            let mut tests = Vec::new();
            for (name, op, bound) in [
                ("gt", ">", range.gt),
                ("gte", ">=", range.gte),
                ("lt", "<", range.lt),
                ("lte", "<=", range.lte),
            ] {
                if let Some(b) = bound {
                    vars.insert(name.into(), serde_json::json!(b));
                    tests.push(format!("@ {op} ${name}"));
                }
            }
            push_path_exists(
                qb,
                format!("{} ? ({})", json_path(key), tests.join(" && ")),
                serde_json::Value::Object(vars),
            );
        }
        Condition::IsNull(key) => {
            qb.push("(jsonb_typeof(payload #> ");
            qb.push_bind(key_array(key));
            qb.push(") = 'null')");
        }
        Condition::IsEmpty(key) => {
            qb.push("(payload #> ");
            qb.push_bind(key_array(key));
            qb.push(" IS NULL OR jsonb_typeof(payload #> ");
            qb.push_bind(key_array(key));
            qb.push(") = 'null' OR payload #> ");
            qb.push_bind(key_array(key));
            qb.push(" = '[]'::jsonb)");
        }
        Condition::HasId(ids) => {
            qb.push("key = ANY(");
            qb.push_bind(ids.iter().map(key_of).collect::<Vec<_>>());
            qb.push(")");
        }
        Condition::Nested(f) => push_filter(qb, f),
    }
}

fn payload_of(
    row: &sqlx::postgres::PgRow,
    col: &str,
) -> serde_json::Map<String, serde_json::Value> {
    row.try_get::<String, _>(col)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

impl PgCollection {
    fn check_vector(&self, v: &[f32], what: &str) -> Result<()> {
        self.config.check_vector(&self.name, v, what)
    }

    async fn bump(&self, tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<u64> {
        let row = sqlx::query(
            "UPDATE capstan_vector_collections SET sequence = sequence + 1 WHERE name = $1 RETURNING sequence",
        )
        .bind(&self.name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::NotFound(format!("collection `{}` does not exist", self.name)))?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    fn distance_op(&self) -> &'static str {
        match self.config.metric {
            Metric::Cosine | Metric::Dot => "<#>",
            Metric::Euclid => "<->",
        }
    }
}

impl VectorCollection for PgCollection {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> &CollectionConfig {
        &self.config
    }

    fn info(&self) -> Result<CollectionInfo> {
        let count = block(&self.handle, async {
            let count: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {}",
                self.table
            )))
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
            .get(0);
            Ok::<_, Error>(count)
        })?;
        let seq = self.sequence()?;
        Ok(CollectionInfo {
            name: self.name.clone(),
            config: self.config.clone(),
            points_count: count as usize,
            indexed_nodes: count as usize,
            quantized: false,
            wal_bytes: 0,
            sequence: seq,
        })
    }

    fn sequence(&self) -> Result<u64> {
        block(&self.handle, async {
            let seq: Option<i64> =
                sqlx::query("SELECT sequence FROM capstan_vector_collections WHERE name = $1")
                    .bind(&self.name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .map(|r| r.get(0));
            Ok(seq.unwrap_or(0) as u64)
        })
    }

    fn upsert(&self, mut points: Vec<Point>) -> Result<u64> {
        for p in &mut points {
            self.check_vector(&p.vector, &format!("point {}", p.id))?;
            self.config.metric.prepare(&mut p.vector);
        }
        // One row per id, the last one winning, as in the embedded store.
        let mut last = std::collections::HashMap::new();
        for (i, p) in points.iter().enumerate() {
            last.insert(key_of(&p.id), i);
        }
        let (mut keys, mut embs, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
        for (i, p) in points.iter().enumerate() {
            let k = key_of(&p.id);
            if last[&k] == i {
                keys.push(k);
                embs.push(vec_text(&p.vector));
                payloads.push(serde_json::Value::Object(p.payload.clone()).to_string());
            }
        }
        block(&self.handle, async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {} (key, embedding, payload) \
                 SELECT k, e::vector, p::jsonb FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(k, e, p) \
                 ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload",
                self.table
            )))
            .bind(&keys)
            .bind(&embs)
            .bind(&payloads)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            let seq = self.bump(&mut tx).await?;
            tx.commit().await.map_err(db)?;
            Ok(seq)
        })
    }

    fn delete(&self, ids: Vec<PointId>) -> Result<u64> {
        let keys: Vec<String> = ids.iter().map(key_of).collect();
        block(&self.handle, async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {} WHERE key = ANY($1)",
                self.table
            )))
            .bind(&keys)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            let seq = self.bump(&mut tx).await?;
            tx.commit().await.map_err(db)?;
            Ok(seq)
        })
    }

    fn delete_matching(&self, filter: &Filter) -> Result<usize> {
        block(&self.handle, async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let mut qb = QueryBuilder::new(format!("DELETE FROM {} WHERE ", self.table));
            push_filter(&mut qb, filter);
            let n = qb
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
            self.bump(&mut tx).await?;
            tx.commit().await.map_err(db)?;
            Ok(n as usize)
        })
    }

    fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        block(&self.handle, async {
            let mut qb = QueryBuilder::new(format!("SELECT count(*) FROM {} WHERE ", self.table));
            match filter {
                Some(f) => push_filter(&mut qb, f),
                None => {
                    qb.push("TRUE");
                }
            }
            let n: i64 = qb.build().fetch_one(&self.pool).await.map_err(db)?.get(0);
            Ok(n as usize)
        })
    }

    fn get(&self, ids: &[PointId], with_vector: bool) -> Result<Vec<Point>> {
        let keys: Vec<String> = ids.iter().map(key_of).collect();
        let rows = block(&self.handle, async {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT key, payload::text AS payload, embedding::text AS embedding FROM {} WHERE key = ANY($1)",
                self.table
            )))
            .bind(&keys)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
        })?;
        let mut by_key: std::collections::HashMap<String, Point> = rows
            .iter()
            .map(|r| {
                let key: String = r.get("key");
                let p = Point {
                    id: id_of(&key),
                    vector: if with_vector {
                        parse_vec(&r.get::<String, _>("embedding"))
                    } else {
                        Vec::new()
                    },
                    payload: payload_of(r, "payload"),
                };
                (key, p)
            })
            .collect();
        Ok(keys.iter().filter_map(|k| by_key.remove(k)).collect())
    }

    fn scroll(
        &self,
        filter: Option<&Filter>,
        offset: Option<&PointId>,
        limit: usize,
    ) -> Result<(Vec<Point>, Option<PointId>)> {
        let rows = block(&self.handle, async {
            let mut qb = QueryBuilder::new(format!(
                "SELECT key, payload::text AS payload FROM {} WHERE key >= ",
                self.table
            ));
            qb.push_bind(offset.map(key_of).unwrap_or_default());
            if let Some(f) = filter {
                qb.push(" AND ");
                push_filter(&mut qb, f);
            }
            qb.push(" ORDER BY key LIMIT ");
            qb.push_bind((limit + 1) as i64);
            qb.build().fetch_all(&self.pool).await.map_err(db)
        })?;
        let mut page: Vec<Point> = rows
            .iter()
            .map(|r| Point {
                id: id_of(&r.get::<String, _>("key")),
                vector: Vec::new(),
                payload: payload_of(r, "payload"),
            })
            .collect();
        let next = if page.len() > limit {
            page.pop().map(|p| p.id)
        } else {
            None
        };
        Ok((page, next))
    }

    fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        self.check_vector(&req.vector, "query vector")?;
        if !(1..=10_000).contains(&req.limit) {
            return Err(Error::BadRequest(format!(
                "limit must be between 1 and 10000, not {}",
                req.limit
            )));
        }
        let mut q = req.vector.clone();
        self.config.metric.prepare(&mut q);
        let k = req.limit + req.offset;
        let ef = req.ef.unwrap_or(64).max(k).min(1000);
        let op = self.distance_op();
        let qtext = vec_text(&q);
        let rows = block(&self.handle, async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            for set in [
                format!("SET LOCAL hnsw.ef_search = {ef}"),
                "SET LOCAL hnsw.iterative_scan = relaxed_order".to_owned(),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(set))
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            if req.exact {
                sqlx::query("SET LOCAL enable_indexscan = off")
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            let mut qb = QueryBuilder::new(format!(
                "SELECT key, payload::text AS payload, embedding::text AS embedding, embedding {op} "
            ));
            qb.push_bind(qtext.clone());
            qb.push(format!("::vector AS d FROM {} WHERE ", self.table));
            match &req.filter {
                Some(f) => push_filter(&mut qb, f),
                None => {
                    qb.push("TRUE");
                }
            }
            qb.push(format!(" ORDER BY embedding {op} "));
            qb.push_bind(qtext.clone());
            qb.push("::vector LIMIT ");
            qb.push_bind(k as i64);
            let rows = qb.build().fetch_all(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok::<_, Error>(rows)
        })?;
        let metric = self.config.metric;
        let mut found: Vec<(f64, &sqlx::postgres::PgRow)> =
            rows.iter().map(|r| (r.get::<f64, _>("d"), r)).collect();
        // relaxed_order may return rows slightly out of order.
        found.sort_by(|a, b| a.0.total_cmp(&b.0));
        let score = |d: f64| -> f32 {
            match metric {
                Metric::Cosine | Metric::Dot => -d as f32,
                Metric::Euclid => d as f32,
            }
        };
        Ok(found
            .into_iter()
            .filter(|(d, _)| {
                req.score_threshold
                    .is_none_or(|t| metric.passes(score(*d), t))
            })
            .skip(req.offset)
            .map(|(d, r)| ScoredPoint {
                id: id_of(&r.get::<String, _>("key")),
                score: score(d),
                payload: req.with_payload.then(|| payload_of(r, "payload")),
                vector: req
                    .with_vector
                    .then(|| parse_vec(&r.get::<String, _>("embedding"))),
            })
            .collect())
    }

    fn export_snapshot(&self, _path: &Path) -> Result<()> {
        Err(Error::BadRequest(
            "pgvector collections are backed up with PostgreSQL's tools (pg_dump), not snapshots"
                .into(),
        ))
    }

    fn read_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        block(&self.handle, async {
            let row = sqlx::query(
                "SELECT value FROM capstan_vector_meta WHERE collection = $1 AND key = $2",
            )
            .bind(&self.name)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
        })
    }

    fn write_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        block(&self.handle, async {
            sqlx::query(
                "INSERT INTO capstan_vector_meta (collection, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (collection, key) DO UPDATE SET value = EXCLUDED.value",
            )
            .bind(&self.name)
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }
}
