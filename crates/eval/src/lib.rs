//! LLM evaluation. A dataset is a list of [`Case`]s (inputs, expected answers, labelled relevant
//! sources); a generator turns each case into an [`Output`] (the answer, what was retrieved); each
//! [`Evaluator`] scores it. Every score is a number, or *unscorable* with the reason (no expected
//! answer, nothing retrieved), or an *error* (the generator or the evaluator failed on that
//! case) — never NaN, and one failing case never stops a run.

pub mod html;
pub mod rag;
pub mod run;
pub mod schema;
pub mod text;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("dataset: {0}")]
    Dataset(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One evaluation case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    /// The variables the prompt is rendered with (`question`, …).
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// Acceptable answers; empty when the case has none.
    #[serde(default)]
    pub expected: Vec<String>,
    /// Sources a good retrieval returns (document ids, file names, passage ids).
    #[serde(default)]
    pub relevant_sources: Vec<String>,
    /// Context given with the case instead of retrieved (e.g. the passage itself).
    #[serde(default)]
    pub context: Vec<String>,
}

/// A retrieved piece of context, in rank order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    pub source: String,
    pub text: String,
}

/// What the system under evaluation produced for a case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub text: String,
    #[serde(default)]
    pub retrieved: Vec<Retrieved>,
}

/// An evaluator's verdict on one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Score {
    Scored { value: f64 },
    Unscorable { reason: String },
    Error { message: String },
}

impl Score {
    pub fn value(&self) -> Option<f64> {
        match self {
            Score::Scored { value } => Some(*value),
            _ => None,
        }
    }

    fn of(v: f64) -> Score {
        if v.is_finite() {
            Score::Scored { value: v }
        } else {
            Score::Error {
                message: format!("the evaluator produced {v}"),
            }
        }
    }

    fn unscorable(reason: &str) -> Score {
        Score::Unscorable {
            reason: reason.to_owned(),
        }
    }
}

/// Embeds texts (MiniLM in the platform) for the similarity evaluators.
pub trait Embed: Send + Sync {
    fn embed(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, String>;
}

/// An evaluator as configured (`{"type": "token_f1"}`, `{"type": "regex", "pattern": "…"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EvaluatorSpec {
    /// SQuAD exact match after normalisation.
    ExactMatch,
    /// The answer equals an expected one exactly (after trimming).
    StrictMatch,
    /// SQuAD token F1.
    TokenF1,
    /// sacrebleu sentence BLEU, 0–100.
    Bleu,
    /// ROUGE-L F-measure.
    RougeL,
    /// 1 when the answer matches the pattern.
    Regex { pattern: String },
    /// 1 when the answer is JSON (and valid against the schema, if one is given).
    Json {
        #[serde(default)]
        schema: Option<Value>,
    },
    /// Ragas' context precision over labelled sources: the rank-weighted share of relevant hits.
    ContextPrecision,
    /// Ragas' ID-based context recall: the share of relevant sources retrieved.
    ContextRecall,
    /// The share of the answer's claims (sentences) supported by the context: a claim is
    /// supported when at least `threshold` of its content words occur in the context.
    Faithfulness {
        #[serde(default = "default_support")]
        threshold: f64,
    },
    /// Cosine similarity of the answer and the best expected answer (MiniLM).
    EmbeddingSimilarity,
    /// Cosine similarity of the question and the answer (MiniLM): does it address the question.
    AnswerRelevancy,
    /// LLM-as-judge: the registered rubric prompt `prompt` (`name@label`) rendered with the
    /// case's `question`, the `answer`, the `expected` answers and the `context`, sent to the
    /// judge model; the grade in its reply (1–5, or 0.0–1.0) becomes the score.
    Judge { prompt: String },
}

fn default_support() -> f64 {
    0.8
}

