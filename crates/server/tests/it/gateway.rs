//! The LLM gateway over real HTTP: one server runs SmolLM2 in-process; a second server's gateway
//! routes to it over loopback (and to an address nothing listens on, and to a socket that never
//! answers), so fallbacks, breakers, timeouts, streaming passthrough, costs, the cache, usage
//! records and hot reload are all exercised against real upstreams.

use crate::support::{TestServer, start_gateway, start_gateway_with};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;

const FRANCE: &str = "What is the capital of France?";
/// SmolLM2's greedy answer (the reference implementation's, see neural's fixture).
const PARIS: &str = "The capital of France is Paris.";

async fn call(s: &TestServer, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = s
        .http
        .post(format!("{}{path}", s.url))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// The SSE events of a streamed answer, `[DONE]` excluded, and the headers.
async fn stream(s: &TestServer, body: Value) -> (reqwest::header::HeaderMap, Vec<Value>) {
    let r = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let headers = r.headers().clone();
    let mut text = String::new();
    let mut bytes = r.bytes_stream();
    while let Some(b) = bytes.next().await {
        text.push_str(&String::from_utf8_lossy(&b.expect("chunk")));
    }
    let mut events = Vec::new();
    let mut done = false;
    for line in text.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            if data == "[DONE]" {
                done = true;
            } else {
                events.push(serde_json::from_str(data).expect("event is JSON"));
            }
        }
    }
    assert!(done, "the stream ends with [DONE]: {text}");
    (headers, events)
}

fn content(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn h(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn ask(model: &str, question: &str) -> Value {
    json!({"model": model, "temperature": 0, "max_tokens": 16,
           "messages": [{"role": "user", "content": question}]})
}

#[tokio::test]
async fn local_model_answers_streams_caches_and_accounts() {
    let s = start_gateway(gateway::GatewayConfig::default()).await;
    let (status, headers, body) = call(&s, "/v1/chat/completions", ask("smollm2", FRANCE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], PARIS);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 7);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 20);
    assert_eq!(h(&headers, "x-capstan-deployment"), "smollm2/local");
    assert_eq!(h(&headers, "x-capstan-cache"), "miss");
    assert_eq!(h(&headers, "x-capstan-cost-usd"), "0.00000000");
    assert!(h(&headers, "x-capstan-overhead-ms").parse::<f64>().unwrap() >= 0.0);

    // The same request again is a cache hit with the same answer.
    let (_, headers, again) = call(&s, "/v1/chat/completions", ask("smollm2", FRANCE)).await;
    assert_eq!(h(&headers, "x-capstan-cache"), "hit");
    assert_eq!(again["choices"][0]["message"]["content"], PARIS);
    assert_ne!(again["id"], body["id"]);

    // … and replayed as a stream, with the usage chunk only for a client that asks for it.
    let mut streamed = ask("smollm2", FRANCE);
    streamed["stream"] = json!(true);
    let (headers, events) = stream(&s, streamed.clone()).await;
    assert_eq!(h(&headers, "x-capstan-cache"), "hit");
    assert_eq!(content(&events), PARIS);
    assert!(
        events
            .iter()
            .all(|e| e.get("usage").is_none_or(Value::is_null))
    );
    streamed["stream_options"] = json!({"include_usage": true});
    let (_, events) = stream(&s, streamed).await;
    assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], 7);

    // A fresh streamed answer comes token by token and stops at max_tokens.
    let mut fresh = ask("smollm2", "Why is the sky blue?");
    fresh["stream"] = json!(true);
    fresh["max_tokens"] = json!(6);
    let (headers, events) = stream(&s, fresh).await;
    assert_eq!(h(&headers, "x-capstan-cache"), "miss");
    assert!(
        events.len() >= 7,
        "role chunk, pieces and the finish chunk: {events:?}"
    );
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(content(&events).starts_with("The "), "{}", content(&events));
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    // Legacy completions: a raw prompt, no chat template.
    let (status, _, body) = call(&s, "/v1/completions",
        json!({"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 3, "temperature": 0})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(!body["choices"][0]["text"].as_str().unwrap().is_empty());

    // Mistakes: OpenAI's error shape, the right status, the field named.
    let (status, _, e) = call(&s, "/v1/chat/completions", ask("gpt-nope", "hi")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let (status, _, e) = call(
        &s,
        "/v1/chat/completions",
        json!({"model": "smollm2", "messages": [{"role": "robot", "content": "x"}]}),
    )
    .await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("messages[0].role"))
    );
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let mut long = ask("smollm2", "hi");
    long["max_tokens"] = json!(100_000);
    let (status, _, e) = call(&s, "/v1/chat/completions", long).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("context_length_exceeded")),
        "{e}"
    );

    // Every call left a usage record in the metadata store; /metrics has the numbers.
    let (status, usage) = s
        .get("/api/2.0/capstan/gateway/usage", &[("limit", "100")])
        .await;
    assert_eq!(status, 200);
    let records = usage["records"].as_array().unwrap();
    assert_eq!(records.len(), 8, "{usage}");
    assert_eq!(records.iter().filter(|r| r["cache"] == "hit").count(), 3);
    assert_eq!(records.iter().filter(|r| r["status"] == 404).count(), 1);
    // Newest first: the oldest record is the first call.
    let first = records.last().unwrap();
    assert_eq!(first["deployment"], "smollm2/local");
    assert_eq!(first["usage"]["completion_tokens"], 7);
    assert_eq!(first["key"], "anonymous");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("capstan_gateway_cache_requests_total{cache=\"exact\",outcome=\"hit\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("capstan_gateway_overhead_seconds_count"));
    // The same records summed by model group; an unknown grouping is a 400.
    let (status, sum) = s
        .get("/api/2.0/capstan/gateway/usage/summary", &[("by", "model")])
        .await;
    assert_eq!(status, 200);
    let smol = sum["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["value"] == "smollm2")
        .unwrap()
        .clone();
    assert_eq!(smol["requests"], 7);
    let completion: u64 = records
        .iter()
        .filter(|r| r["model"] == "smollm2")
        .map(|r| r["usage"]["completion_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(smol["completion_tokens"].as_u64().unwrap(), completion);
    let (status, _) = s
        .get(
            "/api/2.0/capstan/gateway/usage/summary",
            &[("by", "colour")],
        )
        .await;
    assert_eq!(status, 400);
    let (_, models) = s.get("/v1/models", &[]).await;
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "smollm2")
    );
}

/// A TCP socket that accepts connections and never answers.
async fn hanging_upstream() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    url
}

