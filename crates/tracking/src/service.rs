//! The tracking operations: one function per operation, called by every protocol that exposes it.
//! Validation happens here, once; the store only persists.

use crate::filter::{parse_filter, parse_order_by};
use crate::store::{SearchRuns, TrackingStore};
use crate::{
    DatasetInput, Error, Experiment, Lifecycle, Metric, NewRun, Page, Param, Result, Run, RunInfo,
    RunUpdate, Tag, ViewType, validate,
};
use base::{ExperimentId, RunId};
use std::sync::Arc;

/// MLflow's request limits, kept identical so clients batch the same way.
pub struct Limits {
    pub batch_metrics: usize,
    pub batch_params: usize,
    pub batch_tags: usize,
    pub batch_total: usize,
    pub max_search_results: u32,
    pub max_history_results: u32,
}

pub const LIMITS: Limits = Limits {
    batch_metrics: 1000,
    batch_params: 100,
    batch_tags: 100,
    batch_total: 1000,
    max_search_results: 50_000,
    max_history_results: 25_000,
};

/// The tag MLflow keeps the run name in.
pub const RUN_NAME_TAG: &str = "mlflow.runName";
const USER_TAG: &str = "mlflow.user";

#[derive(Clone)]
pub struct Tracking {
    store: Arc<dyn TrackingStore>,
}

impl Tracking {
    pub fn new(store: Arc<dyn TrackingStore>) -> Tracking {
        Tracking { store }
    }

    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> Result<ExperimentId> {
        validate::experiment_name(name)?;
        tags.iter().try_for_each(validate::tag)?;
        let location = match artifact_location {
            Some(l) if !l.trim().is_empty() => l.to_owned(),
            _ => "mlflow-artifacts:/{id}".to_owned(),
        };
        self.store.create_experiment(name, &location, tags).await
    }

