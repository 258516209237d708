//! Token-budgeted chunks that respect structure: a chunk never crosses a section (heading), is
//! cut at sentence ends, and starts with the last sentences of the previous chunk (the overlap)
//! so a fact split across a boundary is whole in one of them. A sentence longer than the budget
//! is cut at word boundaries.

use crate::text::{Document, sentence_spans};

#[derive(Clone, Copy, Debug)]
pub struct ChunkOptions {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            max_tokens: 200,
            overlap_tokens: 40,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub text: String,
    pub headings: Vec<String>,
    pub tokens: usize,
}

/// Pieces of at most `max` tokens: the sentence itself, or word windows of a long one.
fn pieces<'a>(
    sentence: &'a str,
    max: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<(&'a str, usize)> {
    let n = count(sentence);
    if n <= max {
        return vec![(sentence, n)];
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_end = 0;
    for (i, _) in sentence
        .match_indices(char::is_whitespace)
        .chain([(sentence.len(), "")])
    {
        let candidate = &sentence[start..i];
        if count(candidate) > max && last_end > start {
            let piece = &sentence[start..last_end];
            out.push((piece.trim(), count(piece)));
            start = last_end;
        }
        last_end = i;
    }
    let rest = sentence[start..].trim();
    if !rest.is_empty() {
        out.push((rest, count(rest)));
    }
    out
}

pub fn chunk_document(
    doc: &Document,
    opts: ChunkOptions,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for section in &doc.sections {
        let mut units: Vec<(&str, usize)> = Vec::new();
        for (a, b) in sentence_spans(&section.text) {
            units.extend(pieces(&section.text[a..b], opts.max_tokens, count));
        }
        let mut current: Vec<(&str, usize)> = Vec::new();
        let mut tokens = 0;
        let emit = |current: &[(&str, usize)], tokens: usize, chunks: &mut Vec<Chunk>| {
            if current.is_empty() {
                return;
            }
            chunks.push(Chunk {
                text: current.iter().map(|u| u.0).collect::<Vec<_>>().join(" "),
                headings: section.headings.clone(),
                tokens,
            });
        };
        let mut fresh = 0; // units in `current` not yet emitted
        for unit in units {
            if tokens + unit.1 > opts.max_tokens && fresh > 0 {
                emit(&current, tokens, &mut chunks);
                // Carry the tail of this chunk as the next one's overlap.
                let mut keep = Vec::new();
                let mut kept = 0;
                for u in current.iter().rev() {
                    if kept + u.1 > opts.overlap_tokens || kept + u.1 + unit.1 > opts.max_tokens {
                        break;
                    }
                    kept += u.1;
                    keep.push(*u);
                }
                keep.reverse();
                current = keep;
                tokens = kept;
                fresh = 0;
            }
            current.push(unit);
            tokens += unit.1;
            fresh += 1;
        }
        if fresh > 0 {
            emit(&current, tokens, &mut chunks);
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Section, markdown};

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn chunks_fit_the_budget_overlap_and_stay_in_their_section() {
        let body: Vec<String> = (0..30)
            .map(|i| format!("Sentence number {i} has exactly seven words."))
            .collect();
        let md = format!("# Guide\n{}\n## Other\nShort tail here.", body.join(" "));
        let doc = markdown(&md);
        let chunks = chunk_document(
            &doc,
            ChunkOptions {
                max_tokens: 30,
                overlap_tokens: 8,
            },
            &words,
        );
        assert!(chunks.iter().all(|c| c.tokens <= 30), "{chunks:#?}");
        let guide: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| c.headings == vec!["Guide"])
            .collect();
        // 4 sentences of 7 words per chunk, the last one repeated as overlap: 1 + 3·n covers 30.
        assert_eq!(guide[0].tokens, 28);
        assert!(
            guide[1].text.starts_with("Sentence number 3 "),
            "{}",
            guide[1].text
        );
        let last = chunks.last().unwrap();
        assert_eq!(last.headings, vec!["Guide", "Other"]);
        assert_eq!(last.text, "Short tail here.");
        // Every sentence is in some chunk.
        for i in 0..30 {
            let s = format!("Sentence number {i} has");
            assert!(
                chunks.iter().any(|c| c.text.contains(&s)),
                "sentence {i} lost"
            );
        }
    }

    #[test]
    fn a_sentence_longer_than_the_budget_is_cut_at_words() {
        let long = (0..50)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let doc = Document {
            title: String::new(),
            sections: vec![Section {
                headings: vec![],
                text: long,
            }],
        };
        let chunks = chunk_document(
            &doc,
            ChunkOptions {
                max_tokens: 20,
                overlap_tokens: 0,
            },
            &words,
        );
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.tokens <= 20));
        assert!(chunks[2].text.ends_with("w49"));
    }
}
