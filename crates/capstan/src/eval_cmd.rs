//! `capstan eval run | compare`: an LLM evaluation over a dataset of cases, through the platform
//! itself — an in-process server on loopback, so each case goes the way production traffic goes
//! (optional retrieval from a RAG collection, a versioned prompt, the gateway with its cache,
//! usage records and spans) — scored by the `eval` crate's evaluators, tracked as an experiment
//! run (a metric per evaluator, the per-case results and an HTML report as artifacts), with each
//! case a trace. `--fail-under METRIC=VALUE` makes it a regression gate for CI.

use crate::config::Config;
use crate::platform::{Error, Platform};
use crate::progress::Progress;
use eval::run::{EvalResult, Generate};
use eval::{Case, EvaluatorSpec, Output, Retrieved};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use traces::TraceStore;
use tracking::{Metric, NewRun, RunStatus, Tag};

// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
pub enum EvalCmd {
    /// Run DATASET (.jsonl cases or .csv) through a model, score it, track it.
    Run {
        dataset: PathBuf,
        /// The model group to ask (e.g. smollm2).
        #[arg(long)]
        model: String,
        /// A registered prompt, `name@label` or `name@version`, rendered with each case's inputs
        /// (and `context` when the prompt declares it).
        #[arg(long)]
        prompt: Option<String>,
        /// Retrieve context for each question from this RAG collection first.
        #[arg(long)]
        collection: Option<String>,
        #[arg(long, default_value_t = 3)]
        top_k: usize,
        /// Evaluators (`exact_match`, `token_f1`, `bleu`, `rouge_l`, `regex:PATTERN`, `json`,
        /// `context_precision`, `context_recall`, `faithfulness`, `embedding_similarity`,
        /// `answer_relevancy`).
        #[arg(short, long = "evaluator", default_values_t = ["exact_match".to_string(), "token_f1".to_string()])]
        evaluators: Vec<String>,
        /// The model that grades `judge:PROMPT@LABEL` evaluators (default: --model).
        #[arg(long)]
        judge_model: Option<String>,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 64)]
        max_tokens: u32,
        /// At most this many cases (the first ones).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value = "evaluations")]
        experiment: String,
        /// Fail (exit status 3) when an evaluator's mean is below a threshold: `token_f1=0.5`.
        #[arg(long = "fail-under")]
        fail_under: Vec<String>,
        #[arg(long)]
        html: Option<PathBuf>,
        /// Ask a running Capstan server (its gateway, prompts and collections) instead of one
        /// started in this process, e.g. `http://127.0.0.1:8080`.
        #[arg(long)]
        server: Option<String>,
    },
    /// Compare two evaluation runs case by case.
    Compare {
        run_a: String,
        run_b: String,
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

/// Where and when each case's span ran.
struct CaseTrace {
    trace_id: String,
    span_id: String,
    start_ns: i64,
    end_ns: i64,
}

struct Through {
    http: reqwest::Client,
    url: String,
    model: String,
    prompt: Option<String>,
    /// Variables the prompt declares.
    prompt_vars: Vec<String>,
    collection: Option<String>,
    top_k: usize,
    max_tokens: u32,
    traces: Mutex<HashMap<String, CaseTrace>>,
    judge_model: String,
    /// The variables each rubric prompt declares.
    judge_vars: HashMap<String, Vec<String>>,
}

fn question(case: &Case) -> String {
    case.inputs
        .get("question")
        .or_else(|| case.inputs.get("input"))
        .or_else(|| case.inputs.values().next())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl Through {
    async fn post(&self, path: &str, body: &Value, traceparent: &str) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("traceparent", traceparent)
            .header("x-capstan-user", "capstan-eval")
            .json(body)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            let m = v["error"]["message"]
                .as_str()
                .or(v["message"].as_str())
                .or(v["status"]["error"].as_str())
                .unwrap_or("no message");
            return Err(format!("{path} answered {status}: {m}"));
        }
        Ok(v)
    }
}

