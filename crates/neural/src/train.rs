//! Training the decoder: LoRA adapters on a frozen base, or every weight (continued
//! pre-training). Loss is the mean cross-entropy over a sequence's target tokens (the response of
//! an instruction pair; every token after the first of a pre-training chunk). AdamW with linear
//! warm-up and a cosine decay, gradient accumulation, global-norm clipping, evaluation loss and
//! perplexity on a held-out split, early stopping that keeps the best weights, and checkpoints a
//! killed run resumes from (weights, optimiser moments and the place in the data).

use crate::decoder::Decoder;
use crate::lora::Lora;
use crate::{Error, Result};
use base::rng::Rng;
use candle_core::{DType, Tensor, Var};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Token ids with the loss taken on `ids[target_from..]`.
#[derive(Debug, Clone)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub target_from: usize,
}

impl Sequence {
    pub fn targets(&self) -> usize {
        self.ids.len().saturating_sub(self.target_from.max(1))
    }
}

/// Mean cross-entropy of `seq`'s target tokens and how many there are. `train` (a dropout seed)
/// makes the pass differentiable.
pub fn sequence_loss(
    model: &Decoder,
    lora: Option<&Lora>,
    seq: &Sequence,
    train: Option<u64>,
) -> Result<(Tensor, usize)> {
    let n = seq.ids.len();
    let from = seq.target_from.max(1);
    if from >= n {
        return Err(Error::BadInput(
            "a training sequence has no target tokens".into(),
        ));
    }
    let ids = Tensor::from_slice(&seq.ids[..n - 1], (1, n - 1), &model.device)?;
    let h = model.hidden(&ids, 0, None, lora, train)?;
    // Only the positions that predict a target go through the (vocabulary-wide) head.
    let h = h.narrow(1, from - 1, n - from)?.squeeze(0)?;
    let logits = model.logits(&h)?;
    let targets = Tensor::from_slice(&seq.ids[from..], n - from, &model.device)?;
    Ok((candle_nn::loss::cross_entropy(&logits, &targets)?, n - from))
}

