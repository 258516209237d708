//! The LLaMA-architecture decoder (RoPE, RMSNorm, SwiGLU, grouped-query attention) as plain
//! tensors in the Hugging Face layout, so the same weights serve generation, LoRA fine-tuning
//! and full training. Weights come from a GGUF (dequantised; llama.cpp's interleaved q/k rows
//! are put back in Hugging Face order) or from `model.safetensors` + `config.json`.
//!
//! One forward pass serves every use: with a KV cache for decoding, without one for training.
//! Training passes (`train = true`) use candle's differentiable composite ops (its fused RMSNorm,
//! softmax and RoPE kernels have no backward) and apply the LoRA adapters' dropout.

use crate::lora::Lora;
use crate::{Error, Result};
use base::rng::Rng;
use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::Linear;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// The seven linear modules of a block, in Hugging Face's names (PEFT's `target_modules`).
pub const MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Where a module lives inside a block (`self_attn` or `mlp`).
pub fn module_path(m: usize) -> &'static str {
    if m < 4 { "self_attn" } else { "mlp" }
}

/// Hyper-parameters of a LLaMA-architecture model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub context: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    pub vocab: usize,
    pub tie_embeddings: bool,
    /// Qwen2 puts biases on q, k and v.
    pub qkv_bias: bool,
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// `(out, in)` of module `m` (an index into [`MODULES`]).
    pub fn module_shape(&self, m: usize) -> (usize, usize) {
        let hd = self.head_dim();
        match m {
            0 => (self.heads * hd, self.hidden),
            1 | 2 => (self.kv_heads * hd, self.hidden),
            3 => (self.hidden, self.heads * hd),
            4 | 5 => (self.intermediate, self.hidden),
            _ => (self.hidden, self.intermediate),
        }
    }

    /// Reads a Hugging Face `config.json` (`llama`, `mistral`, `qwen2` model types).
    pub fn from_hf(v: &Value) -> Result<LlamaConfig> {
        let bad = |why: String| Error::BadInput(format!("config.json: {why}"));
        let kind = v["model_type"].as_str().unwrap_or("llama");
        if !["llama", "mistral", "qwen2"].contains(&kind) {
            return Err(bad(format!(
                "model_type `{kind}` is not a LLaMA-architecture model (llama, mistral, qwen2)"
            )));
        }
        let n = |k: &str| -> Result<usize> {
            v[k].as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("`{k}` is missing or not a whole number")))
        };
        let heads = n("num_attention_heads")?;
        // transformers 5 nests the RoPE settings under `rope_parameters`; 4 had `rope_theta`
        // and `rope_scaling` at the top.
        let rope = v.get("rope_parameters").unwrap_or(v);
        let rope_kind = rope["rope_type"]
            .as_str()
            .or_else(|| v["rope_scaling"]["rope_type"].as_str())
            .or_else(|| v["rope_scaling"]["type"].as_str())
            .unwrap_or("default");
        if rope_kind != "default" {
            return Err(bad(format!(
                "RoPE scaling `{rope_kind}` is not supported (plain RoPE only)"
            )));
        }
        let c = LlamaConfig {
            hidden: n("hidden_size")?,
            intermediate: n("intermediate_size")?,
            layers: n("num_hidden_layers")?,
            heads,
            kv_heads: v["num_key_value_heads"]
                .as_u64()
                .map(|x| x as usize)
                .unwrap_or(heads),
            context: n("max_position_embeddings")?,
            rms_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            rope_base: rope["rope_theta"]
                .as_f64()
                .or_else(|| v["rope_theta"].as_f64())
                .unwrap_or(10_000.0) as f32,
            vocab: n("vocab_size")?,
            tie_embeddings: v["tie_word_embeddings"].as_bool().unwrap_or(false),
            qkv_bias: kind == "qwen2",
        };
        c.validate()?;
        if let Some(hd) = v["head_dim"].as_u64()
            && hd as usize != c.head_dim()
        {
            return Err(bad(format!(
                "head_dim {hd} differs from hidden_size / num_attention_heads = {}",
                c.head_dim()
            )));
        }
        Ok(c)
    }

    /// The `config.json` Hugging Face tools read for this model.
    pub fn to_hf(&self) -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": if self.qkv_bias { "qwen2" } else { "llama" },
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "max_position_embeddings": self.context,
            "rms_norm_eps": self.rms_eps,
            "rope_theta": self.rope_base,
            "rope_parameters": {"rope_theta": self.rope_base, "rope_type": "default"},
            "head_dim": self.head_dim(),
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tie_embeddings,
            "hidden_act": "silu",
            "attention_bias": self.qkv_bias,
            "torch_dtype": "float32",
        })
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::BadInput(format!("model config: {why}")));
        if self.heads == 0 || self.kv_heads == 0 || self.layers == 0 || self.vocab == 0 {
            return bad("heads, key-value heads, layers and vocabulary must be positive");
        }
        if !self.hidden.is_multiple_of(self.heads) || !self.head_dim().is_multiple_of(2) {
            return bad("hidden size must split into heads of an even size");
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return bad("attention heads must be a multiple of key-value heads");
        }
        Ok(())
    }
}