impl EvaluatorSpec {
    /// Parses `name` or `name:arg` as the command line writes them (`regex:^\d+$`).
    pub fn parse(s: &str) -> Result<EvaluatorSpec> {
        let (name, arg) = s.split_once(':').map_or((s, None), |(a, b)| (a, Some(b)));
        Ok(match (name, arg) {
            ("exact_match", None) => EvaluatorSpec::ExactMatch,
            ("strict_match", None) => EvaluatorSpec::StrictMatch,
            ("token_f1" | "f1", None) => EvaluatorSpec::TokenF1,
            ("bleu", None) => EvaluatorSpec::Bleu,
            ("rouge_l", None) => EvaluatorSpec::RougeL,
            ("regex", Some(p)) => EvaluatorSpec::Regex {
                pattern: p.to_owned(),
            },
            ("json", None) => EvaluatorSpec::Json { schema: None },
            ("context_precision", None) => EvaluatorSpec::ContextPrecision,
            ("context_recall", None) => EvaluatorSpec::ContextRecall,
            ("faithfulness", None) => EvaluatorSpec::Faithfulness {
                threshold: default_support(),
            },
            ("faithfulness", Some(t)) => EvaluatorSpec::Faithfulness {
                threshold: t
                    .parse()
                    .map_err(|_| Error::Invalid(format!("faithfulness:{t}: not a number")))?,
            },
            ("embedding_similarity", None) => EvaluatorSpec::EmbeddingSimilarity,
            ("answer_relevancy", None) => EvaluatorSpec::AnswerRelevancy,
            ("judge", Some(p)) if p.contains('@') => EvaluatorSpec::Judge {
                prompt: p.to_owned(),
            },
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown evaluator `{s}` (exact_match, strict_match, token_f1, bleu, rouge_l, \
                     regex:PATTERN, json, context_precision, context_recall, faithfulness[:T], \
                     embedding_similarity, answer_relevancy, judge:PROMPT@LABEL)"
                )));
            }
        })
    }

    /// The metric name runs and reports use.
    pub fn name(&self) -> &'static str {
        match self {
            EvaluatorSpec::ExactMatch => "exact_match",
            EvaluatorSpec::StrictMatch => "strict_match",
            EvaluatorSpec::TokenF1 => "token_f1",
            EvaluatorSpec::Bleu => "bleu",
            EvaluatorSpec::RougeL => "rouge_l",
            EvaluatorSpec::Regex { .. } => "regex",
            EvaluatorSpec::Json { .. } => "json_valid",
            EvaluatorSpec::ContextPrecision => "context_precision",
            EvaluatorSpec::ContextRecall => "context_recall",
            EvaluatorSpec::Faithfulness { .. } => "faithfulness",
            EvaluatorSpec::EmbeddingSimilarity => "embedding_similarity",
            EvaluatorSpec::AnswerRelevancy => "answer_relevancy",
            EvaluatorSpec::Judge { .. } => "judge",
        }
    }
}

/// A configured evaluator, checked once (a regex compiled, a schema read).
pub struct Evaluator {
    pub spec: EvaluatorSpec,
    regex: Option<regex::Regex>,
}

impl Evaluator {
    pub fn new(spec: EvaluatorSpec) -> Result<Evaluator> {
        let regex = match &spec {
            EvaluatorSpec::Regex { pattern } => Some(
                regex::Regex::new(pattern)
                    .map_err(|e| Error::Invalid(format!("regex `{pattern}`: {e}")))?,
            ),
            EvaluatorSpec::Json {
                schema: Some(schema),
            } => {
                schema::check_schema(schema).map_err(Error::Invalid)?;
                None
            }
            EvaluatorSpec::Faithfulness { threshold } if !(0.0..=1.0).contains(threshold) => {
                return Err(Error::Invalid(format!(
                    "faithfulness threshold {threshold} is not between 0 and 1"
                )));
            }
            _ => None,
        };
        Ok(Evaluator { spec, regex })
    }

