//! Versioned, append-only schema migrations, embedded and applied at start-up in one transaction each.
//! One text per migration; `{ID}` and `{REAL}` are the only dialect differences.

use crate::db::{Backend, Db, DbError};
use sqlx::Row;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Never edit an applied migration; append a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tracking",
        sql: r#"
CREATE TABLE experiments (
    experiment_id {ID},
    name TEXT NOT NULL UNIQUE,
    artifact_location TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL
);
CREATE TABLE experiment_tags (
    experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (experiment_id, key)
);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id),
    name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT,
    artifact_uri TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL
);
-- The default search: one experiment, active runs, newest first.
CREATE INDEX runs_by_experiment ON runs (experiment_id, lifecycle_stage, start_time DESC, run_id);
CREATE TABLE params (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX params_by_key ON params (key, value);
CREATE TABLE tags (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX tags_by_key ON tags (key, value);
-- Full metric history; identical points collapse so client retries are idempotent.
CREATE TABLE metrics (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    step BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value {REAL} NOT NULL,
    is_nan BIGINT NOT NULL,
    PRIMARY KEY (run_id, key, step, timestamp, value, is_nan)
);
-- The latest point per (run, key), maintained on every write: search and getRun read only this.
CREATE TABLE latest_metrics (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    step BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value {REAL} NOT NULL,
    is_nan BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX latest_metrics_by_key ON latest_metrics (key, is_nan, value, run_id);
CREATE TABLE run_inputs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_type TEXT NOT NULL,
    source TEXT NOT NULL,
    schema_json TEXT,
    profile_json TEXT,
    context TEXT,
    tags_json TEXT NOT NULL,
    PRIMARY KEY (run_id, name, digest)
);
CREATE TABLE artifacts (
    path TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    size BIGINT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX artifacts_by_hash ON artifacts (hash);
CREATE TABLE api_tokens (
    id {ID},
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    created BIGINT NOT NULL,
    revoked BIGINT NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        name: "registry",
        sql: r#"
CREATE TABLE registered_models (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    -- Version numbers are never reused, even after a delete.
    next_version BIGINT NOT NULL
);
CREATE TABLE registered_model_tags (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE TABLE model_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    run_id TEXT,
    run_link TEXT NOT NULL,
    stage TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX model_versions_by_run ON model_versions (run_id);
CREATE TABLE model_version_tags (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key)
);
CREATE TABLE registered_model_aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (name, alias)
);
"#,
    },
    Migration {
        version: 3,
        name: "deployments",
        sql: r#"
CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE deployment_requests (
    deployment TEXT NOT NULL,
    request_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    latency_us BIGINT NOT NULL,
    error BIGINT NOT NULL,
    shadow BIGINT NOT NULL,
    outcome {REAL},
    created BIGINT NOT NULL,
    PRIMARY KEY (deployment, request_id, variant)
);
"#,
    },
    Migration {
        version: 4,
        name: "prediction_labels",
        sql: r#"
CREATE TABLE prediction_labels (
    model TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row_index BIGINT NOT NULL,
    label_num {REAL},
    label_text TEXT,
    created BIGINT NOT NULL,
    PRIMARY KEY (model, request_id, row_index)
);
"#,
    },
    Migration {
        version: 5,
        name: "monitors",
        sql: r#"
CREATE TABLE monitors (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    last_evaluation TEXT,
    last_at BIGINT,
    created BIGINT NOT NULL
);
CREATE TABLE alerts (
    id {ID},
    monitor TEXT NOT NULL,
    model TEXT NOT NULL,
    check_name TEXT NOT NULL,
    message TEXT NOT NULL,
    value {REAL},
    threshold {REAL} NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX alerts_monitor ON alerts (monitor, created);
"#,
    },
    Migration {
        version: 6,
        name: "feature_registry",
        sql: r#"
CREATE TABLE feature_registry (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    applied BIGINT NOT NULL
);
CREATE TABLE online_features (
    view TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    event_ts BIGINT NOT NULL,
    row_values TEXT NOT NULL,
    PRIMARY KEY (view, entity_key)
);
"#,
    },
    Migration {
        version: 7,
        name: "online_versions",
        sql: r#"
CREATE TABLE online_versions (
    view TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
"#,
    },
    Migration {
        version: 8,
        name: "feature_materializations",
        sql: r#"
CREATE TABLE feature_materializations (
    view TEXT PRIMARY KEY,
    end_ts BIGINT NOT NULL
);
"#,
    },
    Migration {
        version: 9,
        name: "jobs",
        sql: r#"
CREATE TABLE jobs (
    id {ID},
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    run_after BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    dedupe_key TEXT,
    last_error TEXT,
    result TEXT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX jobs_runnable ON jobs (state, run_after, id);
CREATE UNIQUE INDEX jobs_pending_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running')
"#,
    },
    Migration {
        version: 10,
        name: "schedules",
        sql: r#"
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    max_attempts BIGINT NOT NULL,
    next_fire BIGINT NOT NULL,
    created BIGINT NOT NULL
)
"#,
    },
    Migration {
        version: 11,
        name: "gateway usage",
        sql: r#"
CREATE TABLE gateway_usage (
    id TEXT PRIMARY KEY,
    ts BIGINT NOT NULL,
    api_key TEXT NOT NULL,
    user_name TEXT NOT NULL,
    team TEXT NOT NULL,
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_usd {REAL} NOT NULL,
    status BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX gateway_usage_ts ON gateway_usage (ts);
CREATE INDEX gateway_usage_key_ts ON gateway_usage (api_key, ts)
"#,
    },
    Migration {
        version: 12,
        name: "gateway ledger",
        sql: r#"
CREATE TABLE gateway_ledger (
    key TEXT PRIMARY KEY,
    spent {REAL} NOT NULL,
    reserved {REAL} NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX gateway_ledger_expires ON gateway_ledger (expires)
"#,
    },
    Migration {
        version: 13,
        name: "prompts",
        sql: r#"
CREATE TABLE prompt_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    template TEXT NOT NULL,
    variables TEXT NOT NULL,
    params TEXT NOT NULL,
    commit_message TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE prompt_labels (
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (name, label)
)
"#,
    },
    Migration {
        version: 14,
        name: "prompt splits",
        sql: r#"
CREATE TABLE prompt_splits (
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    weights TEXT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (name, label)
)
"#,
    },
    Migration {
        version: 15,
        name: "traces",
        sql: r#"
CREATE TABLE spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT NOT NULL,
    name TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    status BIGINT NOT NULL,
    service TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    model TEXT NOT NULL,
    user_name TEXT NOT NULL,
    prompt TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd {REAL} NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX spans_start ON spans (start_ns);
CREATE TABLE traces (
    trace_id TEXT PRIMARY KEY,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    name TEXT NOT NULL,
    has_root BIGINT NOT NULL,
    service TEXT NOT NULL,
    spans BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd {REAL} NOT NULL,
    model TEXT NOT NULL,
    user_name TEXT NOT NULL,
    prompt TEXT NOT NULL,
    experiment_id TEXT NOT NULL
);
CREATE INDEX traces_start ON traces (start_ns);
CREATE INDEX traces_end ON traces (end_ns);
CREATE INDEX traces_model_start ON traces (model, start_ns);
CREATE INDEX traces_user_start ON traces (user_name, start_ns);
CREATE INDEX traces_duration ON traces ((end_ns - start_ns));
CREATE INDEX traces_cost ON traces (cost_usd);
CREATE TABLE span_rollups (
    hour BIGINT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    user_name TEXT NOT NULL,
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    spans BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd {REAL} NOT NULL,
    PRIMARY KEY (hour, model, prompt, user_name, service, operation)
)
"#,
    },
    Migration {
        version: 16,
        name: "mlflow trace info",
        sql: r#"
CREATE TABLE mlflow_trace_info (
    trace_id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    info TEXT NOT NULL,
    created BIGINT NOT NULL
)
"#,
    },
    Migration {
        version: 17,
        name: "job logs",
        sql: r#"
CREATE TABLE job_logs (
    seq {ID},
    job_id BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX job_logs_by_job ON job_logs (job_id, seq)
"#,
    },
];

pub(crate) async fn run(db: &Db) -> Result<(), DbError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&db.pool)
    .await?;
    let _guard = db.write_guard().await;
    for m in MIGRATIONS {
        let mut tx = db.pool.begin().await?;
        if db.backend == Backend::Postgres {
            // Two servers starting at once must not both migrate.
            sqlx::query("SELECT pg_advisory_xact_lock(727274)")
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("SELECT COUNT(*) FROM schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>(0)?;
        if done > 0 {
            tx.rollback().await?;
            continue;
        }
        let sql = dialect(m.sql, db.backend);
        let fail = |source| DbError::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        let code: String = sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        for stmt in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(base::now_millis())
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await?;
    }
    // Experiment 0, where runs go when the client names none.
    let now = base::now_millis();
    sqlx::query(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
         VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', $1, $1) ON CONFLICT DO NOTHING",
    )
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

fn dialect(sql: &str, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => sql
            .replace("{ID}", "INTEGER PRIMARY KEY")
            .replace("{REAL}", "REAL"),
        Backend::Postgres => sql
            .replace(
                "{ID}",
                "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            )
            .replace("{REAL}", "DOUBLE PRECISION"),
    }
}
