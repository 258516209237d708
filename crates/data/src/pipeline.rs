//! Pipelines in DVC's format: stages from `dvc.yaml` (cmd, deps, params from `params.yaml`, outs,
//! metrics), the hashes of the last run in `dvc.lock` (schema 2.0, readable by `dvc`), a run cache
//! that restores outputs of a (cmd, deps, params) seen before, and `repro` in dependency order.

use crate::hashing::{StateCache, md5_bytes};
use crate::pointer::Out;
use crate::repo::{DataError, Repo};
use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub cmd: String,
    pub deps: Vec<String>,
    /// (params file, key) pairs.
    pub params: Vec<(String, String)>,
    /// (path, cached) — metrics are outs with `cache: false`.
    pub outs: Vec<(String, bool)>,
}

/// What `repro` did with a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRun {
    Unchanged(String),
    Restored(String),
    Ran(String),
}

fn pipeline_err(m: impl Into<String>) -> DataError {
    DataError::Pointer {
        file: "dvc.yaml".into(),
        message: m.into(),
    }
}

fn str_list(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_sequence).cloned().unwrap_or_default()
}

/// The templating context, as DVC builds it: `params.yaml` when present, then each `vars:` entry
/// (a params file to load, or an inline mapping).
fn template_context(root: &Path, doc: &Value) -> Result<Mapping, DataError> {
    let mut ctx = Mapping::new();
    let load = |file: &str| -> Result<Mapping, DataError> {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        let v: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| pipeline_err(format!("{file}: {e}")))?;
        Ok(v.as_mapping().cloned().unwrap_or_default())
    };
    if root.join("params.yaml").exists() {
        ctx.extend(load("params.yaml")?);
    }
    for v in str_list(doc.get("vars")) {
        match v {
            Value::String(file) => ctx.extend(load(&file)?),
            Value::Mapping(m) => ctx.extend(m),
            _ => {
                return Err(pipeline_err(
                    "a `vars:` entry must be a file name or a mapping",
                ));
            }
        }
    }
    Ok(ctx)
}

fn lookup(ctx: &Mapping, expr: &str) -> Option<Value> {
    let mut parts = expr.trim().split('.');
    let mut v = ctx.get(parts.next()?)?.clone();
    for p in parts {
        v = match &v {
            Value::Sequence(items) => items.get(p.parse::<usize>().ok()?)?.clone(),
            other => other.get(p)?.clone(),
        };
    }
    Some(v)
}

/// Replaces every `${expr}` in the strings of `v`.
fn interpolate(v: &Value, ctx: &Mapping) -> Result<Value, DataError> {
    Ok(match v {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let end = rest[start..]
                    .find('}')
                    .ok_or_else(|| pipeline_err(format!("unclosed ${{ in '{s}'")))?
                    + start;
                let expr = &rest[start + 2..end];
                let value = lookup(ctx, expr)
                    .ok_or_else(|| pipeline_err(format!("'{expr}' is not defined (in '{s}')")))?;
                out.push_str(&rest[..start]);
                out.push_str(&match value {
                    Value::String(x) => x,
                    other => serde_yaml_ng::to_string(&other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                });
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|i| interpolate(i, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, v) in m {
                out.insert(interpolate(k, ctx)?, interpolate(v, ctx)?);
            }
            Value::Mapping(out)
        }
        other => other.clone(),
    })
}