    pub fn name(&self) -> &'static str {
        self.spec.name()
    }

    /// Scores one case. A panic inside is caught and recorded as this case's error.
    pub fn score(&self, case: &Case, out: &Output, embed: Option<&dyn Embed>) -> Score {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.score_inner(case, out, embed)
        })) {
            Ok(s) => s,
            Err(p) => Score::Error {
                message: format!(
                    "the evaluator failed: {}",
                    p.downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into())
                ),
            },
        }
    }

    fn score_inner(&self, case: &Case, out: &Output, embed: Option<&dyn Embed>) -> Score {
        let need_expected = || Score::unscorable("the case has no expected answer");
        match &self.spec {
            EvaluatorSpec::ExactMatch if case.expected.is_empty() => need_expected(),
            EvaluatorSpec::ExactMatch => Score::of(text::exact_match(&out.text, &case.expected)),
            EvaluatorSpec::StrictMatch if case.expected.is_empty() => need_expected(),
            EvaluatorSpec::StrictMatch => Score::of(f64::from(u8::from(
                case.expected.iter().any(|e| e.trim() == out.text.trim()),
            ))),
            EvaluatorSpec::TokenF1 if case.expected.is_empty() => need_expected(),
            EvaluatorSpec::TokenF1 => Score::of(text::token_f1(&out.text, &case.expected)),
            EvaluatorSpec::Bleu if case.expected.is_empty() => need_expected(),
            EvaluatorSpec::Bleu => Score::of(text::sentence_bleu(&out.text, &case.expected)),
            EvaluatorSpec::RougeL if case.expected.is_empty() => need_expected(),
            EvaluatorSpec::RougeL => Score::of(
                case.expected
                    .iter()
                    .map(|e| text::rouge_l(&out.text, e).fmeasure)
                    .fold(0.0, f64::max),
            ),
            EvaluatorSpec::Regex { .. } => match &self.regex {
                Some(re) => Score::of(f64::from(u8::from(re.is_match(&out.text)))),
                None => Score::Error {
                    message: "the pattern was not compiled".into(),
                },
            },
            EvaluatorSpec::Json { schema } => {
                Score::of(match serde_json::from_str::<Value>(out.text.trim()) {
                    Err(_) => 0.0,
                    Ok(v) => match schema {
                        None => 1.0,
                        Some(s) => f64::from(u8::from(schema::validate(s, &v).is_ok())),
                    },
                })
            }
            EvaluatorSpec::ContextPrecision => rag::context_precision(case, out),
            EvaluatorSpec::ContextRecall => rag::context_recall(case, out),
            EvaluatorSpec::Faithfulness { threshold } => rag::faithfulness(case, out, *threshold),
            // A run with a judge model grades these itself (see `run::run`).
            EvaluatorSpec::Judge { .. } => Score::unscorable("no judge model is configured"),
            EvaluatorSpec::EmbeddingSimilarity | EvaluatorSpec::AnswerRelevancy => {
                let Some(embed) = embed else {
                    return Score::unscorable("no embedding model is configured");
                };
                let against: Vec<String> = if self.spec == EvaluatorSpec::AnswerRelevancy {
                    match case.inputs.get("question").and_then(Value::as_str) {
                        Some(q) => vec![q.to_owned()],
                        None => return Score::unscorable("the case has no `question` input"),
                    }
                } else {
                    case.expected.clone()
                };
                if against.is_empty() {
                    return need_expected();
                }
                if out.text.trim().is_empty() {
                    return Score::of(0.0);
                }
                let mut texts: Vec<&str> = vec![out.text.as_str()];
                texts.extend(against.iter().map(String::as_str));
                match embed.embed(&texts) {
                    Err(e) => Score::Error {
                        message: format!("embedding failed: {e}"),
                    },
                    Ok(vs) => Score::of(
                        vs[1..]
                            .iter()
                            .map(|v| cosine(&vs[0], v))
                            .fold(f64::MIN, f64::max),
                    ),
                }
            }
        }
    }
}

/// Grades an answer with a rubric prompt: returns the judge model's reply.
#[async_trait::async_trait]
pub trait Judge: Send + Sync {
    async fn judge(
        &self,
        rubric: &str,
        case: &Case,
        out: &Output,
    ) -> std::result::Result<String, String>;
}

static NUMBER: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    // A fixed pattern: compiling it cannot fail.
    regex::Regex::new(r"\d+(\.\d+)?").unwrap_or_else(|_| unreachable!())
});

