//! The prompt registry's domain: prompts as immutable, numbered versions of a template (chat
//! messages or one text) with typed variables, model parameters and a commit message; movable
//! labels (`production`, `staging`) pointing at versions. Templates use Jinja syntax
//! (minijinja); rendering is strict — a missing variable, an extra one, or one of the wrong type
//! is an error naming it. The store trait is implemented in `store` (SQLite, PostgreSQL).

use crate::error::{GatewayError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Template {
    Chat { messages: Vec<TemplateMessage> },
    Text { text: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Number,
    Boolean,
    List,
    Object,
    Any,
}

impl VarType {
    fn admits(self, v: &Value) -> bool {
        match self {
            VarType::String => v.is_string(),
            VarType::Number => v.is_number(),
            VarType::Boolean => v.is_boolean(),
            VarType::List => v.is_array(),
            VarType::Object => v.is_object(),
            VarType::Any => true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewPromptVersion {
    pub template: Template,
    /// Declared variables and their types; those the template uses but this omits are strings.
    #[serde(default)]
    pub variables: BTreeMap<String, VarType>,
    /// Model parameters that go with the prompt (`model`, `temperature`, `max_tokens` …).
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub commit_message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PromptVersion {
    pub name: String,
    pub version: i64,
    pub template: Template,
    pub variables: BTreeMap<String, VarType>,
    pub params: Map<String, Value>,
    pub commit_message: String,
    pub created_ms: i64,
}

/// What a template renders to.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Rendered {
    Chat { messages: Vec<TemplateMessage> },
    Text { text: String },
}

pub fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(GatewayError::invalid(
            "name",
            format!("prompt name `{name}` must be 1-128 of A-Z a-z 0-9 - _ . /"),
        ))
    }
}

fn env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

fn pieces(t: &Template) -> Vec<(String, &str)> {
    match t {
        Template::Chat { messages } => messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    format!("template.messages[{i}].content"),
                    m.content.as_str(),
                )
            })
            .collect(),
        Template::Text { text } => vec![("template.text".to_owned(), text.as_str())],
    }
}

/// Checks a new version: every piece parses, roles are known, declared variables are used, and
/// returns the full variable table (undeclared ones typed `string`).
pub fn check(new: &NewPromptVersion) -> Result<BTreeMap<String, VarType>> {
    let env = env();
    let mut used = BTreeSet::new();
    if let Template::Chat { messages } = &new.template {
        if messages.is_empty() {
            return Err(GatewayError::invalid(
                "template.messages",
                "a chat template needs messages",
            ));
        }
        for (i, m) in messages.iter().enumerate() {
            if !["system", "developer", "user", "assistant"].contains(&m.role.as_str()) {
                return Err(GatewayError::invalid(
                    &format!("template.messages[{i}].role"),
                    format!("unknown role `{}`", m.role),
                ));
            }
        }
    }
    for (field, src) in pieces(&new.template) {
        let t = env.template_from_str(src).map_err(|e| {
            GatewayError::invalid(&field, format!("the template does not parse: {e}"))
        })?;
        used.extend(t.undeclared_variables(false));
    }
    for declared in new.variables.keys() {
        if !used.contains(declared) {
            return Err(GatewayError::invalid(
                "variables",
                format!("variable `{declared}` is declared but the template never uses it"),
            ));
        }
    }
    Ok(used
        .into_iter()
        .map(|v| {
            let ty = new.variables.get(&v).copied().unwrap_or(VarType::String);
            (v, ty)
        })
        .collect())
}

