//! Spans and traces in SQLite or PostgreSQL. Each span is a row (the GenAI facts as columns, the
//! rest as JSON); each trace a rolled-up row kept current as its spans arrive (in any order, in
//! any number of requests), so searches read one indexed table. A span sent twice (an exporter's
//! retry) is stored and counted once. Retention deletes whole traces and keeps their counts,
//! tokens and cost as hourly rollups.

use crate::db::{Db, map_err};
use crate::sql::{Arg, Sql};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};
use traces::{
    Error, Expired, GenAi, GroupBy, GroupStats, Result, Span, SpanEvent, SpanLink, Status,
    TraceFilter, TraceStore, TraceSummary, percentile,
};

/// Rows per multi-row INSERT (17 and 15 columns: well under SQLite's 32,766 bound variables
/// and PostgreSQL's 65,535).
const SPAN_ROWS: usize = 256;
const TRACE_ROWS: usize = 256;
const HOUR_NS: i64 = 3_600_000_000_000;

fn err(e: sqlx::Error) -> Error {
    Error::Store(map_err(e).to_string())
}

/// What a span row keeps as JSON.
#[derive(Deserialize, Default)]
struct SpanData {
    #[serde(default)]
    kind: i64,
    #[serde(default)]
    status_message: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    resource: Map<String, Value>,
    #[serde(default)]
    events: Vec<SpanEvent>,
    #[serde(default)]
    links: Vec<SpanLink>,
}

/// [`SpanData`] as written, borrowing from the span (no copy of its maps).
#[derive(Serialize)]
struct SpanDataRef<'a> {
    kind: i64,
    #[serde(skip_serializing_if = "str::is_empty")]
    status_message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    attributes: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    resource: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "<[SpanEvent]>::is_empty")]
    events: &'a [SpanEvent],
    #[serde(skip_serializing_if = "<[SpanLink]>::is_empty")]
    links: &'a [SpanLink],
}

const SPAN_COLUMNS: &str = "trace_id, span_id, parent_span_id, name, start_ns, end_ns, status, service, \
     experiment_id, operation, model, user_name, prompt, input_tokens, output_tokens, cost_usd, data";

const TRACE_COLUMNS: &str = "trace_id, start_ns, end_ns, name, has_root, service, spans, errors, \
     input_tokens, output_tokens, cost_usd, model, user_name, prompt, experiment_id";

/// A trace's new spans in one batch, rolled up.
struct TraceAgg {
    trace_id: String,
    start_ns: i64,
    end_ns: i64,
    name: String,
    has_root: bool,
    service: String,
    spans: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
    model: String,
    user: String,
    prompt: String,
    experiment_id: String,
}

fn fill(slot: &mut String, v: &str) {
    if slot.is_empty() {
        v.clone_into(slot);
    }
}

impl TraceAgg {
    fn new(s: &Span) -> TraceAgg {
        TraceAgg {
            trace_id: s.trace_id.clone(),
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            name: s.name.clone(),
            has_root: false,
            service: String::new(),
            spans: 0,
            errors: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            model: String::new(),
            user: String::new(),
            prompt: String::new(),
            experiment_id: String::new(),
        }
    }

    fn add(&mut self, s: &Span, g: &GenAi) {
        self.start_ns = self.start_ns.min(s.start_ns);
        self.end_ns = self.end_ns.max(s.end_ns);
        if s.is_root() && !self.has_root {
            self.has_root = true;
            self.name.clone_from(&s.name);
            self.service.clone_from(&s.service);
        }
        fill(&mut self.service, &s.service);
        self.spans += 1;
        self.errors += i64::from(s.status == Status::Error);
        self.input_tokens += g.input_tokens.unwrap_or(0);
        self.output_tokens += g.output_tokens.unwrap_or(0);
        self.cost_usd += g.cost_usd.unwrap_or(0.0);
        // The trace's model is the one that generated: an embedding step does not name it.
        if g.operation.as_deref() != Some("embeddings") {
            fill(&mut self.model, g.model.as_deref().unwrap_or_default());
        }
        fill(&mut self.user, g.user.as_deref().unwrap_or_default());
        fill(&mut self.prompt, g.prompt.as_deref().unwrap_or_default());
        fill(&mut self.experiment_id, &s.experiment_id);
    }
}

