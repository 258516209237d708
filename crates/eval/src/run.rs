//! Running an evaluation: every case through the generator (a bounded number at once), every
//! evaluator on every answer, then per-evaluator summaries, a regression gate and case-by-case
//! comparison of two runs.

use crate::{Case, Embed, Evaluator, EvaluatorSpec, Judge, Output, Score};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The system under evaluation.
#[async_trait::async_trait]
pub trait Generate: Send + Sync {
    async fn generate(&self, case: &Case) -> Result<Output, String>;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub output: Option<Output>,
    /// Why the generator failed on this case.
    pub error: Option<String>,
    pub latency_ms: f64,
    pub scores: BTreeMap<String, Score>,
}

/// One evaluator over the run: the mean of the cases it scored, and how many it could not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: Option<f64>,
    pub scored: usize,
    pub unscorable: usize,
    pub errors: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub cases: Vec<CaseResult>,
    pub summary: BTreeMap<String, Summary>,
}

/// Runs every case; one case's failure is recorded on that case and the run goes on.
pub async fn run(
    cases: &[Case],
    generator: Arc<dyn Generate>,
    evaluators: Arc<Vec<Evaluator>>,
    embed: Option<Arc<dyn Embed>>,
    judge: Option<Arc<dyn Judge>>,
    concurrency: usize,
    progress: impl Fn(usize) + Send + Sync,
) -> EvalResult {
    let done = std::sync::atomic::AtomicUsize::new(0);
    // `buffered` (not `buffer_unordered`) yields results in the cases' order.
    let results: Vec<CaseResult> = futures_util::stream::iter(cases.iter().cloned())
        .map(|case| {
            let (generator, evaluators, embed, judge) = (
                generator.clone(),
                evaluators.clone(),
                embed.clone(),
                judge.clone(),
            );
            async move {
                let t = Instant::now();
                let generated = generator.generate(&case).await;
                let latency_ms = t.elapsed().as_secs_f64() * 1e3;
                // Scoring is microseconds of CPU (a few milliseconds when it embeds): inline.
                let mut scores = BTreeMap::new();
                for e in evaluators.iter() {
                    let s = match (&generated, &e.spec, &judge) {
                        (Ok(out), EvaluatorSpec::Judge { prompt }, Some(j)) => {
                            match j.judge(prompt, &case, out).await {
                                Ok(reply) => crate::judge_score(&reply),
                                Err(m) => Score::Error {
                                    message: format!("the judge failed: {m}"),
                                },
                            }
                        }
                        (Ok(out), _, _) => e.score(&case, out, embed.as_deref()),
                        (Err(msg), _, _) => Score::Error {
                            message: format!("generation failed: {msg}"),
                        },
                    };
                    scores.insert(e.name().to_owned(), s);
                }
                let (output, error) = match generated {
                    Ok(o) => (Some(o), None),
                    Err(e) => (None, Some(e)),
                };
                CaseResult {
                    id: case.id.clone(),
                    output,
                    error,
                    latency_ms,
                    scores,
                }
            }
        })
        .buffered(concurrency.max(1))
        .inspect(|_| progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1))
        .collect()
        .await;
    let summary = summarize(&results);
    EvalResult {
        cases: results,
        summary,
    }
}

pub fn summarize(cases: &[CaseResult]) -> BTreeMap<String, Summary> {
    let mut out: BTreeMap<String, (f64, Summary)> = BTreeMap::new();
    for c in cases {
        for (name, s) in &c.scores {
            let e = out.entry(name.clone()).or_insert((
                0.0,
                Summary {
                    mean: None,
                    scored: 0,
                    unscorable: 0,
                    errors: 0,
                },
            ));
            match s {
                Score::Scored { value } => {
                    e.0 += value;
                    e.1.scored += 1;
                }
                Score::Unscorable { .. } => e.1.unscorable += 1,
                Score::Error { .. } => e.1.errors += 1,
            }
        }
    }
    out.into_iter()
        .map(|(k, (sum, mut s))| {
            s.mean = (s.scored > 0).then(|| sum / s.scored as f64);
            (k, s)
        })
        .collect()
}

/// `metric=value` thresholds of a regression gate (`token_f1=0.6`).
pub fn parse_gate(spec: &str) -> Result<(String, f64), String> {
    let (k, v) = spec
        .split_once('=')
        .ok_or_else(|| format!("--fail-under `{spec}`: expected METRIC=VALUE"))?;
    let v: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("--fail-under `{spec}`: `{v}` is not a number"))?;
    Ok((k.trim().to_owned(), v))
}

