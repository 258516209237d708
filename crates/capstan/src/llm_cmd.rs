//! `capstan llm`: fine-tuning the local language model. `finetune` trains LoRA adapters on
//! instruction/response pairs (JSONL, rendered with the model's chat template, loss on the
//! response only); `pretrain` continues pre-training on a text corpus (LoRA or every weight);
//! `dataset rust-errors` builds an instruction set from `rustc --explain`; `generate` and `eval`
//! compare the base with an adapter (perplexity, ROUGE-L, exact prefix). Every training run is a
//! tracked run — parameters, loss per step, evaluation perplexity, the datasets and the base model
//! as inputs, the adapter as an artifact — and `--register` makes it a model version whose
//! lineage leads to the base model and the data. Nothing reaches the registry before the run's
//! artifacts are stored.

use crate::config::Config;
use crate::platform::{Error, Platform};
use crate::progress::Progress;
use clap::{Args, Subcommand};
use neural::lora::{Lora, LoraConfig};
use neural::train::{self, Event, Sequence, TrainConfig};
use neural::{ChatLm, ChatMessage, GenParams};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracking::{Dataset, DatasetInput, Metric, NewRun, RunStatus, Tag};

#[derive(Subcommand, Debug)]
pub enum LlmCmd {
    /// Build an instruction set from `rustc --explain`: "What does Rust error E0382 mean?" →
    /// the first sentence of its explanation; train.jsonl / eval.jsonl split by error code.
    Dataset {
        /// `rust-errors` (the only built-in set).
        name: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0.15)]
        eval_fraction: f64,
    },
    /// LoRA fine-tuning on instruction/response pairs (JSONL).
    Finetune(FinetuneArgs),
    /// Continued pre-training on a text corpus (a file or a directory of .md/.txt/.html/.rs).
    Pretrain(PretrainArgs),
    /// One completion from the base model or with an adapter.
    Generate {
        prompt: String,
        #[command(flatten)]
        base: BaseArgs,
        /// An adapter directory (PEFT layout) or a registered adapter `NAME@ALIAS` / `NAME/VERSION`.
        #[arg(long)]
        adapter: Option<String>,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
    },
    /// Perplexity, ROUGE-L and exact prefix of the base and of an adapter on a JSONL split.
    Eval {
        data: PathBuf,
        #[command(flatten)]
        base: BaseArgs,
        #[arg(long)]
        adapter: Option<String>,
        /// Rows whose answers are generated and scored (perplexity uses every row).
        #[arg(long, default_value_t = 40)]
        score: usize,
        #[arg(long, default_value_t = 48)]
        max_tokens: usize,
    },
}

#[derive(Args, Debug, Clone)]
pub struct BaseArgs {
    /// `smollm2` (the packaged SmolLM2-135M-Instruct), a GGUF file, or a Hugging Face directory
    /// (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).
    #[arg(long, default_value = "smollm2")]
    pub base: String,
}

#[derive(Args, Debug, Clone)]
pub struct LoraArgs {
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f32,
    /// Module names (`q_proj,v_proj`) or `all-linear`.
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj")]
    pub targets: String,
    /// Scale by alpha/√rank instead of alpha/rank.
    #[arg(long)]
    pub rslora: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 4)]
    pub grad_accum: usize,
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long, default_value_t = 25)]
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement (the best weights are kept).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Longest sequence in tokens (default: the model's context); a longer row is an error.
    #[arg(long)]
    pub max_len: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Checkpoint here every --checkpoint-every steps; a run started again with the same
    /// directory resumes from the last checkpoint.
    #[arg(long)]
    pub checkpoints: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,
    /// Where the adapter (and `merged/` with --merge) is written; default
    /// `$CAPSTAN_HOME/llm/<run id>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "llm-finetune")]
    pub experiment: String,
    /// Register the result as a new version of this model.
    #[arg(long)]
    pub register: Option<String>,
    /// Also write the base with the adapter merged in (Hugging Face layout).
    #[arg(long)]
    pub merge: bool,
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// JSONL rows: `{"instruction", "response"}`, `{"prompt", "completion"}` or
    /// `{"messages": [...]}` ending with the assistant's turn (optional `system`).
    #[arg(long)]
    pub data: PathBuf,
    /// A held-out JSONL split; without it --eval-fraction of --data is held out.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    #[arg(long, default_value_t = 0.1)]
    pub eval_fraction: f64,
    /// Held-out rows whose answers are generated and scored (ROUGE-L, exact prefix) for the
    /// base and the adapter; 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub score: usize,
    #[command(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    pub lora: LoraArgs,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    #[arg(long)]
    pub corpus: PathBuf,
    /// Tokens per training chunk.
    #[arg(long, default_value_t = 128)]
    pub chunk: usize,
    #[arg(long, default_value_t = 0.05)]
    pub eval_fraction: f64,
    /// At most this many chunks (the first ones), for a quick run.
    #[arg(long)]
    pub max_chunks: Option<usize>,
    /// Train every weight instead of a LoRA adapter.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    pub lora: LoraArgs,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub async fn run(home: &Path, config: &Config, cmd: LlmCmd) -> Result<(), Error> {
    match cmd {
        LlmCmd::Dataset {
            name,
            out,
            eval_fraction,
        } => {
            if name != "rust-errors" {
                return Err(Error::Other(format!(
                    "unknown dataset `{name}` (built in: rust-errors)"
                )));
            }
            let (train, eval) = rust_errors(&out, eval_fraction)?;
            println!(
                "wrote {} training and {} held-out rows to {}",
                train,
                eval,
                out.display()
            );
            Ok(())
        }
        LlmCmd::Finetune(a) => {
            finetune(&Platform::open(home, config).await?, config, a).await?;
            Ok(())
        }
        LlmCmd::Pretrain(a) => pretrain(&Platform::open(home, config).await?, config, a).await,
        LlmCmd::Generate {
            prompt,
            base,
            adapter,
            max_tokens,
        } => {
            let p = Platform::open(home, config).await?;
            let (lm, _) = load_base(&p, config, &base.base).await?;
            let lora = match &adapter {
                Some(a) => Some(load_adapter(&p, &lm, a).await?),
                None => None,
            };
            let text = tokio::task::spawn_blocking(move || {
                let ids = lm.encode(&lm.render(&[user(&prompt)])?)?;
                let params = GenParams {
                    max_tokens,
                    ..GenParams::default()
                };
                lm.generate_with(&ids, &params, lora.as_ref(), &mut |_| true)
            })
            .await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(model_error)?;
            println!("{}", text.text);
            Ok(())
        }
        LlmCmd::Eval {
            data,
            base,
            adapter,
            score,
            max_tokens,
        } => {
            let p = Platform::open(home, config).await?;
            let (lm, _) = load_base(&p, config, &base.base).await?;
            let rows = read_pairs(&data)?;
            let lora = match &adapter {
                Some(a) => Some(load_adapter(&p, &lm, a).await?),
                None => None,
            };
            let lm = Arc::new(lm);
            let seqs = sequences(&lm, &rows, &data, lm.config().context)?;
            let report = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<String>>, Error> {
                let mut table = Vec::new();
                let mut variants: Vec<(&str, Option<&Lora>)> = vec![("base", None)];
                if let Some(l) = &lora {
                    variants.push(("adapter", Some(l)));
                }
                for (name, l) in variants {
                    let (loss, ppl) =
                        train::evaluate(lm.decoder(), l, &seqs).map_err(model_error)?;
                    let s = score_answers(&lm, l, &rows, score, max_tokens)?;
                    table.push(vec![
                        name.to_string(),
                        format!("{loss:.4}"),
                        format!("{ppl:.2}"),
                        format!("{:.4}", s.rouge_l),
                        format!("{:.4}", s.prefix),
                    ]);
                }
                Ok(table)
            })
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
            print!(
                "{}",
                crate::report::table(
                    &[
                        "model",
                        "eval loss",
                        "perplexity",
                        "ROUGE-L",
                        "exact prefix"
                    ],
                    &report,
                )
            );
            Ok(())
        }
    }
}