fn span_row(s: &Span, g: &GenAi) -> Result<Vec<Arg>> {
    let data = SpanDataRef {
        kind: s.kind,
        status_message: &s.status_message,
        scope: &s.scope,
        attributes: &s.attributes,
        resource: &s.resource,
        events: &s.events,
        links: &s.links,
    };
    let data = serde_json::to_string(&data).map_err(|e| Error::Store(e.to_string()))?;
    let t = |v: &Option<String>| Arg::Text(v.clone().unwrap_or_default());
    Ok(vec![
        Arg::Text(s.trace_id.clone()),
        Arg::Text(s.span_id.clone()),
        Arg::Text(s.parent_span_id.clone()),
        Arg::Text(s.name.clone()),
        Arg::I64(s.start_ns),
        Arg::I64(s.end_ns),
        Arg::I64(s.status.code()),
        Arg::Text(s.service.clone()),
        Arg::Text(s.experiment_id.clone()),
        t(&g.operation),
        t(&g.model),
        t(&g.user),
        t(&g.prompt),
        Arg::I64(g.input_tokens.unwrap_or(0)),
        Arg::I64(g.output_tokens.unwrap_or(0)),
        Arg::F64(g.cost_usd.unwrap_or(0.0)),
        Arg::Text(data),
    ])
}

fn span_of(r: &sqlx::any::AnyRow) -> Result<Span> {
    let text = |c: &str| r.try_get::<String, _>(c).map_err(err);
    let data: SpanData = serde_json::from_str(&text("data")?)
        .map_err(|e| Error::Store(format!("span data: {e}")))?;
    Ok(Span {
        trace_id: text("trace_id")?,
        span_id: text("span_id")?,
        parent_span_id: text("parent_span_id")?,
        name: text("name")?,
        kind: data.kind,
        start_ns: r.try_get("start_ns").map_err(err)?,
        end_ns: r.try_get("end_ns").map_err(err)?,
        status: Status::from_code(r.try_get("status").map_err(err)?),
        status_message: data.status_message,
        service: text("service")?,
        scope: data.scope,
        experiment_id: text("experiment_id")?,
        attributes: data.attributes,
        resource: data.resource,
        events: data.events,
        links: data.links,
    })
}

fn summary_of(r: &sqlx::any::AnyRow) -> Result<TraceSummary> {
    let text = |c: &str| r.try_get::<String, _>(c).map_err(err);
    let int = |c: &str| r.try_get::<i64, _>(c).map_err(err);
    let (start_ns, end_ns, errors) = (int("start_ns")?, int("end_ns")?, int("errors")?);
    Ok(TraceSummary {
        trace_id: text("trace_id")?,
        start_ns,
        end_ns,
        duration_ms: (end_ns - start_ns) as f64 / 1e6,
        name: text("name")?,
        service: text("service")?,
        spans: int("spans")?,
        errors,
        status: if errors > 0 {
            Status::Error
        } else {
            Status::Ok
        },
        input_tokens: int("input_tokens")?,
        output_tokens: int("output_tokens")?,
        cost_usd: r.try_get("cost_usd").map_err(err)?,
        model: text("model")?,
        user: text("user_name")?,
        prompt: text("prompt")?,
        experiment_id: text("experiment_id")?,
    })
}

