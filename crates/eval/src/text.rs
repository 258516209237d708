//! Text-overlap metrics, each equal to its reference implementation (checked against fixtures the
//! reference code computed, see `tests/fixtures/gen_eval_fixtures.py`):
//! SQuAD v1.1's exact match and token F1 (the official evaluation's normalisation), BLEU as
//! sacrebleu computes it (13a tokenizer, exponential smoothing; sentence BLEU with the effective
//! n-gram order) and ROUGE-L as Google's `rouge-score` computes it (its tokenizer, no stemming).

use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

static ARTICLES: LazyLock<Regex> = LazyLock::new(|| {
    // A fixed pattern: compiling it cannot fail.
    Regex::new(r"\b(a|an|the)\b").unwrap_or_else(|_| unreachable!())
});

/// SQuAD's `normalize_answer`: lower case, ASCII punctuation removed, articles removed, runs of
/// whitespace collapsed.
pub fn squad_normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let no_articles = ARTICLES.replace_all(&no_punct, " ");
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1.0 when the prediction equals any reference after normalisation.
pub fn exact_match(prediction: &str, references: &[String]) -> f64 {
    let p = squad_normalize(prediction);
    if references.iter().any(|r| squad_normalize(r) == p) {
        1.0
    } else {
        0.0
    }
}

fn f1_one(prediction: &str, reference: &str) -> f64 {
    let p = squad_normalize(prediction);
    let g = squad_normalize(reference);
    let p: Vec<&str> = p.split_whitespace().collect();
    let g: Vec<&str> = g.split_whitespace().collect();
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &g {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0i64;
    for t in &p {
        if let Some(c) = counts.get_mut(t)
            && *c > 0
        {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// SQuAD's token F1, the best over the references.
pub fn token_f1(prediction: &str, references: &[String]) -> f64 {
    references
        .iter()
        .map(|r| f1_one(prediction, r))
        .fold(0.0, f64::max)
}

static BLEU_RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // Symbols and most punctuation stand alone (the ASCII ranges { to ~, [ to `, space to &,
        // ( to +, : to @, and /).
        (
            r"([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40\x2f])",
            " ${1} ",
        ),
        // Periods and commas, unless between digits.
        (r"([^0-9])([\.,])", "${1} ${2} "),
        (r"([\.,])([^0-9])", " ${1} ${2}"),
        // A dash after a digit.
        (r"([0-9])(-)", "${1} ${2} "),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).unwrap_or_else(|_| unreachable!()), r))
    .collect()
});

/// sacrebleu's `13a` tokenizer (mteval-v13a's rules).
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s = format!(" {s} ");
    for (re, rep) in BLEU_RULES.iter() {
        s = re.replace_all(&s, *rep).into_owned();
    }
    s.split_whitespace().map(str::to_owned).collect()
}

const MAX_ORDER: usize = 4;

/// Matched and total n-grams per order and the lengths that give the brevity penalty; they add
/// up over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BleuStats {
    pub correct: [u64; MAX_ORDER],
    pub total: [u64; MAX_ORDER],
    pub sys_len: u64,
    pub ref_len: u64,
}

impl std::ops::AddAssign for BleuStats {
    fn add_assign(&mut self, o: BleuStats) {
        for n in 0..MAX_ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
        self.sys_len += o.sys_len;
        self.ref_len += o.ref_len;
    }
}

fn ngrams(tokens: &[String]) -> HashMap<&[String], u64> {
    let mut m = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *m.entry(w).or_default() += 1;
        }
    }
    m
}

/// The statistics of one prediction against its references.
pub fn bleu_stats(prediction: &str, references: &[String]) -> BleuStats {
    let hyp = tokenize_13a(prediction);
    let refs: Vec<Vec<String>> = references.iter().map(|r| tokenize_13a(r)).collect();
    let mut max_ref: HashMap<Vec<String>, u64> = HashMap::new();
    for r in &refs {
        for (g, c) in ngrams(r) {
            let e = max_ref.entry(g.to_vec()).or_default();
            *e = (*e).max(c);
        }
    }
    // The closest reference length; the shorter one on a tie.
    let hyp_len = hyp.len() as i64;
    let mut closest: Option<(i64, i64)> = None;
    for r in &refs {
        let len = r.len() as i64;
        let diff = (hyp_len - len).abs();
        closest = match closest {
            None => Some((diff, len)),
            Some((d, l)) if diff < d || (diff == d && len < l) => Some((diff, len)),
            keep => keep,
        };
    }
    let mut s = BleuStats {
        sys_len: hyp.len() as u64,
        ref_len: closest.map_or(0, |c| c.1 as u64),
        ..Default::default()
    };
    for (g, c) in ngrams(&hyp) {
        let n = g.len() - 1;
        s.total[n] += c;
        s.correct[n] += c.min(max_ref.get(g).copied().unwrap_or(0));
    }
    s
}

