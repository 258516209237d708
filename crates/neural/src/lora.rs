//! LoRA adapters (Hu et al., 2021) on the decoder's linear modules: `y = W·x + s·B·(A·x)` with
//! `A` `(r, in)`, `B` `(out, r)` and `s = alpha / r` (or `alpha / √r` with rsLoRA). The base stays
//! frozen; only `A` and `B` train. `A` starts uniform in ±1/√in (PEFT's Kaiming-uniform with
//! a = √5) and `B` at zero, so a fresh adapter changes nothing.
//!
//! Adapters are saved in PEFT's layout — `adapter_config.json` + `adapter_model.safetensors` with
//! keys `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` — so Python tools load
//! ours and we load theirs. A tensor that does not fit the base model is an error naming it.

use crate::decoder::{Decoder, LlamaConfig, MODULES, module_path, read_json, write_atomic};
use crate::{Error, Result};
use base::rng::Rng;
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::Linear;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f32,
    /// Indices into [`MODULES`].
    pub targets: Vec<usize>,
    pub rslora: bool,
}

impl LoraConfig {
    /// `targets` is `all-linear` or module names separated by commas (`q_proj,v_proj`).
    pub fn new(rank: usize, alpha: f64, dropout: f32, targets: &str, rslora: bool) -> Result<Self> {
        if rank == 0 {
            return Err(Error::BadInput("LoRA rank must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::BadInput(format!(
                "LoRA dropout must be in [0, 1), got {dropout}"
            )));
        }
        let names: Vec<&str> = targets
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Ok(LoraConfig {
            rank,
            alpha,
            dropout,
            targets: parse_targets(&names)?,
            rslora,
        })
    }

    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    pub fn target_names(&self) -> Vec<&'static str> {
        self.targets.iter().map(|&m| MODULES[m]).collect()
    }
}

fn parse_targets(names: &[&str]) -> Result<Vec<usize>> {
    if names.is_empty() {
        return Err(Error::BadInput("no LoRA target modules given".into()));
    }
    if names == ["all-linear"] {
        return Ok((0..7).collect());
    }
    let mut out: Vec<usize> = names
        .iter()
        .map(|n| {
            MODULES.iter().position(|m| m == n).ok_or_else(|| {
                Error::BadInput(format!(
                    "unknown LoRA target module `{n}`; the modules are {} (or all-linear)",
                    MODULES.join(", ")
                ))
            })
        })
        .collect::<Result<_>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `(A, B)` of one module.
type Pair = (Tensor, Tensor);

#[derive(Clone)]
pub struct Lora {
    pub config: LoraConfig,
    /// The base model this adapter was trained on (PEFT's `base_model_name_or_path`).
    pub base_model: String,
    pairs: Vec<[Option<Pair>; 7]>,
}

/// PEFT's key for one adapter matrix (`ab` is `'A'` or `'B'`).
pub fn peft_key(layer: usize, m: usize, ab: char) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{ab}.weight",
        module_path(m),
        MODULES[m]
    )
}

impl Lora {
    /// A fresh adapter for a base of shape `base`: `A` random, `B` zero.
    pub fn init(
        config: LoraConfig,
        base: &LlamaConfig,
        base_model: &str,
        seed: u64,
        device: &Device,
    ) -> Result<Lora> {
        let mut rng = Rng::new(seed);
        let mut pairs = Vec::with_capacity(base.layers);
        for _ in 0..base.layers {
            let mut layer: [Option<Pair>; 7] = Default::default();
            for &m in &config.targets {
                let (out, inp) = base.module_shape(m);
                let bound = 1.0 / (inp as f64).sqrt();
                let a: Vec<f32> = (0..config.rank * inp)
                    .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                layer[m] = Some((
                    Tensor::from_vec(a, (config.rank, inp), device)?,
                    Tensor::zeros((out, config.rank), DType::F32, device)?,
                ));
            }
            pairs.push(layer);
        }
        Ok(Lora {
            config,
            base_model: base_model.to_string(),
            pairs,
        })
    }

    /// A fresh adapter for `model`.
    pub fn init_for(
        config: LoraConfig,
        model: &Decoder,
        base_model: &str,
        seed: u64,
    ) -> Result<Lora> {
        let mut l = Lora::init(config, &model.config, base_model, seed, &model.device)?;
        l.to_dtype(model.dtype())?;
        Ok(l)
    }