fn user(content: &str) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: content.into(),
    }
}

fn model_error(e: neural::Error) -> Error {
    Error::Other(e.to_string())
}

/// The base model and what identifies it (name, digest, where it came from).
pub struct BaseInfo {
    pub name: String,
    pub digest: String,
    pub source: String,
}

/// Loads `base`: `smollm2` (resolved like the gateway's local model), a GGUF file or a Hugging
/// Face directory.
pub async fn load_base(
    p: &Platform,
    config: &Config,
    base: &str,
) -> Result<(ChatLm, BaseInfo), Error> {
    let (path, digest) = if base == "smollm2" || base == neural::SMOLLM2.name {
        let dir = neural::SMOLLM2
            .resolve(
                (!config.models.smollm2_dir.is_empty())
                    .then(|| p.home.join(&config.models.smollm2_dir))
                    .as_deref(),
                &p.home,
                &config.models.index_url,
            )
            .await
            .map_err(|e| Error::Other(format!("the base model: {e}")))?;
        (
            dir.join(neural::SMOLLM2_FILE),
            format!("sha256:{}", neural::SMOLLM2.wheel_sha256),
        )
    } else {
        let path = PathBuf::from(base);
        let weights = if path.is_dir() {
            path.join("model.safetensors")
        } else {
            path.clone()
        };
        let digest = data::md5_file(&weights)
            .map_err(|e| Error::Other(format!("base model {}: {e}", weights.display())))?;
        (path, format!("md5:{digest}"))
    };
    let load_path = path.clone();
    let lm = tokio::task::spawn_blocking(move || ChatLm::load(&load_path))
        .await
        .map_err(|e| Error::Other(e.to_string()))?
        .map_err(|e| Error::Other(format!("the base model {}: {e}", path.display())))?;
    let info = BaseInfo {
        name: lm.name().to_string(),
        digest,
        source: path.display().to_string(),
    };
    Ok((lm, info))
}

/// An adapter from a directory or from the registry (`NAME@ALIAS`, `NAME/VERSION`).
pub async fn load_adapter(p: &Platform, lm: &ChatLm, reference: &str) -> Result<Lora, Error> {
    let dir = if Path::new(reference)
        .join(neural::lora::ADAPTER_CONFIG)
        .is_file()
    {
        PathBuf::from(reference)
    } else {
        p.adapters()
            .adapter(reference)
            .await
            .map_err(|e| Error::Other(e.message))?
            .1
    };
    Lora::load_for(&dir, lm.decoder())
        .map_err(|e| Error::Other(format!("adapter {reference}: {e}")))
}

/// One instruction/response row (its line number for errors).
#[derive(Debug, Clone)]
pub struct Pair {
    pub line: usize,
    pub messages: Vec<ChatMessage>,
    pub response: String,
}