/// `%text%` for LIKE, with the pattern characters in `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[async_trait::async_trait]
impl TraceStore for Db {
    async fn write_spans(&self, spans: &[Span]) -> Result<u64> {
        let mut seen = HashSet::new();
        // Each span with its GenAI facts, read once for the row and the trace's rollup.
        let batch: Vec<(&Span, GenAi)> = spans
            .iter()
            .filter(|s| seen.insert((s.trace_id.as_str(), s.span_id.as_str())))
            .map(|s| (s, s.genai()))
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        let mut fresh: HashSet<(String, String)> = HashSet::new();
        for chunk in batch.chunks(SPAN_ROWS) {
            let mut q = Sql::new(&format!("INSERT INTO spans ({SPAN_COLUMNS}) VALUES "));
            for (i, (s, g)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.bind_row(span_row(s, g)?);
            }
            q.push(" ON CONFLICT (trace_id, span_id) DO NOTHING RETURNING trace_id, span_id");
            if self.backend == crate::Backend::Sqlite {
                q.positional();
            }
            for r in q.build().fetch_all(&mut *tx).await.map_err(err)? {
                fresh.insert((
                    r.try_get("trace_id").map_err(err)?,
                    r.try_get("span_id").map_err(err)?,
                ));
            }
        }
        let mut order: Vec<String> = Vec::new();
        let mut aggs: HashMap<String, TraceAgg> = HashMap::new();
        for (s, g) in &batch {
            if !fresh.contains(&(s.trace_id.clone(), s.span_id.clone())) {
                continue;
            }
            aggs.entry(s.trace_id.clone())
                .or_insert_with(|| {
                    order.push(s.trace_id.clone());
                    TraceAgg::new(s)
                })
                .add(s, g);
        }
        let rows: Vec<&TraceAgg> = order.iter().filter_map(|t| aggs.get(t)).collect();
        for chunk in rows.chunks(TRACE_ROWS) {
            let mut q = Sql::new(&format!("INSERT INTO traces ({TRACE_COLUMNS}) VALUES "));
            for (i, a) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.bind_row(vec![
                    Arg::Text(a.trace_id.clone()),
                    Arg::I64(a.start_ns),
                    Arg::I64(a.end_ns),
                    Arg::Text(a.name.clone()),
                    Arg::I64(i64::from(a.has_root)),
                    Arg::Text(a.service.clone()),
                    Arg::I64(a.spans),
                    Arg::I64(a.errors),
                    Arg::I64(a.input_tokens),
                    Arg::I64(a.output_tokens),
                    Arg::F64(a.cost_usd),
                    Arg::Text(a.model.clone()),
                    Arg::Text(a.user.clone()),
                    Arg::Text(a.prompt.clone()),
                    Arg::Text(a.experiment_id.clone()),
                ]);
            }
            // Every right-hand side reads the row as it was before this update.
            q.push(
                " ON CONFLICT (trace_id) DO UPDATE SET \
                 start_ns = CASE WHEN excluded.start_ns < traces.start_ns THEN excluded.start_ns ELSE traces.start_ns END, \
                 end_ns = CASE WHEN excluded.end_ns > traces.end_ns THEN excluded.end_ns ELSE traces.end_ns END, \
                 name = CASE WHEN excluded.has_root > traces.has_root THEN excluded.name ELSE traces.name END, \
                 service = CASE WHEN excluded.has_root > traces.has_root OR traces.service = '' THEN excluded.service ELSE traces.service END, \
                 has_root = CASE WHEN excluded.has_root > traces.has_root THEN excluded.has_root ELSE traces.has_root END, \
                 spans = traces.spans + excluded.spans, \
                 errors = traces.errors + excluded.errors, \
                 input_tokens = traces.input_tokens + excluded.input_tokens, \
                 output_tokens = traces.output_tokens + excluded.output_tokens, \
                 cost_usd = traces.cost_usd + excluded.cost_usd, \
                 model = CASE WHEN traces.model = '' THEN excluded.model ELSE traces.model END, \
                 user_name = CASE WHEN traces.user_name = '' THEN excluded.user_name ELSE traces.user_name END, \
                 prompt = CASE WHEN traces.prompt = '' THEN excluded.prompt ELSE traces.prompt END, \
                 experiment_id = CASE WHEN traces.experiment_id = '' THEN excluded.experiment_id ELSE traces.experiment_id END",
            );
            if self.backend == crate::Backend::Sqlite {
                q.positional();
            }
            q.build().execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(fresh.len() as u64)
    }

