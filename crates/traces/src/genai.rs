//! OpenTelemetry's GenAI semantic conventions, read off a span's attributes: the current names
//! first, then the older ones instrumentations still send (`gen_ai.system`,
//! `gen_ai.usage.prompt_tokens`, …).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const OPERATION: &str = "gen_ai.operation.name";
pub const PROVIDER: &str = "gen_ai.provider.name";
pub const SYSTEM: &str = "gen_ai.system";
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const CACHE_READ_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const CACHE_WRITE_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
pub const REASONING_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
/// Not in the conventions: the call's cost in dollars as Capstan's price table gives it.
pub const COST_USD: &str = "gen_ai.usage.cost_usd";
/// Not in the conventions: `name@version` of the registered prompt.
pub const PROMPT: &str = "capstan.prompt";

/// The GenAI facts of one span; `None` where the span does not say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenAi {
    pub operation: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub user: Option<String>,
    pub prompt: Option<String>,
}

fn text(attrs: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match attrs.get(*k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

fn int(attrs: &Map<String, Value>, keys: &[&str]) -> Option<i64> {
    keys.iter().find_map(|k| match attrs.get(*k) {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        // JSON exporters may send 64-bit integers as strings.
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

impl GenAi {
    pub fn of(attrs: &Map<String, Value>) -> GenAi {
        GenAi {
            operation: text(attrs, &[OPERATION]),
            provider: text(attrs, &[PROVIDER, SYSTEM]),
            model: text(attrs, &[REQUEST_MODEL, RESPONSE_MODEL]),
            input_tokens: int(attrs, &[INPUT_TOKENS, "gen_ai.usage.prompt_tokens"]),
            output_tokens: int(attrs, &[OUTPUT_TOKENS, "gen_ai.usage.completion_tokens"]),
            cache_read_tokens: int(
                attrs,
                &[
                    CACHE_READ_TOKENS,
                    "gen_ai.usage.cache_read_input_tokens",
                    "gen_ai.usage.input_tokens.cached",
                ],
            ),
            cache_write_tokens: int(
                attrs,
                &[
                    CACHE_WRITE_TOKENS,
                    "gen_ai.usage.cache_creation_input_tokens",
                    "gen_ai.usage.input_tokens.cache_write",
                ],
            ),
            reasoning_tokens: int(
                attrs,
                &[REASONING_TOKENS, "gen_ai.usage.output_tokens.reasoning"],
            ),
            cost_usd: match attrs.get(COST_USD) {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .filter(|c: &f64| c.is_finite()),
            user: text(attrs, &["user.id", "enduser.id", "gen_ai.request.user"]),
            prompt: text(attrs, &[PROMPT, "gen_ai.prompt.name"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn current_names_win_and_older_ones_are_read() {
        let a = json!({
            "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024",
            "gen_ai.usage.prompt_tokens": "12", "gen_ai.usage.output_tokens": 7,
            "gen_ai.usage.cache_read.input_tokens": 4, "user.id": "ada"
        });
        let g = GenAi::of(a.as_object().unwrap());
        assert_eq!(g.operation.as_deref(), Some("chat"));
        assert_eq!(g.provider.as_deref(), Some("openai"));
        assert_eq!(g.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!((g.input_tokens, g.output_tokens), (Some(12), Some(7)));
        assert_eq!(g.cache_read_tokens, Some(4));
        assert_eq!(g.user.as_deref(), Some("ada"));
        let b = json!({"gen_ai.provider.name": "anthropic", "gen_ai.system": "old"});
        assert_eq!(
            GenAi::of(b.as_object().unwrap()).provider.as_deref(),
            Some("anthropic")
        );
        assert_eq!(GenAi::of(&Map::new()), GenAi::default());
    }
}
