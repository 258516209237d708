//! Retrieval and grounding metrics with Ragas' definitions, in deterministic (no LLM) form:
//! context precision and recall against the case's labelled relevant sources, and faithfulness as
//! the share of the answer's claims the context supports.

use crate::text::squad_normalize;
use crate::{Case, Output, Score};
use std::collections::HashSet;

/// Words that carry no claim of their own.
const STOPWORDS: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "of",
    "in",
    "on",
    "at",
    "to",
    "for",
    "by",
    "with",
    "and",
    "or",
    "it",
    "its",
    "this",
    "that",
    "these",
    "those",
    "as",
    "from",
    "which",
    "who",
    "whom",
    "what",
    "when",
    "where",
    "has",
    "have",
    "had",
    "do",
    "does",
    "did",
    "not",
    "but",
    "so",
    "than",
    "then",
    "there",
    "their",
    "they",
    "he",
    "she",
    "his",
    "her",
    "we",
    "you",
    "i",
    "also",
    "into",
    "about",
    "according",
    "passage",
];

fn relevant(case: &Case) -> Option<HashSet<&str>> {
    let set: HashSet<&str> = case.relevant_sources.iter().map(String::as_str).collect();
    (!set.is_empty()).then_some(set)
}

/// Ragas' context precision: the mean of precision@k over the ranks k that hold a relevant
/// source, so relevant context ranked first scores higher than the same context ranked last.
pub fn context_precision(case: &Case, out: &Output) -> Score {
    let Some(rel) = relevant(case) else {
        return Score::unscorable("the case labels no relevant sources");
    };
    if out.retrieved.is_empty() {
        return Score::unscorable("nothing was retrieved");
    }
    let (mut hits, mut sum) = (0usize, 0.0);
    for (k, r) in out.retrieved.iter().enumerate() {
        if rel.contains(r.source.as_str()) {
            hits += 1;
            sum += hits as f64 / (k + 1) as f64;
        }
    }
    Score::of(if hits == 0 { 0.0 } else { sum / hits as f64 })
}

/// Ragas' ID-based context recall: the share of the relevant sources that were retrieved.
pub fn context_recall(case: &Case, out: &Output) -> Score {
    let Some(rel) = relevant(case) else {
        return Score::unscorable("the case labels no relevant sources");
    };
    let got: HashSet<&str> = out.retrieved.iter().map(|r| r.source.as_str()).collect();
    Score::of(rel.iter().filter(|s| got.contains(*s)).count() as f64 / rel.len() as f64)
}

/// The answer's claims: its sentences, citation markers (`[2]`) removed.
pub fn claims(answer: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = answer.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '['
            && let Some(end) = chars[i..].iter().position(|&x| x == ']')
            && chars[i + 1..i + end]
                .iter()
                .all(|x| x.is_ascii_digit() || *x == ',' || *x == ' ')
        {
            i += end + 1;
            continue;
        }
        cur.push(c);
        let ends =
            matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if ends {
            out.push(std::mem::take(&mut cur));
        }
        i += 1;
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn content_words(text: &str) -> Vec<String> {
    squad_normalize(text)
        .split_whitespace()
        .filter(|w| !STOPWORDS.contains(w))
        .map(str::to_owned)
        .collect()
}

/// The context an answer was given: the retrieved chunks in rank order, then the case's own.
pub fn context_texts<'a>(case: &'a Case, out: &'a Output) -> Vec<&'a str> {
    out.retrieved
        .iter()
        .map(|r| r.text.as_str())
        .chain(case.context.iter().map(String::as_str))
        .collect()
}

/// The share of the answer's claims whose content words occur in the context (retrieved chunks
/// and the case's own context) at least `threshold` of the time.
pub fn faithfulness(case: &Case, out: &Output, threshold: f64) -> Score {
    let context = context_texts(case, out);
    if context.is_empty() {
        return Score::unscorable("there is no context to check the answer against");
    }
    let vocab: HashSet<String> = context.iter().flat_map(|c| content_words(c)).collect();
    let (mut claims_n, mut supported) = (0usize, 0usize);
    for claim in claims(&out.text) {
        let words = content_words(&claim);
        if words.is_empty() {
            continue;
        }
        claims_n += 1;
        let found = words.iter().filter(|w| vocab.contains(*w)).count();
        if found as f64 >= threshold * words.len() as f64 {
            supported += 1;
        }
    }
    if claims_n == 0 {
        return Score::unscorable("the answer makes no claim");
    }
    Score::of(supported as f64 / claims_n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Retrieved;

    fn case(rel: &[&str]) -> Case {
        Case {
            id: "c".into(),
            inputs: Default::default(),
            expected: vec![],
            relevant_sources: rel.iter().map(|s| (*s).to_owned()).collect(),
            context: vec![],
        }
    }

    fn out(text: &str, sources: &[(&str, &str)]) -> Output {
        Output {
            text: text.into(),
            retrieved: sources
                .iter()
                .map(|(s, t)| Retrieved {
                    source: (*s).into(),
                    text: (*t).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn context_precision_rewards_relevant_context_ranked_first() {
        let c = case(&["a"]);
        let first = out("", &[("a", ""), ("x", ""), ("y", "")]);
        let last = out("", &[("x", ""), ("y", ""), ("a", "")]);
        assert_eq!(context_precision(&c, &first).value(), Some(1.0));
        assert!((context_precision(&c, &last).value().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // Two relevant at ranks 1 and 3: (1/1 + 2/3) / 2.
        let c2 = case(&["a", "b"]);
        let two = out("", &[("a", ""), ("x", ""), ("b", "")]);
        assert!(
            (context_precision(&c2, &two).value().unwrap() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12
        );
        assert_eq!(context_recall(&c2, &first).value(), Some(0.5));
        assert!(matches!(
            context_recall(&case(&[]), &first),
            Score::Unscorable { .. }
        ));
        assert!(matches!(
            context_precision(&c, &out("", &[])),
            Score::Unscorable { .. }
        ));
    }

    #[test]
    fn faithfulness_counts_supported_claims() {
        let ctx = [(
            "p",
            "Super Bowl 50 was played at Levi's Stadium in Santa Clara, California.",
        )];
        let c = case(&[]);
        let grounded = out(
            "It was played at Levi's Stadium [1]. The stadium is in Santa Clara.",
            &ctx,
        );
        assert_eq!(faithfulness(&c, &grounded, 0.8).value(), Some(1.0));
        let half = out(
            "It was played at Levi's Stadium. The crowd numbered ninety thousand fans.",
            &ctx,
        );
        assert_eq!(faithfulness(&c, &half, 0.8).value(), Some(0.5));
        assert!(matches!(
            faithfulness(&c, &out("x", &[]), 0.8),
            Score::Unscorable { .. }
        ));
        assert_eq!(
            claims("One. Two [2]! 3.5 is a number."),
            ["One.", "Two !", "3.5 is a number."]
        );
    }
}