/// Renders a version with `vars`: each declared variable must be given, with its type, and
/// nothing else.
pub fn render(v: &PromptVersion, vars: &Map<String, Value>) -> Result<Rendered> {
    for (name, ty) in &v.variables {
        match vars.get(name) {
            None => {
                return Err(GatewayError::invalid(
                    &format!("variables.{name}"),
                    format!("variable `{name}` is missing"),
                ));
            }
            Some(value) if !ty.admits(value) => {
                return Err(GatewayError::invalid(
                    &format!("variables.{name}"),
                    format!("variable `{name}` must be a {ty:?}").to_lowercase(),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = vars.keys().find(|k| !v.variables.contains_key(*k)) {
        return Err(GatewayError::invalid(
            &format!("variables.{extra}"),
            format!("`{}` v{} has no variable `{extra}`", v.name, v.version),
        ));
    }
    let env = env();
    let ctx = minijinja::Value::from_serialize(vars);
    let one = |field: &str, src: &str| -> Result<String> {
        env.render_str(src, ctx.clone())
            .map_err(|e| GatewayError::invalid(field, format!("rendering: {e}")))
    };
    Ok(match &v.template {
        Template::Chat { messages } => Rendered::Chat {
            messages: messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    Ok(TemplateMessage {
                        role: m.role.clone(),
                        content: one(&format!("template.messages[{i}].content"), &m.content)?,
                    })
                })
                .collect::<Result<_>>()?,
        },
        Template::Text { text } => Rendered::Text {
            text: one("template.text", text)?,
        },
    })
}

/// A line diff of two versions' templates (and parameters): ` ` kept, `-` removed, `+` added.
pub fn diff(a: &PromptVersion, b: &PromptVersion) -> Vec<String> {
    let lines = |v: &PromptVersion| -> Vec<String> {
        let mut out = Vec::new();
        match &v.template {
            Template::Chat { messages } => {
                for m in messages {
                    out.push(format!("[{}]", m.role));
                    out.extend(m.content.lines().map(str::to_owned));
                }
            }
            Template::Text { text } => out.extend(text.lines().map(str::to_owned)),
        }
        for (k, val) in &v.params {
            out.push(format!("@{k} = {val}"));
        }
        out
    };
    let (x, y) = (lines(a), lines(b));
    // Longest common subsequence, then walk it.
    let (n, m) = (x.len(), y.len());
    let mut l = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if x[i] == y[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            out.push(format!("  {}", x[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || l[i + 1][j] >= l[i][j + 1]) {
            out.push(format!("- {}", x[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", y[j]));
            j += 1;
        }
    }
    out
}

/// Where prompt versions and labels live.
#[async_trait::async_trait]
pub trait PromptStore: Send + Sync {
    /// Stores the next version of `name` (1 for a new prompt).
    async fn create_prompt_version(
        &self,
        name: &str,
        new: &NewPromptVersion,
        variables: &BTreeMap<String, VarType>,
    ) -> std::result::Result<PromptVersion, String>;
    async fn prompt_version(
        &self,
        name: &str,
        version: i64,
    ) -> std::result::Result<Option<PromptVersion>, String>;
    async fn prompt_versions(&self, name: &str) -> std::result::Result<Vec<PromptVersion>, String>;
    /// Every prompt: (name, latest version).
    async fn prompts(&self) -> std::result::Result<Vec<(String, i64)>, String>;
    async fn set_prompt_label(
        &self,
        name: &str,
        label: &str,
        version: i64,
    ) -> std::result::Result<(), String>;
    async fn prompt_labels(&self, name: &str)
    -> std::result::Result<BTreeMap<String, i64>, String>;
    /// Splits `name@label` across versions by weight (an A/B test); `None` removes the split.
    async fn set_prompt_split(
        &self,
        name: &str,
        label: &str,
        weights: Option<&BTreeMap<i64, f64>>,
    ) -> std::result::Result<(), String>;
    async fn prompt_split(
        &self,
        name: &str,
        label: &str,
    ) -> std::result::Result<Option<BTreeMap<i64, f64>>, String>;
}

/// The version a split gives `sticky` (a user or request key): the same key always gets the
/// same version; over many keys each version's share follows its weight.
pub fn assign(weights: &BTreeMap<i64, f64>, sticky: &str, salt: &str) -> Option<i64> {
    use sha2::{Digest, Sha256};
    let total: f64 = weights.values().filter(|w| **w > 0.0).sum();
    if total <= 0.0 {
        return None;
    }
    let h = Sha256::digest(format!("{salt}\u{0}{sticky}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    let u = (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut acc = 0.0;
    for (v, w) in weights.iter().filter(|(_, w)| **w > 0.0) {
        acc += w;
        if u < acc {
            return Some(*v);
        }
    }
    weights.keys().next_back().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version(t: Value, vars: Value) -> PromptVersion {
        let new: NewPromptVersion =
            serde_json::from_value(json!({"template": t, "variables": vars})).unwrap();
        let variables = check(&new).unwrap();
        PromptVersion {
            name: "qa".into(),
            version: 1,
            template: new.template,
            variables,
            params: Map::new(),
            commit_message: String::new(),
            created_ms: 0,
        }
    }

    #[test]
    fn renders_strictly() {
        let v = version(
            json!({"messages": [{"role": "system", "content": "Answer from: {{ context }}"},
                                {"role": "user", "content": "{{ question }} ({{ n }} words)"}]}),
            json!({"n": "number"}),
        );
        assert_eq!(v.variables.len(), 3);
        let ok = render(
            &v,
            json!({"context": "c", "question": "q?", "n": 5})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            ok,
            Rendered::Chat {
                messages: vec![
                    TemplateMessage {
                        role: "system".into(),
                        content: "Answer from: c".into()
                    },
                    TemplateMessage {
                        role: "user".into(),
                        content: "q? (5 words)".into()
                    }
                ]
            }
        );
        for (vars, field) in [
            (json!({"context": "c", "n": 5}), "variables.question"),
            (
                json!({"context": "c", "question": "q", "n": "five"}),
                "variables.n",
            ),
            (
                json!({"context": "c", "question": "q", "n": 5, "extra": 1}),
                "variables.extra",
            ),
        ] {
            let e = render(&v, vars.as_object().unwrap()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{}", e.message);
        }
    }

    #[test]
    fn splits_are_sticky_and_follow_their_weights() {
        let w: BTreeMap<i64, f64> = [(1, 3.0), (2, 1.0)].into_iter().collect();
        let ones = (0..4000)
            .filter(|i| assign(&w, &format!("user-{i}"), "qa@prod") == Some(1))
            .count();
        assert!((2800..3200).contains(&ones), "{ones}");
        assert_eq!(
            assign(&w, "alice", "qa@prod"),
            assign(&w, "alice", "qa@prod")
        );
        assert_eq!(assign(&BTreeMap::new(), "alice", "x"), None);
    }

    #[test]
    fn bad_templates_and_declarations_are_refused_and_diffs_show_changes() {
        for (t, vars) in [
            (json!({"text": "{{ unclosed"}), json!({})),
            (
                json!({"messages": [{"role": "wizard", "content": "x"}]}),
                json!({}),
            ),
            (json!({"text": "hi {{ a }}"}), json!({"b": "string"})),
        ] {
            let new: NewPromptVersion =
                serde_json::from_value(json!({"template": t, "variables": vars})).unwrap();
            assert!(check(&new).is_err());
        }
        let a = version(json!({"text": "line one\nline two"}), json!({}));
        let b = version(json!({"text": "line one\nline 2\nline three"}), json!({}));
        assert_eq!(
            diff(&a, &b),
            ["  line one", "- line two", "+ line 2", "+ line three"]
        );
    }
}
