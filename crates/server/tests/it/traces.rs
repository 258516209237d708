//! Traces over real HTTP: OTLP/HTTP ingestion (protobuf and JSON, gzip, partial success, refusals
//! that store nothing), searches, span trees, aggregates, retention, `/metrics`, and the spans the
//! platform makes itself — a gateway call joining the caller's trace.

use crate::support::{TestServer, check_error, start, start_gateway};
use serde_json::{Value, json};
use std::io::Write;
use traces::Span;

const T0: i64 = 1_760_000_000_000_000_000;

fn span(
    trace: &str,
    id: &str,
    parent: &str,
    name: &str,
    start_ms: i64,
    dur_ms: i64,
    attrs: Value,
) -> Span {
    Span {
        trace_id: trace.into(),
        span_id: id.into(),
        parent_span_id: parent.into(),
        name: name.into(),
        kind: 1,
        start_ns: T0 + start_ms * 1_000_000,
        end_ns: T0 + (start_ms + dur_ms) * 1_000_000,
        service: "qa-bot".into(),
        scope: "opentelemetry.instrumentation.openai".into(),
        attributes: attrs.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    }
}

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn app_trace() -> Vec<Span> {
    vec![
        span(
            TRACE,
            "eee19b7ec3c1b174",
            "",
            "handle question",
            0,
            120,
            json!({"user.id": "ada"}),
        ),
        span(
            TRACE,
            "eee19b7ec3c1b175",
            "eee19b7ec3c1b174",
            "retrieve",
            2,
            10,
            json!({}),
        ),
        span(
            TRACE,
            "eee19b7ec3c1b176",
            "eee19b7ec3c1b174",
            "chat gpt-4o-mini",
            15,
            100,
            json!({
            "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 812,
            "gen_ai.usage.output_tokens": 64, "gen_ai.usage.cost_usd": 0.00016,
            "user.id": "ada"}),
        ),
        span(
            TRACE,
            "eee19b7ec3c1b177",
            "eee19b7ec3c1b176",
            "http POST",
            16,
            98,
            json!({}),
        ),
    ]
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

async fn post_otlp(
    s: &TestServer,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = s
        .http
        .post(format!("{}/v1/traces", s.url))
        .header("content-type", content_type)
        .header("x-mlflow-experiment-id", "3")
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

async fn trace_count(s: &TestServer) -> usize {
    let (_, b) = s.get("/api/2.0/capstan/traces", &[("limit", "1000")]).await;
    b["traces"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn otlp_ingestion_search_tree_stats_and_retention() {
    let s = start(server::ServerConfig::default()).await;
    // Protobuf, gzip-compressed, the root arriving after its children (as batching exporters do).
    let spans = app_trace();
    let (status, headers, body) = post_otlp(
        &s,
        "application/x-protobuf",
        Some("gzip"),
        gzip(&traces::otlp::encode_protobuf(&spans[1..])),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert!(body.is_empty(), "a full success has no partial_success");
    let (status, _, _) = post_otlp(
        &s,
        "application/x-protobuf",
        None,
        traces::otlp::encode_protobuf(&spans[..1]),
    )
    .await;
    assert_eq!(status, 200);

    // The trace as a search finds it.
    let (status, found) = s
        .get("/api/2.0/capstan/traces", &[("model", "gpt-4o-mini")])
        .await;
    assert_eq!(status, 200, "{found}");
    let t = &found["traces"][0];
    assert_eq!(t["trace_id"], TRACE);
    assert_eq!(t["name"], "handle question");
    assert_eq!(t["service"], "qa-bot");
    assert_eq!(
        (
            t["spans"].as_i64(),
            t["input_tokens"].as_i64(),
            t["output_tokens"].as_i64()
        ),
        (Some(4), Some(812), Some(64))
    );
    assert_eq!(
        t["experiment_id"], "3",
        "MLflow's experiment header is kept"
    );
    assert_eq!(t["duration_ms"], 120.0);
    assert_eq!(t["user"], "ada");
    for (q, n) in [
        (vec![("user", "bob")], 0),
        (vec![("status", "ok")], 1),
        (vec![("status", "error")], 0),
        (vec![("min_duration_ms", "100")], 1),
        (vec![("min_duration_ms", "121")], 0),
        (vec![("q", "RETRIEVE")], 1),
        (vec![("experiment_id", "3")], 1),
        (vec![("min_cost_usd", "0.001")], 0),
    ] {
        let (_, b) = s.get("/api/2.0/capstan/traces", &q).await;
        assert_eq!(b["traces"].as_array().unwrap().len(), n, "{q:?}: {b}");
    }

    // The span tree: depth-first, children under their parent.
    let (status, tree) = s
        .get(&format!("/api/2.0/capstan/traces/{TRACE}"), &[])
        .await;
    assert_eq!(status, 200);
    let names: Vec<(&str, i64)> = tree["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["depth"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("handle question", 0),
            ("retrieve", 1),
            ("chat gpt-4o-mini", 1),
            ("http POST", 2)
        ]
    );
    assert_eq!(
        tree["spans"][2]["genai"]["provider"], "openai",
        "gen_ai.system is read as the provider"
    );
    assert_eq!(tree["cost_usd"], 0.00016);
    check_error(
        s.get(&format!("/api/2.0/capstan/traces/{}", "a".repeat(32)), &[])
            .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "not found",
    );
    check_error(
        s.get("/api/2.0/capstan/traces/xyz", &[]).await,
        400,
        "INVALID_PARAMETER_VALUE",
        "32 hex",
    );

    // JSON with one span that breaks the rules: the rest is stored, the answer says what was not.
    let body = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "other"}}]},
    "scopeSpans": [{"spans": [
        {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "ok span",
         "startTimeUnixNano": (T0 + 500_000_000).to_string(), "endTimeUnixNano": (T0 + 505_000_000).to_string(),
         "status": {"code": 2, "message": "boom"}},
        {"traceId": "00000000000000000000000000000000", "spanId": "b7ad6b7169203332", "name": "bad ids",
         "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    ]}]}]});
    let (status, _, answer) =
        post_otlp(&s, "application/json", None, body.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("trace_id"),
        "{answer}"
    );
    assert_eq!(trace_count(&s).await, 2);
    let (_, errs) = s
        .get("/api/2.0/capstan/traces", &[("status", "error")])
        .await;
    assert_eq!(errs["traces"][0]["service"], "other");

    // Refusals store nothing and say why, in the request's encoding.
    let mut cut = traces::otlp::encode_protobuf(&app_trace());
    cut.truncate(cut.len() - 3);
    let (status, headers, body) = post_otlp(&s, "application/x-protobuf", None, cut).await;
    assert_eq!(status, 400);
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert!(
        String::from_utf8_lossy(&body).contains("past the end"),
        "google.rpc.Status message"
    );
    let (status, _, body) = post_otlp(
        &s,
        "application/json",
        None,
        br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "nothex"}]}]}]}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], 3);
    assert!(body["message"].as_str().unwrap().contains("hex"), "{body}");
    let (status, _, _) = post_otlp(
        &s,
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = post_otlp(&s, "text/plain", None, b"x".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _, _) = post_otlp(&s, "application/x-protobuf", Some("br"), b"x".to_vec()).await;
    assert_eq!(status, 415);
    assert_eq!(trace_count(&s).await, 2, "nothing partial was stored");

    // MLflow 3's StartTraceV3: the info is kept and answered with the spans' location.
    let info = json!({"trace": {"trace_info": {"trace_id": format!("tr-{TRACE}"),
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "3"}},
        "state": "OK", "tags": {"mlflow.traceName": "handle question"}}}});
    let (status, back) = s.post("/api/3.0/mlflow/traces", info).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(
        back["trace"]["trace_info"]["tags"]["mlflow.trace.spansLocation"],
        "TRACKING_STORE"
    );
    let (_, got) = s
        .get(&format!("/api/3.0/mlflow/traces/tr-{TRACE}/info"), &[])
        .await;
    assert_eq!(
        got["trace"]["trace_info"]["tags"]["mlflow.traceName"],
        "handle question"
    );
    check_error(
        s.post(
            "/api/3.0/mlflow/traces",
            json!({"trace": {"trace_info": {"trace_id": "tr-xyz"}}}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "32 hex",
    );
    check_error(
        s.get(
            &format!("/api/3.0/mlflow/traces/tr-{}/info", "b".repeat(32)),
            &[],
        )
        .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "not found",
    );

    // Bad query parameters are named.
    check_error(
        s.get("/api/2.0/capstan/traces", &[("limit", "many")]).await,
        400,
        "INVALID_PARAMETER_VALUE",
        "limit",
    );
    check_error(
        s.get("/api/2.0/capstan/traces", &[("status", "meh")]).await,
        400,
        "INVALID_PARAMETER_VALUE",
        "status",
    );
    check_error(
        s.get("/api/2.0/capstan/traces", &[("colour", "red")]).await,
        400,
        "INVALID_PARAMETER_VALUE",
        "colour",
    );
    check_error(
        s.get("/api/2.0/capstan/traces/stats", &[("by", "planet")])
            .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "by must be",
    );

    // Paging walks every trace once.
    let (_, p1) = s.get("/api/2.0/capstan/traces", &[("limit", "1")]).await;
    let token = p1["next_page_token"].as_str().unwrap().to_owned();
    let (_, p2) = s
        .get(
            "/api/2.0/capstan/traces",
            &[("limit", "1"), ("page_token", &token)],
        )
        .await;
    assert_eq!(p2["traces"][0]["trace_id"], TRACE);
    assert_ne!(p1["traces"][0]["trace_id"], TRACE);

    // Aggregates per model over the window.
    let window = [
        ("since_ms", (T0 / 1_000_000).to_string()),
        ("until_ms", (T0 / 1_000_000 + 60_000).to_string()),
    ];
    let q: Vec<(&str, &str)> = window.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, stats) = s
        .get(
            "/api/2.0/capstan/traces/stats",
            &[&q[..], &[("by", "model")]].concat(),
        )
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats["groups"],
        json!([{"key": "gpt-4o-mini", "spans": 1, "errors": 0, "error_rate": 0.0,
        "input_tokens": 812, "output_tokens": 64, "cost_usd": 0.00016,
        "latency_p50_ms": 100.0, "latency_p95_ms": 100.0, "latency_p99_ms": 100.0}])
    );
    let (_, by_service) = s
        .get(
            "/api/2.0/capstan/traces/stats",
            &[&q[..], &[("by", "service")]].concat(),
        )
        .await;
    let services: Vec<(&str, i64, i64)> = by_service["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap(),
                g["spans"].as_i64().unwrap(),
                g["errors"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(services, [("other", 1, 1), ("qa-bot", 4, 0)]);

    // /metrics counts what came in.
    let m = s.metrics().await;
    assert!(
        m.contains("capstan_otlp_spans_total{outcome=\"accepted\"} 5"),
        "{m}"
    );
    assert!(m.contains("capstan_otlp_spans_total{outcome=\"rejected\"} 1"));
    assert!(m.contains("capstan_otlp_requests_refused_total 5"));
    assert!(m.contains("capstan_genai_input_tokens_total{model=\"gpt-4o-mini\"} 812"));

    // Retention: everything here is from 2025, so a 30-day window removes it all; the counts stay.
    let (status, done) = s
        .post(
            "/api/2.0/capstan/traces/expire",
            json!({"older_than_days": 30}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (
            done["expired_spans"].as_i64(),
            done["expired_traces"].as_i64()
        ),
        (Some(5), Some(2))
    );
    assert_eq!(trace_count(&s).await, 0);
    let (_, stats) = s
        .get(
            "/api/2.0/capstan/traces/stats",
            &[&q[..], &[("by", "model")]].concat(),
        )
        .await;
    assert_eq!(stats["groups"][0]["input_tokens"], 812);
    check_error(
        s.post(
            "/api/2.0/capstan/traces/expire",
            json!({"older_than_days": -1}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "older_than_days",
    );
}

#[tokio::test]
async fn a_gateway_call_is_a_span_in_the_callers_trace() {
    let s = start_gateway(gateway::GatewayConfig::default()).await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .header(
            "traceparent",
            format!("00-{caller_trace}-00f067aa0ba902b7-01"),
        )
        .header("x-capstan-user", "ada")
        .json(
            &json!({"model": "smollm2", "temperature": 0, "max_tokens": 8,
                      "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-capstan-trace-id"], caller_trace);
    let answer: Value = r.json().await.unwrap();
    // Spans are written with the usage records, in batches off the request path.
    let mut tree = Value::Null;
    for _ in 0..100 {
        let (status, t) = s
            .get(&format!("/api/2.0/capstan/traces/{caller_trace}"), &[])
            .await;
        if status == 200 {
            tree = t;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sp = &tree["spans"][0];
    assert_eq!(sp["name"], "chat smollm2", "{tree}");
    assert_eq!(sp["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(sp["service"], "capstan-gateway");
    assert_eq!(sp["kind"], 3);
    let a = &sp["attributes"];
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.provider.name"], "local");
    assert_eq!(a["gen_ai.request.model"], "smollm2");
    assert_eq!(
        a["gen_ai.usage.input_tokens"],
        answer["usage"]["prompt_tokens"]
    );
    assert_eq!(
        a["gen_ai.usage.output_tokens"],
        answer["usage"]["completion_tokens"]
    );
    assert_eq!(a["user.id"], "ada");
    assert_eq!(a["capstan.cache"], "miss");
    let (_, found) = s
        .get(
            "/api/2.0/capstan/traces",
            &[("user", "ada"), ("model", "smollm2")],
        )
        .await;
    assert_eq!(found["traces"][0]["trace_id"], caller_trace);

    // A refused request is an error span in a trace of its own.
    let (status, _) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 404);
    let mut errors = Value::Null;
    for _ in 0..100 {
        let (_, b) = s
            .get("/api/2.0/capstan/traces", &[("status", "error")])
            .await;
        if !b["traces"].as_array().unwrap().is_empty() {
            errors = b;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(errors["traces"][0]["model"], "no-such-model", "{errors}");
    assert_ne!(errors["traces"][0]["trace_id"], caller_trace);
}
