//! Routing rules: send a request to another model group by what it is and who sends it. A rule
//! names the groups it applies to (`models`, empty = any), a condition and the group to use
//! instead (`route_to`); the first rule that holds wins. Conditions test request fields with
//! `eq`, `in`, `regex`, `gt`, `lt`, and combine with `all`, `any`, `not`:
//!
//! ```toml
//! [[gateway.rules]]
//! name = "long prompts to the big model"
//! models = ["chat"]
//! route_to = "chat-long"
//! when = { field = "prompt_tokens", gt = 6000 }
//!
//! [[gateway.rules]]
//! name = "free tier"
//! route_to = "cheap"
//! when = { all = [{ field = "tier", eq = "free" }, { not = { field = "tag", in = ["vip"] } }] }
//! ```
//!
//! Fields: `model`, `prompt_tokens` (an estimate, 4 characters a token), `max_tokens`, `user`,
//! `team`, `key`, `tier` (header `x-capstan-tier`), `tag` (true if any tag matches),
//! `capability` (`tools`, `stream`, `json` — any the request needs), `metadata.NAME`.

use crate::error::{GatewayError, Result};
use crate::gateway::Caller;
use crate::request::LlmRequest;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// Groups the rule applies to; empty = every request.
    #[serde(default)]
    pub models: Vec<String>,
    pub when: Condition,
    pub route_to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Condition {
    All { all: Vec<Condition> },
    Any { any: Vec<Condition> },
    Not { not: Box<Condition> },
    Test(Test),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Test {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<String>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
}

/// A condition with its regexes compiled.
enum Compiled {
    All(Vec<Compiled>),
    Any(Vec<Compiled>),
    Not(Box<Compiled>),
    Test {
        field: String,
        eq: Option<String>,
        one_of: Option<Vec<String>>,
        regex: Option<regex::Regex>,
        gt: Option<f64>,
        lt: Option<f64>,
    },
}

const FIELDS: [&str; 10] = [
    "model",
    "prompt_tokens",
    "max_tokens",
    "user",
    "team",
    "key",
    "tier",
    "tag",
    "capability",
    "metadata.",
];

fn compile(c: &Condition, rule: &str) -> Result<Compiled> {
    let bad = |m: String| GatewayError::invalid("config", format!("rule `{rule}`: {m}"));
    Ok(match c {
        Condition::All { all } => Compiled::All(
            all.iter()
                .map(|c| compile(c, rule))
                .collect::<Result<_>>()?,
        ),
        Condition::Any { any } => Compiled::Any(
            any.iter()
                .map(|c| compile(c, rule))
                .collect::<Result<_>>()?,
        ),
        Condition::Not { not } => Compiled::Not(Box::new(compile(not, rule)?)),
        Condition::Test(t) => {
            if !FIELDS.iter().any(|f| {
                t.field == *f
                    || (f.ends_with('.') && t.field.starts_with(f) && t.field.len() > f.len())
            }) {
                return Err(bad(format!(
                    "unknown field `{}` (one of {})",
                    t.field,
                    FIELDS.join(", ")
                )));
            }
            let ops = [
                t.eq.is_some(),
                t.one_of.is_some(),
                t.regex.is_some(),
                t.gt.is_some(),
                t.lt.is_some(),
            ];
            if !ops.contains(&true) {
                return Err(bad(format!(
                    "`{}` needs a test: eq, in, regex, gt or lt",
                    t.field
                )));
            }
            let regex = match &t.regex {
                Some(r) => {
                    Some(regex::Regex::new(r).map_err(|e| bad(format!("regex `{r}`: {e}")))?)
                }
                None => None,
            };
            Compiled::Test {
                field: t.field.clone(),
                eq: t.eq.clone(),
                one_of: t.one_of.clone(),
                regex,
                gt: t.gt,
                lt: t.lt,
            }
        }
    })
}

/// The values a field has for this request (several for `tag` and `capability`).
fn values(field: &str, req: &LlmRequest, caller: &Caller) -> Vec<String> {
    let one = |v: Option<&str>| v.map(|s| vec![s.to_owned()]).unwrap_or_default();
    match field {
        "model" => vec![req.model.clone()],
        "prompt_tokens" => vec![(req.prompt_chars() / 4).to_string()],
        "max_tokens" => req
            .max_tokens
            .map(|m| vec![m.to_string()])
            .unwrap_or_default(),
        "user" => one(req.user.as_deref().or(caller.user.as_deref())),
        "team" => one(caller.team.as_deref()),
        "key" => vec![caller.key.clone()],
        "tier" => one(caller.tier.as_deref()),
        "tag" => caller.tags.clone(),
        "capability" => {
            let mut c = Vec::new();
            if req.uses_tools {
                c.push("tools".to_owned());
            }
            if req.stream {
                c.push("stream".to_owned());
            }
            if req.body["response_format"]["type"]
                .as_str()
                .is_some_and(|t| t != "text")
            {
                c.push("json".to_owned());
            }
            c
        }
        f => f
            .strip_prefix("metadata.")
            .and_then(|k| req.metadata.get(k))
            .and_then(|v| v.as_str())
            .map(|v| vec![v.to_owned()])
            .unwrap_or_default(),
    }
}

impl Compiled {
    fn holds(&self, req: &LlmRequest, caller: &Caller) -> bool {
        match self {
            Compiled::All(cs) => cs.iter().all(|c| c.holds(req, caller)),
            Compiled::Any(cs) => cs.iter().any(|c| c.holds(req, caller)),
            Compiled::Not(c) => !c.holds(req, caller),
            Compiled::Test {
                field,
                eq,
                one_of,
                regex,
                gt,
                lt,
            } => values(field, req, caller).iter().any(|v| {
                let num = v.parse::<f64>().ok();
                eq.as_ref().is_none_or(|e| e == v)
                    && one_of.as_ref().is_none_or(|set| set.contains(v))
                    && regex.as_ref().is_none_or(|r| r.is_match(v))
                    && gt.is_none_or(|g| num.is_some_and(|n| n > g))
                    && lt.is_none_or(|l| num.is_some_and(|n| n < l))
            }),
        }
    }
}

/// The rules of one configuration, compiled.
#[derive(Default)]
pub struct Rules(Vec<(RuleConfig, Compiled)>);

impl Rules {
    pub fn compile(rules: &[RuleConfig]) -> Result<Rules> {
        Ok(Rules(
            rules
                .iter()
                .map(|r| Ok((r.clone(), compile(&r.when, &r.name)?)))
                .collect::<Result<_>>()?,
        ))
    }

    /// The first rule that applies: (its name, the group to use).
    pub fn route(&self, req: &LlmRequest, caller: &Caller) -> Option<(&str, &str)> {
        self.0
            .iter()
            .find(|(r, c)| {
                (r.models.is_empty() || r.models.contains(&req.model)) && c.holds(req, caller)
            })
            .map(|(r, _)| (r.name.as_str(), r.route_to.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Endpoint;

    fn rules(toml_text: &str) -> Result<Rules> {
        #[derive(Deserialize)]
        struct W {
            rules: Vec<RuleConfig>,
        }
        let w: W = toml::from_str(toml_text)
            .map_err(|e| GatewayError::invalid("config", e.to_string()))?;
        Rules::compile(&w.rules)
    }

    fn req(body: &str) -> LlmRequest {
        LlmRequest::parse(Endpoint::Chat, body.as_bytes()).unwrap()
    }

    #[test]
    fn first_matching_rule_routes() {
        let r = rules(
            r#"
            [[rules]]
            name = "long"
            models = ["chat"]
            route_to = "chat-long"
            when = { field = "prompt_tokens", gt = 20 }
            [[rules]]
            name = "free"
            route_to = "cheap"
            when = { all = [{ field = "tier", eq = "free" }, { not = { field = "tag", in = ["vip"] } }] }
            [[rules]]
            name = "tools or eu"
            route_to = "capable"
            when = { any = [{ field = "capability", eq = "tools" }, { field = "metadata.region", regex = "^eu-" }] }
            "#,
        )
        .unwrap();
        let caller = Caller {
            key: "k".into(),
            tags: vec!["a".into()],
            ..Default::default()
        };
        let short = req(r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#);
        let long = req(&format!(
            r#"{{"model":"chat","messages":[{{"role":"user","content":"{}"}}]}}"#,
            "x".repeat(200)
        ));
        assert_eq!(r.route(&short, &caller), None);
        assert_eq!(r.route(&long, &caller), Some(("long", "chat-long")));
        let free = Caller {
            tier: Some("free".into()),
            ..caller.clone()
        };
        assert_eq!(r.route(&short, &free), Some(("free", "cheap")));
        let vip = Caller {
            tags: vec!["vip".into()],
            ..free.clone()
        };
        assert_eq!(r.route(&short, &vip), None);
        let eu = req(
            r#"{"model":"x","metadata":{"region":"eu-west"},"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(r.route(&eu, &caller), Some(("tools or eu", "capable")));
        let tools = req(
            r#"{"model":"x","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(r.route(&tools, &caller), Some(("tools or eu", "capable")));
    }

    #[test]
    fn bad_rules_are_refused() {
        for broken in [
            r#"[[rules]]
               name = "a"
               route_to = "g"
               when = { field = "colour", eq = "red" }"#,
            r#"[[rules]]
               name = "a"
               route_to = "g"
               when = { field = "tier" }"#,
            r#"[[rules]]
               name = "a"
               route_to = "g"
               when = { field = "user", regex = "(" }"#,
        ] {
            assert!(rules(broken).is_err(), "{broken}");
        }
    }
}
