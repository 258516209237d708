//! MLflow's input limits and key rules, so clients see the same refusals they would from MLflow.

use crate::{Error, Metric, Param, Result, Tag};

pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
pub const MAX_TAG_VALUE_LEN: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LEN: usize = 500;

/// Keys are alphanumerics, `_ - . space / :`; never a path that climbs or starts at the root.
pub fn key(kind: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid(format!(
            "Invalid {kind} name: '' (must not be empty)"
        )));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(format!(
            "{kind} name '{}...' had length {}, which exceeded length limit of {MAX_KEY_LEN}",
            &key[..key.char_indices().nth(20).map_or(key.len(), |(i, _)| i)],
            key.len()
        )));
    }
    let chars_ok = key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':'));
    if !chars_ok {
        return Err(Error::invalid(format!(
            "Invalid {kind} name: '{key}'. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."
        )));
    }
    if key.starts_with('/') || key.split('/').any(|s| s == "..") {
        return Err(Error::invalid(format!(
            "Invalid {kind} name: '{key}'. Names cannot be paths that climb or start at the root."
        )));
    }
    Ok(())
}

pub fn param(p: &Param) -> Result<()> {
    key("param", &p.key)?;
    if p.value.len() > MAX_PARAM_VALUE_LEN {
        return Err(Error::invalid(format!(
            "Param value for '{}' had length {}, which exceeded length limit of {MAX_PARAM_VALUE_LEN}",
            p.key,
            p.value.len()
        )));
    }
    Ok(())
}

pub fn tag(t: &Tag) -> Result<()> {
    key("tag", &t.key)?;
    if t.value.len() > MAX_TAG_VALUE_LEN {
        return Err(Error::invalid(format!(
            "Tag value for '{}' had length {}, which exceeded length limit of {MAX_TAG_VALUE_LEN}",
            t.key,
            t.value.len()
        )));
    }
    Ok(())
}

pub fn metric(m: &Metric) -> Result<()> {
    key("metric", &m.key)
}

pub fn experiment_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid(
            "Invalid experiment name: must be a non-empty string",
        ));
    }
    if name.len() > MAX_EXPERIMENT_NAME_LEN {
        return Err(Error::invalid(format!(
            "Experiment name exceeds the limit of {MAX_EXPERIMENT_NAME_LEN} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        assert!(key("metric", "train/loss:epoch 1").is_ok());
        assert!(key("metric", "").is_err());
        assert!(key("metric", "a/../b").is_err());
        assert!(key("metric", "/abs").is_err());
        assert!(key("metric", "semi;colon").is_err());
        assert!(key("metric", &"k".repeat(251)).is_err());
        assert!(param(&Tag::new("p", "v".repeat(6001))).is_err());
        assert!(tag(&Tag::new("t", "v".repeat(8000))).is_ok());
    }
}