    /// [`Lora::load_peft`] for `model` (its shape, dtype and device).
    pub fn load_for(dir: &Path, model: &Decoder) -> Result<Lora> {
        Lora::load_peft(dir, &model.config, model.dtype(), &model.device)
    }

    /// Fills every `B` with uniform noise in ±`spread` (gradient checks need a non-zero `B`).
    pub fn randomize_b(&mut self, seed: u64, spread: f64) -> Result<()> {
        let mut rng = Rng::new(seed);
        for (a, b) in self.pairs.iter_mut().flatten().flatten() {
            let n = b.elem_count();
            let v: Vec<f64> = (0..n)
                .map(|_| (rng.next_f64() * 2.0 - 1.0) * spread)
                .collect();
            *b = Tensor::from_vec(v, b.dims(), b.device())?.to_dtype(a.dtype())?;
        }
        Ok(())
    }

    /// Casts every matrix to `dtype` (the base model's).
    pub fn to_dtype(&mut self, dtype: DType) -> Result<()> {
        for (a, b) in self.pairs.iter_mut().flatten().flatten() {
            *a = a.to_dtype(dtype)?;
            *b = b.to_dtype(dtype)?;
        }
        Ok(())
    }

    /// Turns the matrices into trainable variables, returned under their PEFT keys; the
    /// adapter's forward pass then reads the variables, so optimiser updates show at once.
    pub fn trainable(&mut self) -> Result<Vec<(String, Var)>> {
        let mut out = Vec::new();
        for (i, layer) in self.pairs.iter_mut().enumerate() {
            for (m, pair) in layer.iter_mut().enumerate() {
                if let Some((a, b)) = pair {
                    let va = Var::from_tensor(a)?;
                    let vb = Var::from_tensor(b)?;
                    *a = va.as_tensor().clone();
                    *b = vb.as_tensor().clone();
                    out.push((peft_key(i, m, 'A'), va));
                    out.push((peft_key(i, m, 'B'), vb));
                }
            }
        }
        Ok(out)
    }

    /// Detaches the matrices from training (inference builds no gradient graph).
    pub fn freeze(&mut self) {
        for (a, b) in self.pairs.iter_mut().flatten().flatten() {
            *a = a.detach();
            *b = b.detach();
        }
    }

    pub fn parameter_count(&self) -> usize {
        self.pairs
            .iter()
            .flatten()
            .flatten()
            .map(|(a, b)| a.elem_count() + b.elem_count())
            .sum()
    }

    /// The adapter's contribution to module `m` of `layer` for input `x`, if it adapts it.
    pub fn forward(
        &self,
        layer: usize,
        m: usize,
        x: &Tensor,
        dropout: Option<&mut Rng>,
    ) -> Result<Option<Tensor>> {
        let Some((a, b)) = self.pairs.get(layer).and_then(|l| l[m].as_ref()) else {
            return Ok(None);
        };
        let p = self.config.dropout;
        let x = match dropout {
            Some(rng) if p > 0.0 => {
                let keep = 1.0 / (1.0 - p as f64);
                let mask: Vec<f32> = (0..x.elem_count())
                    .map(|_| {
                        if rng.next_f64() < p as f64 {
                            0.0
                        } else {
                            keep as f32
                        }
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?;
                (x * mask)?
            }
            _ => x.clone(),
        };
        let low = Linear::new(a.clone(), None).forward(&x)?;
        let up = Linear::new(b.clone(), None).forward(&low)?;
        Ok(Some((up * self.config.scale())?))
    }

    /// `s·B·A` for module `m` of `layer` (what merging adds to the base weight).
    pub fn delta_weight(&self, layer: usize, m: usize) -> Result<Option<Tensor>> {
        match self.pairs.get(layer).and_then(|l| l[m].as_ref()) {
            Some((a, b)) => Ok(Some((b.matmul(a)? * self.config.scale())?)),
            None => Ok(None),
        }
    }

    /// Checks the adapter fits a base of shape `base` (layers and every matrix's shape).
    pub fn check_base(&self, base: &LlamaConfig) -> Result<()> {
        for (i, layer) in self.pairs.iter().enumerate() {
            for (m, pair) in layer.iter().enumerate() {
                if let Some((a, b)) = pair {
                    check_pair(base, i, m, a, b)?;
                }
            }
        }
        Ok(())
    }

    /// Every matrix under its PEFT key.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, layer) in self.pairs.iter().enumerate() {
            for (m, pair) in layer.iter().enumerate() {
                if let Some((a, b)) = pair {
                    out.insert(peft_key(i, m, 'A'), a.to_dtype(DType::F32)?);
                    out.insert(peft_key(i, m, 'B'), b.to_dtype(DType::F32)?);
                }
            }
        }
        Ok(out)
    }

