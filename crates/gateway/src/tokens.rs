//! Token counts when an upstream reports none (a stream cut short, a server that omits
//! `usage`): OpenAI's own encodings for OpenAI models (o200k_base for the GPT-4o / 4.1 / o-series
//! families, cl100k_base for GPT-4 and 3.5; embedded, so offline), and for others an estimate of
//! one token per four bytes, rounded up. Chat prompts add OpenAI's per-message framing (3 tokens
//! a message, 3 to prime the reply). Upstream `usage` is always preferred; a record made from
//! these counts is marked as estimated.

use crate::request::LlmRequest;
use crate::usage::Usage;
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// OpenAI's encoding for `model`, when it is one of theirs.
fn encoding(model: &str) -> Option<&'static CoreBPE> {
    match get_tokenizer(model)? {
        Tokenizer::O200kBase => Some(tiktoken_rs::o200k_base_singleton()),
        Tokenizer::Cl100kBase => Some(tiktoken_rs::cl100k_base_singleton()),
        _ => None,
    }
}

/// Tokens `text` takes for `model`, and whether that is exact (an OpenAI encoding).
pub fn count(model: &str, text: &str) -> (u64, bool) {
    match encoding(model) {
        Some(bpe) => (bpe.encode_with_special_tokens(text).len() as u64, true),
        None => (text.len().div_ceil(4) as u64, false),
    }
}

/// The usage of a call from its request and the text it produced: (usage, exact).
pub fn usage_of(model: &str, req: &LlmRequest, completion: &str) -> (Usage, bool) {
    let mut exact = true;
    let mut prompt = 0;
    for m in &req.messages {
        let (n, e) = count(model, &m.content);
        exact &= e;
        prompt += n + if req.endpoint == crate::Endpoint::Chat {
            3
        } else {
            0
        };
    }
    if req.endpoint == crate::Endpoint::Chat {
        prompt += 3;
    }
    let (completion_tokens, e) = count(model, completion);
    (
        Usage {
            prompt_tokens: prompt,
            completion_tokens,
            ..Usage::default()
        },
        exact && e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_encodings_and_the_fallback() {
        // OpenAI's cookbook: "tiktoken is great!" is 6 tokens in cl100k_base.
        assert_eq!(count("gpt-4", "tiktoken is great!"), (6, true));
        assert_eq!(count("gpt-4o-mini", "hello world"), (2, true));
        assert!(count("gpt-4o-2024-08-06", "hello world").1);
        assert_eq!(count("my-local-llama", "hello world"), (3, false));
        let req = LlmRequest::parse(
            crate::Endpoint::Chat,
            br#"{"model":"m","messages":[{"role":"system","content":"hello world"},{"role":"user","content":"hello world"}]}"#,
        )
        .unwrap();
        let (u, exact) = usage_of("gpt-4o", &req, "hello world");
        assert!(exact);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens),
            (2 + 3 + 2 + 3 + 3, 2)
        );
    }
}
