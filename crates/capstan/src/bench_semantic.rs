//! `capstan bench semantic-cache`: how often the semantic cache serves the right answer, and how
//! fast it finds it. The paraphrase set (`bench/data/paraphrase_pairs.csv`, 200 pairs) takes 100
//! real questions from SQuAD v1.1 dev; each is paired once with a hand-written paraphrase (same
//! meaning) and once with another real question about the same passage (same topic, different
//! question — the hard case for a cache). The 100 questions are cached; each of the 200
//! candidates is looked up through the cache's own code at each threshold. A hit is *correct*
//! only if it returns the candidate's own question and the pair means the same: precision =
//! correct hits / hits, recall = correct hits / paraphrases. Then lookup latency with 100,000
//! cached entries in one scope, and the embedding time a lookup adds.

use crate::bench::percentile;
use crate::platform::Error;
use gateway::cache::CachedAnswer;
use gateway::semantic::SemanticCache;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PAIRS: &str = include_str!("../../../bench/data/paraphrase_pairs.csv");

fn answer(i: usize) -> CachedAnswer {
    CachedAnswer::whole(serde_json::json!({"question": i}))
}

/// A unit vector from a seeded generator (the filler entries).
fn random_unit(r: &mut base::rng::Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| (r.next_f64() - 0.5) as f32).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

pub async fn run(
    entries: usize,
    default_threshold: f32,
    out: Option<PathBuf>,
    home: &Path,
) -> Result<(), Error> {
    let model = crate::bench_vectors::load_model(home).await?;
    let rows = rag::csv::rows(PAIRS);
    if rows.len() < 200 {
        return Err(Error::Other(format!(
            "paraphrase_pairs.csv has {} pairs, expected 200",
            rows.len()
        )));
    }
    // The distinct cached questions, in order; each pair points at its question's index.
    let mut questions: Vec<String> = Vec::new();
    let mut pairs: Vec<(usize, String, bool)> = Vec::new();
    for r in &rows {
        let q = r["question"].clone();
        let i = match questions.iter().position(|x| *x == q) {
            Some(i) => i,
            None => {
                questions.push(q);
                questions.len() - 1
            }
        };
        pairs.push((i, r["candidate"].clone(), r["same_meaning"] == "1"));
    }
    let embed = |texts: Vec<&str>| {
        neural::Embedder::embed(&model, &texts).map_err(|e| Error::Other(e.to_string()))
    };
    let qv = embed(questions.iter().map(String::as_str).collect())?;
    let cv = embed(pairs.iter().map(|p| p.1.as_str()).collect())?;
    let positives = pairs.iter().filter(|p| p.2).count();

    let cache = SemanticCache::default();
    let ttl = Duration::from_secs(3600);
    for (i, v) in qv.iter().enumerate() {
        cache.insert("bench".into(), v.clone(), answer(i), ttl, usize::MAX);
    }
    let mut quality = String::from(
        "| threshold | hits | correct hits | wrong answers served | precision | recall |\n|---|---|---|---|---|---|\n",
    );
    let mut chosen: Option<f32> = None;
    let mut rows_out = Vec::new();
    for t in (70..=99).map(|x| x as f32 / 100.0) {
        let (mut hits, mut correct) = (0usize, 0usize);
        for ((own, _, same), v) in pairs.iter().zip(&cv) {
            if let Some((a, _)) = cache.lookup("bench", v, t) {
                hits += 1;
                if *same && a.full.as_ref().is_some_and(|f| f["question"] == *own) {
                    correct += 1;
                }
            }
        }
        let precision = if hits == 0 {
            1.0
        } else {
            correct as f64 / hits as f64
        };
        let recall = correct as f64 / positives as f64;
        if chosen.is_none() && precision >= 0.95 {
            chosen = Some(t);
        }
        rows_out.push((t, hits, correct, precision, recall));
    }
    for (t, hits, correct, precision, recall) in &rows_out {
        let mark = if Some(*t) == chosen {
            " (lowest with precision ≥ 0.95)"
        } else if (*t - default_threshold).abs() < 1e-6 {
            " (default)"
        } else {
            ""
        };
        if ((*t * 100.0).round() as i32) % 5 == 0
            || Some(*t) == chosen
            || (*t - default_threshold).abs() < 1e-6
        {
            quality.push_str(&format!(
                "| {t:.2}{mark} | {hits} | {correct} | {} | {precision:.3} | {recall:.3} |\n",
                hits - correct
            ));
        }
    }

    // Latency: the 100 real questions among `entries` filler vectors in one scope.
    let big = SemanticCache::default();
    let mut r = base::rng::Rng::new(42);
    let mut bar = crate::progress::Progress::new("filling the cache", entries as u64);
    let t0 = Instant::now();
    for i in 0..entries {
        let v = if i < qv.len() {
            qv[i].clone()
        } else {
            random_unit(&mut r, qv[0].len())
        };
        big.insert("bench".into(), v, answer(i), ttl, usize::MAX);
        if i % 1000 == 999 {
            bar.inc(1000);
        }
    }
    bar.finish();
    let fill_s = t0.elapsed().as_secs_f64();
    let mut lookups = Vec::new();
    let threshold = chosen.unwrap_or(default_threshold);
    let mut found = 0;
    for _ in 0..50 {
        for v in &cv {
            let t = Instant::now();
            if big.lookup("bench", v, threshold).is_some() {
                found += 1;
            }
            lookups.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    lookups.sort_by(f64::total_cmp);
    let mut embeds = Vec::new();
    for p in pairs.iter().take(200) {
        let t = Instant::now();
        embed(vec![p.1.as_str()])?;
        embeds.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    embeds.sort_by(f64::total_cmp);
    let speed = format!(
        "| measure | value |\n|---|---|\n| entries in the scope | {} |\n| fill time (s) | {fill_s:.1} |\n| lookups | {} ({} hits at {threshold:.2}) |\n| lookup p50 / p99 (ms) | {:.3} / {:.3} |\n| embedding one prompt p50 / p99 (ms, MiniLM in-process, 1 text) | {:.2} / {:.2} |\n",
        big.len(),
        lookups.len(),
        found,
        percentile(&lookups, 50.0),
        percentile(&lookups, 99.0),
        percentile(&embeds, 50.0),
        percentile(&embeds, 99.0),
    );
    let text = format!(
        "Semantic cache on {} pairs ({positives} paraphrases, {} same-topic different questions) from SQuAD v1.1 dev:\n\n{quality}\n{speed}",
        pairs.len(),
        pairs.len() - positives
    );
    println!("{text}");
    if let Some(path) = out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
