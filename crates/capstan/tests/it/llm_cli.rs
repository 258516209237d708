//! `capstan llm` with the real SmolLM2: a LoRA fine-tune checked for bad input before anything
//! is written, tracked (loss per step, perplexity, datasets and base model as inputs, the adapter
//! as artifacts), registered, and served by the gateway as `NAME@ALIAS` like any other model;
//! an adapter made for another base model is refused by name. Continued pre-training on a
//! corpus is tracked the same way.

use crate::binary::{cli, cli_ok, link_models, start};
use serde_json::{Value, json};
use std::path::Path;

fn write_rows(path: &Path, rows: &[(&str, &str)]) {
    let text: String = rows
        .iter()
        .map(|(q, a)| json!({"instruction": q, "response": a}).to_string() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Stores a PEFT adapter directory as a run's artifacts over the MLflow API and registers it
/// as `name` version 1 with alias `alias`.
async fn register_adapter_dir(url: &str, dir: &Path, name: &str, alias: &str) {
    let api = format!("{url}/api/2.0/mlflow");
    let (s, run) = post(&format!("{api}/runs/create"), json!({"experiment_id": "0"})).await;
    assert_eq!(s, 200, "{run}");
    let id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let root = run["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mlflow-artifacts:")
        .trim_start_matches('/')
        .to_owned();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        let r = reqwest::Client::new()
            .put(format!(
                "{url}/api/2.0/mlflow-artifacts/artifacts/{root}/adapter/{f}"
            ))
            .body(std::fs::read(dir.join(f)).unwrap())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{f}: {}", r.status());
    }
    let (s, _) = post(
        &format!("{api}/registered-models/create"),
        json!({"name": name}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = post(
        &format!("{api}/model-versions/create"),
        json!({"name": name, "source": format!("runs:/{id}/adapter"), "run_id": id}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = post(
        &format!("{api}/registered-models/alias"),
        json!({"name": name, "alias": alias, "version": "1"}),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lora_fine_tune_is_checked_tracked_registered_and_served_by_the_gateway() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    link_models(h);
    let train = h.join("train.jsonl");
    let eval = h.join("eval.jsonl");
    write_rows(
        &train,
        &[
            (
                "What does Rust error E0382 mean?",
                "A variable was used after its contents have been moved elsewhere.",
            ),
            (
                "What does Rust error E0499 mean?",
                "A variable was borrowed as mutable more than once.",
            ),
            (
                "What does Rust error E0308 mean?",
                "Expected type did not match the received type.",
            ),
            (
                "What does Rust error E0425 mean?",
                "An unresolved name was used.",
            ),
        ],
    );
    write_rows(
        &eval,
        &[(
            "What does Rust error E0502 mean?",
            "A variable already borrowed as immutable was borrowed as mutable.",
        )],
    );

    // Bad input is refused before a run or a version exists.
    let bad = h.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"instruction\": \"q\", \"response\": \"a\"}\n{\"instruction\": \"no answer\"}\n",
    )
    .unwrap();
    let (code, _, err) = cli(
        h,
        &[
            "llm",
            "finetune",
            "--data",
            bad.to_str().unwrap(),
            "--register",
            "qa",
        ],
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains("bad.jsonl line 2") && err.contains("needs `instruction` and `response`"),
        "{err}"
    );
    let (code, _, err) = cli(
        h,
        &[
            "llm",
            "finetune",
            "--data",
            train.to_str().unwrap(),
            "--max-len",
            "20",
            "--register",
            "qa",
        ],
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains("train.jsonl line 1") && err.contains("longer than the 20 allowed"),
        "{err}"
    );
    let (code, _, err) = cli(
        h,
        &[
            "llm",
            "finetune",
            "--data",
            train.to_str().unwrap(),
            "--targets",
            "qkv",
            "--register",
            "qa",
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown LoRA target module `qkv`"), "{err}");
    assert!(!cli_ok(h, &["models", "list"]).contains("qa"));

    let out = cli_ok(
        h,
        &[
            "llm",
            "finetune",
            "--data",
            train.to_str().unwrap(),
            "--eval",
            eval.to_str().unwrap(),
            "--max-steps",
            "2",
            "--grad-accum",
            "2",
            "--eval-every",
            "1",
            "--lr",
            "1e-3",
            "--register",
            "qa",
            "--score",
            "1",
        ],
    );
    assert!(out.contains("registered qa version 1"), "{out}");
    assert!(out.contains("ROUGE-L"), "{out}");
    cli_ok(
        h,
        &["models", "promote", "qa", "1", "--alias", "production"],
    );

    let server = start(h, &[]);
    let api = format!("{}/api/2.0/mlflow", server.url);
    let exp: Value = reqwest::Client::new()
        .get(format!(
            "{api}/experiments/get-by-name?experiment_name=llm-finetune"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exp_id = exp["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, runs) = post(
        &format!("{api}/runs/search"),
        json!({"experiment_ids": [exp_id]}),
    )
    .await;
    assert_eq!(s, 200);
    let run = &runs["runs"][0];
    assert_eq!(run["info"]["status"], "FINISHED");
    let params: std::collections::HashMap<String, String> = run["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_owned(),
                p["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(params["lora_rank"], "8");
    assert_eq!(params["lora_targets"], "q_proj,k_proj,v_proj,o_proj");
    assert!(!params["base_model"].is_empty());
    assert!(params["base_digest"].starts_with("sha256:"), "{params:?}");
    let share: f64 = params["trainable_params"].parse::<f64>().unwrap()
        / params["base_params"].parse::<f64>().unwrap();
    assert!(share < 0.01, "{share}");
    let metric = |k: &str| -> f64 {
        run["data"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == k)
            .unwrap_or_else(|| panic!("metric {k}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert!(metric("base_eval_perplexity") > 1.0);
    assert!(metric("eval_perplexity") > 1.0);
    assert!(metric("train_tokens_per_s") > 0.0);
    let run_id = run["info"]["run_id"].as_str().unwrap();
    let history: Value = reqwest::Client::new()
        .get(format!(
            "{api}/metrics/get-history?run_id={run_id}&metric_key=train_loss"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let steps: Vec<i64> = history["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2], "one loss per step");
    let contexts: Vec<String> = run["inputs"]["dataset_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tags"][0]["value"].as_str().unwrap().to_owned())
        .collect();
    for c in ["training", "evaluation", "base-model"] {
        assert!(contexts.iter().any(|x| x == c), "{contexts:?}");
    }
    let root = run["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mlflow-artifacts:")
        .trim_start_matches('/');
    let files: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts?path={root}/adapter",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"adapter_model.safetensors"), "{names:?}");
    assert!(names.contains(&"adapter_config.json"), "{names:?}");

    // The gateway serves the adapter by its alias, priced and counted like the base model.
    let chat = |model: &str| {
        json!({"model": model, "max_tokens": 8, "temperature": 0,
               "messages": [{"role": "user", "content": "What does Rust error E0382 mean?"}]})
    };
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&chat("qa@production"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-capstan-cost-usd"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "qa@production");
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{body}"
    );
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let (s, e) = post(
        &format!("{}/v1/chat/completions", server.url),
        chat("nope@production"),
    )
    .await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["error"]["code"], "model_not_found");

    // An adapter trained for another base model (the tiny LLaMA of the neural tests) is refused.
    let tiny =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../neural/tests/fixtures/tiny-llama/adapter");
    register_adapter_dir(&server.url, &tiny, "tiny", "prod").await;
    let (s, e) = post(
        &format!("{}/v1/chat/completions", server.url),
        chat("tiny@prod"),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("another base model") && msg.contains("lora_A.weight"),
        "{msg}"
    );
    drop(server);

    // The CLI generates with the registered adapter too.
    let out = cli_ok(
        h,
        &[
            "llm",
            "generate",
            "What does Rust error E0382 mean?",
            "--adapter",
            "qa@production",
            "--max-tokens",
            "6",
        ],
    );
    assert!(!out.trim().is_empty());
}

#[test]
fn continued_pretraining_on_a_corpus_is_a_tracked_lora_run() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    link_models(h);
    let corpus = h.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(
        corpus.join("ownership.md"),
        "# Ownership\n\nEach value in Rust has an owner. There can only be one owner at a time. \
         When the owner goes out of scope, the value will be dropped.\n"
            .repeat(4),
    )
    .unwrap();
    std::fs::write(
        corpus.join("page.html"),
        "<html><script>x()</script><p>References must always be valid.</p></html>",
    )
    .unwrap();
    let ckpt = h.join("ckpt");
    let out = cli_ok(
        h,
        &[
            "llm",
            "pretrain",
            "--corpus",
            corpus.to_str().unwrap(),
            "--chunk",
            "32",
            "--max-steps",
            "2",
            "--grad-accum",
            "1",
            "--checkpoints",
            ckpt.to_str().unwrap(),
            "--checkpoint-every",
            "1",
            "--experiment",
            "pretrain",
        ],
    );
    assert!(out.contains("adapter written to"), "{out}");
    assert!(ckpt.join("checkpoint/state.json").is_file());
    // Started again with the same checkpoints, the run is already complete: it resumes at step 2.
    let (code, _, err) = cli(
        h,
        &[
            "llm",
            "pretrain",
            "--corpus",
            corpus.to_str().unwrap(),
            "--chunk",
            "32",
            "--max-steps",
            "2",
            "--grad-accum",
            "1",
            "--checkpoints",
            ckpt.to_str().unwrap(),
            "--experiment",
            "pretrain",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(
        h,
        &[
            "llm",
            "pretrain",
            "--corpus",
            h.join("nothing").to_str().unwrap(),
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("no .md, .txt, .html or .rs text"), "{err}");
}