/// Interpolates every stage and expands `foreach`/`do` into `name@key` stages.
fn expand_stages(stages: &Mapping, ctx: &Mapping) -> Result<Vec<(Value, Value)>, DataError> {
    let mut out = Vec::new();
    for (name, body) in stages {
        let n = name
            .as_str()
            .ok_or_else(|| pipeline_err("a stage name is not a string"))?;
        match (body.get("foreach"), body.get("do")) {
            (Some(items), Some(template)) => {
                let items = interpolate(items, ctx)?;
                let pairs: Vec<(String, Value)> = match items {
                    Value::Sequence(list) => list
                        .into_iter()
                        .map(|i| {
                            let key = match &i {
                                Value::String(s) => s.clone(),
                                other => serde_yaml_ng::to_string(other)
                                    .unwrap_or_default()
                                    .trim()
                                    .to_owned(),
                            };
                            (key, i)
                        })
                        .collect(),
                    Value::Mapping(m) => m
                        .into_iter()
                        .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v))
                        .collect(),
                    _ => {
                        return Err(pipeline_err(format!(
                            "stage '{n}': foreach needs a list or a mapping"
                        )));
                    }
                };
                for (key, item) in pairs {
                    let mut local = ctx.clone();
                    local.insert("item".into(), item);
                    local.insert("key".into(), Value::String(key.clone()));
                    out.push((
                        Value::String(format!("{n}@{key}")),
                        interpolate(template, &local)?,
                    ));
                }
            }
            (Some(_), None) => {
                return Err(pipeline_err(format!("stage '{n}': foreach without do")));
            }
            _ => out.push((name.clone(), interpolate(body, ctx)?)),
        }
    }
    Ok(out)
}

/// Reads the stages of `dvc.yaml`.
pub fn read_stages(root: &Path) -> Result<Vec<Stage>, DataError> {
    let path = root.join("dvc.yaml");
    let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
        path: path.clone(),
        source,
    })?;
    let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| pipeline_err(e.to_string()))?;
    let raw_stages = doc
        .get("stages")
        .and_then(Value::as_mapping)
        .ok_or_else(|| pipeline_err("no `stages:` mapping"))?;
    let context = template_context(root, &doc)?;
    let stages = expand_stages(raw_stages, &context)?;
    let mut out = Vec::new();
    for (name, body) in &stages {
        let name = name
            .as_str()
            .ok_or_else(|| pipeline_err("a stage name is not a string"))?
            .to_owned();
        let cmd = match body.get("cmd") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Sequence(cmds)) => cmds
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" && "),
            _ => return Err(pipeline_err(format!("stage '{name}' has no cmd"))),
        };
        let deps = str_list(body.get("deps"))
            .iter()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect();
        let mut params = Vec::new();
        for p in str_list(body.get("params")) {
            match p {
                Value::String(k) => params.push(("params.yaml".to_owned(), k)),
                Value::Mapping(m) => {
                    for (file, keys) in m {
                        let file = file.as_str().unwrap_or("params.yaml").to_owned();
                        for k in str_list(Some(&keys)) {
                            if let Some(k) = k.as_str() {
                                params.push((file.clone(), k.to_owned()));
                            }
                        }
                    }
                }
                _ => {
                    return Err(pipeline_err(format!(
                        "stage '{name}': unreadable params entry"
                    )));
                }
            }
        }
        let mut outs = Vec::new();
        for (key, default_cache) in [("outs", true), ("metrics", true), ("plots", true)] {
            for o in str_list(body.get(key)) {
                match o {
                    Value::String(p) => outs.push((p, default_cache)),
                    Value::Mapping(m) => {
                        for (p, opts) in m {
                            let cache = opts
                                .get("cache")
                                .and_then(Value::as_bool)
                                .unwrap_or(default_cache);
                            outs.push((p.as_str().unwrap_or_default().to_owned(), cache));
                        }
                    }
                    _ => {
                        return Err(pipeline_err(format!(
                            "stage '{name}': unreadable {key} entry"
                        )));
                    }
                }
            }
        }
        out.push(Stage {
            name,
            cmd,
            deps,
            params,
            outs,
        });
    }
    Ok(out)
}

fn produces(stage: &Stage, dep: &str) -> bool {
    stage.outs.iter().any(|(o, _)| {
        dep == o || dep.starts_with(&format!("{o}/")) || o.starts_with(&format!("{dep}/"))
    })
}

