//! The prompt registry over HTTP: versions, labels (protected `production`), strict rendering,
//! diffs, ETags, and the gateway rendering `prompt: name@label` into a chat request.

use crate::support::{start, start_gateway};
use serde_json::{Value, json};
use tracking::{Scope, TokenStore};

fn version_body(system: &str) -> Value {
    json!({"name": "qa", "commit_message": "answer from context",
           "template": {"messages": [
               {"role": "system", "content": system},
               {"role": "user", "content": "{{ question }}"}]},
           "params": {"model": "smollm2", "temperature": 0, "max_tokens": 16}})
}

#[tokio::test]
async fn versions_labels_rendering_diffs_and_the_gateway() {
    let s = start_gateway(gateway::GatewayConfig::default()).await;
    let (status, v1) = s
        .post(
            "/api/2.0/capstan/prompts",
            version_body("Answer using: {{ context }}"),
        )
        .await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["prompt_version"]["version"], 1);
    assert_eq!(
        v1["prompt_version"]["variables"],
        json!({"context": "string", "question": "string"})
    );
    let (_, v2) = s
        .post(
            "/api/2.0/capstan/prompts",
            version_body("Use only this context: {{ context }}"),
        )
        .await;
    assert_eq!(v2["prompt_version"]["version"], 2);
    // A template that does not parse, and a declared variable the template never uses.
    let (status, e) = s
        .post(
            "/api/2.0/capstan/prompts",
            json!({"name": "bad", "template": {"text": "{{ oops"}}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, _) = s
        .post(
            "/api/2.0/capstan/prompts",
            json!({"name": "bad", "template": {"text": "hi"}, "variables": {"x": "number"}}),
        )
        .await;
    assert_eq!(status, 400);

    let put = |label: &str, version: i64| {
        s.http
            .put(format!(
                "{}/api/2.0/capstan/prompts/qa/labels/{label}",
                s.url
            ))
            .json(&json!({"version": version}))
            .send()
    };
    assert_eq!(put("production", 1).await.unwrap().status().as_u16(), 200);
    assert_eq!(put("staging", 9).await.unwrap().status().as_u16(), 404);
    let (_, shown) = s.get("/api/2.0/capstan/prompts/qa", &[]).await;
    assert_eq!(shown["versions"].as_array().unwrap().len(), 2);
    assert_eq!(shown["labels"], json!({"production": 1}));

    // Labels are served with a short cache and revalidation; versions are immutable.
    let r = s
        .http
        .get(format!(
            "{}/api/2.0/capstan/prompts/qa/labels/production",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "\"qa@1\"");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("stale-while-revalidate")
    );
    let r = s
        .http
        .get(format!("{}/api/2.0/capstan/prompts/qa/versions/1", s.url))
        .header("if-none-match", "\"qa@1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);

    let vars = json!({"context": "Paris is the capital of France.", "question": "What is the capital of France?"});
    let (status, r) = s
        .post(
            "/api/2.0/capstan/prompts/qa/render",
            json!({"label": "production", "variables": vars}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["rendered"]["messages"][0]["content"],
        "Answer using: Paris is the capital of France."
    );
    let (status, e) = s
        .post(
            "/api/2.0/capstan/prompts/qa/render",
            json!({"version": 1, "variables": {"context": "c"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(e["message"].as_str().unwrap().contains("question"), "{e}");
    let (_, d) = s
        .get(
            "/api/2.0/capstan/prompts/qa/diff",
            &[("from", "1"), ("to", "2")],
        )
        .await;
    let lines: Vec<&str> = d["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"- Answer using: {{ context }}"),
        "{lines:?}"
    );
    assert!(lines.contains(&"+ Use only this context: {{ context }}"));

    // The gateway renders the labelled version; the model and parameters come with the prompt.
    let (status, c) = s
        .post(
            "/v1/chat/completions",
            json!({"prompt": "qa@production", "variables": vars}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert!(
        c["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Paris"),
        "{c}"
    );
    let (_, usage) = s.get("/api/2.0/capstan/gateway/usage", &[]).await;
    assert_eq!(usage["records"][0]["prompt"], "qa@1");
    let (status, e) = s
        .post(
            "/v1/chat/completions",
            json!({"prompt": "qa@production", "variables": {"context": "c"}}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("variables.question"))
    );
    let (status, _) = s
        .post(
            "/v1/chat/completions",
            json!({"prompt": "qa@nope", "variables": vars}),
        )
        .await;
    assert_eq!(status, 404);

    // An A/B test of prompt versions behind the same label, with no change in the caller: each
    // user sticks to one version, and both versions are served.
    let r = s
        .http
        .put(format!(
            "{}/api/2.0/capstan/prompts/qa/splits/production",
            s.url
        ))
        .json(&json!({"weights": {"1": 1.0, "2": 1.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = s
        .http
        .put(format!(
            "{}/api/2.0/capstan/prompts/qa/splits/production",
            s.url
        ))
        .json(&json!({"weights": {"1": 1.0, "7": 1.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "a split over a missing version");
    for i in 0..40 {
        let body = json!({"prompt": "qa@production", "variables": vars, "max_tokens": 1,
                          "user": format!("user-{}", i % 20)});
        let (status, c) = s.post("/v1/chat/completions", body).await;
        assert_eq!(status, 200, "{c}");
    }
    let (_, usage) = s
        .get("/api/2.0/capstan/gateway/usage", &[("limit", "100")])
        .await;
    let mut by_user: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for r in usage["records"].as_array().unwrap() {
        if let (Some(u), Some(p)) = (r["user"].as_str(), r["prompt"].as_str()) {
            by_user
                .entry(u.to_owned())
                .or_default()
                .insert(p.to_owned());
        }
    }
    assert_eq!(by_user.len(), 20);
    assert!(
        by_user.values().all(|v| v.len() == 1),
        "sticky: {by_user:?}"
    );
    let versions: std::collections::BTreeSet<&String> = by_user.values().flatten().collect();
    assert_eq!(versions.len(), 2, "both versions served: {versions:?}");
}

#[tokio::test]
async fn only_admin_tokens_move_production() {
    let s = start(server::ServerConfig {
        auth: true,
        ..Default::default()
    })
    .await;
    let write = server::new_token();
    let admin = server::new_token();
    s.db.create_token("writer", &server::hash_token(&write), Scope::Write)
        .await
        .unwrap();
    s.db.create_token("admin", &server::hash_token(&admin), Scope::Admin)
        .await
        .unwrap();
    let r = s
        .http
        .post(format!("{}/api/2.0/capstan/prompts", s.url))
        .bearer_auth(&write)
        .json(&version_body("Answer using: {{ context }}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let put = |token: &str, label: &str| {
        s.http
            .put(format!(
                "{}/api/2.0/capstan/prompts/qa/labels/{label}",
                s.url
            ))
            .bearer_auth(token)
            .json(&json!({"version": 1}))
            .send()
    };
    assert_eq!(put(&write, "staging").await.unwrap().status().as_u16(), 200);
    let r = put(&write, "production").await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        put(&admin, "production").await.unwrap().status().as_u16(),
        200
    );
}