    async fn search_traces(&self, f: &TraceFilter) -> Result<Vec<TraceSummary>> {
        let mut q = Sql::new(&format!("SELECT {TRACE_COLUMNS} FROM traces t WHERE 1 = 1"));
        if let Some(v) = f.since_ns {
            q.push(" AND start_ns >= ").bind(Arg::I64(v));
        }
        if let Some(v) = f.until_ns {
            q.push(" AND start_ns < ").bind(Arg::I64(v));
        }
        for (col, v) in [
            ("model", &f.model),
            ("user_name", &f.user),
            ("service", &f.service),
            ("prompt", &f.prompt),
            ("experiment_id", &f.experiment_id),
        ] {
            if let Some(v) = v {
                q.push(&format!(" AND {col} = ")).bind_text(v);
            }
        }
        match f.status {
            Some(Status::Error) => {
                q.push(" AND errors > 0");
            }
            Some(_) => {
                q.push(" AND errors = 0");
            }
            None => {}
        }
        if let Some(v) = f.min_cost_usd {
            q.push(" AND cost_usd >= ").bind(Arg::F64(v));
        }
        if let Some(v) = f.min_duration_ms {
            q.push(" AND end_ns - start_ns >= ")
                .bind(Arg::I64((v * 1e6) as i64));
        }
        if let Some(v) = f.max_duration_ms {
            q.push(" AND end_ns - start_ns <= ")
                .bind(Arg::I64((v * 1e6) as i64));
        }
        if let Some(text) = f.text.as_deref().filter(|t| !t.is_empty()) {
            let p = like_pattern(text);
            q.push(" AND (LOWER(t.name) LIKE ").bind_text(&p);
            q.push(" ESCAPE '\\' OR EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND (LOWER(s.name) LIKE ").bind_text(&p);
            q.push(" ESCAPE '\\' OR LOWER(s.data) LIKE ").bind_text(&p);
            q.push(" ESCAPE '\\')))");
        }
        if let Some((start, id)) = &f.before {
            q.push(" AND (start_ns < ").bind(Arg::I64(*start));
            q.push(" OR (start_ns = ").bind(Arg::I64(*start));
            q.push(" AND trace_id < ").bind_text(id);
            q.push("))");
        }
        q.push(" ORDER BY start_ns DESC, trace_id DESC LIMIT ")
            .bind(Arg::I64(f.limit.clamp(1, 1000) as i64));
        q.build()
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(summary_of)
            .collect()
    }