/// Reads instruction pairs; a row without the needed fields is an error naming its line.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| Error::Other(format!("{} line {n}: {why}", path.display()));
        let v: Value = serde_json::from_str(line).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        let mut messages = Vec::new();
        if let Some(sys) = s("system") {
            messages.push(ChatMessage {
                role: "system".into(),
                content: sys,
            });
        }
        let response = if let Some(list) = v["messages"].as_array() {
            let mut msgs: Vec<ChatMessage> = list
                .iter()
                .map(|m| match (m["role"].as_str(), m["content"].as_str()) {
                    (Some(r), Some(c)) => Ok(ChatMessage {
                        role: r.into(),
                        content: c.into(),
                    }),
                    _ => Err(bad("every message needs a `role` and a `content` string")),
                })
                .collect::<Result<_, _>>()?;
            match msgs.pop() {
                Some(last) if last.role == "assistant" && !msgs.is_empty() => {
                    messages.extend(msgs);
                    last.content
                }
                _ => {
                    return Err(bad(
                        "`messages` must end with an assistant turn after a user turn",
                    ));
                }
            }
        } else {
            let (q, a) = match (
                s("instruction"),
                s("response"),
                s("prompt"),
                s("completion"),
            ) {
                (Some(q), Some(a), _, _) | (_, _, Some(q), Some(a)) => (q, a),
                _ => {
                    return Err(bad(
                        "needs `instruction` and `response` (or `prompt` and `completion`, or \
                         `messages` ending with the assistant's turn)",
                    ));
                }
            };
            let q = match s("input").filter(|x| !x.is_empty()) {
                Some(input) => format!("{q}\n\n{input}"),
                None => q,
            };
            messages.push(user(&q));
            a
        };
        if response.trim().is_empty() {
            return Err(bad("the response is empty"));
        }
        out.push(Pair {
            line: n,
            messages,
            response,
        });
    }
    if out.is_empty() {
        return Err(Error::Other(format!("{} holds no rows", path.display())));
    }
    Ok(out)
}

/// Token sequences of `rows` (loss on the response and its end-of-turn token); a row longer
/// than `max_len` tokens is an error naming its line.
pub fn sequences(
    lm: &ChatLm,
    rows: &[Pair],
    path: &Path,
    max_len: usize,
) -> Result<Vec<Sequence>, Error> {
    let max_len = max_len.min(lm.config().context);
    rows.iter()
        .map(|r| {
            let bad = |why: String| Error::Other(format!("{} line {}: {why}", path.display(), r.line));
            let (prompt, full) = lm
                .render_example(&r.messages, &r.response)
                .map_err(|e| bad(e.to_string()))?;
            let p = lm.encode(&prompt).map_err(|e| bad(e.to_string()))?;
            let ids = lm.encode(&full).map_err(|e| bad(e.to_string()))?;
            if ids.len() > max_len {
                return Err(bad(format!(
                    "{} tokens, longer than the {max_len} allowed (--max-len; the model's context is {})",
                    ids.len(),
                    lm.config().context
                )));
            }
            // Where the prompt's tokens and the full text's part ways (BPE may merge across).
            let target_from = p.iter().zip(&ids).take_while(|(a, b)| a == b).count();
            Ok(Sequence { ids, target_from })
        })
        .collect()
}

/// Deterministic split: every `1/fraction`-th row by a seeded shuffle.
fn split<T: Clone>(rows: &[T], fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    let mut rng = base::rng::Rng::new(seed);
    for i in (1..idx.len()).rev() {
        idx.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let n_eval =
        ((rows.len() as f64 * fraction).round() as usize).min(rows.len().saturating_sub(1));
    let (eval, train) = idx.split_at(n_eval);
    (
        train.iter().map(|&i| rows[i].clone()).collect(),
        eval.iter().map(|&i| rows[i].clone()).collect(),
    )
}

/// Generation quality over the first `n` rows.
pub struct Scores {
    pub rouge_l: f64,
    /// Mean share of the reference's words the answer reproduces from its start.
    pub prefix: f64,
    pub tokens_per_s: f64,
}

pub fn score_answers(
    lm: &ChatLm,
    lora: Option<&Lora>,
    rows: &[Pair],
    n: usize,
    max_tokens: usize,
) -> Result<Scores, Error> {
    let (mut rouge, mut prefix, mut tokens, mut secs) = (0.0, 0.0, 0usize, 0.0);
    let rows = &rows[..n.min(rows.len())];
    for r in rows {
        let ids = lm
            .encode(&lm.render(&r.messages).map_err(model_error)?)
            .map_err(model_error)?;
        let params = GenParams {
            max_tokens,
            ..GenParams::default()
        };
        let t = std::time::Instant::now();
        let g = lm
            .generate_with(&ids, &params, lora, &mut |_| true)
            .map_err(model_error)?;
        secs += t.elapsed().as_secs_f64();
        tokens += g.completion_tokens;
        rouge += eval::text::rouge_l(&g.text, &r.response).fmeasure;
        prefix += prefix_share(&g.text, &r.response);
    }
    let k = rows.len().max(1) as f64;
    Ok(Scores {
        rouge_l: rouge / k,
        prefix: prefix / k,
        tokens_per_s: tokens as f64 / secs.max(1e-9),
    })
}

/// Share of `reference`'s words that `answer` reproduces from the start (case and punctuation
/// aside).
pub fn prefix_share(answer: &str, reference: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_lowercase)
                    .collect::<String>()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (a, r) = (words(answer), words(reference));
    if r.is_empty() {
        return 0.0;
    }
    a.iter().zip(&r).take_while(|(x, y)| x == y).count() as f64 / r.len() as f64
}

