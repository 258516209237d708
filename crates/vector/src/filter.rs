//! Payload filters in Qdrant's JSON grammar:
//!
//! ```json
//! {"must": [{"key": "lang", "match": {"value": "en"}},
//!           {"key": "year", "range": {"gte": 2011, "lt": 2013}}],
//!  "should": [{"key": "tag", "match": {"any": ["a", "b"]}}],
//!  "must_not": [{"has_id": [7]}]}
//! ```
//!
//! A condition is a field match (`value`, `any`, `except`), a numeric `range`, `is_null`,
//! `is_empty`, `has_id`, or a nested filter. Keys use dots for nested objects; when a payload value
//! is an array, a condition matches if any element does. Parsing validates everything once, so a
//! malformed filter is refused before any search starts.

use crate::{Error, PointId, Result};
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    must: Vec<Condition>,
    should: Vec<Condition>,
    must_not: Vec<Condition>,
}

/// One condition of a filter (public so other backends can translate filters).
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Match { key: String, values: Vec<Value> },
    Except { key: String, values: Vec<Value> },
    Range { key: String, range: Range },
    IsNull(String),
    IsEmpty(String),
    HasId(Vec<PointId>),
    Nested(Box<Filter>),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Range {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl Range {
    fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(format!("malformed filter: {}", msg.into()))
}

impl Filter {
    pub fn parse(v: &Value) -> Result<Filter> {
        let obj = v
            .as_object()
            .ok_or_else(|| bad("a filter is a JSON object"))?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "must" | "should" | "must_not" | "min_should") {
                return Err(bad(format!(
                    "unknown clause `{k}` (expected must, should, must_not)"
                )));
            }
        }
        let list = |name: &str| -> Result<Vec<Condition>> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(items)) => items.iter().map(parse_condition).collect(),
                Some(one @ Value::Object(_)) => Ok(vec![parse_condition(one)?]),
                Some(_) => Err(bad(format!("`{name}` must be a list of conditions"))),
            }
        };
        Ok(Filter {
            must: list("must")?,
            should: list("should")?,
            must_not: list("must_not")?,
        })
    }

    pub fn must(&self) -> &[Condition] {
        &self.must
    }
    pub fn should(&self) -> &[Condition] {
        &self.should
    }
    pub fn must_not(&self) -> &[Condition] {
        &self.must_not
    }

    /// Whether a point with this id and payload passes.
    pub fn matches(&self, id: &PointId, payload: &Map<String, Value>) -> bool {
        self.must.iter().all(|c| c.matches(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.matches(id, payload)))
            && !self.must_not.iter().any(|c| c.matches(id, payload))
    }
}

fn parse_condition(v: &Value) -> Result<Condition> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("a condition is a JSON object"))?;
    if obj.contains_key("must") || obj.contains_key("should") || obj.contains_key("must_not") {
        return Ok(Condition::Nested(Box::new(Filter::parse(v)?)));
    }
    if let Some(ids) = obj.get("has_id") {
        let ids = ids
            .as_array()
            .ok_or_else(|| bad("`has_id` takes a list of point ids"))?;
        return Ok(Condition::HasId(
            ids.iter()
                .map(|i| PointId::from_json(i).map_err(|e| bad(e.to_string())))
                .collect::<Result<_>>()?,
        ));
    }
    for (name, ctor) in [
        ("is_null", Condition::IsNull as fn(String) -> Condition),
        ("is_empty", Condition::IsEmpty),
    ] {
        if let Some(inner) = obj.get(name) {
            let key = inner["key"]
                .as_str()
                .ok_or_else(|| bad(format!("`{name}` needs {{\"key\": …}}")))?;
            return Ok(ctor(key.to_owned()));
        }
    }
    let key = obj
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a field condition needs a string `key`"))?
        .to_owned();
    if key.is_empty() {
        return Err(bad("`key` is empty"));
    }
    if let Some(m) = obj.get("match") {
        let m = m.as_object().ok_or_else(|| bad("`match` is an object"))?;
        let scalars = |v: &Value, what: &str| -> Result<Vec<Value>> {
            let items = v
                .as_array()
                .ok_or_else(|| bad(format!("`match.{what}` takes a list")))?;
            for i in items {
                check_scalar(i)?;
            }
            Ok(items.clone())
        };
        if let Some(v) = m.get("value") {
            check_scalar(v)?;
            return Ok(Condition::Match {
                key,
                values: vec![v.clone()],
            });
        }
        if let Some(v) = m.get("any") {
            return Ok(Condition::Match {
                key,
                values: scalars(v, "any")?,
            });
        }
        if let Some(v) = m.get("except") {
            return Ok(Condition::Except {
                key,
                values: scalars(v, "except")?,
            });
        }
        return Err(bad("`match` needs `value`, `any` or `except`"));
    }
    if let Some(r) = obj.get("range") {
        let r = r.as_object().ok_or_else(|| bad("`range` is an object"))?;
        let mut range = Range::default();
        for (k, v) in r {
            let x = v
                .as_f64()
                .ok_or_else(|| bad(format!("range bound `{k}` must be a number")))?;
            match k.as_str() {
                "gt" => range.gt = Some(x),
                "gte" => range.gte = Some(x),
                "lt" => range.lt = Some(x),
                "lte" => range.lte = Some(x),
                other => return Err(bad(format!("unknown range bound `{other}`"))),
            }
        }
        if r.is_empty() {
            return Err(bad("`range` needs at least one of gt, gte, lt, lte"));
        }
        return Ok(Condition::Range { key, range });
    }
    Err(bad(format!(
        "condition on `{key}` needs `match` or `range`"
    )))
}