    async fn trace(&self, trace_id: &str) -> Result<Vec<Span>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id = $1 ORDER BY start_ns, span_id"
        )))
        .bind(trace_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        if rows.is_empty() {
            return Err(Error::NotFound(trace_id.to_owned()));
        }
        rows.iter().map(span_of).collect()
    }

    async fn trace_stats(
        &self,
        by: GroupBy,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<Vec<GroupStats>> {
        let col = by.column();
        // Spans without the key (not GenAI spans) are left out, except when grouping by service.
        let keyed = if by == GroupBy::Service {
            String::new()
        } else {
            format!(" AND {col} <> ''")
        };
        let mut stats: BTreeMap<String, GroupStats> = BTreeMap::new();
        let blank = |key: &str| GroupStats {
            key: key.to_owned(),
            spans: 0,
            errors: 0,
            error_rate: 0.0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            latency_p50_ms: None,
            latency_p95_ms: None,
            latency_p99_ms: None,
        };
        let sums = |table: &str, count: &str, errors: &str, time: &str| {
            format!(
                "SELECT {col} AS k, CAST(SUM({count}) AS BIGINT) AS n, CAST(SUM({errors}) AS BIGINT) AS e, \
                 CAST(SUM(input_tokens) AS BIGINT) AS i, CAST(SUM(output_tokens) AS BIGINT) AS o, \
                 SUM(cost_usd) AS c FROM {table} \
                 WHERE {time} >= $1 AND {time} < $2{keyed} GROUP BY {col}"
            )
        };
        let live = sums(
            "spans",
            "1",
            "CASE WHEN status = 2 THEN 1 ELSE 0 END",
            "start_ns",
        );
        let rolled = sums("span_rollups", "spans", "errors", "hour");
        for (sql, lo, hi) in [
            (live, since_ns, until_ns),
            // Rollups count by the hour: every hour the window touches.
            (
                rolled,
                since_ns.div_euclid(HOUR_NS),
                (until_ns - 1).div_euclid(HOUR_NS) + 1,
            ),
        ] {
            for r in sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(lo)
                .bind(hi)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?
            {
                let key: String = r.try_get("k").map_err(err)?;
                let g = stats.entry(key.clone()).or_insert_with(|| blank(&key));
                // SQLite's SUM is an integer or a real depending on the values: read either.
                let num = |c: &str| -> Result<f64> {
                    r.try_get::<f64, _>(c)
                        .or_else(|_| r.try_get::<i64, _>(c).map(|v| v as f64))
                        .map_err(err)
                };
                g.spans += num("n")? as i64;
                g.errors += num("e")? as i64;
                g.input_tokens += num("i")? as i64;
                g.output_tokens += num("o")? as i64;
                g.cost_usd += num("c")?;
            }
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {col} AS k, end_ns - start_ns AS d FROM spans WHERE start_ns >= $1 AND start_ns < $2{keyed}"
        )))
        .bind(since_ns)
        .bind(until_ns)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let mut durations: HashMap<String, Vec<f64>> = HashMap::new();
        for r in rows {
            let key: String = r.try_get("k").map_err(err)?;
            let d: i64 = r.try_get("d").map_err(err)?;
            durations.entry(key).or_default().push(d as f64 / 1e6);
        }
        for g in stats.values_mut() {
            g.error_rate = if g.spans > 0 {
                g.errors as f64 / g.spans as f64
            } else {
                0.0
            };
            if let Some(d) = durations.get_mut(&g.key) {
                d.sort_by(f64::total_cmp);
                g.latency_p50_ms = percentile(d, 0.5);
                g.latency_p95_ms = percentile(d, 0.95);
                g.latency_p99_ms = percentile(d, 0.99);
            }
        }
        Ok(stats.into_values().collect())
    }

    async fn expire(&self, before_ns: i64) -> Result<Expired> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        let old = "SELECT trace_id FROM traces WHERE end_ns < $1";
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO span_rollups (hour, model, prompt, user_name, service, operation, spans, errors, \
             input_tokens, output_tokens, cost_usd) \
             SELECT start_ns / {HOUR_NS}, model, prompt, user_name, service, operation, COUNT(*), \
             SUM(CASE WHEN status = 2 THEN 1 ELSE 0 END), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd) \
             FROM spans WHERE trace_id IN ({old}) \
             GROUP BY start_ns / {HOUR_NS}, model, prompt, user_name, service, operation \
             ON CONFLICT (hour, model, prompt, user_name, service, operation) DO UPDATE SET \
             spans = span_rollups.spans + excluded.spans, errors = span_rollups.errors + excluded.errors, \
             input_tokens = span_rollups.input_tokens + excluded.input_tokens, \
             output_tokens = span_rollups.output_tokens + excluded.output_tokens, \
             cost_usd = span_rollups.cost_usd + excluded.cost_usd"
        )))
        .bind(before_ns)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let spans = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM spans WHERE trace_id IN ({old})"
        )))
        .bind(before_ns)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        let traces = sqlx::query("DELETE FROM traces WHERE end_ns < $1")
            .bind(before_ns)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        tx.commit().await.map_err(err)?;
        Ok(Expired { spans, traces })
    }

    async fn put_trace_info(
        &self,
        trace_id: &str,
        experiment_id: &str,
        info: &Value,
    ) -> Result<()> {
        let _g = self.write_guard().await;
        sqlx::query(
            "INSERT INTO mlflow_trace_info (trace_id, experiment_id, info, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (trace_id) DO UPDATE SET experiment_id = excluded.experiment_id, info = excluded.info",
        )
        .bind(trace_id.to_owned())
        .bind(experiment_id.to_owned())
        .bind(info.to_string())
        .bind(base::now_millis())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn trace_info(&self, trace_id: &str) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT info FROM mlflow_trace_info WHERE trace_id = $1")
            .bind(trace_id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match row {
            None => Ok(None),
            Some(r) => {
                let text: String = r.try_get("info").map_err(err)?;
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| Error::Store(format!("trace info: {e}")))
            }
        }
    }
}

