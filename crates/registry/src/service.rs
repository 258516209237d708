//! Registry operations, one function each, shared by every protocol. Promotion gates live here:
//! a registered model may declare checks (tags `capstan.check.<name>` holding a clause of the run
//! search grammar, e.g. `metrics.rmse < 60`); an alias moves to a version only if the version's
//! run passes them all.

use crate::{Lineage, ModelVersion, NewVersion, RegisteredModel, RegistryStore, Stage};
use base::RunId;
use std::sync::Arc;
use tracking::filter::{SimpleClause, parse_filter, parse_simple_filter};
use tracking::{Error, Page, Result, Tag, Tracking, validate};

/// Tags of a registered model whose values are promotion checks.
pub const CHECK_TAG_PREFIX: &str = "capstan.check.";

#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn RegistryStore>,
    tracking: Tracking,
}

fn page<T: Clone>(items: Vec<T>, max_results: u32, offset: u64) -> Result<Page<T>> {
    if max_results == 0 || max_results > 50_000 {
        return Err(Error::invalid("max_results must be between 1 and 50000"));
    }
    let start = (offset as usize).min(items.len());
    let end = (start + max_results as usize).min(items.len());
    Ok(Page {
        next_offset: (end < items.len()).then_some(end as u64),
        items: items[start..end].to_vec(),
    })
}

fn model_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("Registered model name cannot be empty."));
    }
    if name.len() > 256 || name.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "Invalid registered model name '{name}'"
        )));
    }
    Ok(())
}