/// Stages in dependency order; a cycle is an error naming its stages.
pub fn order(stages: &[Stage]) -> Result<Vec<usize>, DataError> {
    let n = stages.len();
    let edges: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| j != i && stages[i].deps.iter().any(|d| produces(&stages[j], d)))
                .collect()
        })
        .collect();
    let (mut done, mut visiting, mut out) = (vec![false; n], vec![false; n], Vec::new());
    fn visit(
        i: usize,
        edges: &[Vec<usize>],
        done: &mut [bool],
        visiting: &mut [bool],
        out: &mut Vec<usize>,
        stages: &[Stage],
    ) -> Result<(), DataError> {
        if done[i] {
            return Ok(());
        }
        if visiting[i] {
            let cycle: Vec<&str> = (0..stages.len())
                .filter(|&k| visiting[k])
                .map(|k| stages[k].name.as_str())
                .collect();
            return Err(pipeline_err(format!(
                "the pipeline has a cycle through stages {}",
                cycle.join(", ")
            )));
        }
        visiting[i] = true;
        for &j in &edges[i] {
            visit(j, edges, done, visiting, out, stages)?;
        }
        visiting[i] = false;
        done[i] = true;
        out.push(i);
        Ok(())
    }
    for i in 0..n {
        visit(i, &edges, &mut done, &mut visiting, &mut out, stages)?;
    }
    Ok(out)
}

/// The edges `upstream -> downstream`, for `capstan dag`.
pub fn dag(stages: &[Stage]) -> Vec<(String, String)> {
    let mut edges = Vec::new();
    for a in stages {
        for b in stages {
            if a.name != b.name && b.deps.iter().any(|d| produces(a, d)) {
                edges.push((a.name.clone(), b.name.clone()));
            }
        }
    }
    edges
}

fn param_value(
    root: &Path,
    file: &str,
    key: &str,
    cache: &mut HashMap<String, Value>,
) -> Result<Value, DataError> {
    if !cache.contains_key(file) {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        cache.insert(
            file.to_owned(),
            serde_yaml_ng::from_str(&text).map_err(|e| pipeline_err(format!("{file}: {e}")))?,
        );
    }
    let mut v = cache.get(file).cloned().unwrap_or(Value::Null);
    for part in key.split('.') {
        v = v
            .get(part)
            .cloned()
            .ok_or_else(|| pipeline_err(format!("{file} has no parameter '{key}'")))?;
    }
    Ok(v)
}

fn out_entry(o: &Out) -> Value {
    let mut m = Mapping::new();
    m.insert("path".into(), o.path.clone().into());
    m.insert("hash".into(), "md5".into());
    m.insert("md5".into(), o.md5.clone().into());
    m.insert("size".into(), o.size.into());
    if let Some(n) = o.nfiles {
        m.insert("nfiles".into(), n.into());
    }
    Value::Mapping(m)
}

/// One stage's lock entry as `dvc` writes it.
fn lock_entry(
    stage: &Stage,
    deps: &[Out],
    params: &BTreeMap<String, BTreeMap<String, Value>>,
    outs: &[Out],
) -> Value {
    let mut m = Mapping::new();
    m.insert("cmd".into(), stage.cmd.clone().into());
    if !deps.is_empty() {
        m.insert(
            "deps".into(),
            Value::Sequence(deps.iter().map(out_entry).collect()),
        );
    }
    if !params.is_empty() {
        let mut pm = Mapping::new();
        for (file, kv) in params {
            let mut inner = Mapping::new();
            for (k, v) in kv {
                inner.insert(k.clone().into(), v.clone());
            }
            pm.insert(file.clone().into(), Value::Mapping(inner));
        }
        m.insert("params".into(), Value::Mapping(pm));
    }
    if !outs.is_empty() {
        m.insert(
            "outs".into(),
            Value::Sequence(outs.iter().map(out_entry).collect()),
        );
    }
    Value::Mapping(m)
}