/// A BLEU score (0–100) with its n-gram precisions and brevity penalty.
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    pub score: f64,
    pub precisions: [f64; MAX_ORDER],
    pub bp: f64,
}

/// sacrebleu's `compute_bleu` with exponential smoothing.
pub fn bleu_score(s: &BleuStats, effective_order: bool) -> Bleu {
    let mut precisions = [0.0; MAX_ORDER];
    let bp = if s.sys_len < s.ref_len {
        if s.sys_len > 0 {
            (1.0 - s.ref_len as f64 / s.sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    // No matching n-gram of any order: 0, however it would be smoothed (sacrebleu #141).
    if s.correct.iter().all(|&c| c == 0) {
        return Bleu {
            score: 0.0,
            precisions,
            bp,
        };
    }
    let mut smooth = 1.0;
    let mut order = MAX_ORDER;
    for (n, p) in precisions.iter_mut().enumerate() {
        let (correct, total) = (s.correct[n], s.total[n]);
        if total == 0 {
            break;
        }
        if effective_order {
            order = n + 1;
        }
        *p = if correct == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total as f64)
        } else {
            100.0 * correct as f64 / total as f64
        };
    }
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let mean = precisions[..order].iter().map(|&p| log(p)).sum::<f64>() / order as f64;
    Bleu {
        score: bp * mean.exp(),
        precisions,
        bp,
    }
}

/// sacrebleu's `sentence_bleu` (effective order on).
pub fn sentence_bleu(prediction: &str, references: &[String]) -> f64 {
    bleu_score(&bleu_stats(prediction, references), true).score
}

/// sacrebleu's `corpus_bleu`: statistics summed over the segments, then one score.
pub fn corpus_bleu(predictions: &[String], references: &[Vec<String>]) -> Bleu {
    let mut total = BleuStats::default();
    for (p, r) in predictions.iter().zip(references) {
        total += bleu_stats(p, r);
    }
    bleu_score(&total, false)
}

/// Precision, recall and F-measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

/// `rouge-score`'s tokenizer: lower case, anything but `a-z0-9` is a separator.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let spaced: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                ' '
            }
        })
        .collect();
    spaced.split_whitespace().map(str::to_owned).collect()
}

/// ROUGE-L of a prediction against one reference (longest common subsequence of tokens).
pub fn rouge_l(prediction: &str, reference: &str) -> Prf {
    let p = rouge_tokens(prediction);
    let r = rouge_tokens(reference);
    if p.is_empty() || r.is_empty() {
        return Prf {
            precision: 0.0,
            recall: 0.0,
            fmeasure: 0.0,
        };
    }
    let mut prev = vec![0usize; p.len() + 1];
    let mut cur = vec![0usize; p.len() + 1];
    for rt in &r {
        for (j, pt) in p.iter().enumerate() {
            cur[j + 1] = if rt == pt {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let lcs = prev[p.len()] as f64;
    let precision = lcs / p.len() as f64;
    let recall = lcs / r.len() as f64;
    let fmeasure = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Prf {
        precision,
        recall,
        fmeasure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_as_the_official_script() {
        assert_eq!(squad_normalize("The  Denver Broncos!"), "denver broncos");
        assert_eq!(squad_normalize("an apple, a day"), "apple day");
        assert_eq!(
            squad_normalize("Theater"),
            "theater",
            "articles only as words"
        );
        let refs = vec!["Denver Broncos".to_string()];
        assert_eq!(exact_match("the denver broncos.", &refs), 1.0);
        assert_eq!(token_f1("Broncos", &refs), 2.0 * 1.0 * 0.5 / 1.5);
        assert_eq!(token_f1("", &refs), 0.0);
    }

    #[test]
    fn thirteen_a_splits_punctuation_but_not_numbers() {
        assert_eq!(
            tokenize_13a("It costs $1,200.50 (approx.), 1990-1991."),
            [
                "It", "costs", "$", "1,200.50", "(", "approx", ".", ")", ",", "1990", "-", "1991",
                "."
            ]
        );
        assert_eq!(tokenize_13a("a &amp; b"), ["a", "&", "b"]);
    }

    #[test]
    fn bleu_of_a_perfect_match_is_100_and_of_nothing_is_0() {
        let r = vec!["the cat sat on the mat".to_string()];
        assert!((sentence_bleu("the cat sat on the mat", &r) - 100.0).abs() < 1e-9);
        assert_eq!(sentence_bleu("", &r), 0.0);
    }

    #[test]
    fn rouge_l_counts_the_longest_common_subsequence() {
        let s = rouge_l(
            "the cat was found under the bed",
            "the cat was under the bed",
        );
        assert!((s.recall - 1.0).abs() < 1e-12);
        assert!((s.precision - 6.0 / 7.0).abs() < 1e-12);
    }
}