    /// PEFT's `adapter_config.json` for this adapter.
    pub fn peft_config(&self) -> Value {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base_model,
            "r": self.config.rank,
            "lora_alpha": self.config.alpha,
            "lora_dropout": self.config.dropout,
            "target_modules": self.config.target_names(),
            "use_rslora": self.config.rslora,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "use_dora": false,
        })
    }

    /// Writes the adapter in PEFT's layout: the weights first, the config last (a directory
    /// with a config has complete weights).
    pub fn save_peft(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{ADAPTER_WEIGHTS}.tmp"));
        candle_core::safetensors::save(&self.tensors()?, &tmp)?;
        std::fs::rename(&tmp, dir.join(ADAPTER_WEIGHTS))?;
        let config = serde_json::to_vec_pretty(&self.peft_config())
            .map_err(|e| Error::BadInput(e.to_string()))?;
        write_atomic(&dir.join(ADAPTER_CONFIG), &config)
    }

    /// Reads a PEFT LoRA adapter for a base of shape `base`.
    pub fn load_peft(
        dir: &Path,
        base: &LlamaConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Lora> {
        let cfg = read_json(&dir.join(ADAPTER_CONFIG))?;
        let bad = |why: String| Error::BadInput(format!("{}: {why}", dir.display()));
        if cfg["peft_type"].as_str() != Some("LORA") {
            return Err(bad(format!("peft_type is {}, not LORA", cfg["peft_type"])));
        }
        if cfg["use_dora"].as_bool() == Some(true) {
            return Err(bad("DoRA adapters are not supported".into()));
        }
        for k in ["rank_pattern", "alpha_pattern"] {
            if cfg[k].as_object().is_some_and(|o| !o.is_empty()) {
                return Err(bad(format!("`{k}` (per-module ranks) is not supported")));
            }
        }
        if cfg["lora_bias"].as_bool() == Some(true) {
            return Err(bad("adapters with LoRA biases are not supported".into()));
        }
        if cfg["fan_in_fan_out"].as_bool() == Some(true) {
            return Err(bad(
                "fan_in_fan_out adapters (GPT-2 Conv1D) are not supported".into(),
            ));
        }
        let rank = cfg["r"]
            .as_u64()
            .ok_or_else(|| bad("`r` is missing".into()))? as usize;
        let targets: Vec<String> = match &cfg["target_modules"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => return Err(bad("`target_modules` is missing".into())),
        };
        let names: Vec<&str> = targets.iter().map(String::as_str).collect();
        let config = LoraConfig {
            rank,
            alpha: cfg["lora_alpha"].as_f64().unwrap_or(rank as f64),
            dropout: cfg["lora_dropout"].as_f64().unwrap_or(0.0) as f32,
            targets: parse_targets(&names).map_err(|e| bad(e.to_string()))?,
            rslora: cfg["use_rslora"].as_bool().unwrap_or(false),
        };
        let path = dir.join(ADAPTER_WEIGHTS);
        let tensors =
            candle_core::safetensors::load(&path, device).map_err(|e| Error::BadModel {
                dir: path.display().to_string(),
                why: e.to_string(),
            })?;
        let mut halves: HashMap<(usize, usize), (Option<Tensor>, Option<Tensor>)> = HashMap::new();
        for (key, t) in tensors {
            let (layer, m, ab) = parse_key(&key).ok_or_else(|| {
                bad(format!(
                    "tensor `{key}` is not a LoRA matrix of a decoder layer's linear module"
                ))
            })?;
            if layer >= base.layers {
                return Err(bad(format!(
                    "tensor `{key}` is for layer {layer} but the base model has {} layers: \
                     the adapter was trained for another base model",
                    base.layers
                )));
            }
            let t = t.to_dtype(dtype)?;
            let slot = halves.entry((layer, m)).or_default();
            if ab == 'A' {
                slot.0 = Some(t);
            } else {
                slot.1 = Some(t);
            }
        }
        let mut pairs: Vec<[Option<Pair>; 7]> = vec![Default::default(); base.layers];
        for ((layer, m), (a, b)) in halves {
            let (Some(a), Some(b)) = (a, b) else {
                return Err(bad(format!(
                    "layer {layer} {} has only one of lora_A and lora_B",
                    MODULES[m]
                )));
            };
            check_pair(base, layer, m, &a, &b)?;
            if a.dim(0)? != rank {
                return Err(bad(format!(
                    "tensor `{}` has rank {} but adapter_config.json says r = {rank}",
                    peft_key(layer, m, 'A'),
                    a.dim(0)?
                )));
            }
            pairs[layer][m] = Some((a, b));
        }
        if pairs.iter().all(|l| l.iter().all(Option::is_none)) {
            return Err(bad("the adapter holds no LoRA matrices".into()));
        }
        Ok(Lora {
            config,
            base_model: cfg["base_model_name_or_path"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            pairs,
        })
    }
}

fn check_pair(base: &LlamaConfig, layer: usize, m: usize, a: &Tensor, b: &Tensor) -> Result<()> {
    let (out, inp) = base.module_shape(m);
    let (ra, ia) = a.dims2()?;
    let (ob, rb) = b.dims2()?;
    if ia != inp || ob != out || ra != rb {
        return Err(Error::BadInput(format!(
            "adapter tensors `{}` {:?} and `{}` {:?} do not fit the base model's {} ({out} × {inp}): \
             the adapter was trained for another base model",
            peft_key(layer, m, 'A'),
            a.dims(),
            peft_key(layer, m, 'B'),
            b.dims(),
            MODULES[m],
        )));
    }
    Ok(())
}

/// `(layer, module, 'A'|'B')` of a PEFT key (with or without `base_model.model.`, with or
/// without an adapter name before `.weight`).
fn parse_key(key: &str) -> Option<(usize, usize, char)> {
    let rest = key.strip_prefix("base_model.model.").unwrap_or(key);
    let rest = rest.strip_prefix("model.layers.")?;
    let mut parts = rest.split('.');
    let layer: usize = parts.next()?.parse().ok()?;
    let path = parts.next()?;
    let module = parts.next()?;
    let m = MODULES.iter().position(|x| *x == module)?;
    if path != module_path(m) {
        return None;
    }
    let ab = match parts.next()? {
        "lora_A" => 'A',
        "lora_B" => 'B',
        _ => return None,
    };
    let tail: Vec<&str> = parts.collect();
    match tail.as_slice() {
        ["weight"] | [_, "weight"] => Some((layer, m, ab)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_keys_round_trip() {
        for m in 0..7 {
            for ab in ['A', 'B'] {
                assert_eq!(parse_key(&peft_key(12, m, ab)), Some((12, m, ab)));
            }
        }
        assert_eq!(
            parse_key("base_model.model.model.layers.3.mlp.up_proj.lora_B.default.weight"),
            Some((3, 5, 'B'))
        );
        assert_eq!(parse_key("base_model.model.lm_head.lora_A.weight"), None);
        assert_eq!(
            parse_key("base_model.model.model.layers.3.mlp.q_proj.lora_A.weight"),
            None,
            "q_proj lives under self_attn"
        );
    }

    #[test]
    fn targets_and_scaling() {
        let c = LoraConfig::new(8, 16.0, 0.05, "q_proj, v_proj", false).unwrap();
        assert_eq!(c.targets, vec![0, 2]);
        assert_eq!(c.scale(), 2.0);
        let c = LoraConfig::new(16, 16.0, 0.0, "all-linear", true).unwrap();
        assert_eq!(c.targets.len(), 7);
        assert_eq!(c.scale(), 4.0);
        let e = LoraConfig::new(8, 16.0, 0.0, "qproj", false).unwrap_err();
        assert!(
            e.to_string().contains("unknown LoRA target module `qproj`"),
            "{e}"
        );
        assert!(LoraConfig::new(0, 16.0, 0.0, "q_proj", false).is_err());
        assert!(LoraConfig::new(8, 16.0, 1.0, "q_proj", false).is_err());
    }
}