/// An address nothing listens on.
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    drop(l);
    url
}

#[tokio::test]
async fn routes_over_http_with_fallbacks_breakers_timeouts_and_hot_reload() {
    let upstream = start_gateway(gateway::GatewayConfig::default()).await;
    let up = format!("{}/v1", upstream.url);
    let down = closed_port().await;
    let hang = hanging_upstream().await;
    let config: gateway::GatewayConfig = serde_json::from_value(json!({
        "local_models": false,
        "retry": {"attempts": 4, "backoff_ms": 1},
        "breaker": {"failures": 2, "cooldown_ms": 60000},
        "groups": [
            {"name": "chat", "strategy": "least-busy", "deployments": [
                {"id": "down", "base_url": down, "model": "smollm2"},
                {"id": "up", "base_url": up, "model": "smollm2"}]},
            {"name": "tiny", "fallbacks": {"context_window": "chat"}, "deployments": [
                {"id": "small", "base_url": up, "model": "smollm2", "context_window": 8}]},
            {"name": "hang", "deployments": [
                {"id": "h", "base_url": hang, "model": "x", "timeout_ms": 300, "ttft_timeout_ms": 300}]},
            {"name": "dead", "deployments": [{"id": "d", "base_url": down, "model": "x"}]},
        ],
    }))
    .unwrap();
    let s = start_gateway(config).await;

    // The first deployment refuses connections: the second answers, and the headers say so.
    let (status, headers, body) = call(&s, "/v1/chat/completions", ask("chat", FRANCE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], PARIS);
    assert_eq!(h(&headers, "x-capstan-deployment"), "chat/up");
    assert!(
        h(&headers, "x-capstan-route").contains("chat/down: unreachable"),
        "{headers:?}"
    );
    assert_eq!(h(&headers, "x-capstan-attempts"), "2");

    // After two faults the breaker keeps `down` out: one attempt, and the route says why.
    let mut sampled = ask("chat", "Say hi.");
    sampled["temperature"] = json!(0.7);
    sampled["max_tokens"] = json!(3);
    call(&s, "/v1/chat/completions", sampled.clone()).await;
    let (status, headers, _) = call(&s, "/v1/chat/completions", sampled.clone()).await;
    assert_eq!(status, 200);
    assert!(
        h(&headers, "x-capstan-route").contains("down: circuit open"),
        "{headers:?}"
    );
    assert_eq!(h(&headers, "x-capstan-attempts"), "1");

    // A prompt too long for every deployment of `tiny` falls back to `chat`.
    let (status, headers, _) = call(
        &s,
        "/v1/chat/completions",
        ask(
            "tiny",
            "Please tell me, in one short sentence, what the capital city of France is.",
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h(&headers, "x-capstan-deployment"), "chat/up");
    assert!(
        h(&headers, "x-capstan-route").contains("fallback tiny -> chat"),
        "{headers:?}"
    );

    // Streams pass through from the upstream, token by token.
    let mut streamed = ask("chat", FRANCE);
    streamed["stream"] = json!(true);
    streamed["seed"] = json!(1);
    let (headers, events) = stream(&s, streamed).await;
    assert_eq!(h(&headers, "x-capstan-deployment"), "chat/up");
    assert_eq!(content(&events), PARIS);
    assert!(
        events
            .iter()
            .all(|e| e.get("usage").is_none_or(Value::is_null)),
        "usage hidden unless asked"
    );

    // An upstream that never answers: a timeout, in OpenAI's shape, after every attempt.
    let started = std::time::Instant::now();
    let (status, _, e) = call(&s, "/v1/chat/completions", ask("hang", "hi")).await;
    assert_eq!(status, 504, "{e}");
    assert_eq!(e["error"]["type"], "api_error");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Nothing reachable: 503.
    let (status, _, e) = call(&s, "/v1/chat/completions", ask("dead", "hi")).await;
    assert_eq!(status, 503, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("upstream"),
        "{e}"
    );

    // Hot reload: a new group appears without a restart; a broken config is refused and the
    // old one keeps serving.
    let mut cfg = s.get("/api/2.0/capstan/gateway/config", &[]).await.1["config"].clone();
    cfg["groups"].as_array_mut().unwrap().push(json!(
        {"name": "chat2", "deployments": [{"id": "u", "base_url": up, "model": "smollm2"}]}));
    let r = s
        .http
        .put(format!("{}/api/2.0/capstan/gateway/config", s.url))
        .json(&cfg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, headers, _) = call(&s, "/v1/chat/completions", ask("chat2", FRANCE)).await;
    assert_eq!(
        (status, h(&headers, "x-capstan-deployment").as_str()),
        (200, "chat2/u")
    );
    cfg["groups"][0]["fallbacks"] = json!({"default": "nowhere"});
    let r = s
        .http
        .put(format!("{}/api/2.0/capstan/gateway/config", s.url))
        .json(&cfg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("nowhere"),
        "{body}"
    );
    let (status, _, _) = call(&s, "/v1/chat/completions", ask("chat2", FRANCE)).await;
    assert_eq!(status, 200);

    // Upstream usage is recorded on both sides.
    let (_, usage) = s.get("/api/2.0/capstan/gateway/usage", &[]).await;
    let ok: Vec<&Value> = usage["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 200)
        .collect();
    assert!(ok.iter().all(|r| r["provider_model"] == "smollm2"));
    assert!(ok.iter().any(|r| r["usage"]["completion_tokens"] == 7));
}

async fn call_as(
    s: &TestServer,
    team: &str,
    user: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .header("x-capstan-team", team)
        .header("x-capstan-user", user)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// (spent, reserved) of a team's daily budget, once every reservation is settled.
async fn settled(
    ledger: &dyn gateway::budget::Ledger,
    budgets: &[gateway::budget::BudgetConfig],
    team: &str,
) -> f64 {
    let caller = gateway::Caller {
        team: Some(team.into()),
        ..Default::default()
    };
    let keys = gateway::budget::budget_keys(budgets, &caller, base::now_millis());
    let key = &keys.first().expect("a budget covers the team").1;
    for _ in 0..200 {
        let (spent, reserved) = ledger.get(key).await.expect("ledger");
        if reserved.abs() < 1e-12 {
            return spent;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("reservations on {key} never settled");
}

#[tokio::test]
async fn budgets_and_rate_limits_hold_across_replicas_sharing_redis() {
    let upstream = start_gateway(gateway::GatewayConfig::default()).await;
    let up = format!("{}/v1", upstream.url);
    // smollm2 priced at $1,000 per million tokens each way: a call costs about $0.04; its worst
    // case (a 14-byte question's bound of 94 tokens + max_tokens 8) is $0.102.
    let config: gateway::GatewayConfig = serde_json::from_value(json!({
        "local_models": false,
        "prices": {"smollm2": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}},
        "groups": [
            {"name": "chat", "deployments": [{"id": "up", "base_url": up, "model": "smollm2"}]},
            {"name": "cheap", "deployments": [{"id": "free", "base_url": up, "model": "SmolLM2-135M-Instruct"}]}],
        "budgets": [
            {"name": "research-daily", "scope": "team", "match": "research", "window": "daily", "limit_usd": 0.5},
            {"name": "ops-daily", "scope": "team", "match": "ops", "window": "daily", "limit_usd": 0.3, "downgrade_to": "cheap"}],
        "rate_limits": [{"name": "per-user", "scope": "user", "match": "spammer", "rpm": 2}],
    }))
    .unwrap();
    let prefix = format!("capstan-test-{}", uuid::Uuid::new_v4().simple());
    let connect = || async {
        Arc::new(
            store::Redis::connect("redis://127.0.0.1:6379", &prefix)
                .await
                .expect("Redis on 127.0.0.1:6379"),
        )
    };
    let ledger = connect().await;
    let replicas = [
        start_gateway_with(config.clone(), connect().await).await,
        start_gateway_with(config.clone(), connect().await).await,
    ];

    // 12 concurrent calls over two replicas: at most 4 worst cases fit in $0.50 at once.
    let body = json!({"model": "chat", "temperature": 0.7, "max_tokens": 8,
                      "messages": [{"role": "user", "content": "Say something."}]});
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (url, body) = (replicas[i % 2].url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .header("x-capstan-team", "research")
                .json(&body)
                .send()
                .await
                .expect("send");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert_eq!(body["error"]["code"], "budget_exceeded");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("research-daily"),
                    "{body}"
                );
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    let budgets = &config.budgets;
    let spent = settled(&*ledger, budgets, "research").await;
    assert!(spent > 0.0 && spent <= 0.5 + 1e-9, "spent {spent}");
    // The ledger's total is exactly what the usage records of both replicas cost.
    let mut recorded = 0.0;
    for r in &replicas {
        let (_, usage) = r.get("/api/2.0/capstan/gateway/usage", &[]).await;
        recorded += usage["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == 200)
            .filter_map(|r| r["cost_usd"].as_f64())
            .sum::<f64>();
    }
    assert!(
        (recorded - spent).abs() < 1e-9,
        "usage {recorded} vs ledger {spent}"
    );

    // A budget with a downgrade sends the overflow to the cheaper group instead of refusing.
    let mut downgraded = None;
    for _ in 0..15 {
        let (status, headers, _) = call_as(&replicas[0], "ops", "u", body.clone()).await;
        assert_eq!(status, 200);
        if h(&headers, "x-capstan-deployment") == "cheap/free" {
            downgraded = Some(h(&headers, "x-capstan-route"));
            break;
        }
    }
    let route = downgraded.expect("the ops budget ran out within 15 calls");
    assert!(
        route.contains("budget ops-daily exhausted: downgraded chat -> cheap"),
        "{route}"
    );
    assert!(settled(&*ledger, budgets, "ops").await <= 0.3 + 1e-9);

    // Two requests a minute for the spammer: the rest are refused, naming the limit.
    let mut limited = 0;
    for _ in 0..5 {
        let (status, _, e) = call_as(&replicas[1], "ops", "spammer", ask("cheap", FRANCE)).await;
        if status == 429 {
            assert_eq!(e["error"]["code"], "rate_limit_exceeded");
            assert!(e["error"]["message"].as_str().unwrap().contains("per-user"));
            limited += 1;
        }
    }
    assert!(limited >= 1, "5 calls against 2 per minute");
}

#[tokio::test]
async fn semantic_cache_answers_paraphrases_within_one_conversation_and_tenant() {
    let config: gateway::GatewayConfig = serde_json::from_value(json!({
        "cache": {"semantic": {"enabled": true, "threshold": 0.9}},
    }))
    .unwrap();
    let s = start_gateway(config).await;
    let q = |text: &str| ask("smollm2", text);
    let (status, headers, first) = call_as(&s, "t1", "u", q(FRANCE)).await;
    assert_eq!(
        (status, h(&headers, "x-capstan-cache").as_str()),
        (200, "miss"),
        "{first}"
    );
    // A paraphrase: the cached answer, with the similarity in a header.
    let (_, headers, again) =
        call_as(&s, "t1", "u", q("Which city is the capital of France?")).await;
    assert_eq!(h(&headers, "x-capstan-cache"), "semantic-hit");
    let sim: f32 = h(&headers, "x-capstan-cache-similarity").parse().unwrap();
    assert!((0.9..=1.0).contains(&sim), "{sim}");
    assert_eq!(
        again["choices"][0]["message"]["content"],
        first["choices"][0]["message"]["content"]
    );
    // Another question on the same topic is not served the answer.
    let (_, headers, _) = call_as(&s, "t1", "u", q("What is the population of France?")).await;
    assert_eq!(h(&headers, "x-capstan-cache"), "miss");
    // Nor is another tenant, nor the same question inside another conversation.
    let (_, headers, _) = call_as(&s, "t2", "u", q("Which city is the capital of France?")).await;
    assert_eq!(h(&headers, "x-capstan-cache"), "miss");
    let mut turn = q("Which city is the capital of France?");
    turn["messages"] = json!([
        {"role": "user", "content": "Let's talk about Germany."},
        {"role": "assistant", "content": "Sure."},
        {"role": "user", "content": "Which city is the capital of France?"}]);
    let (_, headers, _) = call_as(&s, "t1", "u", turn).await;
    assert_eq!(h(&headers, "x-capstan-cache"), "miss");
    // A streamed paraphrase is replayed as a stream.
    let mut streamed = q("What's the capital city of France?");
    streamed["stream"] = json!(true);
    let r = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .header("x-capstan-team", "t1")
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(h(r.headers(), "x-capstan-cache"), "semantic-hit");
    let text = r.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        content(&events),
        first["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let metrics = s.metrics().await;
    assert!(
        metrics
            .contains("capstan_gateway_cache_requests_total{cache=\"semantic\",outcome=\"hit\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("capstan_gateway_semantic_similarity_count 2"));
}

#[tokio::test]
async fn routing_rules_pick_the_group_by_request_and_caller() {
    let upstream = start_gateway(gateway::GatewayConfig::default()).await;
    let up = format!("{}/v1", upstream.url);
    let config: gateway::GatewayConfig = serde_json::from_value(json!({
        "local_models": false,
        "groups": [
            {"name": "chat", "deployments": [{"id": "main", "base_url": up, "model": "smollm2"}]},
            {"name": "chat-long", "deployments": [{"id": "long", "base_url": up, "model": "smollm2"}]},
            {"name": "cheap", "deployments": [{"id": "free", "base_url": up, "model": "smollm2"}]}],
        "rules": [
            {"name": "long prompts", "models": ["chat"], "route_to": "chat-long",
             "when": {"field": "prompt_tokens", "gt": 20}},
            {"name": "free tier", "route_to": "cheap",
             "when": {"all": [{"field": "tier", "eq": "free"}, {"not": {"field": "metadata.plan", "regex": "^(pro|team)$"}}]}}],
    }))
    .unwrap();
    let s = start_gateway(config).await;
    let deployment = |tier: Option<&'static str>, body: Value| {
        let s = &s;
        async move {
            let mut r = s
                .http
                .post(format!("{}/v1/chat/completions", s.url))
                .json(&body);
            if let Some(t) = tier {
                r = r.header("x-capstan-tier", t);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            (
                h(r.headers(), "x-capstan-deployment"),
                h(r.headers(), "x-capstan-route"),
            )
        }
    };
    let (d, _) = deployment(None, ask("chat", FRANCE)).await;
    assert_eq!(d, "chat/main");
    let long = ask(
        "chat",
        &format!("{FRANCE} Please answer carefully, in one sentence, and mention the river."),
    );
    let (d, route) = deployment(None, long).await;
    assert_eq!(d, "chat-long/long");
    assert!(
        route.starts_with("rule long prompts: chat -> chat-long; weighted"),
        "the rule comes first, then the strategy: {route}"
    );
    let (d, _) = deployment(Some("free"), ask("chat", FRANCE)).await;
    assert_eq!(d, "cheap/free");
    let mut pro = ask("chat", FRANCE);
    pro["metadata"] = json!({"plan": "pro"});
    let (d, _) = deployment(Some("free"), pro).await;
    assert_eq!(
        d, "chat/main",
        "a free-tier caller on the pro plan keeps the group it asked for"
    );
    // A rule pointing nowhere is refused on reload.
    let mut cfg = s.get("/api/2.0/capstan/gateway/config", &[]).await.1["config"].clone();
    cfg["rules"][0]["route_to"] = json!("nowhere");
    let r = s
        .http
        .put(format!("{}/api/2.0/capstan/gateway/config", s.url))
        .json(&cfg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_upstream_generation() {
    let upstream = start_gateway(gateway::GatewayConfig::default()).await;
    let config: gateway::GatewayConfig = serde_json::from_value(json!({
        "local_models": false,
        "groups": [{"name": "chat", "deployments": [
            {"id": "up", "base_url": format!("{}/v1", upstream.url), "model": "smollm2"}]}],
    }))
    .unwrap();
    let s = start_gateway(config).await;
    // Warm the model so the timing below is about generation only.
    let (status, _, _) = call(&upstream, "/v1/chat/completions", ask("smollm2", FRANCE)).await;
    assert_eq!(status, 200);
    let body = json!({"model": "chat", "max_tokens": 400, "temperature": 0.8, "stream": true,
                      "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]});
    let r = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut bytes = r.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || seen.matches("data: ").count() < 3 {
        let chunk = bytes.next().await.expect("more events").expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(bytes); // the client leaves after a few tokens
    // The upstream's generation stops: its stream is recorded as ended early, and the model is
    // free again at once (400 tokens would take it many seconds).
    let mut ended_early = false;
    for _ in 0..100 {
        let (_, usage) = upstream.get("/api/2.0/capstan/gateway/usage", &[]).await;
        if usage["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == 499 && r["stream"] == true)
        {
            ended_early = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ended_early, "the upstream stream was not cut short");
    let started = std::time::Instant::now();
    let mut quick = ask("smollm2", "Say hi.");
    quick["max_tokens"] = json!(2);
    let (status, _, _) = call(&upstream, "/v1/chat/completions", quick).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let (_, usage) = s.get("/api/2.0/capstan/gateway/usage", &[]).await;
    assert!(
        usage["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == 499)
    );
}

/// An OpenAI-compatible server on loopback that answers every request with `body` and reports
/// no usage (as some self-hosted servers do).
async fn usage_less_upstream(body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn an_upstream_without_usage_is_counted_with_openai_encodings_and_billed() {
    let up = usage_less_upstream(
        r#"{"id":"x","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello world"},"finish_reason":"stop"}]}"#,
    )
    .await;
    let config: gateway::GatewayConfig = serde_json::from_value(json!({
        "local_models": false,
        "groups": [{"name": "mini", "deployments": [{"id": "u", "base_url": up, "model": "gpt-4o-mini"}]}],
    }))
    .unwrap();
    let s = start_gateway(config).await;
    let body = json!({"model": "mini", "messages": [{"role": "user", "content": "hello world"}]});
    let (status, headers, _) = call(&s, "/v1/chat/completions", body).await;
    assert_eq!(status, 200);
    // o200k_base: "hello world" is 2 tokens; + 3 framing + 3 priming = 8 prompt, 2 completion.
    let cost = (8.0 * 0.15 + 2.0 * 0.60) / 1e6;
    assert_eq!(h(&headers, "x-capstan-cost-usd"), format!("{cost:.8}"));
    let (_, usage) = s.get("/api/2.0/capstan/gateway/usage", &[]).await;
    let r = &usage["records"][0];
    assert_eq!(
        (
            r["usage"]["prompt_tokens"].as_u64(),
            r["usage"]["completion_tokens"].as_u64()
        ),
        (Some(8), Some(2))
    );
    assert_eq!(r["estimated"], true);
}

#[tokio::test]
async fn anthropic_messages_front_and_provider_translate_both_ways() {
    // Server A answers Anthropic's Messages API from its local model; server B's gateway uses A
    // as an Anthropic upstream — so both translations run over real HTTP.
    let a = start_gateway(gateway::GatewayConfig::default()).await;
    let msg = json!({"model": "smollm2", "max_tokens": 16, "temperature": 0,
                     "messages": [{"role": "user", "content": FRANCE}]});
    let (status, _, m) = call(&a, "/v1/messages", msg.clone()).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["type"], "message");
    assert_eq!(m["content"][0]["text"], PARIS);
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["output_tokens"], 7);
    let mut streamed = msg.clone();
    streamed["stream"] = json!(true);
    streamed["messages"][0]["content"] = json!("Why is the sky blue?");
    let text = a
        .http
        .post(format!("{}/v1/messages", a.url))
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names
            .iter()
            .filter(|n| **n == "content_block_delta")
            .count()
            >= 3,
        "{names:?}"
    );
    let (status, _, e) = call(
        &a,
        "/v1/messages",
        json!({"model": "smollm2", "messages": []}),
    )
    .await;
    assert_eq!(
        (status, e["type"].as_str(), e["error"]["type"].as_str()),
        (400, Some("error"), Some("invalid_request_error"))
    );
    let mut unknown = msg.clone();
    unknown["model"] = json!("claude-nope");
    let (status, _, e) = call(&a, "/v1/messages", unknown).await;
    assert_eq!(
        (status, e["error"]["type"].as_str()),
        (404, Some("not_found_error"))
    );

    let config: gateway::GatewayConfig = serde_json::from_value(json!({
        "local_models": false,
        "groups": [{"name": "claude", "deployments": [
            {"id": "a", "provider": "anthropic", "base_url": a.url, "model": "smollm2"}]}],
    }))
    .unwrap();
    let b = start_gateway(config).await;
    let (status, headers, c) = call(&b, "/v1/chat/completions", ask("claude", FRANCE)).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["choices"][0]["message"]["content"], PARIS);
    assert_eq!(c["usage"]["completion_tokens"], 7);
    assert_eq!(h(&headers, "x-capstan-deployment"), "claude/a");
    let mut s = ask("claude", "Name a colour.");
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let (_, events) = stream(&b, s).await;
    assert!(!content(&events).is_empty());
    assert!(
        events.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Anthropic refuses temperatures above 1: a 400 naming the field, before any call.
    let mut hot = ask("claude", FRANCE);
    hot["temperature"] = json!(1.5);
    let (status, _, e) = call(&b, "/v1/chat/completions", hot).await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("temperature"))
    );
}