/// The gate's failures: each metric whose mean is below its threshold (or was never scored).
pub fn gate(summary: &BTreeMap<String, Summary>, thresholds: &[(String, f64)]) -> Vec<String> {
    thresholds
        .iter()
        .filter_map(|(k, min)| match summary.get(k).and_then(|s| s.mean) {
            Some(m) if m >= *min => None,
            Some(m) => Some(format!("{k} = {m:.4} < {min}")),
            None => Some(format!("{k} was not scored on any case")),
        })
        .collect()
}

/// One case's score under two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseDelta {
    pub id: String,
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
}

/// Per metric: cases where B beat A, where A beat B, ties, and the per-case rows that differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub metrics: BTreeMap<String, (usize, usize, usize)>,
    pub changed: Vec<CaseDelta>,
}

/// Compares two runs over the cases they share.
pub fn compare(a: &EvalResult, b: &EvalResult) -> Comparison {
    let by_id: BTreeMap<&str, &CaseResult> = b.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut metrics: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut changed = Vec::new();
    for ca in &a.cases {
        let Some(cb) = by_id.get(ca.id.as_str()) else {
            continue;
        };
        for (m, sa) in &ca.scores {
            let (va, vb) = (sa.value(), cb.scores.get(m).and_then(Score::value));
            let e = metrics.entry(m.clone()).or_default();
            match (va, vb) {
                (Some(x), Some(y)) if y > x + 1e-12 => e.0 += 1,
                (Some(x), Some(y)) if x > y + 1e-12 => e.1 += 1,
                _ => e.2 += 1,
            }
            if va != vb {
                changed.push(CaseDelta {
                    id: ca.id.clone(),
                    metric: m.clone(),
                    a: va,
                    b: vb,
                });
            }
        }
    }
    Comparison { metrics, changed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EvaluatorSpec;

    struct Echo;

    #[async_trait::async_trait]
    impl Generate for Echo {
        async fn generate(&self, case: &Case) -> Result<Output, String> {
            match case.inputs.get("say").and_then(|v| v.as_str()) {
                Some(s) => Ok(Output {
                    text: s.into(),
                    retrieved: vec![],
                }),
                None => Err("nothing to say".into()),
            }
        }
    }

    fn case(id: &str, say: Option<&str>, expected: &[&str]) -> Case {
        let mut inputs = serde_json::Map::new();
        if let Some(s) = say {
            inputs.insert("say".into(), s.into());
        }
        Case {
            id: id.into(),
            inputs,
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            relevant_sources: vec![],
            context: vec![],
        }
    }

    #[tokio::test]
    async fn failures_stay_on_their_case_and_the_gate_reads_the_means() {
        let cases = vec![
            case("1", Some("Paris"), &["Paris"]),
            case("2", Some("Lyon"), &["Paris"]),
            case("3", None, &["Paris"]),
            case("4", Some("Paris"), &[]),
        ];
        let evals = Arc::new(vec![Evaluator::new(EvaluatorSpec::ExactMatch).unwrap()]);
        let seen = std::sync::Mutex::new(0);
        let r = run(&cases, Arc::new(Echo), evals, None, None, 3, |n| {
            *seen.lock().unwrap() = n
        })
        .await;
        assert_eq!(*seen.lock().unwrap(), 4);
        assert_eq!(
            r.cases.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["1", "2", "3", "4"]
        );
        assert_eq!(
            r.summary["exact_match"],
            Summary {
                mean: Some(0.5),
                scored: 2,
                unscorable: 1,
                errors: 1
            }
        );
        assert_eq!(r.cases[2].error.as_deref(), Some("nothing to say"));
        assert!(gate(&r.summary, &[("exact_match".into(), 0.5)]).is_empty());
        assert_eq!(
            gate(&r.summary, &[("exact_match".into(), 0.6)]),
            ["exact_match = 0.5000 < 0.6"]
        );
        assert!(gate(&r.summary, &[("bleu".into(), 0.1)])[0].contains("not scored"));
        assert!(parse_gate("f1").is_err());

        let better = vec![
            case("1", Some("Paris"), &["Paris"]),
            case("2", Some("Paris"), &["Paris"]),
        ];
        let evals = Arc::new(vec![Evaluator::new(EvaluatorSpec::ExactMatch).unwrap()]);
        let r2 = run(&better, Arc::new(Echo), evals, None, None, 1, |_| {}).await;
        let cmp = compare(&r, &r2);
        assert_eq!(cmp.metrics["exact_match"], (1, 0, 1));
        assert_eq!(
            cmp.changed,
            vec![CaseDelta {
                id: "2".into(),
                metric: "exact_match".into(),
                a: Some(0.0),
                b: Some(1.0)
            }]
        );
    }
}