    pub async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment> {
        self.store.get_experiment(id).await
    }

    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        self.store.get_experiment_by_name(name).await
    }

    pub async fn list_experiments(
        &self,
        view: ViewType,
        max_results: u32,
        offset: u64,
    ) -> Result<Page<Experiment>> {
        if max_results == 0 || max_results > LIMITS.max_search_results {
            return Err(Error::invalid(format!(
                "max_results must be between 1 and {}",
                LIMITS.max_search_results
            )));
        }
        self.store.list_experiments(view, max_results, offset).await
    }

    /// MLflow's `search_experiments`: filter and order in memory over the experiments of `view`
    /// (experiments number in the thousands, runs in the millions).
    pub async fn search_experiments(
        &self,
        view: ViewType,
        filter: &str,
        order_by: &[String],
        max_results: u32,
        offset: u64,
    ) -> Result<Page<Experiment>> {
        use crate::filter::{EXPERIMENT_ATTRS, parse_simple_filter};
        if max_results == 0 || max_results > LIMITS.max_search_results {
            return Err(Error::invalid(format!(
                "max_results must be between 1 and {}",
                LIMITS.max_search_results
            )));
        }
        let clauses = parse_simple_filter(filter, EXPERIMENT_ATTRS)?;
        // Times compare with numbers; the name and tags with quoted strings.
        for c in &clauses {
            let numeric = matches!(
                c.attr.as_deref(),
                Some("creation_time" | "last_update_time")
            );
            if numeric != matches!(c.value, crate::filter::Literal::Num(_)) {
                let what = c
                    .attr
                    .clone()
                    .or_else(|| c.tag.as_ref().map(|t| format!("tags.{t}")))
                    .unwrap_or_default();
                return Err(Error::invalid(format!(
                    "Invalid filter '{filter}': {what} needs {}",
                    if numeric {
                        "a number"
                    } else {
                        "a quoted string"
                    }
                )));
            }
        }
        let mut all = self
            .store
            .list_experiments(view, LIMITS.max_search_results, 0)
            .await?
            .items;
        all.retain(|e| {
            clauses
                .iter()
                .all(|c| match (c.attr.as_deref(), c.tag.as_deref()) {
                    (Some("name"), _) => c.accepts(Some(&e.name)),
                    (Some("creation_time"), _) => c.accepts(Some(&e.creation_time.to_string())),
                    (Some(_), _) => c.accepts(Some(&e.last_update_time.to_string())),
                    // An experiment without the tag matches no tag clause.
                    (None, Some(k)) => e
                        .tags
                        .iter()
                        .any(|t| t.key == k && c.accepts(Some(&t.value))),
                    (None, None) => false,
                })
        });
        let mut keys: Vec<(String, bool)> = Vec::new();
        for item in order_by {
            let mut parts = item.split_whitespace();
            let field = parts
                .next()
                .unwrap_or("")
                .trim_start_matches("attributes.")
                .trim_start_matches("attribute.");
            let asc = match parts.next().map(|s| s.to_ascii_uppercase()) {
                None => true,
                Some(d) if d == "ASC" => true,
                Some(d) if d == "DESC" => false,
                Some(d) => return Err(Error::invalid(format!("Invalid order_by direction '{d}'"))),
            };
            if !matches!(
                field,
                "name" | "experiment_id" | "creation_time" | "last_update_time"
            ) {
                return Err(Error::invalid(format!(
                    "Invalid order_by key '{field}' for experiments"
                )));
            }
            keys.push((field.to_owned(), asc));
        }
        if keys.is_empty() {
            keys.push(("creation_time".into(), false));
        }
        all.sort_by(|a, b| {
            for (field, asc) in &keys {
                let ord = match field.as_str() {
                    "name" => a.name.cmp(&b.name),
                    "experiment_id" => a.id.cmp(&b.id),
                    "creation_time" => a.creation_time.cmp(&b.creation_time),
                    _ => a.last_update_time.cmp(&b.last_update_time),
                };
                let ord = if *asc { ord } else { ord.reverse() };
                if ord.is_ne() {
                    return ord;
                }
            }
            b.id.cmp(&a.id)
        });
        let start = (offset as usize).min(all.len());
        let end = (start + max_results as usize).min(all.len());
        let next_offset = (end < all.len()).then_some(end as u64);
        Ok(Page {
            items: all[start..end].to_vec(),
            next_offset,
        })
    }

    pub async fn rename_experiment(&self, id: ExperimentId, new_name: &str) -> Result<()> {
        validate::experiment_name(new_name)?;
        self.store.rename_experiment(id, new_name).await
    }

    pub async fn delete_experiment(&self, id: ExperimentId) -> Result<()> {
        if id == ExperimentId::DEFAULT {
            return Err(Error::invalid("Cannot delete the default experiment '0'."));
        }
        self.store
            .set_experiment_lifecycle(id, Lifecycle::Deleted)
            .await
    }

    pub async fn restore_experiment(&self, id: ExperimentId) -> Result<()> {
        self.store
            .set_experiment_lifecycle(id, Lifecycle::Active)
            .await
    }

    pub async fn set_experiment_tag(&self, id: ExperimentId, tag: &Tag) -> Result<()> {
        validate::tag(tag)?;
        self.store.set_experiment_tag(id, tag).await
    }

    pub async fn create_run(&self, mut new: NewRun) -> Result<Run> {
        new.tags.iter().try_for_each(validate::tag)?;
        let experiment = self.store.get_experiment(new.experiment_id).await?;
        if experiment.lifecycle != Lifecycle::Active {
            return Err(Error::invalid(format!(
                "The experiment {} must be in the 'active' state. Current state is deleted.",
                experiment.id
            )));
        }
        let tag_name = new
            .tags
            .iter()
            .find(|t| t.key == RUN_NAME_TAG)
            .map(|t| t.value.clone());
        let run_name = match (new.run_name.take().filter(|n| !n.is_empty()), tag_name) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::invalid(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='{a}', mlflow.runName='{b}')."
                )));
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => generate_run_name(),
        };
        new.tags.retain(|t| t.key != RUN_NAME_TAG);
        new.tags.push(Tag::new(RUN_NAME_TAG, run_name.clone()));
        if new.user_id.is_empty()
            && let Some(u) = new.tags.iter().find(|t| t.key == USER_TAG)
        {
            new.user_id = u.value.clone();
        }
        let run_id = RunId::random();
        let root = format!(
            "{}/{}/artifacts",
            experiment.artifact_location.trim_end_matches('/'),
            run_id
        );
        self.store.create_run(&run_id, &new, &run_name, &root).await
    }

    pub async fn get_run(&self, id: &RunId) -> Result<Run> {
        self.store.get_run(id).await
    }

    pub async fn update_run(&self, id: &RunId, update: RunUpdate) -> Result<RunInfo> {
        if let Some(name) = &update.run_name {
            validate::tag(&Tag::new(RUN_NAME_TAG, name.clone()))?;
        }
        self.store.update_run(id, &update).await
    }

    pub async fn delete_run(&self, id: &RunId) -> Result<()> {
        self.store.set_run_lifecycle(id, Lifecycle::Deleted).await
    }

    pub async fn restore_run(&self, id: &RunId) -> Result<()> {
        self.store.set_run_lifecycle(id, Lifecycle::Active).await
    }

    /// Logs metrics, params and tags atomically, within MLflow's batch limits.
    pub async fn log_batch(
        &self,
        id: &RunId,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        let over = |what: &str, n: usize, max: usize| {
            Error::invalid(format!(
                "A batch logging request can contain at most {max} {what}. Got {n} {what}."
            ))
        };
        if metrics.len() > LIMITS.batch_metrics {
            return Err(over("metrics", metrics.len(), LIMITS.batch_metrics));
        }
        if params.len() > LIMITS.batch_params {
            return Err(over("params", params.len(), LIMITS.batch_params));
        }
        if tags.len() > LIMITS.batch_tags {
            return Err(over("tags", tags.len(), LIMITS.batch_tags));
        }
        let total = metrics.len() + params.len() + tags.len();
        if total > LIMITS.batch_total {
            return Err(over(
                "metrics, params and tags in total",
                total,
                LIMITS.batch_total,
            ));
        }
        metrics.iter().try_for_each(validate::metric)?;
        params.iter().try_for_each(validate::param)?;
        tags.iter().try_for_each(validate::tag)?;
        // The same param twice in one batch is fine only with the same value.
        let mut unique: Vec<Param> = Vec::with_capacity(params.len());
        for p in params {
            match unique.iter().find(|u| u.key == p.key) {
                Some(u) if u.value != p.value => {
                    return Err(Error::invalid(format!(
                        "Duplicate parameter key '{}' with different values ('{}', '{}') in one batch",
                        p.key, u.value, p.value
                    )));
                }
                Some(_) => {}
                None => unique.push(p.clone()),
            }
        }
        self.store.log_batch(id, metrics, &unique, tags).await
    }

    pub async fn delete_tag(&self, id: &RunId, key: &str) -> Result<()> {
        self.store.delete_tag(id, key).await
    }

    pub async fn log_inputs(&self, id: &RunId, inputs: &[DatasetInput]) -> Result<()> {
        for i in inputs {
            if i.dataset.name.is_empty() || i.dataset.digest.is_empty() {
                return Err(Error::invalid("A dataset input needs a name and a digest"));
            }
            i.tags.iter().try_for_each(validate::tag)?;
        }
        self.store.log_inputs(id, inputs).await
    }

    pub async fn metric_history(
        &self,
        id: &RunId,
        key: &str,
        max_results: Option<u32>,
        offset: u64,
    ) -> Result<Page<Metric>> {
        let max = max_results.unwrap_or(LIMITS.max_history_results);
        if max == 0 || max > LIMITS.max_history_results {
            return Err(Error::invalid(format!(
                "max_results must be between 1 and {}",
                LIMITS.max_history_results
            )));
        }
        // Unknown runs are a 404 (MLflow answers an empty 200, which hides typos).
        self.store.get_run(id).await?;
        self.store.metric_history(id, key, max, offset).await
    }

    pub async fn search_runs(
        &self,
        experiment_ids: Vec<ExperimentId>,
        filter: &str,
        order_by: &[String],
        view: ViewType,
        max_results: u32,
        offset: u64,
    ) -> Result<Page<Run>> {
        if max_results == 0 || max_results > LIMITS.max_search_results {
            return Err(Error::invalid(format!(
                "Invalid value {max_results} for parameter 'max_results' supplied. It must be at most {}",
                LIMITS.max_search_results
            )));
        }
        let q = SearchRuns {
            experiment_ids,
            filter: parse_filter(filter)?,
            order_by: parse_order_by(order_by)?,
            view,
            max_results,
            offset,
        };
        self.store.search_runs(&q).await
    }
}

fn generate_run_name() -> String {
    const ADJ: &[&str] = &[
        "amber", "bold", "brave", "calm", "clever", "crisp", "eager", "gentle", "keen", "lucid",
        "merry", "nimble", "quiet", "rapid", "silent", "steady", "sunny", "swift", "tidy", "vivid",
    ];
    const NOUN: &[&str] = &[
        "anchor", "beacon", "capstan", "comet", "delta", "falcon", "harbor", "heron", "lantern",
        "maple", "otter", "pine", "quartz", "raven", "river", "sail", "summit", "tide", "willow",
        "wren",
    ];
    let r = uuid::Uuid::new_v4().as_u128();
    format!(
        "{}-{}-{}",
        ADJ[(r % 20) as usize],
        NOUN[((r >> 8) % 20) as usize],
        (r >> 16) % 1000
    )
}
