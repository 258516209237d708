//! Feature definitions (Feast's objects, in one YAML file): entities (join keys), sources (CSV or
//! Parquet files with an event-timestamp column), feature views (entities, source, features with
//! types, TTL) and feature services (named feature lists for a model). `validate` checks every
//! reference between them; `check_sources` opens each source and checks its columns.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    pub name: String,
    pub join_keys: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub name: String,
    /// A CSV or Parquet file (relative paths resolve against the definitions file).
    pub path: String,
    /// The event-timestamp column.
    pub timestamp: String,
    /// Optional ingestion-time column: among rows with the same event time, the latest wins.
    #[serde(default)]
    pub created_timestamp: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Float,
    Int,
    String,
    Bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ValueType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureView {
    pub name: String,
    pub entities: Vec<String>,
    pub source: String,
    /// How long a value stays valid after its event time; 0 = forever.
    #[serde(default)]
    pub ttl_seconds: i64,
    pub features: Vec<Feature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureService {
    pub name: String,
    /// `view:feature` references.
    pub features: Vec<String>,
}

/// A feature computed when it is asked for, from request data and other views' features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemandFeature {
    pub name: String,
    /// An expression over request fields and source features (see [`crate::expr`]).
    pub expr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemandView {
    pub name: String,
    /// Feature views whose features the expressions may read (by feature name).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Fields the request (or the entity table) supplies.
    #[serde(default)]
    pub request: Vec<String>,
    pub features: Vec<OnDemandFeature>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definitions {
    #[serde(default)]
    pub entities: Vec<Entity>,
    #[serde(default)]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub feature_views: Vec<FeatureView>,
    #[serde(default)]
    pub feature_services: Vec<FeatureService>,
    #[serde(default)]
    pub on_demand_views: Vec<OnDemandView>,
}

/// What an on-demand feature needs: its expression, the request fields and the source features
/// (`view:feature`) it reads.
#[derive(Debug, Clone)]
pub struct OnDemandRef {
    pub view: String,
    pub feature: String,
    pub expr: crate::expr::Expr,
    pub request: Vec<String>,
    pub sources: Vec<String>,
}

/// A resolved `view:feature` reference.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRef<'a> {
    pub view: &'a FeatureView,
    pub feature: &'a Feature,
}

impl Definitions {
    pub fn from_yaml(text: &str) -> Result<Definitions, String> {
        let d: Definitions = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        d.validate()?;
        Ok(d)
    }

    /// Every cross-reference resolves and names are unique.
    pub fn validate(&self) -> Result<(), String> {
        fn unique<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> Result<(), String> {
            let mut seen = BTreeSet::new();
            for n in names {
                if n.trim().is_empty() {
                    return Err(format!("a {kind} has an empty name"));
                }
                if !seen.insert(n) {
                    return Err(format!("two {kind}s are named {n}"));
                }
            }
            Ok(())
        }
        unique("entity", self.entities.iter().map(|e| e.name.as_str()))?;
        unique("source", self.sources.iter().map(|e| e.name.as_str()))?;
        unique(
            "feature view",
            self.feature_views.iter().map(|e| e.name.as_str()),
        )?;
        unique(
            "feature service",
            self.feature_services.iter().map(|e| e.name.as_str()),
        )?;
        for e in &self.entities {
            if e.join_keys.is_empty() {
                return Err(format!("entity {} has no join keys", e.name));
            }
        }
        for v in &self.feature_views {
            if v.entities.is_empty() {
                return Err(format!("feature view {} has no entities", v.name));
            }
            for e in &v.entities {
                if !self.entities.iter().any(|x| &x.name == e) {
                    return Err(format!("feature view {}: unknown entity {e}", v.name));
                }
            }
            if !self.sources.iter().any(|s| s.name == v.source) {
                return Err(format!(
                    "feature view {}: unknown source {}",
                    v.name, v.source
                ));
            }
            if v.ttl_seconds < 0 {
                return Err(format!(
                    "feature view {}: ttl_seconds must not be negative",
                    v.name
                ));
            }
            unique(
                &format!("feature of view {}", v.name),
                v.features.iter().map(|f| f.name.as_str()),
            )?;
        }
        unique(
            "view",
            self.feature_views
                .iter()
                .map(|v| v.name.as_str())
                .chain(self.on_demand_views.iter().map(|v| v.name.as_str())),
        )?;
        for o in &self.on_demand_views {
            for src in &o.sources {
                if self.view(src).is_none() {
                    return Err(format!(
                        "on-demand view {}: unknown feature view {src}",
                        o.name
                    ));
                }
            }
            for f in &o.features {
                self.on_demand(&format!("{}:{}", o.name, f.name))
                    .map_err(|e| format!("on-demand view {}: {e}", o.name))?;
            }
        }
        for s in &self.feature_services {
            for f in &s.features {
                self.resolve_any(f)
                    .map_err(|e| format!("feature service {}: {e}", s.name))?;
            }
        }
        Ok(())
    }

    /// Whether `reference` names an on-demand view's feature.
    pub fn is_on_demand(&self, reference: &str) -> bool {
        reference
            .split_once(':')
            .is_some_and(|(v, _)| self.on_demand_views.iter().any(|o| o.name == v))
    }

    /// A stored or on-demand feature reference resolves.
    pub fn resolve_any(&self, reference: &str) -> Result<(), String> {
        if self.is_on_demand(reference) {
            self.on_demand(reference).map(|_| ())
        } else {
            self.resolve(reference).map(|_| ())
        }
    }

    /// The parsed on-demand feature and where its inputs come from.
    pub fn on_demand(&self, reference: &str) -> Result<OnDemandRef, String> {
        let (v, f) = reference
            .split_once(':')
            .ok_or_else(|| format!("feature {reference:?} is not view:feature"))?;
        let view = self
            .on_demand_views
            .iter()
            .find(|o| o.name == v)
            .ok_or_else(|| format!("unknown on-demand view {v}"))?;
        let feature = view
            .features
            .iter()
            .find(|x| x.name == f)
            .ok_or_else(|| format!("on-demand view {v} has no feature {f}"))?;
        let expr = crate::expr::Expr::parse(&feature.expr)
            .map_err(|e| format!("feature {f}: expression {:?}: {e}", feature.expr))?;
        let (mut request, mut sources) = (Vec::new(), Vec::new());
        for name in expr.vars() {
            if view.request.contains(&name) {
                request.push(name);
                continue;
            }
            let src = view
                .sources
                .iter()
                .find(|s| self.view(s).is_some_and(|fv| fv.features.iter().any(|x| x.name == name)))
                .ok_or_else(|| {
                    format!("feature {f}: {name} is neither a request field nor a feature of its sources")
                })?;
            sources.push(format!("{src}:{name}"));
        }
        Ok(OnDemandRef {
            view: v.to_owned(),
            feature: f.to_owned(),
            expr,
            request,
            sources,
        })
    }

    pub fn view(&self, name: &str) -> Option<&FeatureView> {
        self.feature_views.iter().find(|v| v.name == name)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// The join keys of a view, in its entities' order.
    pub fn join_keys(&self, view: &FeatureView) -> Vec<String> {
        view.entities
            .iter()
            .filter_map(|e| self.entity(e))
            .flat_map(|e| e.join_keys.iter().cloned())
            .collect()
    }

    pub fn resolve(&self, reference: &str) -> Result<FeatureRef<'_>, String> {
        let (v, f) = reference
            .split_once(':')
            .ok_or_else(|| format!("feature {reference:?} is not view:feature"))?;
        let view = self
            .view(v)
            .ok_or_else(|| format!("unknown feature view {v}"))?;
        let feature = view
            .features
            .iter()
            .find(|x| x.name == f)
            .ok_or_else(|| format!("feature view {v} has no feature {f}"))?;
        Ok(FeatureRef { view, feature })
    }

    /// The features of a service, or the given references.
    pub fn feature_list(
        &self,
        service: Option<&str>,
        refs: &[String],
    ) -> Result<Vec<String>, String> {
        match service {
            Some(name) => self
                .feature_services
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.features.clone())
                .ok_or_else(|| format!("unknown feature service {name}")),
            None if refs.is_empty() => {
                Err("name features (view:feature) or a feature service".into())
            }
            None => Ok(refs.to_vec()),
        }
    }

    /// Opens every source and checks its timestamp, key and feature columns exist.
    pub fn check_sources(&self, base: &Path) -> Result<(), String> {
        for s in &self.sources {
            let frame = data::frame::read_frame(&base.join(&s.path))
                .map_err(|e| format!("source {}: {e}", s.name))?;
            let need = |c: &str, what: &str| {
                if frame.column(c).is_none() {
                    Err(format!(
                        "source {} ({}) has no {what} column {c}",
                        s.name, s.path
                    ))
                } else {
                    Ok(())
                }
            };
            need(&s.timestamp, "timestamp")?;
            if let Some(c) = &s.created_timestamp {
                need(c, "created-timestamp")?;
            }
            for v in self.feature_views.iter().filter(|v| v.source == s.name) {
                for k in self.join_keys(v) {
                    need(&k, "join key")?;
                }
                for f in &v.features {
                    need(&f.name, &format!("feature ({})", v.name))?;
                    // Declared types must match what the source holds.
                    let numeric = matches!(
                        frame.column(&f.name).map(|c| &c.data),
                        Some(data::frame::ColumnData::Numeric(_))
                    );
                    let declared_numeric =
                        matches!(f.ty, ValueType::Float | ValueType::Int | ValueType::Bool);
                    if numeric != declared_numeric {
                        let ty = format!("{:?}", f.ty).to_lowercase();
                        return Err(format!(
                            "feature {}:{} is declared {ty} but source {} ({}) holds {} in column {}",
                            v.name,
                            f.name,
                            s.name,
                            s.path,
                            if numeric { "numbers" } else { "text" },
                            f.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Applied definitions with the directory their relative source paths resolve against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub definitions: Definitions,
    pub base_dir: String,
    pub applied_ms: i64,
}

/// Where applied definitions live (the metadata store); implemented by `store`.
#[async_trait::async_trait]
pub trait FeatureRegistry: Send + Sync {
    /// Replaces the applied definitions (objects no longer defined are gone, as with `feast apply`).
    async fn apply(&self, applied: &Applied) -> Result<(), String>;
    async fn applied(&self) -> Result<Option<Applied>, String>;
    /// The end time of `view`'s last materialisation.
    async fn materialized(&self, view: &str) -> Result<Option<i64>, String>;
    async fn set_materialized(&self, view: &str, end_micros: i64) -> Result<(), String>;
}