/// One transformer block: its two norms and its seven projections ([`MODULES`] order).
#[derive(Clone)]
pub struct Block {
    pub attn_norm: Tensor,
    pub ffn_norm: Tensor,
    pub w: [Tensor; 7],
    /// Biases of q, k, v (Qwen2 only).
    pub bias: [Option<Tensor>; 3],
}

/// Per-layer key/value tensors of the tokens decoded so far.
pub type KvCache = Vec<(Tensor, Tensor)>;

#[derive(Clone)]
pub struct Decoder {
    pub config: LlamaConfig,
    pub embed: Tensor,
    pub blocks: Vec<Block>,
    pub norm: Tensor,
    pub head: Tensor,
    cos: Tensor,
    sin: Tensor,
    pub device: Device,
}

/// Hugging Face's name of a block tensor.
pub fn hf_name(layer: usize, m: usize) -> String {
    format!(
        "model.layers.{layer}.{}.{}.weight",
        module_path(m),
        MODULES[m]
    )
}

impl Decoder {
    /// Builds the model from tensors named as in a Hugging Face checkpoint, checking every shape
    /// against the config (the error names the tensor).
    pub fn from_named(
        config: LlamaConfig,
        mut named: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<Decoder> {
        config.validate()?;
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = named
                .remove(name)
                .ok_or_else(|| Error::BadInput(format!("the checkpoint has no tensor `{name}`")))?;
            if t.dims() != shape {
                return Err(Error::BadInput(format!(
                    "tensor `{name}` has shape {:?} but the config implies {shape:?}",
                    t.dims()
                )));
            }
            Ok(t.to_dtype(dtype)?.to_device(device)?)
        };
        let c = &config;
        let embed = take("model.embed_tokens.weight", &[c.vocab, c.hidden])?;
        let mut blocks = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let p = format!("model.layers.{i}");
            let mut w = Vec::with_capacity(7);
            for m in 0..7 {
                let (o, n) = c.module_shape(m);
                w.push(take(&hf_name(i, m), &[o, n])?);
            }
            let mut bias = [None, None, None];
            if c.qkv_bias {
                for (m, b) in bias.iter_mut().enumerate() {
                    let name = format!("{p}.self_attn.{}.bias", MODULES[m]);
                    *b = Some(take(&name, &[c.module_shape(m).0])?);
                }
            }
            blocks.push(Block {
                attn_norm: take(&format!("{p}.input_layernorm.weight"), &[c.hidden])?,
                ffn_norm: take(&format!("{p}.post_attention_layernorm.weight"), &[c.hidden])?,
                w: w.try_into()
                    .map_err(|_| Error::BadInput("seven projections".into()))?,
                bias,
            });
        }
        let norm = take("model.norm.weight", &[c.hidden])?;
        let head = match take("lm_head.weight", &[c.vocab, c.hidden]) {
            Ok(h) => h,
            Err(_) if c.tie_embeddings || !named.contains_key("lm_head.weight") => embed.clone(),
            Err(e) => return Err(e),
        };
        let hd = c.head_dim();
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / c.rope_base.powf(2.0 * i as f32 / hd as f32))
            .collect();
        let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
        let pos = Tensor::arange(0u32, c.context as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((c.context, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Decoder {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            embed,
            blocks,
            norm,
            head,
            device: device.clone(),
            config,
        })
    }

    /// Every tensor under its Hugging Face name (the head only when it is not tied).
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.clone())];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), b.attn_norm.clone()));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                b.ffn_norm.clone(),
            ));
            for m in 0..7 {
                out.push((hf_name(i, m), b.w[m].clone()));
            }
            for (m, bias) in b.bias.iter().enumerate() {
                if let Some(bias) = bias {
                    out.push((format!("{p}.self_attn.{}.bias", MODULES[m]), bias.clone()));
                }
            }
        }
        out.push(("model.norm.weight".into(), self.norm.clone()));
        if !self.config.tie_embeddings {
            out.push(("lm_head.weight".into(), self.head.clone()));
        }
        out
    }

    /// A model of `config` with small random weights (tests, gradient checks).
    pub fn random(config: LlamaConfig, seed: u64, dtype: DType) -> Result<Decoder> {
        let mut rng = Rng::new(seed);
        let device = Device::Cpu;
        let mut named = HashMap::new();
        let mut rand = |shape: &[usize], centre: f64, spread: f64| -> Result<Tensor> {
            let n: usize = shape.iter().product();
            let v: Vec<f64> = (0..n)
                .map(|_| centre + spread * (rng.next_f64() * 2.0 - 1.0))
                .collect();
            Ok(Tensor::from_vec(v, shape, &device)?.to_dtype(dtype)?)
        };
        let c = &config;
        named.insert(
            "model.embed_tokens.weight".to_string(),
            rand(&[c.vocab, c.hidden], 0.0, 0.5)?,
        );
        for i in 0..c.layers {
            let p = format!("model.layers.{i}");
            for (m, module) in MODULES.iter().enumerate() {
                let (o, n) = c.module_shape(m);
                named.insert(hf_name(i, m), rand(&[o, n], 0.0, 1.0 / (n as f64).sqrt())?);
                if c.qkv_bias && m < 3 {
                    named.insert(
                        format!("{p}.self_attn.{module}.bias"),
                        rand(&[o], 0.0, 0.1)?,
                    );
                }
            }
            named.insert(
                format!("{p}.input_layernorm.weight"),
                rand(&[c.hidden], 1.0, 0.2)?,
            );
            named.insert(
                format!("{p}.post_attention_layernorm.weight"),
                rand(&[c.hidden], 1.0, 0.2)?,
            );
        }
        named.insert("model.norm.weight".into(), rand(&[c.hidden], 1.0, 0.2)?);
        if !c.tie_embeddings {
            named.insert(
                "lm_head.weight".into(),
                rand(&[c.vocab, c.hidden], 0.0, 0.5)?,
            );
        }
        Decoder::from_named(config, named, dtype, &device)
    }

    /// Reads `model.safetensors` (or the shards `model.safetensors.index.json` lists) and
    /// `config.json` from a Hugging Face model directory.
    pub fn load_hf(dir: &Path, dtype: DType, device: &Device) -> Result<Decoder> {
        let config: Value = read_json(&dir.join("config.json"))?;
        let config = LlamaConfig::from_hf(&config)?;
        let files: Vec<std::path::PathBuf> = if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else if dir.join("model.safetensors.index.json").is_file() {
            let index = read_json(&dir.join("model.safetensors.index.json"))?;
            let mut shards: Vec<String> = index["weight_map"]
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            shards.iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(Error::NotFound(format!(
                "{}: no model.safetensors or model.safetensors.index.json",
                dir.display()
            )));
        };
        let mut named = HashMap::new();
        for f in files {
            let part = candle_core::safetensors::load(&f, device).map_err(|e| Error::BadModel {
                dir: f.display().to_string(),
                why: e.to_string(),
            })?;
            named.extend(part);
        }
        Decoder::from_named(config, named, dtype, device)
    }

    /// Writes `model.safetensors` + `config.json` in the Hugging Face layout.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let named: HashMap<String, Tensor> = self
            .named()
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_dtype(DType::F32)?)))
            .collect::<Result<_>>()?;
        let tmp = dir.join("model.safetensors.tmp");
        candle_core::safetensors::save(&named, &tmp)?;
        std::fs::rename(&tmp, dir.join("model.safetensors"))?;
        write_atomic(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&self.config.to_hf())
                .unwrap_or_default()
                .as_bytes(),
        )?;
        Ok(())
    }

    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// Parameters of the base model.
    pub fn parameter_count(&self) -> usize {
        self.named().iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// Turns every weight into a trainable variable (full training), returned under its Hugging
    /// Face name. A tied head stays tied to the embedding.
    pub fn trainable(&mut self) -> Result<Vec<(String, Var)>> {
        let mut out = Vec::new();
        let mut var = |name: String, t: &mut Tensor| -> Result<()> {
            let v = Var::from_tensor(t)?;
            *t = v.as_tensor().clone();
            out.push((name, v));
            Ok(())
        };
        var("model.embed_tokens.weight".into(), &mut self.embed)?;
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            var(format!("{p}.input_layernorm.weight"), &mut b.attn_norm)?;
            var(
                format!("{p}.post_attention_layernorm.weight"),
                &mut b.ffn_norm,
            )?;
            for m in 0..7 {
                var(hf_name(i, m), &mut b.w[m])?;
            }
            for (m, bias) in b.bias.iter_mut().enumerate() {
                if let Some(bias) = bias {
                    var(format!("{p}.self_attn.{}.bias", MODULES[m]), bias)?;
                }
            }
        }
        var("model.norm.weight".into(), &mut self.norm)?;
        if self.config.tie_embeddings {
            self.head = self.embed.clone();
        } else {
            var("lm_head.weight".into(), &mut self.head)?;
        }
        Ok(out)
    }

    /// Detaches every weight from training.
    pub fn freeze(&mut self) {
        let tied = self.config.tie_embeddings;
        self.embed = self.embed.detach();
        for b in &mut self.blocks {
            b.attn_norm = b.attn_norm.detach();
            b.ffn_norm = b.ffn_norm.detach();
            for w in &mut b.w {
                *w = w.detach();
            }
            for x in b.bias.iter_mut().flatten() {
                *x = x.detach();
            }
        }
        self.norm = self.norm.detach();
        self.head = if tied {
            self.embed.clone()
        } else {
            self.head.detach()
        };
    }

    /// A copy whose projections include `lora`'s update (`W + scale·B·A`); `sign` −1 takes it out
    /// again (unmerge).
    pub fn merged(&self, lora: &Lora, sign: f64) -> Result<Decoder> {
        lora.check_base(&self.config)?;
        let mut out = self.clone();
        for (i, b) in out.blocks.iter_mut().enumerate() {
            for m in 0..7 {
                if let Some(delta) = lora.delta_weight(i, m)? {
                    b.w[m] = (&b.w[m] + (delta.to_dtype(b.w[m].dtype())? * sign)?)?;
                }
            }
        }
        Ok(out)
    }

    /// Final hidden states `(batch, t, hidden)` of `ids` `(batch, t)` placed at `pos`.
    /// `cache` (one entry per layer) makes it a decoding step; `train` makes it differentiable
    /// and turns on adapter dropout (seeded by `dropout_seed`).
    pub fn hidden(
        &self,
        ids: &Tensor,
        pos: usize,
        mut cache: Option<&mut KvCache>,
        lora: Option<&Lora>,
        train: Option<u64>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t) = ids.dims2()?;
        if pos + t > c.context {
            return Err(Error::ContextLength {
                limit: c.context,
                requested: pos + t,
            });
        }
        let hd = c.head_dim();
        let rep = c.heads / c.kv_heads;
        let dtype = self.dtype();
        let mut x = self
            .embed
            .embedding(&ids.flatten_all()?)?
            .reshape((b, t, c.hidden))?;
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let mask = if t > 1 {
            let total = pos + t;
            let m: Vec<f32> = (0..t)
                .flat_map(|i| {
                    (0..total).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(m, (t, total), &self.device)?.to_dtype(dtype)?)
        } else {
            None
        };
        // candle's fused kernels have no backward and no f64 (gradient checks run in f64).
        let differentiable = train.is_some() || dtype == DType::F64;
        let eps = c.rms_eps as f32;
        let norm = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            Ok(if differentiable {
                candle_nn::ops::rms_norm_slow(x, w, eps)?
            } else {
                candle_nn::ops::rms_norm(x, w, eps)?
            })
        };
        let rope = |x: &Tensor| -> Result<Tensor> {
            Ok(if differentiable {
                candle_nn::rotary_emb::rope_slow(x, &cos, &sin)?
            } else {
                candle_nn::rotary_emb::rope(x, &cos, &sin)?
            })
        };
        let mut dropout_rng = train.map(Rng::new);
        let scale = 1.0 / (hd as f64).sqrt();
        for (i, blk) in self.blocks.iter().enumerate() {
            let mut proj = |m: usize, x: &Tensor| -> Result<Tensor> {
                let bias = if m < 3 { blk.bias[m].clone() } else { None };
                let y = Linear::new(blk.w[m].clone(), bias).forward(x)?;
                match lora.map(|l| l.forward(i, m, x, dropout_rng.as_mut())) {
                    Some(Ok(Some(d))) => Ok((y + d)?),
                    Some(Err(e)) => Err(e),
                    _ => Ok(y),
                }
            };
            let h = norm(&x, &blk.attn_norm)?;
            let split = |y: Tensor, n: usize| -> Result<Tensor> {
                Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let q = rope(&split(proj(0, &h)?, c.heads)?)?;
            let k = rope(&split(proj(1, &h)?, c.kv_heads)?)?;
            let v = split(proj(2, &h)?, c.kv_heads)?;
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => {
                    let (kc, vc) = &mut cache[i];
                    let (k, v) = if pos == 0 {
                        (k, v)
                    } else {
                        (Tensor::cat(&[&*kc, &k], 2)?, Tensor::cat(&[&*vc, &v], 2)?)
                    };
                    *kc = k.clone();
                    *vc = v.clone();
                    (k, v)
                }
                None => (k, v),
            };
            let total = k.dim(2)?;
            let expand = |x: Tensor| -> Result<Tensor> {
                if rep == 1 {
                    return Ok(x);
                }
                Ok(x.unsqueeze(2)?
                    .expand((b, c.kv_heads, rep, total, hd))?
                    .reshape((b, c.heads, total, hd))?)
            };
            let k = expand(k)?;
            let v = expand(v)?;
            let mut att = (q.matmul(&k.t()?)? * scale)?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = if differentiable {
                candle_nn::ops::softmax(&att, D::Minus1)?
            } else {
                candle_nn::ops::softmax_last_dim(&att)?
            };
            let y = att
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, t, c.heads * hd))?;
            x = (x + proj(3, &y)?)?;
            let h = norm(&x, &blk.ffn_norm)?;
            let gated = (candle_nn::ops::silu(&proj(4, &h)?)? * proj(5, &h)?)?;
            x = (x + proj(6, &gated)?)?;
        }
        norm(&x, &self.norm)
    }

    /// Logits over the vocabulary for hidden states `(…, hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(Linear::new(self.head.clone(), None).forward(hidden)?)
    }

    /// An empty KV cache.
    pub fn new_cache(&self) -> Result<KvCache> {
        (0..self.config.layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(1, self.dtype(), &self.device)?,
                    Tensor::zeros(1, self.dtype(), &self.device)?,
                ))
            })
            .collect()
    }
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::NotFound(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::BadInput(format!("{} is not valid JSON: {e}", path.display())))
}

/// llama.cpp stores q and k rows interleaved for its RoPE; this puts them back in Hugging Face
/// order (the inverse of `convert_hf_to_gguf.py`'s `permute`).
pub(crate) fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    Ok(w.reshape((heads, out / heads / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader sees the old file
/// or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
