//! Registry domain types.

use tracking::Tag;

/// MLflow's legacy stages, still used by older clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }

    /// Case-insensitive, as MLflow accepts it.
    pub fn parse(s: &str) -> Option<Stage> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Stage::None),
            "staging" => Some(Stage::Staging),
            "production" => Some(Stage::Production),
            "archived" => Some(Stage::Archived),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub description: String,
    /// Where the model's files are, e.g. `runs:/<run_id>/model` or `mlflow-artifacts:/…`.
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: String,
    pub stage: Stage,
    pub tags: Vec<Tag>,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub description: String,
    pub tags: Vec<Tag>,
    /// (alias, version)
    pub aliases: Vec<(String, i64)>,
    /// The newest version in each stage.
    pub latest_versions: Vec<ModelVersion>,
}

/// What a new version is made from.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: String,
    pub description: String,
    pub tags: Vec<Tag>,
}

/// A version traced back to what made it.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub version: ModelVersion,
    pub run: Option<tracking::Run>,
    /// `mlflow.source.git.commit` of the run, when it was recorded.
    pub commit: Option<String>,
}
