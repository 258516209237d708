//! The part of JSON Schema structured-output checks use: `type` (one or a list), `enum`,
//! `const`, `required`, `properties`, `additionalProperties: false`, `items`, `minItems`,
//! `maxItems`, `minimum`, `maximum`, `minLength`, `maxLength`. A keyword outside this set is
//! refused when the evaluator is configured, rather than silently ignored.

use serde_json::Value;

const KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "description",
    "title",
    "$schema",
];

/// Checks that `schema` only uses the keywords this validator implements.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Err("a JSON schema must be an object".into());
    };
    for (k, v) in obj {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(format!("JSON schema keyword `{k}` is not supported"));
        }
        match k.as_str() {
            "properties" => {
                for s in v.as_object().into_iter().flat_map(|m| m.values()) {
                    check_schema(s)?;
                }
            }
            "items" => check_schema(v)?,
            _ => {}
        }
    }
    Ok(())
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => {
            v.as_i64().is_some()
                || v.as_u64().is_some()
                || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// Validates `v`; the first violation, with its JSON path, when it fails.
pub fn validate(schema: &Value, v: &Value) -> Result<(), String> {
    validate_at(schema, v, "$")
}

fn validate_at(s: &Value, v: &Value, path: &str) -> Result<(), String> {
    let fail = |what: String| Err(format!("{path}: {what}"));
    match &s["type"] {
        Value::String(t) if !type_ok(t, v) => return fail(format!("expected {t}")),
        Value::Array(ts) if !ts.iter().filter_map(Value::as_str).any(|t| type_ok(t, v)) => {
            return fail(format!("expected one of {}", Value::Array(ts.clone())));
        }
        _ => {}
    }
    if let Some(options) = s["enum"].as_array()
        && !options.contains(v)
    {
        return fail(format!("{v} is not one of {}", s["enum"]));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return fail(format!("expected {c}"));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s["minimum"].as_f64()
            && n < min
        {
            return fail(format!("{n} < minimum {min}"));
        }
        if let Some(max) = s["maximum"].as_f64()
            && n > max
        {
            return fail(format!("{n} > maximum {max}"));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s["minLength"].as_u64().is_some_and(|m| len < m)
            || s["maxLength"].as_u64().is_some_and(|m| len > m)
        {
            return fail(format!("length {len} out of bounds"));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if s["minItems"].as_u64().is_some_and(|m| n < m)
            || s["maxItems"].as_u64().is_some_and(|m| n > m)
        {
            return fail(format!("{n} items out of bounds"));
        }
        if s.get("items").is_some() {
            for (i, item) in items.iter().enumerate() {
                validate_at(&s["items"], item, &format!("{path}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        for r in s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(r) {
                return fail(format!("`{r}` is required"));
            }
        }
        let props = s["properties"].as_object();
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate_at(ps, val, &format!("{path}.{k}"))?,
                None if s["additionalProperties"] == Value::Bool(false) => {
                    return fail(format!("`{k}` is not allowed"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_nested_values_and_names_the_path() {
        let s = json!({"type": "object", "required": ["items"], "additionalProperties": false,
            "properties": {"items": {"type": "array", "minItems": 1,
                "items": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}}}});
        assert!(validate(&s, &json!({"items": [{"n": 1}]})).is_ok());
        assert_eq!(
            validate(&s, &json!({"items": [{"n": -1}]})).unwrap_err(),
            "$.items[0].n: -1 < minimum 0"
        );
        assert!(
            validate(&s, &json!({"items": [], }))
                .unwrap_err()
                .contains("items out of bounds")
        );
        assert!(validate(&s, &json!({"items": [1], "x": 1})).is_err());
        assert!(
            check_schema(&json!({"type": "object", "patternProperties": {}}))
                .unwrap_err()
                .contains("patternProperties")
        );
    }
}