impl Repo {
    /// Runs the stages whose inputs changed, in dependency order; a (cmd, deps, params) seen
    /// before restores its outputs from the cache instead of running.
    pub fn repro(&mut self, only: Option<&str>) -> Result<Vec<StageRun>, DataError> {
        let root = self.root().to_owned();
        let stages = read_stages(&root)?;
        let ordered = order(&stages)?;
        if let Some(name) = only
            && !stages.iter().any(|s| s.name == name)
        {
            return Err(pipeline_err(format!("no stage named '{name}'")));
        }
        let lock_path = root.join("dvc.lock");
        let mut lock: Value = match std::fs::read_to_string(&lock_path) {
            Ok(t) => {
                serde_yaml_ng::from_str(&t).map_err(|e| pipeline_err(format!("dvc.lock: {e}")))?
            }
            Err(_) => Value::Null,
        };
        let mut lock_stages = lock
            .get("stages")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let mut state = StateCache::load(&self.state_path());
        let mut param_files = HashMap::new();
        let mut report = Vec::new();
        for i in ordered {
            let stage = &stages[i];
            if only.is_some_and(|n| n != stage.name) {
                continue;
            }
            let mut deps: Vec<Out> = stage
                .deps
                .iter()
                .map(|d| self.snapshot_out(&mut state, d, false))
                .collect::<Result<_, _>>()?;
            deps.sort_by(|a, b| a.path.cmp(&b.path));
            let mut params: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
            for (file, key) in &stage.params {
                let v = param_value(&root, file, key, &mut param_files)?;
                params
                    .entry(file.clone())
                    .or_default()
                    .insert(key.clone(), v);
            }
            let current_outs: Option<Vec<Out>> = stage
                .outs
                .iter()
                .map(|(o, _)| self.snapshot_out(&mut state, o, false).ok())
                .collect();
            let entry_now = |outs: &[Out]| lock_entry(stage, &deps, &params, outs);
            if let (Some(outs), Some(locked)) =
                (&current_outs, lock_stages.get(stage.name.as_str()))
            {
                let mut sorted = outs.clone();
                sorted.sort_by(|a, b| a.path.cmp(&b.path));
                if &entry_now(&sorted) == locked {
                    report.push(StageRun::Unchanged(stage.name.clone()));
                    continue;
                }
            }
            let key = md5_bytes(
                serde_yaml_ng::to_string(&entry_now(&[]))
                    .unwrap_or_default()
                    .as_bytes(),
            );
            let run_cache = root
                .join(".dvc")
                .join("tmp")
                .join("capstan-runs")
                .join(format!("{key}.json"));
            let cached: Option<Vec<(String, String)>> = std::fs::read(&run_cache)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let restored = match cached {
                Some(outs) if outs.iter().all(|(_, h)| self.has_object(h)) => {
                    for (path, hash) in &outs {
                        self.restore_out(path, hash)?;
                    }
                    true
                }
                _ => false,
            };
            if !restored {
                let status = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(&stage.cmd)
                    .current_dir(&root)
                    .status()
                    .map_err(|source| DataError::Io {
                        path: root.clone(),
                        source,
                    })?;
                if !status.success() {
                    return Err(pipeline_err(format!(
                        "stage '{}' failed: `{}` exited with {status}",
                        stage.name, stage.cmd
                    )));
                }
            }
            let mut outs = Vec::new();
            for (o, cache) in &stage.outs {
                let out = self
                    .snapshot_out(&mut state, o, *cache)
                    .map_err(|e| match e {
                        DataError::Missing(_) => pipeline_err(format!(
                            "stage '{}' did not produce its output '{o}'",
                            stage.name
                        )),
                        other => other,
                    })?;
                outs.push(out);
            }
            outs.sort_by(|a, b| a.path.cmp(&b.path));
            let cached_outs: Vec<(String, String)> = outs
                .iter()
                .filter(|o| stage.outs.iter().any(|(p, c)| *c && p == &o.path))
                .map(|o| (o.path.clone(), o.md5.clone()))
                .collect();
            if !restored && cached_outs.len() == stage.outs.iter().filter(|(_, c)| *c).count() {
                if let Some(dir) = run_cache.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                std::fs::write(
                    &run_cache,
                    serde_json::to_vec(&cached_outs).unwrap_or_default(),
                )
                .map_err(|source| DataError::Io {
                    path: run_cache.clone(),
                    source,
                })?;
            }
            lock_stages.insert(stage.name.clone().into(), entry_now(&outs));
            report.push(if restored {
                StageRun::Restored(stage.name.clone())
            } else {
                StageRun::Ran(stage.name.clone())
            });
        }
        let mut doc = Mapping::new();
        doc.insert("schema".into(), "2.0".into());
        doc.insert("stages".into(), Value::Mapping(lock_stages));
        lock = Value::Mapping(doc);
        let tmp = lock_path.with_extension("lock.tmp");
        std::fs::write(&tmp, serde_yaml_ng::to_string(&lock).unwrap_or_default()).map_err(
            |source| DataError::Io {
                path: tmp.clone(),
                source,
            },
        )?;
        std::fs::rename(&tmp, &lock_path).map_err(|source| DataError::Io {
            path: lock_path.clone(),
            source,
        })?;
        self.last_hashed = state.hashed;
        state
            .save(&self.state_path())
            .map_err(|source| DataError::Io {
                path: self.state_path(),
                source,
            })?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = "stages:\n  prepare:\n    cmd: mkdir -p out && cat raw.txt raw.txt > out/double.txt\n    deps:\n    - raw.txt\n    params:\n    - prepare.scale\n    outs:\n    - out\n  count:\n    cmd: wc -c < out/double.txt > count.txt\n    deps:\n    - out\n    metrics:\n    - count.txt:\n        cache: false\n";

    fn setup() -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("dvc.yaml"), PIPELINE).expect("yaml");
        std::fs::write(dir.path().join("params.yaml"), "prepare:\n  scale: 2\n").expect("params");
        std::fs::write(dir.path().join("raw.txt"), "abc\n").expect("raw");
        let repo = Repo::init(dir.path()).expect("init");
        (dir, repo)
    }

    #[test]
    fn repro_runs_skips_and_restores() {
        let (dir, mut repo) = setup();
        assert_eq!(
            repo.repro(None).expect("repro"),
            vec![
                StageRun::Ran("prepare".into()),
                StageRun::Ran("count".into())
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("count.txt"))
                .expect("count")
                .trim(),
            "8"
        );
        assert_eq!(
            repo.repro(None).expect("again"),
            vec![
                StageRun::Unchanged("prepare".into()),
                StageRun::Unchanged("count".into())
            ]
        );
        // A param change reruns the stage that reads it (and what depends on its outputs only if they change).
        std::fs::write(dir.path().join("params.yaml"), "prepare:\n  scale: 3\n").expect("params");
        assert_eq!(
            repo.repro(None).expect("param change")[0],
            StageRun::Ran("prepare".into())
        );
        // Back to the first inputs: outputs come from the run cache.
        std::fs::write(dir.path().join("params.yaml"), "prepare:\n  scale: 2\n").expect("params");
        std::fs::remove_dir_all(dir.path().join("out")).expect("rm");
        assert_eq!(
            repo.repro(Some("prepare")).expect("restore"),
            vec![StageRun::Restored("prepare".into())]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/double.txt")).expect("restored"),
            "abc\nabc\n"
        );
        let lock = std::fs::read_to_string(dir.path().join("dvc.lock")).expect("lock");
        assert!(
            lock.starts_with("schema: '2.0'") && lock.contains("prepare.scale: 2"),
            "{lock}"
        );
    }

    #[test]
    fn pipeline_errors_name_the_stage() {
        let (dir, mut repo) = setup();
        std::fs::write(dir.path().join("dvc.yaml"), "stages:\n  a:\n    cmd: 'true'\n    deps: [y]\n    outs: [x]\n  b:\n    cmd: 'true'\n    deps: [x]\n    outs: [y]\n").expect("yaml");
        let err = repo.repro(None).expect_err("cycle");
        assert!(
            err.to_string().contains("cycle")
                && err.to_string().contains('a')
                && err.to_string().contains('b'),
            "{err}"
        );
        std::fs::write(
            dir.path().join("dvc.yaml"),
            "stages:\n  broken:\n    cmd: exit 3\n",
        )
        .expect("yaml");
        assert!(
            repo.repro(None)
                .expect_err("fails")
                .to_string()
                .contains("stage 'broken' failed")
        );
        std::fs::write(
            dir.path().join("dvc.yaml"),
            "stages:\n  lazy:\n    cmd: 'true'\n    outs: [never.txt]\n",
        )
        .expect("yaml");
        assert!(
            repo.repro(None)
                .expect_err("no output")
                .to_string()
                .contains("did not produce its output 'never.txt'")
        );
        std::fs::write(
            dir.path().join("dvc.yaml"),
            "stages:\n  p:\n    cmd: 'true'\n    params: [nope.key]\n",
        )
        .expect("yaml");
        assert!(
            repo.repro(None)
                .expect_err("param")
                .to_string()
                .contains("no parameter 'nope.key'")
        );
    }
}

