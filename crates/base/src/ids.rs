//! Typed identifiers. Constructors validate, so a value of these types is always well formed.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("invalid experiment id '{0}': expected a non-negative integer")]
    Experiment(String),
    #[error("invalid run id '{0}': expected 32 hexadecimal characters")]
    Run(String),
}

/// An experiment id. MLflow sends and answers them as decimal strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExperimentId(i64);

impl ExperimentId {
    /// The experiment `mlflow.start_run()` writes to when none is set.
    pub const DEFAULT: ExperimentId = ExperimentId(0);

    pub fn new(raw: i64) -> ExperimentId {
        ExperimentId(raw)
    }

    pub fn parse(s: &str) -> Result<ExperimentId, IdError> {
        match s.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(ExperimentId(v)),
            _ => Err(IdError::Experiment(s.to_owned())),
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ExperimentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A run id: 32 lower-case hex digits, like MLflow's uuid4().hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    pub fn random() -> RunId {
        RunId(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn parse(s: &str) -> Result<RunId, IdError> {
        let ok = s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(RunId(s.to_ascii_lowercase()))
        } else {
            Err(IdError::Run(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate() {
        assert_eq!(ExperimentId::parse("12").map(|e| e.get()), Ok(12));
        assert!(ExperimentId::parse("-1").is_err());
        assert!(ExperimentId::parse("abc").is_err());
        let r = RunId::random();
        assert_eq!(RunId::parse(r.as_str()), Ok(r.clone()));
        assert!(RunId::parse("../etc").is_err());
    }
}