#[async_trait::async_trait]
impl Generate for Through {
    async fn generate(&self, case: &Case) -> Result<Output, String> {
        let trace_id = traces::random_id(16);
        let span_id = traces::random_id(8);
        let parent = format!("00-{trace_id}-{span_id}-01");
        let start_ns = base::now_millis() * 1_000_000;
        let q = question(case);
        let mut retrieved = Vec::new();
        let mut context = case.context.join("\n\n");
        if let Some(c) = &self.collection {
            let r = self
                .post(
                    &format!("/rag/{c}/query"),
                    &json!({"query": q, "top_k": self.top_k}),
                    &parent,
                )
                .await?;
            context = r["result"]["context"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for h in r["result"]["hits"].as_array().into_iter().flatten() {
                retrieved.push(Retrieved {
                    source: h["source"].as_str().unwrap_or_default().to_owned(),
                    text: h["text"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
        let body = match &self.prompt {
            Some(p) => {
                let mut vars = serde_json::Map::new();
                for v in &self.prompt_vars {
                    if v == "context" {
                        vars.insert(v.clone(), json!(context));
                    } else if let Some(x) = case.inputs.get(v) {
                        vars.insert(v.clone(), x.clone());
                    }
                }
                json!({"model": self.model, "prompt": p, "variables": vars,
                       "temperature": 0, "max_tokens": self.max_tokens})
            }
            None => {
                let content = if context.is_empty() {
                    q.clone()
                } else {
                    format!("Answer from this context.\n\n{context}\n\nQuestion: {q}")
                };
                json!({"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                       "messages": [{"role": "user", "content": content}]})
            }
        };
        let r = self.post("/v1/chat/completions", &body, &parent).await;
        if let Ok(mut t) = self.traces.lock() {
            t.insert(
                case.id.clone(),
                CaseTrace {
                    trace_id,
                    span_id,
                    start_ns,
                    end_ns: base::now_millis() * 1_000_000,
                },
            );
        }
        let r = r?;
        Ok(Output {
            text: r["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            retrieved,
        })
    }
}

#[async_trait::async_trait]
impl eval::Judge for Through {
    async fn judge(&self, rubric: &str, case: &Case, out: &Output) -> Result<String, String> {
        let declared = self.judge_vars.get(rubric).cloned().unwrap_or_default();
        let context = eval::rag::context_texts(case, out);
        let mut vars = serde_json::Map::new();
        for v in &declared {
            let value = match v.as_str() {
                "question" => json!(question(case)),
                "answer" => json!(out.text),
                "expected" => json!(case.expected.join(" | ")),
                "context" => json!(context.join("\n\n")),
                other => case.inputs.get(other).cloned().unwrap_or(Value::Null),
            };
            vars.insert(v.clone(), value);
        }
        // The grading call joins the case's trace.
        let parent = self
            .traces
            .lock()
            .ok()
            .and_then(|t| {
                t.get(&case.id)
                    .map(|c| format!("00-{}-{}-01", c.trace_id, c.span_id))
            })
            .unwrap_or_default();
        let r = self
            .post(
                "/v1/chat/completions",
                &json!({"model": self.judge_model, "prompt": rubric, "variables": vars,
                        "temperature": 0, "max_tokens": 16}),
                &parent,
            )
            .await?;
        Ok(r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

/// MiniLM for the similarity evaluators.
struct MiniLm(Arc<dyn neural::Embedder>);

impl eval::Embed for MiniLm {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.0.embed(texts).map_err(|e| e.to_string())
    }
}

/// The variables a prompt reference's version declares.
async fn prompt_variables(p: &Platform, reference: &str) -> Result<Vec<String>, Error> {
    use gateway::prompts::PromptStore;
    let (name, at) = reference.split_once('@').ok_or_else(|| {
        err(format!(
            "--prompt `{reference}`: expected name@label or name@version"
        ))
    })?;
    let version = match at.parse::<i64>() {
        Ok(v) => v,
        Err(_) => *p
            .db
            .prompt_labels(name)
            .await
            .map_err(err)?
            .get(at)
            .ok_or_else(|| err(format!("prompt `{name}` has no label `{at}`")))?,
    };
    let v =
        p.db.prompt_version(name, version)
            .await
            .map_err(err)?
            .ok_or_else(|| err(format!("prompt `{name}` has no version {version}")))?;
    Ok(v.variables.keys().cloned().collect())
}

/// The `eval/results.json` artifact of a run.
async fn load_result(p: &Platform, run_id: &str) -> Result<EvalResult, Error> {
    use tracking::ArtifactIndex;
    let id = base::RunId::parse(run_id).map_err(err)?;
    let run = p.tracking.get_run(&id).await?;
    let root = run
        .info
        .artifact_uri
        .trim_start_matches("mlflow-artifacts:")
        .trim_start_matches('/');
    let path = base::ArtifactPath::parse(&format!("{root}/eval/results.json")).map_err(err)?;
    let entry = p.db.get_artifact(&path).await?.ok_or_else(|| {
        err(format!(
            "run {run_id} has no eval/results.json (not an evaluation run?)"
        ))
    })?;
    let bytes = p.blobs.get_bytes(&entry.hash).await?;
    serde_json::from_slice(&bytes).map_err(|e| err(format!("run {run_id}: eval/results.json: {e}")))
}

pub async fn run(home: &Path, config: &Config, cmd: EvalCmd) -> Result<(), Error> {
    let p = Platform::open(home, config).await?;
    match cmd {
        EvalCmd::Compare { run_a, run_b, html } => {
            let a = load_result(&p, &run_a).await?;
            let b = load_result(&p, &run_b).await?;
            let cmp = eval::run::compare(&a, &b);
            let rows: Vec<Vec<String>> = cmp
                .metrics
                .iter()
                .map(|(m, (up, down, same))| {
                    let mean = |r: &EvalResult| {
                        r.summary
                            .get(m)
                            .and_then(|s| s.mean)
                            .map_or("—".into(), |v| format!("{v:.4}"))
                    };
                    vec![
                        m.clone(),
                        mean(&a),
                        mean(&b),
                        up.to_string(),
                        down.to_string(),
                        same.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                crate::report::table(
                    &[
                        "evaluator",
                        "A mean",
                        "B mean",
                        "B better",
                        "A better",
                        "same"
                    ],
                    &rows
                )
            );
            if let Some(path) = html {
                let page = eval::html::render(
                    &format!("Evaluation: {run_a} vs {run_b}"),
                    (&format!("A {run_a}"), &a),
                    Some((&format!("B {run_b}"), &b)),
                );
                std::fs::write(&path, page)?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        EvalCmd::Run {
            dataset,
            model,
            prompt,
            collection,
            top_k,
            evaluators,
            judge_model,
            concurrency,
            max_tokens,
            limit,
            experiment,
            fail_under,
            html,
            server: remote,
        } => {
            let gates = fail_under
                .iter()
                .map(|g| eval::run::parse_gate(g).map_err(err))
                .collect::<Result<Vec<_>, _>>()?;
            let specs = evaluators
                .iter()
                .map(|e| EvaluatorSpec::parse(e).map_err(err))
                .collect::<Result<Vec<_>, _>>()?;
            let evals = specs
                .into_iter()
                .map(|s| eval::Evaluator::new(s).map_err(err))
                .collect::<Result<Vec<_>, _>>()?;
            let bytes =
                std::fs::read(&dataset).map_err(|e| err(format!("{}: {e}", dataset.display())))?;
            let text = String::from_utf8(bytes.clone())
                .map_err(|_| err(format!("{}: not UTF-8", dataset.display())))?;
            let mut cases = eval::read_cases(&dataset.to_string_lossy(), &text)
                .map_err(|e| err(format!("{}: {e}", dataset.display())))?;
            if let Some(n) = limit {
                cases.truncate(n.max(1));
            }
            let digest = data::md5_bytes(&bytes);
            let prompt_vars = match &prompt {
                Some(r) => prompt_variables(&p, r).await?,
                None => Vec::new(),
            };
            let mut judge_vars = HashMap::new();
            for e in &evals {
                if let EvaluatorSpec::Judge { prompt: rubric } = &e.spec {
                    judge_vars.insert(rubric.clone(), prompt_variables(&p, rubric).await?);
                }
            }
            // The platform in-process, on loopback: cases go the way requests do.
            let state = p.state(config, None);
            let embeddings = state.embeddings.clone();
            let (url, in_process) = match remote {
                Some(u) => (u.trim_end_matches('/').to_owned(), None),
                None => {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let url = format!("http://{}", listener.local_addr()?);
                    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                    let server = tokio::spawn(server::serve(listener, state, async {
                        let _ = stopped.await;
                    }));
                    (url, Some((stop, server)))
                }
            };
            let through = Arc::new(Through {
                http: reqwest::Client::new(),
                url,
                model: model.clone(),
                prompt: prompt.clone(),
                prompt_vars,
                collection: collection.clone(),
                top_k,
                max_tokens,
                traces: Mutex::new(HashMap::new()),
                judge_model: judge_model.unwrap_or_else(|| model.clone()),
                judge_vars,
            });
            // MiniLM is loaded only for the evaluators that embed.
            let embed: Option<Arc<dyn eval::Embed>> = if evals.iter().any(|e| {
                matches!(
                    e.spec,
                    EvaluatorSpec::EmbeddingSimilarity | EvaluatorSpec::AnswerRelevancy
                )
            }) {
                let m = embeddings
                    .get(server::embedding::DEFAULT_MODEL)
                    .await
                    .map_err(|e| err(format!("embedding model: {e}")))?;
                Some(Arc::new(MiniLm(m)))
            } else {
                None
            };
            let judge: Option<Arc<dyn eval::Judge>> = Some(through.clone());
            let bar = Mutex::new(Progress::new("evaluating", cases.len() as u64));
            let result = eval::run::run(
                &cases,
                through.clone(),
                Arc::new(evals),
                embed,
                judge,
                concurrency,
                |_| {
                    if let Ok(mut b) = bar.lock() {
                        b.inc(1);
                    }
                },
            )
            .await;
            if let Ok(b) = bar.into_inner() {
                b.finish();
            }
            // Usage records and spans the server queued are written before it stops.
            if let Some((stop, server)) = in_process {
                let _ = stop.send(());
                let _ = server.await;
            }

            // Tracked: an experiment run with a metric per evaluator and the results as artifacts.
            let exp = p.experiment_id(&experiment).await?;
            let name = format!(
                "{model}{}",
                prompt
                    .as_deref()
                    .map(|p| format!(" × {p}"))
                    .unwrap_or_default()
            );
            let created = p
                .tracking
                .create_run(NewRun {
                    experiment_id: exp,
                    run_name: Some(name.clone()),
                    user_id: String::new(),
                    start_time: base::now_millis(),
                    tags: vec![Tag::new("mlflow.source.name", "capstan eval run")],
                })
                .await?;
            let run_id = created.info.run_id.clone();
            let mut params = vec![
                Tag::new("model", model.clone()),
                Tag::new("dataset", dataset.display().to_string()),
                Tag::new("dataset_md5", digest.clone()),
                Tag::new("cases", cases.len().to_string()),
                Tag::new("evaluators", evaluators.join(",")),
            ];
            if let Some(pr) = &prompt {
                params.push(Tag::new("prompt", pr.clone()));
            }
            if let Some(c) = &collection {
                params.push(Tag::new("collection", c.clone()));
                params.push(Tag::new("top_k", top_k.to_string()));
            }
            let now = base::now_millis();
            let mut metrics = Vec::new();
            for (k, s) in &result.summary {
                if let Some(m) = s.mean {
                    metrics.push(Metric {
                        key: k.clone(),
                        value: m,
                        timestamp: now,
                        step: 0,
                    });
                }
                metrics.push(Metric {
                    key: format!("{k}.unscorable"),
                    value: s.unscorable as f64,
                    timestamp: now,
                    step: 0,
                });
                metrics.push(Metric {
                    key: format!("{k}.errors"),
                    value: s.errors as f64,
                    timestamp: now,
                    step: 0,
                });
            }
            let failed_cases = result.cases.iter().filter(|c| c.error.is_some()).count();
            metrics.push(Metric {
                key: "failed_cases".into(),
                value: failed_cases as f64,
                timestamp: now,
                step: 0,
            });
            p.tracking
                .log_batch(&run_id, &metrics, &params, &[])
                .await?;
            let results_json = serde_json::to_vec_pretty(&result).map_err(err)?;
            p.log_artifact(&created.info, "eval/results.json", results_json)
                .await?;
            let page = eval::html::render(
                &format!("Evaluation {name} on {}", dataset.display()),
                (&name, &result),
                None,
            );
            p.log_artifact(&created.info, "eval/report.html", page.clone().into_bytes())
                .await?;
            if let Some(path) = &html {
                std::fs::write(path, &page)?;
            }
            // Each case a trace: the case's span, parent of its retrieval and model call.
            let case_traces = through
                .traces
                .lock()
                .map(|mut t| std::mem::take(&mut *t))
                .unwrap_or_default();
            let spans: Vec<traces::Span> = result
                .cases
                .iter()
                .filter_map(|c| {
                    let t = case_traces.get(&c.id)?;
                    let mut attrs = serde_json::Map::new();
                    attrs.insert("eval.case_id".into(), json!(c.id));
                    attrs.insert("eval.run_id".into(), json!(run_id.to_string()));
                    attrs.insert("gen_ai.request.model".into(), json!(model));
                    if let Some(pr) = &prompt {
                        attrs.insert("capstan.prompt".into(), json!(pr));
                    }
                    for (k, s) in &c.scores {
                        if let Some(v) = s.value() {
                            attrs.insert(format!("eval.score.{k}"), json!(v));
                        }
                    }
                    Some(traces::Span {
                        trace_id: t.trace_id.clone(),
                        span_id: t.span_id.clone(),
                        name: format!("eval.case {}", c.id),
                        kind: 1,
                        start_ns: t.start_ns,
                        end_ns: t.end_ns.max(t.start_ns),
                        status: if c.error.is_some() {
                            traces::Status::Error
                        } else {
                            traces::Status::Ok
                        },
                        status_message: c.error.clone().unwrap_or_default(),
                        service: "capstan-eval".into(),
                        scope: "capstan.eval".into(),
                        experiment_id: exp.to_string(),
                        attributes: attrs,
                        ..Default::default()
                    })
                })
                .collect();
            p.db.write_spans(&spans).await?;
            let failures = eval::run::gate(&result.summary, &gates);
            let status = if failed_cases == cases.len() {
                RunStatus::Failed
            } else {
                RunStatus::Finished
            };
            p.end_run(&run_id, status).await?;
            let rows: Vec<Vec<String>> = result
                .summary
                .iter()
                .map(|(k, s)| {
                    vec![
                        k.clone(),
                        s.mean.map_or("—".into(), |m| format!("{m:.4}")),
                        s.scored.to_string(),
                        s.unscorable.to_string(),
                        s.errors.to_string(),
                    ]
                })
                .collect();
            println!(
                "run {run_id} in experiment '{experiment}' ({} cases, {failed_cases} failed)",
                cases.len()
            );
            print!(
                "{}",
                crate::report::table(
                    &["evaluator", "mean", "scored", "unscorable", "errors"],
                    &rows
                )
            );
            if let Some(path) = &html {
                println!("wrote {}", path.display());
            }
            if failures.is_empty() {
                Ok(())
            } else {
                for f in &failures {
                    eprintln!("regression gate: {f}");
                }
                Err(Error::ChecksFailed)
            }
        }
    }
}
