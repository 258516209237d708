//! API tokens with scopes, enforced on every route but /health when enabled.

use crate::support::start;
use tracking::{Scope, TokenStore};

#[tokio::test]
async fn tokens_are_enforced_by_scope() {
    let s = start(server::ServerConfig {
        auth: true,
        ..Default::default()
    })
    .await;
    let read = server::new_token();
    let write = server::new_token();
    s.db.create_token("reader", &server::hash_token(&read), Scope::Read)
        .await
        .expect("token");
    s.db.create_token("writer", &server::hash_token(&write), Scope::Write)
        .await
        .expect("token");
    let create = serde_json::json!({"name": "secured"});
    let url = format!("{}/api/2.0/mlflow/experiments/create", s.url);

    assert_eq!(
        s.http
            .get(format!("{}/health", s.url))
            .send()
            .await
            .expect("health")
            .status()
            .as_u16(),
        200
    );
    let r = s.http.post(&url).json(&create).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error_code"],
        "UNAUTHENTICATED"
    );
    let r = s
        .http
        .post(&url)
        .bearer_auth("cap_wrong")
        .json(&create)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .http
        .post(&url)
        .bearer_auth(&read)
        .json(&create)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error_code"],
        "PERMISSION_DENIED"
    );
    let r = s
        .http
        .post(&url)
        .bearer_auth(&write)
        .json(&create)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    // Searching is a read, even over POST.
    let r = s
        .http
        .post(format!("{}/api/2.0/mlflow/runs/search", s.url))
        .bearer_auth(&read)
        .json(&serde_json::json!({"experiment_ids": ["0"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let r = s
        .http
        .get(format!("{}/api/2.0/mlflow-artifacts/artifacts", s.url))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401, "artifacts are protected too");

    // Managing tokens needs admin.
    let tokens = format!("{}/api/2.0/capstan/tokens", s.url);
    let r = s
        .http
        .get(&tokens)
        .bearer_auth(&write)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 403);
    let admin = server::new_token();
    s.db.create_token("root", &server::hash_token(&admin), Scope::Admin)
        .await
        .expect("token");
    let r = s
        .http
        .post(&tokens)
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "bot", "scope": "read"}))
        .send()
        .await
        .expect("send");
    let v: serde_json::Value = r.json().await.expect("json");
    let bot = v["token"].as_str().expect("token").to_owned();
    let bot_id = v["info"]["id"].as_i64().expect("id");
    let r = s
        .http
        .get(&tokens)
        .bearer_auth(&bot)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 403, "a read token cannot list tokens");
    let r = s
        .http
        .post(&tokens)
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "x", "scope": "root"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let r = s
        .http
        .delete(format!("{tokens}/{bot_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let r = s
        .http
        .post(format!("{}/api/2.0/mlflow/runs/search", s.url))
        .bearer_auth(&bot)
        .json(&serde_json::json!({"experiment_ids": ["0"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401, "a revoked token stops working");
    let r = s
        .http
        .get(&tokens)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["tokens"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn openai_paths_refuse_in_openai_shape_and_usage_names_the_token() {
    let s = start(server::ServerConfig {
        auth: true,
        ..Default::default()
    })
    .await;
    let read = server::new_token();
    s.db.create_token("reader", &server::hash_token(&read), Scope::Read)
        .await
        .expect("token");
    let body = serde_json::json!({"model": "smollm2", "temperature": 0, "max_tokens": 4,
                                  "messages": [{"role": "user", "content": "Hi"}]});
    let url = format!("{}/v1/chat/completions", s.url);
    for token in [None, Some("cap_not_a_token")] {
        let mut r = s.http.post(&url).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.expect("send");
        assert_eq!(r.status().as_u16(), 401);
        let e: serde_json::Value = r.json().await.expect("json");
        assert_eq!(e["error"]["type"], "authentication_error", "{e}");
        assert_eq!(e["error"]["code"], "invalid_api_key");
    }
    // Chat is a read; the usage record names the token that paid for it.
    let r = s
        .http
        .post(&url)
        .bearer_auth(&read)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let usage: serde_json::Value = s
        .http
        .get(format!("{}/api/2.0/capstan/gateway/usage", s.url))
        .bearer_auth(&read)
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    assert_eq!(usage["records"][0]["key"], "reader", "{usage}");
}

/// The web UI's page, script and style sheet hold no data: they load without a token (the page
/// then asks for one), under a content security policy that keeps it to its own origin; what the
/// page reads still needs the token.
#[tokio::test]
async fn the_ui_loads_without_a_token_and_its_data_does_not() {
    let s = start(server::ServerConfig {
        auth: true,
        ..Default::default()
    })
    .await;
    for (path, kind, marker) in [
        ("/", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "function render()"),
        ("/ui/app.css", "text/css", ".span-row"),
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers();
        assert!(h["content-type"].to_str().expect("ascii").starts_with(kind));
        assert!(
            h["content-security-policy"]
                .to_str()
                .expect("ascii")
                .starts_with("default-src 'self'")
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(r.text().await.expect("body").contains(marker), "{path}");
    }
    let r = s
        .http
        .get(format!("{}/ui/../api/2.0/capstan/jobs", s.url))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status().as_u16(),
        401,
        "a path through /ui/ is no way around the token"
    );
    let r = s
        .http
        .get(format!("{}/api/2.0/capstan/features", s.url))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
}