/// Token-weighted mean loss over `seqs` and its perplexity.
pub fn evaluate(model: &Decoder, lora: Option<&Lora>, seqs: &[Sequence]) -> Result<(f64, f64)> {
    let (mut sum, mut count) = (0.0, 0usize);
    for s in seqs {
        let (loss, n) = sequence_loss(model, lora, s, None)?;
        sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * n as f64;
        count += n;
    }
    if count == 0 {
        return Err(Error::BadInput("the evaluation split is empty".into()));
    }
    let loss = sum / count as f64;
    Ok((loss, loss.exp()))
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Sequences per optimiser step.
    pub grad_accum: usize,
    pub max_steps: Option<usize>,
    /// Evaluate every this many optimiser steps (and at the end).
    pub eval_every: usize,
    /// Stop after this many evaluations without a better loss.
    pub patience: Option<usize>,
    pub max_grad_norm: f64,
    /// Write a checkpoint every this many steps (when a directory is given).
    pub checkpoint_every: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 1,
            lr: 2e-4,
            warmup_steps: 0,
            weight_decay: 0.0,
            grad_accum: 1,
            max_steps: None,
            eval_every: 50,
            patience: None,
            max_grad_norm: 1.0,
            checkpoint_every: 50,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Learning rate at optimiser step `step` (1-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step <= self.warmup_steps && self.warmup_steps > 0 {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        let span = total.saturating_sub(self.warmup_steps).max(1);
        let progress = (step - self.warmup_steps.min(step)) as f64 / span as f64;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    Step {
        step: usize,
        total: usize,
        epoch: usize,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        tokens_per_s: f64,
    },
    Eval {
        step: usize,
        loss: f64,
        perplexity: f64,
    },
    Checkpoint {
        step: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub steps: usize,
    pub total_steps: usize,
    pub resumed_from: Option<usize>,
    pub best_eval: Option<(usize, f64)>,
    pub stopped_early: bool,
    pub cancelled: bool,
    pub tokens: usize,
    pub seconds: f64,
}

/// AdamW (decoupled weight decay) over named variables.
struct AdamW {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: usize,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamW {
    fn new(vars: &[(String, Var)], weight_decay: f64) -> Result<AdamW> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            m: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<Result<_, _>>()?,
            v: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<Result<_, _>>()?,
        })
    }

    fn update(&mut self, vars: &[(String, Var)], grads: &[Tensor], lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for (i, (_, var)) in vars.iter().enumerate() {
            let g = &grads[i];
            self.m[i] = ((&self.m[i] * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            self.v[i] = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let step = ((&self.m[i] / c1)? / ((&self.v[i] / c2)?.sqrt()? + self.eps)?)?;
            let theta = var.as_tensor().detach();
            let theta = ((theta * (1.0 - lr * self.weight_decay))? - (step * lr)?)?;
            var.set(&theta)?;
        }
        Ok(())
    }
}

/// Where a run stands, saved with each checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct State {
    step: usize,
    /// Sequences consumed so far over all epochs.
    consumed: usize,
    best: Option<(usize, f64)>,
    bad_evals: usize,
    tokens: usize,
}

const CKPT: &str = "checkpoint";

/// Trains `lora` on a frozen `model`, or, with no adapter, every weight of `model`. `checkpoints`
/// is a directory: a run finds its last checkpoint there and goes on from it. `on_event`
/// returning `false` stops the run (its weights stay as trained so far).
pub fn train(
    model: &mut Decoder,
    mut lora: Option<&mut Lora>,
    data: &[Sequence],
    eval: &[Sequence],
    cfg: &TrainConfig,
    checkpoints: Option<&Path>,
    on_event: &mut dyn FnMut(&Event) -> bool,
) -> Result<Outcome> {
    if data.is_empty() {
        return Err(Error::BadInput("the training split is empty".into()));
    }
    if cfg.grad_accum == 0 || cfg.epochs == 0 {
        return Err(Error::BadInput(
            "epochs and grad_accum must be at least 1".into(),
        ));
    }
    let vars = match lora.as_deref_mut() {
        Some(l) => {
            l.to_dtype(model.dtype())?;
            l.trainable()?
        }
        None => model.trainable()?,
    };
    let steps_per_epoch = data.len().div_ceil(cfg.grad_accum);
    let total = cfg.max_steps.unwrap_or(cfg.epochs * steps_per_epoch);
    let mut opt = AdamW::new(&vars, cfg.weight_decay)?;
    let mut state = State {
        step: 0,
        consumed: 0,
        best: None,
        bad_evals: 0,
        tokens: 0,
    };
    let mut resumed_from = None;
    let mut best_weights: Option<Vec<Tensor>> = None;
    if let Some(dir) = checkpoints
        && let Some((s, best)) = load_checkpoint(dir, &vars, &mut opt)?
    {
        resumed_from = Some(s.step);
        state = s;
        best_weights = best;
    }
    let started = Instant::now();
    let run_tokens_at_start = state.tokens;
    let (mut stopped_early, mut cancelled) = (false, false);
    let order = |epoch: usize| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..data.len()).collect();
        let mut rng = Rng::new(cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for i in (1..idx.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            idx.swap(i, j);
        }
        idx
    };
    let model_ref: &Decoder = model;
    // The current epoch's order, shuffled once per epoch.
    let mut epoch_order: (usize, Vec<usize>) = (usize::MAX, Vec::new());
    while state.step < total {
        let mut sums: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut loss_sum = 0.0;
        let mut micro = 0;
        while micro < cfg.grad_accum {
            let epoch = state.consumed / data.len();
            if epoch >= cfg.epochs && cfg.max_steps.is_none() {
                break;
            }
            if epoch_order.0 != epoch {
                epoch_order = (epoch, order(epoch));
            }
            let seq = &data[epoch_order.1[state.consumed % data.len()]];
            let dropout_seed = cfg.seed ^ ((state.consumed as u64) << 20);
            let (loss, _) = sequence_loss(model_ref, lora.as_deref(), seq, Some(dropout_seed))?;
            let grads = loss.backward()?;
            for (i, (name, var)) in vars.iter().enumerate() {
                let Some(g) = grads.get(var.as_tensor()) else {
                    return Err(Error::BadInput(format!("no gradient reached `{name}`")));
                };
                sums[i] = Some(match sums[i].take() {
                    Some(s) => (s + g)?,
                    None => g.clone(),
                });
            }
            loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            // Throughput counts every position the pass processed, not only the targets.
            state.tokens += seq.ids.len() - 1;
            state.consumed += 1;
            micro += 1;
        }
        if micro == 0 {
            break;
        }
        let mut grads: Vec<Tensor> = sums
            .into_iter()
            .map(|g| {
                g.map(|g| g / micro as f64)
                    .unwrap_or_else(|| Err(candle_core::Error::Msg("missing gradient".into())))
            })
            .collect::<Result<_, _>>()?;
        let mut norm_sq = 0.0;
        for g in &grads {
            norm_sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        let grad_norm = norm_sq.sqrt();
        if cfg.max_grad_norm > 0.0 && grad_norm > cfg.max_grad_norm {
            let k = cfg.max_grad_norm / grad_norm;
            grads = grads.into_iter().map(|g| g * k).collect::<Result<_, _>>()?;
        }
        state.step += 1;
        let lr = cfg.lr_at(state.step, total);
        opt.update(&vars, &grads, lr)?;
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let go_on = on_event(&Event::Step {
            step: state.step,
            total,
            epoch: state.consumed.saturating_sub(1) / data.len(),
            loss: loss_sum / micro as f64,
            lr,
            grad_norm,
            tokens_per_s: (state.tokens - run_tokens_at_start) as f64 / elapsed,
        });
        let last = state.step >= total;
        if !eval.is_empty() && (state.step.is_multiple_of(cfg.eval_every.max(1)) || last) {
            let (loss, ppl) = evaluate(model_ref, lora.as_deref(), eval)?;
            on_event(&Event::Eval {
                step: state.step,
                loss,
                perplexity: ppl,
            });
            if state.best.is_none_or(|(_, b)| loss < b) {
                state.best = Some((state.step, loss));
                state.bad_evals = 0;
                best_weights = Some(
                    vars.iter()
                        .map(|(_, v)| v.as_tensor().detach().copy())
                        .collect::<Result<_, _>>()?,
                );
            } else {
                state.bad_evals += 1;
                if cfg.patience.is_some_and(|p| state.bad_evals >= p) {
                    stopped_early = true;
                }
            }
        }
        if let Some(dir) = checkpoints
            && (state.step.is_multiple_of(cfg.checkpoint_every.max(1)) || last || stopped_early)
        {
            save_checkpoint(dir, &vars, &opt, &state, best_weights.as_ref())?;
            on_event(&Event::Checkpoint { step: state.step });
        }
        if !go_on {
            cancelled = true;
            break;
        }
        if stopped_early {
            break;
        }
    }
    // Early stopping (or a later, worse evaluation) keeps the best weights seen.
    if let (Some(best), Some(_)) = (&best_weights, state.best) {
        for ((_, v), w) in vars.iter().zip(best) {
            v.set(w)?;
        }
    }
    match lora {
        Some(l) => l.freeze(),
        None => model.freeze(),
    }
    Ok(Outcome {
        steps: state.step,
        total_steps: total,
        resumed_from,
        best_eval: state.best,
        stopped_early,
        cancelled,
        tokens: state.tokens,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn save_checkpoint(
    dir: &Path,
    vars: &[(String, Var)],
    opt: &AdamW,
    state: &State,
    best: Option<&Vec<Tensor>>,
) -> Result<()> {
    let tmp = dir.join(format!("{CKPT}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let weights: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    candle_core::safetensors::save(&weights, tmp.join("weights.safetensors"))?;
    let mut moments = HashMap::new();
    for (i, (n, _)) in vars.iter().enumerate() {
        moments.insert(format!("m.{n}"), opt.m[i].clone());
        moments.insert(format!("v.{n}"), opt.v[i].clone());
    }
    for (i, (n, _)) in vars.iter().enumerate() {
        if let Some(b) = best.and_then(|b| b.get(i)) {
            moments.insert(format!("best.{n}"), b.clone());
        }
    }
    candle_core::safetensors::save(&moments, tmp.join("optimizer.safetensors"))?;
    let meta = json!({"state": state, "optimizer_step": opt.step});
    std::fs::write(tmp.join("state.json"), meta.to_string())?;
    // Swap the new checkpoint in: the old one is kept until the new one is in place.
    let cur = dir.join(CKPT);
    let old = dir.join(format!("{CKPT}.old"));
    let _ = std::fs::remove_dir_all(&old);
    if cur.exists() {
        std::fs::rename(&cur, &old)?;
    }
    std::fs::rename(&tmp, &cur)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The run's state and its best weights so far, from the last checkpoint in `dir`.
fn load_checkpoint(
    dir: &Path,
    vars: &[(String, Var)],
    opt: &mut AdamW,
) -> Result<Option<(State, Option<Vec<Tensor>>)>> {
    let cur = dir.join(CKPT);
    let path = if cur.join("state.json").is_file() {
        cur
    } else if dir.join(format!("{CKPT}.old")).join("state.json").is_file() {
        dir.join(format!("{CKPT}.old"))
    } else {
        return Ok(None);
    };
    let meta: serde_json::Value = crate::decoder::read_json(&path.join("state.json"))?;
    let state: State = serde_json::from_value(meta["state"].clone())
        .map_err(|e| Error::BadInput(format!("{}: {e}", path.display())))?;
    let device = vars
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    let weights = candle_core::safetensors::load(path.join("weights.safetensors"), &device)?;
    let moments = candle_core::safetensors::load(path.join("optimizer.safetensors"), &device)?;
    for (i, (n, v)) in vars.iter().enumerate() {
        let get = |map: &HashMap<String, Tensor>, key: &str| -> Result<Tensor> {
            let t = map.get(key).ok_or_else(|| {
                Error::BadInput(format!(
                    "checkpoint {} lacks `{key}`: it belongs to another run",
                    path.display()
                ))
            })?;
            if t.dims() != v.dims() {
                return Err(Error::BadInput(format!(
                    "checkpoint tensor `{key}` has shape {:?}, the run needs {:?}",
                    t.dims(),
                    v.dims()
                )));
            }
            Ok(t.to_dtype(v.dtype())?)
        };
        v.set(&get(&weights, n)?)?;
        opt.m[i] = get(&moments, &format!("m.{n}"))?;
        opt.v[i] = get(&moments, &format!("v.{n}"))?;
    }
    opt.step = meta["optimizer_step"].as_u64().unwrap_or(state.step as u64) as usize;
    let best: Option<Vec<Tensor>> = vars
        .iter()
        .map(|(n, _)| moments.get(&format!("best.{n}")).cloned())
        .collect();
    Ok(Some((state, best)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let c = TrainConfig {
            lr: 1e-3,
            warmup_steps: 10,
            ..TrainConfig::default()
        };
        assert!((c.lr_at(5, 110) - 5e-4).abs() < 1e-12);
        assert!((c.lr_at(10, 110) - 1e-3).abs() < 1e-12);
        assert!(
            (c.lr_at(60, 110) - 5e-4).abs() < 1e-12,
            "half way down the cosine"
        );
        assert!(c.lr_at(110, 110).abs() < 1e-12);
    }
}
