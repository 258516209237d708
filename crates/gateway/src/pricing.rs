//! Prices and the cost of one call. The arithmetic follows the providers' usage fields, where the
//! most reported billing bugs live: OpenAI's `prompt_tokens` already include the cached ones
//! (`prompt_tokens_details.cached_tokens`, billed at the cache-read price, not again at the input
//! price), and `completion_tokens` already include the reasoning ones
//! (`completion_tokens_details.reasoning_tokens`, not added a second time); cache writes
//! (Anthropic's `cache_creation_input_tokens`) are billed at their own price.

use crate::usage::Usage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
    /// Prices for prompts longer than a threshold (lowest threshold first).
    #[serde(default)]
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub above_prompt_tokens: u64,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
struct Table {
    version: String,
    models: BTreeMap<String, Price>,
}

/// The shipped table with the config's overrides on top.
#[derive(Debug, Clone)]
pub struct Prices {
    pub version: String,
    models: BTreeMap<String, Price>,
}

const SHIPPED: &str = include_str!("prices.toml");

impl Prices {
    pub fn new(overrides: &BTreeMap<String, Price>) -> Prices {
        // The shipped table is checked by a test; an unparsable one would be a build mistake.
        let table: Table = toml::from_str(SHIPPED).unwrap_or(Table {
            version: "none".into(),
            models: BTreeMap::new(),
        });
        let mut models = table.models;
        models.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        let version = if overrides.is_empty() {
            table.version
        } else {
            format!("{}+config", table.version)
        };
        Prices { version, models }
    }

    /// The price of `model` (exact name, then the longest known prefix, so dated variants such
    /// as `gpt-4o-2024-08-06` find `gpt-4o`).
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.models.get(model).or_else(|| {
            self.models
                .iter()
                .filter(|(k, _)| model.starts_with(k.as_str()))
                .max_by_key(|(k, _)| k.len())
                .map(|(_, p)| p)
        })
    }

    /// Dollars for `usage` on `model`; `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.get(model).map(|p| p.cost(usage))
    }

    /// The most a call can cost: the whole prompt at the input price and `max_tokens` at the
    /// dearest output price (for reserving budget before the call).
    pub fn worst_case(&self, model: &str, prompt_tokens: u64, max_tokens: u64) -> Option<f64> {
        self.get(model).map(|p| {
            let (i, o, _, _, r) = p.rates(prompt_tokens);
            (prompt_tokens as f64 * i + max_tokens as f64 * o.max(r)) / 1e6
        })
    }
}

impl Price {
    /// (input, output, cache read, cache write, reasoning) per million for a prompt this long.
    fn rates(&self, prompt_tokens: u64) -> (f64, f64, f64, f64, f64) {
        let tier = self
            .tiers
            .iter()
            .filter(|t| prompt_tokens > t.above_prompt_tokens)
            .max_by_key(|t| t.above_prompt_tokens);
        let (i, o, cr, cw, r) = match tier {
            Some(t) => (
                t.input_per_mtok,
                t.output_per_mtok,
                t.cache_read_per_mtok,
                t.cache_write_per_mtok,
                t.reasoning_per_mtok,
            ),
            None => (
                self.input_per_mtok,
                self.output_per_mtok,
                self.cache_read_per_mtok,
                self.cache_write_per_mtok,
                self.reasoning_per_mtok,
            ),
        };
        (i, o, cr.unwrap_or(i), cw.unwrap_or(i), r.unwrap_or(o))
    }

    pub fn cost(&self, u: &Usage) -> f64 {
        let (i, o, cr, cw, r) = self.rates(u.prompt_tokens);
        let cached = u.cached_tokens.min(u.prompt_tokens);
        let written = u.cache_write_tokens.min(u.prompt_tokens - cached);
        let fresh = u.prompt_tokens - cached - written;
        let reasoning = u.reasoning_tokens.min(u.completion_tokens);
        let visible = u.completion_tokens - reasoning;
        (fresh as f64 * i
            + cached as f64 * cr
            + written as f64 * cw
            + visible as f64 * o
            + reasoning as f64 * r)
            / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(p: u64, c: u64, cached: u64, reasoning: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            cached_tokens: cached,
            reasoning_tokens: reasoning,
            cache_write_tokens: 0,
        }
    }

    #[test]
    fn shipped_table_parses_and_prefix_finds_dated_models() {
        let p = Prices::new(&BTreeMap::new());
        assert_eq!(p.version, "2025-06-01");
        assert_eq!(p.get("gpt-4o-2024-08-06"), p.get("gpt-4o"));
        assert_eq!(p.get("gpt-4o-mini-2024-07-18"), p.get("gpt-4o-mini"));
        assert!(p.get("no-such-model").is_none());
    }

    #[test]
    fn cached_and_reasoning_tokens_are_not_billed_twice() {
        let p = Prices::new(&BTreeMap::new());
        // gpt-4o: 1,000 prompt tokens of which 600 cached, 500 completion of which 200 reasoning.
        // 400 × 2.50 + 600 × 1.25 + 500 × 10.00 (reasoning billed as output, once) per million.
        let c = p.cost("gpt-4o", &usage(1000, 500, 600, 200)).unwrap();
        assert!(
            (c - (400.0 * 2.5 + 600.0 * 1.25 + 500.0 * 10.0) / 1e6).abs() < 1e-12,
            "{c}"
        );
        // Anthropic cache writes at their own price.
        let u = Usage {
            cache_write_tokens: 1000,
            ..usage(1500, 10, 0, 0)
        };
        let c = p.cost("claude-sonnet-4-20250514", &u).unwrap();
        assert!((c - (500.0 * 3.0 + 1000.0 * 3.75 + 10.0 * 15.0) / 1e6).abs() < 1e-12);
    }

    #[test]
    fn tiers_and_overrides() {
        let mut o = BTreeMap::new();
        o.insert(
            "mine".to_string(),
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
                ..Default::default()
            },
        );
        let p = Prices::new(&o);
        assert!(p.version.ends_with("+config"));
        assert_eq!(
            p.cost("mine", &usage(1_000_000, 1_000_000, 0, 0)),
            Some(3.0)
        );
        let long = p
            .cost("gemini-2.5-pro", &usage(300_000, 1000, 0, 0))
            .unwrap();
        assert!((long - (300_000.0 * 2.5 + 1000.0 * 15.0) / 1e6).abs() < 1e-12);
        let short = p
            .cost("gemini-2.5-pro", &usage(100_000, 1000, 0, 0))
            .unwrap();
        assert!((short - (100_000.0 * 1.25 + 1000.0 * 10.0) / 1e6).abs() < 1e-12);
        assert_eq!(p.worst_case("mine", 100, 50), Some((100.0 + 100.0) / 1e6));
    }
}