fn train_config(t: &TrainArgs) -> TrainConfig {
    TrainConfig {
        epochs: t.epochs,
        lr: t.lr,
        warmup_steps: t.warmup,
        weight_decay: t.weight_decay,
        grad_accum: t.grad_accum,
        max_steps: t.max_steps,
        eval_every: t.eval_every,
        patience: t.patience,
        max_grad_norm: 1.0,
        checkpoint_every: t.checkpoint_every,
        seed: t.seed,
    }
}

fn lora_config(l: &LoraArgs) -> Result<LoraConfig, Error> {
    LoraConfig::new(l.rank, l.alpha, l.lora_dropout, &l.targets, l.rslora).map_err(model_error)
}

/// A training set as a run input.
fn dataset_input(name: &str, digest: &str, source: &str, context: &str) -> DatasetInput {
    DatasetInput {
        dataset: Dataset {
            name: name.to_string(),
            digest: digest.to_string(),
            source_type: "local".into(),
            source: source.to_string(),
            schema: None,
            profile: None,
        },
        tags: vec![Tag::new("mlflow.data.context", context)],
    }
}

/// A metric value at `step`, stamped now.
fn metric(key: &str, value: f64, step: usize) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp: base::now_millis(),
        step: step as i64,
    }
}

fn file_digest(path: &Path) -> Result<String, Error> {
    data::md5_file(path).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

/// What a training job needs besides the model.
struct Job {
    kind: &'static str,
    train: Vec<Sequence>,
    eval: Vec<Sequence>,
    inputs: Vec<DatasetInput>,
    params: Vec<Tag>,
    full: bool,
}

/// Runs `job` as a tracked run: metrics stream in as training goes, the result is stored as
/// artifacts and optionally registered. Returns the run id, the output directory and the
/// trained adapter (`None` for full training).
async fn tracked_training(
    p: &Platform,
    lm: ChatLm,
    info: &BaseInfo,
    lora: Option<LoraConfig>,
    t: &TrainArgs,
    job: Job,
) -> Result<(base::RunId, PathBuf, Arc<ChatLm>, Option<Lora>), Error> {
    let exp = p.experiment_id(&t.experiment).await?;
    let run = p
        .tracking
        .create_run(NewRun {
            experiment_id: exp,
            run_name: Some(format!("{}-{}", job.kind, info.name)),
            user_id: String::new(),
            start_time: base::now_millis(),
            tags: vec![
                Tag::new("mlflow.source.name", format!("capstan llm {}", job.kind)),
                Tag::new("capstan.base_model", info.name.clone()),
            ],
        })
        .await?;
    let id = run.info.run_id.clone();
    let result = train_in_run(p, lm, info, lora, t, job, &run.info).await;
    match result {
        Ok((out, lm, lora)) => {
            p.end_run(&id, RunStatus::Finished).await?;
            Ok((id, out, lm, lora))
        }
        Err(e) => {
            p.end_run(&id, RunStatus::Failed).await?;
            Err(e)
        }
    }
}

async fn train_in_run(
    p: &Platform,
    lm: ChatLm,
    info: &BaseInfo,
    lora_cfg: Option<LoraConfig>,
    t: &TrainArgs,
    job: Job,
    run: &tracking::RunInfo,
) -> Result<(PathBuf, Arc<ChatLm>, Option<Lora>), Error> {
    let id = run.run_id.clone();
    let cfg = train_config(t);
    let base_params = lm.decoder().parameter_count();
    let mut lora = match &lora_cfg {
        Some(c) => {
            Some(Lora::init_for(c.clone(), lm.decoder(), &info.name, t.seed).map_err(model_error)?)
        }
        None => None,
    };
    let trainable = lora.as_ref().map_or(base_params, Lora::parameter_count);
    let mut params = job.params.clone();
    params.extend([
        Tag::new("base_model", info.name.clone()),
        Tag::new("base_digest", info.digest.clone()),
        Tag::new("epochs", t.epochs.to_string()),
        Tag::new("lr", t.lr.to_string()),
        Tag::new("warmup_steps", t.warmup.to_string()),
        Tag::new("grad_accum", t.grad_accum.to_string()),
        Tag::new("weight_decay", t.weight_decay.to_string()),
        Tag::new("seed", t.seed.to_string()),
        Tag::new("train_sequences", job.train.len().to_string()),
        Tag::new("eval_sequences", job.eval.len().to_string()),
        Tag::new("trainable_params", trainable.to_string()),
        Tag::new("base_params", base_params.to_string()),
        Tag::new("method", if job.full { "full" } else { "lora" }),
    ]);
    if let Some(c) = &lora_cfg {
        params.extend([
            Tag::new("lora_rank", c.rank.to_string()),
            Tag::new("lora_alpha", c.alpha.to_string()),
            Tag::new("lora_dropout", c.dropout.to_string()),
            Tag::new("lora_targets", c.target_names().join(",")),
            Tag::new("rslora", c.rslora.to_string()),
        ]);
    }
    p.tracking.log_batch(&id, &[], &params, &[]).await?;
    p.tracking.log_inputs(&id, &job.inputs).await?;
    eprintln!(
        "{}: {} of {} parameters train ({:.2} %)",
        job.kind,
        trainable,
        base_params,
        100.0 * trainable as f64 / base_params as f64
    );
    let lm = Arc::new(lm);
    // The base's held-out loss first, for the before/after comparison.
    let (base_loss, base_ppl) = if job.eval.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        let (lm2, eval) = (lm.clone(), job.eval.clone());
        tokio::task::spawn_blocking(move || train::evaluate(lm2.decoder(), None, &eval))
            .await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(model_error)?
    };
    if base_loss.is_finite() {
        p.tracking
            .log_batch(
                &id,
                &[
                    metric("base_eval_loss", base_loss, 0),
                    metric("base_eval_perplexity", base_ppl, 0),
                ],
                &[],
                &[],
            )
            .await?;
        eprintln!("base model: held-out loss {base_loss:.4}, perplexity {base_ppl:.2}");
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let checkpoints = t.checkpoints.clone();
    let (lm2, train_seqs, eval_seqs) = (lm.clone(), job.train, job.eval.clone());
    let full = job.full;
    let trainer = tokio::task::spawn_blocking(move || {
        let mut model = lm2.decoder().clone();
        let outcome = train::train(
            &mut model,
            lora.as_mut(),
            &train_seqs,
            &eval_seqs,
            &cfg,
            checkpoints.as_deref(),
            &mut |e| tx.send(e.clone()).is_ok(),
        )?;
        Ok::<_, neural::Error>((outcome, model, lora))
    });
    let mut bar: Option<Progress> = None;
    let mut last_tps = 0.0;
    while let Some(e) = rx.recv().await {
        let batch = match e {
            Event::Step {
                step,
                total,
                loss,
                lr,
                grad_norm,
                tokens_per_s,
                ..
            } => {
                let b = bar.get_or_insert_with(|| Progress::new("training steps", total as u64));
                b.inc(1);
                last_tps = tokens_per_s;
                vec![
                    metric("train_loss", loss, step),
                    metric("learning_rate", lr, step),
                    metric("grad_norm", grad_norm, step),
                ]
            }
            Event::Eval {
                step,
                loss,
                perplexity,
            } => {
                eprintln!("\nstep {step}: held-out loss {loss:.4}, perplexity {perplexity:.2}");
                vec![
                    metric("eval_loss", loss, step),
                    metric("eval_perplexity", perplexity, step),
                ]
            }
            Event::Checkpoint { .. } => Vec::new(),
        };
        if !batch.is_empty() {
            p.tracking.log_batch(&id, &batch, &[], &[]).await?;
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    let (outcome, model, lora) = trainer
        .await
        .map_err(|e| Error::Other(e.to_string()))?
        .map_err(model_error)?;
    let mut summary = vec![
        metric("train_tokens_per_s", last_tps, outcome.steps),
        metric("train_seconds", outcome.seconds, outcome.steps),
        metric("trainable_share", trainable as f64 / base_params as f64, 0),
    ];
    if let Some((step, loss)) = outcome.best_eval {
        summary.push(metric("best_eval_loss", loss, step));
        summary.push(metric("best_eval_perplexity", loss.exp(), step));
        eprintln!(
            "best held-out perplexity {:.2} at step {step} (base {base_ppl:.2}){}",
            loss.exp(),
            if outcome.stopped_early {
                "; stopped early"
            } else {
                ""
            }
        );
    }
    p.tracking.log_batch(&id, &summary, &[], &[]).await?;

    // The result: the adapter (or the full model) on disk, then as the run's artifacts.
    let out = t
        .out
        .clone()
        .unwrap_or_else(|| p.home.join("llm").join(id.to_string()));
    let trained = if full {
        lm.with_decoder(model)
    } else {
        lm.with_decoder(lm.decoder().clone())
    };
    let base_json = json!({"name": info.name, "digest": info.digest, "source": info.source,
                           "config": lm.decoder().config.to_hf()});
    let dir = match &lora {
        Some(l) => {
            let dir = out.join("adapter");
            l.save_peft(&dir).map_err(model_error)?;
            std::fs::write(dir.join("capstan_base.json"), base_json.to_string())?;
            if t.merge {
                let merged = lm.decoder().merged(l, 1.0).map_err(model_error)?;
                lm.with_decoder(merged)
                    .save_hf(&out.join("merged"))
                    .map_err(model_error)?;
            }
            dir
        }
        None => {
            let dir = out.join("model");
            trained.save_hf(&dir).map_err(model_error)?;
            std::fs::write(dir.join("capstan_base.json"), base_json.to_string())?;
            dir
        }
    };
    let artifact_root = if lora.is_some() { "adapter" } else { "model" };
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            p.log_artifact(
                run,
                &format!("{artifact_root}/{name}"),
                std::fs::read(&path)?,
            )
            .await?;
        }
    }
    if let Some(model) = &t.register {
        let v = p
            .register_run_model_tagged(
                model,
                &id,
                artifact_root,
                vec![
                    Tag::new(
                        "capstan.kind",
                        if lora.is_some() {
                            "lora-adapter"
                        } else {
                            "llm"
                        },
                    ),
                    Tag::new("capstan.base_model", info.name.clone()),
                    Tag::new("capstan.base_digest", info.digest.clone()),
                ],
            )
            .await?;
        println!("registered {model} version {}", v.version);
    }
    println!("run {id}: {} written to {}", artifact_root, dir.display());
    Ok((dir, Arc::new(trained), lora))
}

async fn finetune(p: &Platform, config: &Config, a: FinetuneArgs) -> Result<base::RunId, Error> {
    // Everything the user gave is checked before a run exists.
    let lora_cfg = lora_config(&a.lora)?;
    let rows = read_pairs(&a.data)?;
    let eval_rows = match &a.eval {
        Some(e) => Some(read_pairs(e)?),
        None => None,
    };
    let (lm, info) = load_base(p, config, &a.base.base).await?;
    let max_len = a.train.max_len.unwrap_or(lm.config().context);
    let seqs = sequences(&lm, &rows, &a.data, max_len)?;
    let (train_seqs, eval_seqs, held_rows) = match (&a.eval, &eval_rows) {
        (Some(path), Some(er)) => (seqs, sequences(&lm, er, path, max_len)?, er.clone()),
        _ => {
            let pairs: Vec<(Pair, Sequence)> = rows.iter().cloned().zip(seqs).collect();
            let (tr, ev) = split(&pairs, a.eval_fraction, a.train.seed);
            (
                tr.into_iter().map(|x| x.1).collect(),
                ev.iter().map(|x| x.1.clone()).collect(),
                ev.into_iter().map(|x| x.0).collect(),
            )
        }
    };
    let mut inputs = vec![dataset_input(
        &file_name(&a.data),
        &file_digest(&a.data)?,
        &a.data.display().to_string(),
        "training",
    )];
    if let Some(e) = &a.eval {
        inputs.push(dataset_input(
            &file_name(e),
            &file_digest(e)?,
            &e.display().to_string(),
            "evaluation",
        ));
    }
    inputs.push(dataset_input(
        &info.name,
        &info.digest,
        &info.source,
        "base-model",
    ));
    let job = Job {
        kind: "finetune",
        train: train_seqs,
        eval: eval_seqs,
        inputs,
        params: vec![Tag::new("max_len", max_len.to_string())],
        full: false,
    };
    let (id, _, lm, lora) = tracked_training(p, lm, &info, Some(lora_cfg), &a.train, job).await?;
    if a.score > 0 {
        let (n, lm2) = (a.score, lm.clone());
        let held = held_rows.clone();
        let (before, after) = tokio::task::spawn_blocking(move || {
            Ok::<_, Error>((
                score_answers(&lm2, None, &held, n, 48)?,
                score_answers(&lm2, lora.as_ref(), &held, n, 48)?,
            ))
        })
        .await
        .map_err(|e| Error::Other(e.to_string()))??;
        let m = |k: &str, v: f64| metric(k, v, 0);
        p.tracking
            .log_batch(
                &id,
                &[
                    m("base_rouge_l", before.rouge_l),
                    m("rouge_l", after.rouge_l),
                    m("base_exact_prefix", before.prefix),
                    m("exact_prefix", after.prefix),
                    m("generate_tokens_per_s", after.tokens_per_s),
                    m("base_generate_tokens_per_s", before.tokens_per_s),
                ],
                &[],
                &[],
            )
            .await?;
        println!(
            "answers on {n} held-out rows: ROUGE-L {:.3} → {:.3}, exact prefix {:.3} → {:.3}",
            before.rouge_l, after.rouge_l, before.prefix, after.prefix
        );
    }
    Ok(id)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Text of a corpus file: HTML loses its tags and scripts.
fn corpus_text(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let text = std::fs::read_to_string(path).ok()?;
    match ext.as_str() {
        "md" | "txt" | "rs" => Some(text),
        "html" | "htm" => Some(strip_html(&text)),
        _ => None,
    }
}

fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let skip_to = ["<script", "<style"]
            .iter()
            .find(|t| after.len() >= t.len() && after[..t.len()].eq_ignore_ascii_case(t))
            .map(|t| format!("</{}>", &t[1..]));
        rest = match skip_to.and_then(|end| after.find(&end).map(|j| j + end.len())) {
            Some(j) => &after[j..],
            None => after.find('>').map_or("", |j| &after[j + 1..]),
        };
        out.push(' ');
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn pretrain(p: &Platform, config: &Config, a: PretrainArgs) -> Result<(), Error> {
    let lora_cfg = if a.full {
        None
    } else {
        Some(lora_config(&a.lora)?)
    };
    if a.chunk < 2 {
        return Err(Error::Other("--chunk must be at least 2 tokens".into()));
    }
    let mut files = Vec::new();
    if a.corpus.is_dir() {
        let mut stack = vec![a.corpus.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let path = e?.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.sort();
    } else {
        files.push(a.corpus.clone());
    }
    let (lm, info) = load_base(p, config, &a.base.base).await?;
    let chunk = a.chunk.min(lm.config().context);
    let mut chunks: Vec<Sequence> = Vec::new();
    let mut digest_input = Vec::new();
    for f in &files {
        let Some(text) = corpus_text(f) else { continue };
        digest_input.extend_from_slice(text.as_bytes());
        let ids = lm.encode(&text).map_err(model_error)?;
        for c in ids.chunks(chunk).filter(|c| c.len() >= 2) {
            chunks.push(Sequence {
                ids: c.to_vec(),
                target_from: 1,
            });
        }
        if a.max_chunks.is_some_and(|m| chunks.len() >= m) {
            break;
        }
    }
    if let Some(m) = a.max_chunks {
        chunks.truncate(m);
    }
    if chunks.len() < 2 {
        return Err(Error::Other(format!(
            "{}: no .md, .txt, .html or .rs text to train on",
            a.corpus.display()
        )));
    }
    let n_eval =
        ((chunks.len() as f64 * a.eval_fraction).ceil() as usize).clamp(1, chunks.len() - 1);
    let eval = chunks.split_off(chunks.len() - n_eval);
    eprintln!(
        "corpus: {} files, {} training chunks of ≤ {chunk} tokens, {} held out",
        files.len(),
        chunks.len(),
        eval.len()
    );
    let job = Job {
        kind: "pretrain",
        train: chunks,
        eval,
        inputs: vec![
            dataset_input(
                &file_name(&a.corpus),
                &data::md5_bytes(&digest_input),
                &a.corpus.display().to_string(),
                "training",
            ),
            dataset_input(&info.name, &info.digest, &info.source, "base-model"),
        ],
        params: vec![Tag::new("chunk_tokens", chunk.to_string())],
        full: a.full,
    };
    tracked_training(p, lm, &info, lora_cfg, &a.train, job).await?;
    Ok(())
}

/// `rustc --explain` for every error code it knows: the first sentence of each explanation.
fn rust_errors(out: &Path, eval_fraction: f64) -> Result<(usize, usize), Error> {
    let mut rows = Vec::new();
    let mut bar = Progress::new("rustc --explain", 1000);
    for n in 1..1000 {
        bar.inc(1);
        let code = format!("E{n:04}");
        let Ok(o) = std::process::Command::new("rustc")
            .args(["--explain", &code])
            .output()
        else {
            return Err(Error::Other("rustc is not on PATH".into()));
        };
        if !o.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&o.stdout);
        if let Some(sentence) = first_sentence(&text) {
            rows.push((code, sentence));
        }
    }
    bar.finish();
    if rows.is_empty() {
        return Err(Error::Other("rustc explained no error codes".into()));
    }
    let (train, eval) = split(&rows, eval_fraction, 7);
    std::fs::create_dir_all(out)?;
    let write = |name: &str, rows: &[(String, String)]| -> Result<(), Error> {
        let mut s = String::new();
        for (code, sentence) in rows {
            s.push_str(
                &json!({"instruction": format!("What does Rust error {code} mean?"),
                        "response": sentence, "code": code})
                .to_string(),
            );
            s.push('\n');
        }
        std::fs::write(out.join(name), s)?;
        Ok(())
    };
    write("train.jsonl", &train)?;
    write("eval.jsonl", &eval)?;
    Ok((train.len(), eval.len()))
}

/// The first sentence of an explanation's first paragraph (after any "no longer emitted" note).
pub fn first_sentence(text: &str) -> Option<String> {
    let para = text
        .split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty() && !p.starts_with('#') && !p.starts_with("```"))?;
    let para = para.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut end = para.len();
    let bytes = para.as_bytes();
    for (i, _) in para.match_indices(". ") {
        // Not after "e.g" / "i.e".
        if i >= 3 && (&para[i - 3..i] == "e.g" || &para[i - 3..i] == "i.e") {
            continue;
        }
        end = i + 1;
        break;
    }
    if end == para.len() && !para.ends_with('.') && bytes.last() != Some(&b':') {
        return None;
    }
    let s = para[..end].trim_end_matches(':').to_string();
    (s.split_whitespace().count() <= 40).then_some(s)
}

/// `capstan bench lora`: the rust-errors instruction set, SmolLM2 before and after a LoRA
/// fine-tune (held-out perplexity, ROUGE-L, exact prefix), training and generation speed.
pub async fn bench(
    home: &Path,
    steps: usize,
    score: usize,
    lr: f64,
    out: Option<PathBuf>,
) -> Result<(), Error> {
    let config = Config::default();
    let p = Platform::open(home, &config).await?;
    let data_dir = home.join("bench-lora");
    let (n_train, n_eval) = rust_errors(&data_dir, 0.15)?;
    let mut args = rust_errors_args(
        data_dir.join("train.jsonl"),
        data_dir.join("eval.jsonl"),
        steps,
        4,
        lr,
    );
    args.score = score;
    args.train.experiment = "bench-lora".into();
    let id = finetune(&p, &config, args).await?;
    let get = run_metrics(&p, &id).await?;
    let row = |name: &str, base: f64, tuned: f64, digits: usize| {
        vec![
            name.to_string(),
            format!("{base:.digits$}"),
            format!("{tuned:.digits$}"),
            format!("{:.2}×", tuned / base),
        ]
    };
    let quality = crate::report::table(
        &[
            "held-out rust-errors",
            "SmolLM2-135M-Instruct",
            "+ LoRA",
            "ratio",
        ],
        &[
            row(
                "perplexity (lower is better)",
                get("base_eval_perplexity"),
                get("best_eval_perplexity"),
                2,
            ),
            row("ROUGE-L F1", get("base_rouge_l"), get("rouge_l"), 3),
            row(
                "exact prefix (share of reference words)",
                get("base_exact_prefix"),
                get("exact_prefix"),
                3,
            ),
        ],
    );
    let speed = crate::report::table(
        &["speed (2 cores, CPU)", "value"],
        &[
            vec![
                "LoRA training, tokens/s".into(),
                format!("{:.1}", get("train_tokens_per_s")),
            ],
            vec![
                "generation, base model, tokens/s".into(),
                format!("{:.1}", get("base_generate_tokens_per_s")),
            ],
            vec![
                "generation with the adapter, tokens/s".into(),
                format!("{:.1}", get("generate_tokens_per_s")),
            ],
            vec![
                "trainable parameters".into(),
                format!("{:.2} % of the base", 100.0 * get("trainable_share")),
            ],
            vec![
                "training time".into(),
                format!(
                    "{:.0} s for {steps} steps × 4 sequences",
                    get("train_seconds")
                ),
            ],
        ],
    );
    let text = format!(
        "LoRA fine-tuning of SmolLM2-135M-Instruct on `rustc --explain` (rank 8, alpha 16, \
         q/k/v/o, lr {lr}, {steps} steps of 4 sequences; {n_train} training and {n_eval} held-out \
         error codes; answers scored on {score} held-out rows), run {id}\n\n{quality}\n{speed}"
    );
    println!("{text}");
    if let Some(out) = out {
        std::fs::write(out, text)?;
    }
    Ok(())
}

/// A fine-tune of SmolLM2 on the rust-errors set as the benchmark and the demo run it: rank 8 on
/// q/k/v/o, `steps` optimiser steps of `grad_accum` sequences, warm-up over a tenth of them and
/// three evaluations; nothing scored, nothing registered.
fn rust_errors_args(
    data: PathBuf,
    eval: PathBuf,
    steps: usize,
    grad_accum: usize,
    lr: f64,
) -> FinetuneArgs {
    FinetuneArgs {
        data,
        eval: Some(eval),
        eval_fraction: 0.0,
        score: 0,
        base: BaseArgs {
            base: "smollm2".into(),
        },
        lora: LoraArgs {
            rank: 8,
            alpha: 16.0,
            lora_dropout: 0.05,
            targets: "q_proj,k_proj,v_proj,o_proj".into(),
            rslora: false,
        },
        train: TrainArgs {
            epochs: 1,
            lr,
            warmup: (steps / 10).max(1),
            weight_decay: 0.0,
            grad_accum,
            max_steps: Some(steps),
            eval_every: (steps / 3).max(1),
            patience: None,
            max_len: None,
            seed: 42,
            checkpoints: None,
            checkpoint_every: steps.max(1),
            out: None,
            experiment: "llm-finetune".into(),
            register: None,
            merge: false,
        },
    }
}

/// The latest value of each metric of run `id` (NaN for one it lacks).
async fn run_metrics(p: &Platform, id: &base::RunId) -> Result<impl Fn(&str) -> f64, Error> {
    let run = p.tracking.get_run(id).await?;
    Ok(move |k: &str| -> f64 {
        run.metrics
            .iter()
            .find(|m| m.key == k)
            .map_or(f64::NAN, |m| m.value)
    })
}

/// The demo's fine-tuning step: SmolLM2 + a LoRA adapter on the rust-errors set, registered as
/// `rust-errors@production` and asked through the gateway at `url`.
pub async fn demo_step(
    home: &Path,
    config: &Config,
    url: &str,
) -> Result<Vec<crate::demo_story::Line>, Error> {
    let p = Platform::open(home, config).await?;
    let dir = home.join("rust-errors");
    let (n_train, n_eval) = rust_errors(&dir, 0.15)?;
    // A short run: 16 steps of 2 sequences, judged on 24 held-out codes.
    let held: Vec<String> = std::fs::read_to_string(dir.join("eval.jsonl"))?
        .lines()
        .take(24)
        .map(String::from)
        .collect();
    std::fs::write(dir.join("eval-24.jsonl"), held.join("\n") + "\n")?;
    println!(
        "  {n_train} training and {n_eval} held-out error codes from `rustc --explain`; LoRA rank 8 on q/k/v/o"
    );
    let mut args = rust_errors_args(
        dir.join("train.jsonl"),
        dir.join("eval-24.jsonl"),
        16,
        2,
        1e-3,
    );
    args.train.warmup = 2;
    args.train.eval_every = 8;
    args.train.register = Some("rust-errors".into());
    let id = finetune(&p, config, args).await?;
    let get = run_metrics(&p, &id).await?;
    let version = p
        .registry
        .search_versions("name = 'rust-errors'", 1000, 0)
        .await
        .map_err(|e| Error::Other(e.to_string()))?
        .items
        .iter()
        .map(|v| v.version)
        .max()
        .unwrap_or(1);
    p.registry
        .set_alias("rust-errors", "production", version)
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    let question = "What does Rust error E0382 mean?";
    let reply: Value = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(
            &json!({"model": "rust-errors@production", "max_tokens": 40, "temperature": 0,
                      "messages": [{"role": "user", "content": question}]}),
        )
        .send()
        .await
        .map_err(|e| Error::Other(e.to_string()))?
        .json()
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    let answer = reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("  gateway, model rust-errors@production: {question}\n    → {answer}");
    let (before, after) = (get("base_eval_perplexity"), get("best_eval_perplexity"));
    Ok(vec![(
        "LoRA fine-tune".into(),
        format!("SmolLM2 + adapter v{version} served as rust-errors@production"),
        format!("held-out perplexity {before:.1} → {after:.1}"),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sentences_of_explanations() {
        let t = "#### Note: this error code is no longer emitted by the compiler.\n\nThis error \
                 indicates that the bindings, e.g. `x`, were\nmoved. More text.\n\n```\ncode\n```";
        assert_eq!(
            first_sentence(t).unwrap(),
            "This error indicates that the bindings, e.g. `x`, were moved."
        );
        assert_eq!(
            first_sentence("A variable was used after its contents have been moved elsewhere.\n")
                .unwrap(),
            "A variable was used after its contents have been moved elsewhere."
        );
    }

    #[test]
    fn prefix_share_counts_leading_words() {
        assert_eq!(
            prefix_share("A value was moved, sadly", "A value was moved."),
            1.0
        );
        assert_eq!(prefix_share("A value is", "A value was moved."), 0.5);
        assert_eq!(prefix_share("", "x"), 0.0);
    }

    #[test]
    fn html_loses_tags_and_scripts() {
        assert_eq!(
            strip_html("<p>Hi &amp; <b>bye</b></p><script>var x = 1 < 2;</script> end"),
            "Hi & bye end"
        );
    }
}