fn alias_name(alias: &str) -> Result<()> {
    let ok = !alias.is_empty()
        && alias.len() <= 255
        && alias
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(Error::invalid(format!(
            "Invalid alias name '{alias}': use letters, digits, '_' and '-'"
        )));
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest"
        || (lower.starts_with('v')
            && lower.len() > 1
            && lower[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::invalid(format!("Alias '{alias}' is reserved")));
    }
    Ok(())
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

fn clause_accepts(c: &SimpleClause, attr: impl Fn(&str) -> Option<String>, tags: &[Tag]) -> bool {
    match (&c.attr, &c.tag) {
        (Some(a), _) => c.accepts(attr(a).as_deref()),
        (None, Some(k)) => c.accepts(tag_value(tags, k)),
        (None, None) => false,
    }
}

impl Registry {
    pub fn new(store: Arc<dyn RegistryStore>, tracking: Tracking) -> Registry {
        Registry { store, tracking }
    }

    pub async fn create_model(
        &self,
        name: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<RegisteredModel> {
        model_name(name)?;
        tags.iter().try_for_each(validate::tag)?;
        self.store.create_model(name, description, tags).await
    }

    pub async fn get_model(&self, name: &str) -> Result<RegisteredModel> {
        self.store.get_model(name).await
    }

    /// `filter` over `name` and `tags.<key>`; ordered by name (ASC by default).
    pub async fn search_models(
        &self,
        filter: &str,
        order_by: &[String],
        max_results: u32,
        offset: u64,
    ) -> Result<Page<RegisteredModel>> {
        let clauses = parse_simple_filter(filter, &["name"])?;
        let mut models = self.store.list_models().await?;
        models.retain(|m| {
            clauses
                .iter()
                .all(|c| clause_accepts(c, |_| Some(m.name.clone()), &m.tags))
        });
        let desc = match order_by.first().map(|o| o.to_ascii_lowercase()) {
            None => false,
            Some(o) if o.starts_with("name") => o.ends_with("desc"),
            Some(o) if o.starts_with("last_updated_timestamp") || o.starts_with("timestamp") => {
                models.sort_by_key(|m| m.last_updated_time);
                if o.ends_with("desc") {
                    models.reverse();
                }
                return page(models, max_results, offset);
            }
            Some(o) => return Err(Error::invalid(format!("Invalid order_by clause '{o}'"))),
        };
        models.sort_by(|a, b| a.name.cmp(&b.name));
        if desc {
            models.reverse();
        }
        page(models, max_results, offset)
    }

    pub async fn rename_model(&self, name: &str, new_name: &str) -> Result<RegisteredModel> {
        model_name(new_name)?;
        self.store.rename_model(name, new_name).await
    }

    pub async fn update_model(&self, name: &str, description: &str) -> Result<RegisteredModel> {
        self.store.update_model(name, description).await
    }

    pub async fn delete_model(&self, name: &str) -> Result<()> {
        self.store.delete_model(name).await
    }

    pub async fn set_model_tag(&self, name: &str, tag: &Tag) -> Result<()> {
        validate::tag(tag)?;
        if let Some(check) = tag.key.strip_prefix(CHECK_TAG_PREFIX) {
            // Refuse a check that could never be evaluated.
            parse_filter(&tag.value)
                .map_err(|e| Error::invalid(format!("Invalid check '{check}': {e}")))?;
        }
        self.store.set_model_tag(name, tag).await
    }

    pub async fn delete_model_tag(&self, name: &str, key: &str) -> Result<()> {
        self.store.delete_model_tag(name, key).await
    }

    pub async fn create_version(&self, name: &str, new: NewVersion) -> Result<ModelVersion> {
        new.tags.iter().try_for_each(validate::tag)?;
        if new.source.trim().is_empty() {
            return Err(Error::invalid("A model version needs a source"));
        }
        self.store.create_version(name, &new).await
    }

    pub async fn get_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        self.store.get_version(name, version).await
    }

    /// `filter` over `name`, `run_id`, `source_path`, `version_number` and `tags.<key>`.
    pub async fn search_versions(
        &self,
        filter: &str,
        max_results: u32,
        offset: u64,
    ) -> Result<Page<ModelVersion>> {
        let clauses =
            parse_simple_filter(filter, &["name", "run_id", "source_path", "version_number"])?;
        // An equality on the name narrows the read to one model.
        let name = clauses
            .iter()
            .find_map(|c| match (&c.attr, c.op.as_str(), &c.value) {
                (Some(a), "=", tracking::filter::Literal::Str(v)) if a == "name" => Some(v.clone()),
                _ => None,
            });
        let mut versions = self.store.list_versions(name.as_deref()).await?;
        versions.retain(|v| {
            clauses.iter().all(|c| {
                let attr = |a: &str| match a {
                    "name" => Some(v.name.clone()),
                    "run_id" => v.run_id.clone(),
                    "source_path" => Some(v.source.clone()),
                    "version_number" => Some(v.version.to_string()),
                    _ => None,
                };
                clause_accepts(c, attr, &v.tags)
            })
        });
        page(versions, max_results, offset)
    }

    pub async fn update_version(
        &self,
        name: &str,
        version: i64,
        description: &str,
    ) -> Result<ModelVersion> {
        self.store.update_version(name, version, description).await
    }

    pub async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion> {
        let stage = Stage::parse(stage)
            .ok_or_else(|| Error::invalid(format!("Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived.")))?;
        self.store
            .set_stage(name, version, stage, archive_existing)
            .await
    }

    pub async fn delete_version(&self, name: &str, version: i64) -> Result<()> {
        self.store.delete_version(name, version).await
    }

    pub async fn set_version_tag(&self, name: &str, version: i64, tag: &Tag) -> Result<()> {
        validate::tag(tag)?;
        self.store.set_version_tag(name, version, tag).await
    }

    pub async fn delete_version_tag(&self, name: &str, version: i64, key: &str) -> Result<()> {
        self.store.delete_version_tag(name, version, key).await
    }

    /// The newest version in each of `stages` (all stages but None when empty).
    pub async fn latest_versions(
        &self,
        name: &str,
        stages: &[String],
    ) -> Result<Vec<ModelVersion>> {
        let wanted: Vec<Stage> = if stages.is_empty() {
            vec![
                Stage::None,
                Stage::Staging,
                Stage::Production,
                Stage::Archived,
            ]
        } else {
            stages
                .iter()
                .map(|s| {
                    Stage::parse(s).ok_or_else(|| Error::invalid(format!("Invalid stage '{s}'")))
                })
                .collect::<Result<_>>()?
        };
        self.store.get_model(name).await?;
        let versions = self.store.list_versions(Some(name)).await?;
        Ok(wanted
            .iter()
            .filter_map(|s| {
                versions
                    .iter()
                    .filter(|v| v.stage == *s)
                    .max_by_key(|v| v.version)
                    .cloned()
            })
            .collect())
    }

    /// Runs the model's checks against the version's run; the error names the first that fails.
    pub async fn check_promotion(&self, name: &str, version: i64) -> Result<Vec<(String, String)>> {
        let model = self.store.get_model(name).await?;
        let v = self.store.get_version(name, version).await?;
        let checks: Vec<(String, String)> = model
            .tags
            .iter()
            .filter_map(|t| {
                t.key
                    .strip_prefix(CHECK_TAG_PREFIX)
                    .map(|c| (c.to_owned(), t.value.clone()))
            })
            .collect();
        if checks.is_empty() {
            return Ok(checks);
        }
        let run_id = v.run_id.as_deref().ok_or_else(|| {
            Error::invalid(format!(
                "Model '{name}' version {version} has no run, so its checks cannot pass"
            ))
        })?;
        let run = self.tracking.get_run(&RunId::parse(run_id)?).await?;
        for (check, clause) in &checks {
            let filter = parse_filter(clause)?;
            if !filter.matches(&run) {
                let seen: Vec<String> = run
                    .metrics
                    .iter()
                    .map(|m| format!("metrics.{} = {}", m.key, m.value))
                    .collect();
                return Err(Error::invalid(format!(
                    "Model '{name}' version {version} failed check '{check}' ({clause}); its run has {}",
                    if seen.is_empty() {
                        "no metrics".to_owned()
                    } else {
                        seen.join(", ")
                    }
                )));
            }
        }
        Ok(checks)
    }

    /// Points `alias` at `version` if the version passes the model's checks.
    pub async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<()> {
        alias_name(alias)?;
        self.check_promotion(name, version).await?;
        self.store.set_alias(name, alias, version).await
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        self.store.delete_alias(name, alias).await
    }

    pub async fn version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        self.store.get_model(name).await?;
        let v =
            self.store.get_alias(name, alias).await?.ok_or_else(|| {
                Error::NotFound(format!("Registered model alias {alias} not found."))
            })?;
        self.store.get_version(name, v).await
    }

    /// The version, its run (with dataset inputs and params) and the code commit.
    pub async fn lineage(&self, name: &str, version: i64) -> Result<Lineage> {
        let version = self.store.get_version(name, version).await?;
        let run = match version.run_id.as_deref().map(RunId::parse) {
            Some(Ok(id)) => match self.tracking.get_run(&id).await {
                Ok(r) => Some(r),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            },
            _ => None,
        };
        let commit = run
            .as_ref()
            .and_then(|r| tag_value(&r.tags, "mlflow.source.git.commit").map(str::to_owned));
        Ok(Lineage {
            version,
            run,
            commit,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn alias_names() {
        assert!(super::alias_name("champion").is_ok());
        assert!(super::alias_name("latest").is_err());
        assert!(super::alias_name("v3").is_err());
        assert!(super::alias_name("a b").is_err());
    }
}
