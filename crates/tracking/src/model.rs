//! Domain types of experiment tracking. These are not the JSON of any protocol.

use base::{ExperimentId, RunId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Active,
    Deleted,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Lifecycle> {
        match s {
            "active" => Some(Lifecycle::Active),
            "deleted" => Some(Lifecycle::Deleted),
            _ => None,
        }
    }
}

/// Which lifecycle stages a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    pub fn parse(s: &str) -> Option<ViewType> {
        match s.to_ascii_uppercase().as_str() {
            "ACTIVE_ONLY" | "1" => Some(ViewType::ActiveOnly),
            "DELETED_ONLY" | "2" => Some(ViewType::DeletedOnly),
            "ALL" | "3" => Some(ViewType::All),
            _ => None,
        }
    }

    pub fn admits(self, l: Lifecycle) -> bool {
        match self {
            ViewType::ActiveOnly => l == Lifecycle::Active,
            ViewType::DeletedOnly => l == Lifecycle::Deleted,
            ViewType::All => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A logged parameter; same shape as a tag, immutable once logged.
pub type Param = Tag;

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub id: ExperimentId,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle: Lifecycle,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// Accepts the enum names and MLflow's proto numbers.
    pub fn parse(s: &str) -> Option<RunStatus> {
        match s.to_ascii_uppercase().as_str() {
            "RUNNING" | "1" => Some(RunStatus::Running),
            "SCHEDULED" | "2" => Some(RunStatus::Scheduled),
            "FINISHED" | "3" => Some(RunStatus::Finished),
            "FAILED" | "4" => Some(RunStatus::Failed),
            "KILLED" | "5" => Some(RunStatus::Killed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Finished | RunStatus::Failed | RunStatus::Killed
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub run_id: RunId,
    pub experiment_id: ExperimentId,
    pub run_name: String,
    pub user_id: String,
    pub status: RunStatus,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle: Lifecycle,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

impl Metric {
    /// MLflow's order for "the latest value" of a key: highest step, then timestamp, then value
    /// (NaN below every number).
    pub fn is_later_than(&self, other: &Metric) -> bool {
        let v = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
        (self.step, self.timestamp) > (other.step, other.timestamp)
            || ((self.step, self.timestamp) == (other.step, other.timestamp)
                && v(self.value) > v(other.value))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    pub schema: Option<String>,
    pub profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInput {
    pub dataset: Dataset,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub info: RunInfo,
    /// The latest value of each metric key.
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
    pub inputs: Vec<DatasetInput>,
}

/// What a new run starts with.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub experiment_id: ExperimentId,
    pub run_name: Option<String>,
    pub user_id: String,
    pub start_time: i64,
    pub tags: Vec<Tag>,
}

/// Fields of a run that `runs/update` may change.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

/// One page of results plus the offset of the next page, if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_offset: Option<u64>,
}

/// Scope of an API token; each scope includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub scope: Scope,
    pub created: i64,
}