impl Db {
    /// Fills the span and trace tables with `count` synthetic spans numbered from `first` (five
    /// per trace: a root, a retrieval and three model calls over eight models, a thousand users
    /// and three prompt versions; 2 % errors), the traces `step_ns` apart ending at `end_ns`.
    /// Generated inside PostgreSQL, for the query benchmark at ten million spans.
    pub async fn fill_synthetic_spans(
        &self,
        first: i64,
        count: i64,
        end_ns: i64,
        step_ns: i64,
        total: i64,
    ) -> Result<()> {
        if self.backend != crate::Backend::Postgres {
            return Err(Error::Invalid(
                "synthetic spans are generated by PostgreSQL".into(),
            ));
        }
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        // Span i belongs to trace i / 5; traces start step_ns apart, the last one at end_ns.
        let spans = format!(
            "INSERT INTO spans ({SPAN_COLUMNS}) \
             SELECT lpad(to_hex(t + 1), 32, '0'), lpad(to_hex(i + 1), 16, '0'), \
               CASE WHEN k = 0 THEN '' ELSE lpad(to_hex(t * 5 + 1), 16, '0') END, \
               CASE WHEN k = 0 THEN 'handle request' WHEN k = 1 THEN 'retrieve' ELSE 'chat ' || m END, \
               b + k * 1000000, b + k * 1000000 + (CASE WHEN k = 0 THEN 300 ELSE 20 END + h % 900) * 1000000, \
               CASE WHEN h % 50 = 0 THEN 2 ELSE 1 END, 'app-' || (t % 4), '', \
               CASE WHEN k >= 2 THEN 'chat' ELSE '' END, CASE WHEN k >= 2 THEN m ELSE '' END, \
               'user-' || (t % 1000), CASE WHEN k >= 2 THEN 'qa@' || (1 + t % 3) ELSE '' END, \
               CASE WHEN k >= 2 THEN 200 + h % 2000 ELSE 0 END, CASE WHEN k >= 2 THEN 20 + h % 300 ELSE 0 END, \
               CASE WHEN k >= 2 THEN (200 + h % 2000) * 0.00000015 + (20 + h % 300) * 0.0000006 ELSE 0 END, \
               '{{\"kind\":1,\"attributes\":{{\"note\":\"synthetic span ' || i || '\"}}}}' \
             FROM (SELECT i, i / 5 AS t, i % 5 AS k, (i * 2654435761) % 1000003 AS h, \
                     $3::BIGINT - ($4::BIGINT / 5 - 1 - i / 5) * $5::BIGINT AS b, \
                     (ARRAY['gpt-4o-mini','gpt-4o','claude-haiku','claude-sonnet','llama-3-8b','mistral-small','smollm2','gemini-flash'])[1 + (i / 5) % 8] AS m \
                   FROM generate_series($1::BIGINT, $1::BIGINT + $2::BIGINT - 1) AS g(i)) AS x"
        );
        sqlx::query(sqlx::AssertSqlSafe(spans))
            .bind(first)
            .bind(count)
            .bind(end_ns)
            .bind(total)
            .bind(step_ns)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let traces = format!(
            "INSERT INTO traces ({TRACE_COLUMNS}) \
             SELECT trace_id, MIN(start_ns), MAX(end_ns), MAX(CASE WHEN parent_span_id = '' THEN name ELSE '' END), 1, \
               MIN(service), COUNT(*), SUM(CASE WHEN status = 2 THEN 1 ELSE 0 END), SUM(input_tokens), \
               SUM(output_tokens), SUM(cost_usd), MAX(model), MAX(user_name), MAX(prompt), '' \
             FROM spans WHERE trace_id >= lpad(to_hex($1::BIGINT / 5 + 1), 32, '0') \
               AND trace_id <= lpad(to_hex(($1::BIGINT + $2::BIGINT - 1) / 5 + 1), 32, '0') \
             GROUP BY trace_id"
        );
        sqlx::query(sqlx::AssertSqlSafe(traces))
            .bind(first)
            .bind(count)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(())
    }

    /// Drops and creates the database `name` on this PostgreSQL server (benchmarks start empty).
    pub async fn recreate_database(&self, name: &str) -> Result<()> {
        if self.backend != crate::Backend::Postgres
            || name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(Error::Invalid(format!(
                "cannot create database '{name}' here"
            )));
        }
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&self.pool)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Refreshes the planner's statistics (after a bulk load).
    pub async fn analyze(&self) -> Result<()> {
        if self.backend == crate::Backend::Postgres {
            sqlx::query("ANALYZE spans")
                .execute(&self.pool)
                .await
                .map_err(err)?;
            sqlx::query("ANALYZE traces")
                .execute(&self.pool)
                .await
                .map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("Ab"), "%ab%");
        assert_eq!(like_pattern("50%_x"), "%50\\%\\_x%");
    }
}