/// The grade in a judge's reply, from its first number: an integer is a 1–5 grade mapped to
/// 0–1 as (g − 1) / 4, a decimal a 0–1 value; anything else is unscorable with the reply quoted.
pub fn judge_score(reply: &str) -> Score {
    let quoted: String = reply.chars().take(80).collect();
    let Some(m) = NUMBER.find(reply) else {
        return Score::Unscorable {
            reason: format!("the judge's reply has no grade: {quoted:?}"),
        };
    };
    let text = m.as_str();
    let g: f64 = text.parse().unwrap_or(f64::NAN);
    if text.contains('.') && (0.0..=1.0).contains(&g) {
        Score::of(g)
    } else if !text.contains('.') && (1.0..=5.0).contains(&g) {
        Score::of((g - 1.0) / 4.0)
    } else {
        Score::Unscorable {
            reason: format!("the judge's grade {text} is not 1–5 or 0.0–1.0: {quoted:?}"),
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Reads cases from JSON Lines (one case object per line) or CSV (columns `id`, `expected`
/// — several answers as a JSON list or separated by `|` —, `relevant_sources`, `context`, and any
/// other column as an input).
pub fn read_cases(name: &str, text: &str) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    if name.ends_with(".jsonl") || name.ends_with(".json") {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut v: Value = serde_json::from_str(line)
                .map_err(|e| Error::Dataset(format!("line {}: {e}", i + 1)))?;
            if v.get("id").is_none() {
                v["id"] = Value::String(format!("{}", cases.len() + 1));
            }
            let c: Case = serde_json::from_value(v)
                .map_err(|e| Error::Dataset(format!("line {}: {e}", i + 1)))?;
            cases.push(c);
        }
    } else {
        let mut rdr = csv_rows(text)?;
        for (i, row) in rdr.drain(..).enumerate() {
            let mut c = Case {
                id: row
                    .get("id")
                    .cloned()
                    .unwrap_or_else(|| (i + 1).to_string()),
                inputs: Map::new(),
                expected: Vec::new(),
                relevant_sources: Vec::new(),
                context: Vec::new(),
            };
            for (k, v) in row {
                let list = || -> Vec<String> {
                    serde_json::from_str::<Vec<String>>(&v).unwrap_or_else(|_| {
                        v.split('|')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                };
                match k.as_str() {
                    "id" => {}
                    "expected" => c.expected = list(),
                    "relevant_sources" => c.relevant_sources = list(),
                    "context" => c.context = list(),
                    _ => {
                        c.inputs.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
            cases.push(c);
        }
    }
    if cases.is_empty() {
        return Err(Error::Dataset("no cases".into()));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = cases.iter().find(|c| !seen.insert(c.id.clone())) {
        return Err(Error::Dataset(format!(
            "case id `{}` appears twice",
            dup.id
        )));
    }
    Ok(cases)
}

/// A small RFC 4180 reader: quoted fields, doubled quotes, newlines inside quotes.
fn csv_rows(text: &str) -> Result<Vec<std::collections::BTreeMap<String, String>>> {
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(Error::Dataset("a quoted CSV field is not closed".into()));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    let mut it = records
        .into_iter()
        .filter(|r| !(r.len() == 1 && r[0].is_empty()));
    let header = it
        .next()
        .ok_or_else(|| Error::Dataset("the CSV file is empty".into()))?;
    it.enumerate()
        .map(|(i, r)| {
            if r.len() != header.len() {
                return Err(Error::Dataset(format!(
                    "CSV row {} has {} fields, the header {}",
                    i + 2,
                    r.len(),
                    header.len()
                )));
            }
            Ok(header.iter().cloned().zip(r).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(expected: &[&str]) -> Case {
        Case {
            id: "1".into(),
            inputs: serde_json::json!({"question": "Who?"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            relevant_sources: Vec::new(),
            context: Vec::new(),
        }
    }

    fn out(text: &str) -> Output {
        Output {
            text: text.into(),
            retrieved: Vec::new(),
        }
    }

    #[test]
    fn a_case_without_an_answer_is_unscorable_not_nan() {
        let e = Evaluator::new(EvaluatorSpec::TokenF1).unwrap();
        assert!(matches!(
            e.score(&case(&[]), &out("x"), None),
            Score::Unscorable { .. }
        ));
        let e = Evaluator::new(EvaluatorSpec::AnswerRelevancy).unwrap();
        assert!(
            matches!(e.score(&case(&["a"]), &out("x"), None), Score::Unscorable { reason } if reason.contains("embedding"))
        );
    }

    #[test]
    fn parse_names_and_refuse_bad_configuration() {
        assert_eq!(EvaluatorSpec::parse("f1").unwrap(), EvaluatorSpec::TokenF1);
        assert!(matches!(
            EvaluatorSpec::parse("regex:^\\d+$").unwrap(),
            EvaluatorSpec::Regex { .. }
        ));
        assert!(
            EvaluatorSpec::parse("vibes")
                .unwrap_err()
                .to_string()
                .contains("unknown evaluator")
        );
        assert!(
            Evaluator::new(EvaluatorSpec::Regex {
                pattern: "(".into()
            })
            .is_err()
        );
        assert!(Evaluator::new(EvaluatorSpec::Faithfulness { threshold: 2.0 }).is_err());
    }

    #[test]
    fn judge_grades_are_read_from_the_reply() {
        assert_eq!(judge_score("5").value(), Some(1.0));
        assert_eq!(judge_score("Score: 3/5 because…").value(), Some(0.5));
        assert_eq!(judge_score("0.75").value(), Some(0.75));
        assert_eq!(
            judge_score("1. The answer is wrong.").value(),
            Some(0.0),
            "an integer is a 1–5 grade"
        );
        assert_eq!(
            judge_score("1.0").value(),
            Some(1.0),
            "a decimal is a 0–1 grade"
        );
        assert!(
            matches!(judge_score("great answer!"), Score::Unscorable { reason } if reason.contains("no grade"))
        );
        assert!(matches!(judge_score("42"), Score::Unscorable { .. }));
        assert!(matches!(
            EvaluatorSpec::parse("judge:rubric@production").unwrap(),
            EvaluatorSpec::Judge { .. }
        ));
        assert!(EvaluatorSpec::parse("judge:rubric").is_err());
    }

    #[test]
    fn regex_and_json_evaluators() {
        let re = Evaluator::new(EvaluatorSpec::parse("regex:^[0-9]+$").unwrap()).unwrap();
        assert_eq!(
            re.score(&case(&[]), &out("42"), None),
            Score::Scored { value: 1.0 }
        );
        assert_eq!(
            re.score(&case(&[]), &out("42a"), None),
            Score::Scored { value: 0.0 }
        );
        let js = Evaluator::new(EvaluatorSpec::Json {
            schema: Some(serde_json::json!({"type": "object", "required": ["answer"],
                "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}}})),
        })
        .unwrap();
        let s = |t: &str| js.score(&case(&[]), &out(t), None).value();
        assert_eq!(s(r#"{"answer": "Paris", "confidence": 0.9}"#), Some(1.0));
        assert_eq!(s(r#"{"answer": 3}"#), Some(0.0));
        assert_eq!(s(r#"{"confidence": 0.9}"#), Some(0.0));
        assert_eq!(s(r#"{"answer": "x", "confidence": 7}"#), Some(0.0));
        assert_eq!(s("not json"), Some(0.0));
    }

    #[test]
    fn datasets_from_jsonl_and_csv() {
        let j = r#"{"id": "a", "inputs": {"question": "Q?"}, "expected": ["A"]}
{"inputs": {"question": "R?"}}"#;
        let c = read_cases("d.jsonl", j).unwrap();
        assert_eq!((c[0].id.as_str(), c[1].id.as_str()), ("a", "2"));
        let csv = "id,question,expected,relevant_sources\nq1,\"Where, exactly?\",\"[\"\"Paris\"\", \"\"in Paris\"\"]\",doc1|doc2\n";
        let c = read_cases("d.csv", csv).unwrap();
        assert_eq!(c[0].inputs["question"], "Where, exactly?");
        assert_eq!(c[0].expected, ["Paris", "in Paris"]);
        assert_eq!(c[0].relevant_sources, ["doc1", "doc2"]);
        assert!(
            read_cases("d.jsonl", "{\"id\": \"x\"}\n{\"id\": \"x\"}")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(read_cases("d.jsonl", "{oops").is_err());
        assert!(
            read_cases("d.csv", "a,b\n1\n")
                .unwrap_err()
                .to_string()
                .contains("row 2")
        );
    }
}