fn check_scalar(v: &Value) -> Result<()> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        other => Err(bad(format!(
            "match values are strings, numbers or booleans, not {other}"
        ))),
    }
}

/// The values at a dotted key; arrays are flattened one level, as Qdrant does.
fn lookup<'a>(payload: &'a Map<String, Value>, key: &str) -> Vec<&'a Value> {
    let mut current: Vec<&Value> = Vec::new();
    let mut parts = key.split('.');
    let first = parts.next().unwrap_or_default();
    if let Some(v) = payload.get(first) {
        current.push(v);
    }
    for part in parts {
        let mut next = Vec::new();
        for v in current {
            match v {
                Value::Object(o) => next.extend(o.get(part)),
                Value::Array(items) => {
                    next.extend(items.iter().filter_map(|i| i.as_object()?.get(part)))
                }
                _ => {}
            }
        }
        current = next;
    }
    let mut out = Vec::new();
    for v in current {
        match v {
            Value::Array(items) => out.extend(items.iter()),
            other => out.push(other),
        }
    }
    out
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl Condition {
    fn matches(&self, id: &PointId, payload: &Map<String, Value>) -> bool {
        match self {
            Condition::Match { key, values } => lookup(payload, key)
                .iter()
                .any(|v| values.iter().any(|w| same(v, w))),
            Condition::Except { key, values } => {
                let found = lookup(payload, key);
                !found.is_empty() && found.iter().all(|v| !values.iter().any(|w| same(v, w)))
            }
            Condition::Range { key, range } => lookup(payload, key)
                .iter()
                .any(|v| v.as_f64().is_some_and(|x| range.contains(x))),
            Condition::IsNull(key) => {
                matches!(payload_at(payload, key), Some(Value::Null))
            }
            Condition::IsEmpty(key) => match payload_at(payload, key) {
                None | Some(Value::Null) => true,
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            },
            Condition::HasId(ids) => ids.contains(id),
            Condition::Nested(f) => f.matches(id, payload),
        }
    }
}

fn payload_at<'a>(payload: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut v = payload.get(parts.next()?)?;
    for part in parts {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn must_should_must_not_combine() {
        let f = Filter::parse(&json!({
            "must": [{"key": "lang", "match": {"value": "en"}},
                     {"key": "year", "range": {"gte": 2011, "lt": 2013}}],
            "should": [{"key": "tags", "match": {"any": ["a", "b"]}}],
            "must_not": [{"has_id": [7]}]
        }))
        .unwrap();
        let p = payload(json!({"lang": "en", "year": 2012, "tags": ["x", "b"]}));
        assert!(f.matches(&PointId::Num(1), &p));
        assert!(!f.matches(&PointId::Num(7), &p), "must_not has_id");
        let p2 = payload(json!({"lang": "en", "year": 2013, "tags": ["b"]}));
        assert!(!f.matches(&PointId::Num(1), &p2), "range is half-open");
        let p3 = payload(json!({"lang": "en", "year": 2011, "tags": ["c"]}));
        assert!(
            !f.matches(&PointId::Num(1), &p3),
            "no should clause matched"
        );
    }

    #[test]
    fn nested_keys_numbers_and_nulls() {
        let f = Filter::parse(&json!({"must": [
            {"key": "meta.source", "match": {"value": "book"}},
            {"key": "n", "match": {"value": 3}},
            {"is_empty": {"key": "gone"}}
        ]}))
        .unwrap();
        assert!(f.matches(
            &PointId::Num(0),
            &payload(json!({"meta": {"source": "book"}, "n": 3.0}))
        ));
        assert!(!f.matches(
            &PointId::Num(0),
            &payload(json!({"meta": {"source": "web"}, "n": 3}))
        ));
        let except =
            Filter::parse(&json!({"must": {"key": "c", "match": {"except": ["x"]}}})).unwrap();
        assert!(except.matches(&PointId::Num(0), &payload(json!({"c": "y"}))));
        assert!(!except.matches(&PointId::Num(0), &payload(json!({"c": "x"}))));
        assert!(!except.matches(&PointId::Num(0), &payload(json!({}))));
    }

    #[test]
    fn malformed_filters_are_refused_with_the_reason() {
        for (f, why) in [
            (json!([1]), "JSON object"),
            (json!({"must": [{"key": "a"}]}), "needs `match` or `range`"),
            (
                json!({"must": [{"key": "a", "range": {"gt": "x"}}]}),
                "must be a number",
            ),
            (
                json!({"must": [{"key": "a", "range": {"between": 1}}]}),
                "unknown range bound",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": [1]}}]}),
                "strings, numbers",
            ),
            (json!({"filter": []}), "unknown clause"),
            (json!({"must": 3}), "list of conditions"),
        ] {
            let err = Filter::parse(&f).unwrap_err().to_string();
            assert!(err.contains(why), "{f}: {err}");
        }
    }
}
