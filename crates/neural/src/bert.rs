//! all-MiniLM-L6-v2: a 6-layer BERT encoder, mean pooling over the attention mask and L2
//! normalisation, exactly as sentence-transformers computes it (word-piece tokens padded to the
//! longest text of the batch, truncated at 256). Texts are sorted by length before batching so
//! a batch carries little padding.

use crate::{Embedder, Error, Result};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

#[derive(serde::Deserialize)]
struct Config {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    #[serde(default)]
    hidden_act: Option<String>,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

pub struct MiniLm {
    tokenizer: Tokenizer,
    /// Truncating at [`MAX_TOKENS`] without padding (batches are padded by length here).
    unpadded: Tokenizer,
    /// The same tokenizer without padding or truncation, for counting.
    counter: Tokenizer,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    device: Device,
    batch: usize,
}

/// Most tokens per text (sentence-transformers' `max_seq_length` for this model).
pub const MAX_TOKENS: usize = 256;

impl MiniLm {
    /// Loads the model from a directory holding `config.json`, `tokenizer.json` and
    /// `model.safetensors`.
    pub fn load(dir: &Path) -> Result<MiniLm> {
        let bad = |why: String| Error::BadModel {
            dir: dir.display().to_string(),
            why,
        };
        let config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)
            .map_err(|e| bad(format!("config.json: {e}")))?;
        if config.hidden_act.as_deref().is_some_and(|a| a != "gelu") {
            return Err(bad(format!(
                "unsupported activation {:?}",
                config.hidden_act
            )));
        }
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| bad(format!("tokenizer.json: {e}")))?;
        let mut unpadded = tokenizer.clone();
        unpadded.with_padding(None);
        unpadded
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| bad(format!("truncation: {e}")))?;
        let mut counter = tokenizer.clone();
        counter.with_padding(None);
        counter
            .with_truncation(None)
            .map_err(|e| bad(format!("truncation: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| bad(format!("truncation: {e}")))?;
        let device = Device::Cpu;
        // SAFETY: the weights file is memory-mapped read-only and not modified while loaded
        // (model directories are written once, by rename).
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[dir.join("model.safetensors")],
                DType::F32,
                &device,
            )?
        };
        let h = config.hidden_size;
        let emb = vb.pp("embeddings");
        let norm =
            |size: usize, vb: VarBuilder| candle_nn::layer_norm(size, config.layer_norm_eps, vb);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            layers.push(Layer {
                query: candle_nn::linear(h, h, l.pp("attention.self.query"))?,
                key: candle_nn::linear(h, h, l.pp("attention.self.key"))?,
                value: candle_nn::linear(h, h, l.pp("attention.self.value"))?,
                attn_out: candle_nn::linear(h, h, l.pp("attention.output.dense"))?,
                attn_norm: norm(h, l.pp("attention.output.LayerNorm"))?,
                inter: candle_nn::linear(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                out: candle_nn::linear(config.intermediate_size, h, l.pp("output.dense"))?,
                out_norm: norm(h, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(MiniLm {
            tokenizer,
            unpadded,
            counter,
            word: candle_nn::embedding(config.vocab_size, h, emb.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                config.max_position_embeddings,
                h,
                emb.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                config.type_vocab_size,
                h,
                emb.pp("token_type_embeddings"),
            )?,
            emb_norm: norm(h, emb.pp("LayerNorm"))?,
            layers,
            heads: config.num_attention_heads,
            hidden: h,
            device,
            batch: 32,
        })
    }

    /// Token ids of a text as the model sees them (with `[CLS]`/`[SEP]`, truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::BadInput(format!("tokenizing: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Number of tokens a text takes, without special tokens and without truncation.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let enc = self
            .counter
            .encode_fast(text, false)
            .map_err(|e| Error::BadInput(format!("tokenizing: {e}")))?;
        Ok(enc.get_ids().len())
    }

    /// Token ids of each text, truncated, without padding.
    fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .unpadded
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::BadInput(format!("tokenizing: {e}")))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// One batch of token-id sequences, padded here to the longest of the batch.
    fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let b = seqs.len();
        let l = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(b * l);
        let mut mask = Vec::with_capacity(b * l);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(0u32, l - s.len()));
            mask.extend(std::iter::repeat_n(1f32, s.len()));
            mask.extend(std::iter::repeat_n(0f32, l - s.len()));
        }
        let ids = Tensor::from_vec(ids, (b, l), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, l), &self.device)?;
        let positions = Tensor::arange(0u32, l as u32, &self.device)?;
        let types = Tensor::zeros((b, l), DType::U32, &self.device)?;
        let x = self
            .word
            .forward(&ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .add(&self.token_type.forward(&types)?)?;
        let mut x = self.emb_norm.forward(&x)?;
        // Padding keys get a large negative score before the softmax.
        let bias = ((mask.clone() - 1.0)? * 1e9)?.reshape((b, 1, 1, l))?;
        let d = self.hidden / self.heads;
        let scale = 1.0 / (d as f64).sqrt();
        for layer in &self.layers {
            let split = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((b, l, self.heads, d))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            // Scaling q (b·l·h values) is cheaper than scaling the scores (b·heads·l·l).
            let q = split((layer.query.forward(&x)? * scale)?)?;
            let k = split(layer.key.forward(&x)?)?;
            let v = split(layer.value.forward(&x)?)?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, l, self.hidden))?;
            let attn = layer
                .attn_norm
                .forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let inter = crate::ops::gelu_erf(&layer.inter.forward(&attn)?)?;
            x = layer
                .out_norm
                .forward(&(layer.out.forward(&inter)? + attn)?)?;
        }
        let m = mask.unsqueeze(2)?;
        let summed = x.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

impl Embedder for MiniLm {
    fn model_name(&self) -> &str {
        "all-MiniLM-L6-v2"
    }

    fn dim(&self) -> usize {
        self.hidden
    }

    fn count_tokens(&self, text: &str) -> usize {
        MiniLm::count_tokens(self, text).unwrap_or_else(|_| text.split_whitespace().count())
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Tokenize everything first and batch by token count (not characters), longest first:
        // a batch then carries almost no padding. Answers go back in the caller's order.
        let seqs = self.token_ids(texts)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].as_slice()).collect();
            for (&i, v) in chunk.iter().zip(self.forward(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