/// What a pipeline run used and produced, read back from `dvc.lock` and the metrics files: the
/// record a tracked run keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecord {
    /// `param.key` → value (params files share one namespace).
    pub params: Vec<(String, String)>,
    /// (path, md5) of every dependency that is not produced by a stage: the input data versions.
    pub inputs: Vec<(String, String)>,
    /// Numeric values of the metrics files (JSON), keyed by their dotted path.
    pub metrics: Vec<(String, f64)>,
}

fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.push((prefix.to_owned(), x));
            }
        }
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        _ => {}
    }
}

pub fn run_record(root: &Path) -> Result<RunRecord, DataError> {
    let stages = read_stages(root)?;
    let lock_path = root.join("dvc.lock");
    let text = std::fs::read_to_string(&lock_path).map_err(|source| DataError::Io {
        path: lock_path.clone(),
        source,
    })?;
    let lock: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| pipeline_err(format!("dvc.lock: {e}")))?;
    let mut rec = RunRecord::default();
    for stage in &stages {
        let Some(entry) = lock.get("stages").and_then(|s| s.get(stage.name.as_str())) else {
            continue;
        };
        if let Some(files) = entry.get("params").and_then(Value::as_mapping) {
            for (_, kv) in files {
                for (k, v) in kv.as_mapping().into_iter().flatten() {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    let key = k.as_str().unwrap_or_default().to_owned();
                    if !rec.params.iter().any(|(p, _)| *p == key) {
                        rec.params.push((key, value));
                    }
                }
            }
        }
        for d in entry
            .get("deps")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let (Some(path), Some(md5)) = (
                d.get("path").and_then(Value::as_str),
                d.get("md5").and_then(Value::as_str),
            ) else {
                continue;
            };
            if !stages.iter().any(|s| produces(s, path))
                && !rec.inputs.iter().any(|(p, _)| p == path)
            {
                rec.inputs.push((path.to_owned(), md5.to_owned()));
            }
        }
        for (path, cached) in &stage.outs {
            if !cached
                && let Ok(bytes) = std::fs::read(root.join(path))
                && let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes)
            {
                flatten_json("", &json, &mut rec.metrics);
            }
        }
    }
    Ok(rec)
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn vars_and_foreach_expand_like_dvc() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("params.yaml"),
            "train:\n  lr: 0.5\n  layers: [8, 16]\n",
        )
        .expect("params");
        std::fs::write(
            dir.path().join("dvc.yaml"),
            "vars:\n  - tag: v1\nstages:\n  fit:\n    cmd: fit --lr ${train.lr} --width ${train.layers.1} --tag ${tag}\n  per:\n    foreach:\n      x: {n: 1}\n      y: {n: 2}\n    do:\n      cmd: run ${key} ${item.n}\n",
        )
        .expect("yaml");
        let stages = read_stages(dir.path()).expect("stages");
        let cmds: Vec<(&str, &str)> = stages
            .iter()
            .map(|s| (s.name.as_str(), s.cmd.as_str()))
            .collect();
        assert_eq!(
            cmds,
            [
                ("fit", "fit --lr 0.5 --width 16 --tag v1"),
                ("per@x", "run x 1"),
                ("per@y", "run y 2")
            ]
        );
        std::fs::write(
            dir.path().join("dvc.yaml"),
            "stages:\n  bad:\n    cmd: echo ${nope}\n",
        )
        .expect("yaml");
        assert!(
            read_stages(dir.path())
                .expect_err("undefined")
                .to_string()
                .contains("'nope' is not defined")
        );
    }
}
