//! The RAG pipeline over one collection: ingest documents (parse → chunk → embed → upsert, only
//! files whose content changed, chunks deduplicated by content hash), retrieve by vector, by
//! BM25 keywords or both fused by reciprocal rank, assemble a cited context within a token
//! budget, and answer extractively (the best-supported sentence, cited) until a generator is
//! plugged in.

use crate::bm25::{Bm25, rrf};
use crate::chunk::{ChunkOptions, chunk_document};
use crate::text::{Format, parse, sentences};
use crate::{Error, Result};
use neural::Embedder;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use vector::{Filter, Point, PointId, SearchRequest, VectorCollection};

/// One document to ingest: where it came from (a relative path or a URL) and its content.
pub struct SourceDoc {
    pub source: String,
    pub content: String,
    pub format: Format,
}

#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    pub documents: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub chunks_added: usize,
    pub chunks_deleted: usize,
    /// Sources that were not ingested, with the reason.
    pub skipped: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ManifestEntry {
    hash: String,
    chunks: Vec<String>,
}

/// What has been ingested: per source, its content hash and chunk ids. Lives beside the
/// collection's files and is rewritten (atomically) after the chunks are durable.
#[derive(Default, Serialize, Deserialize)]
struct Manifest {
    sources: BTreeMap<String, ManifestEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Vector,
    Keyword,
    Hybrid,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "vector" => Some(Mode::Vector),
            "keyword" | "bm25" => Some(Mode::Keyword),
            "hybrid" => Some(Mode::Hybrid),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct QueryOptions {
    pub mode: Mode,
    pub top_k: usize,
    /// How many each retriever proposes before fusion.
    pub candidates: usize,
    pub filter: Option<Filter>,
    /// Token budget of the assembled context.
    pub context_tokens: usize,
    /// How the hybrid mode merges the two lists.
    pub fusion: Fusion,
    /// Re-rank this many of the first results by their best-matching sentence (0 = off).
    pub rerank: usize,
}

/// How hybrid retrieval merges the vector and keyword lists.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Fusion {
    /// Reciprocal rank fusion: Σ 1/(k + rank); ignores how far apart the scores are.
    Rrf { k: f32 },
    /// Relative score fusion: each list's scores min-max normalised to [0, 1], then
    /// `w·vector + (1 − w)·keyword` (a chunk missing from a list scores 0 there).
    Relative { vector_weight: f32 },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Relative { vector_weight: 0.5 }
    }
}

/// Relative score fusion of ranked lists with their scores (higher is better in each).
pub fn relative_score_fusion(
    lists: &[(&[PointId], &[f32])],
    weights: &[f32],
) -> Vec<(PointId, f32)> {
    let mut total: HashMap<PointId, f32> = HashMap::new();
    let mut first: HashMap<PointId, usize> = HashMap::new();
    let mut order = 0;
    for ((ids, scores), w) in lists.iter().zip(weights) {
        let (lo, hi) = scores
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &s| {
                (lo.min(s), hi.max(s))
            });
        for (id, &s) in ids.iter().zip(scores.iter()) {
            let norm = if hi > lo { (s - lo) / (hi - lo) } else { 1.0 };
            *total.entry(id.clone()).or_default() += w * norm;
            first.entry(id.clone()).or_insert_with(|| {
                order += 1;
                order
            });
        }
    }
    let mut out: Vec<(PointId, f32)> = total.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(first[&a.0].cmp(&first[&b.0])));
    out
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            mode: Mode::Hybrid,
            top_k: 5,
            candidates: 50,
            filter: None,
            context_tokens: 1500,
            fusion: Fusion::default(),
            rerank: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    pub id: PointId,
    pub score: f32,
    pub text: String,
    pub source: String,
    pub title: String,
    pub headings: Vec<String>,
    /// 1-based rank in each retriever's list (absent when it did not propose this chunk).
    pub vector_rank: Option<usize>,
    pub keyword_rank: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Citation {
    pub n: usize,
    pub id: PointId,
    pub source: String,
    pub headings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub answer: String,
    pub citations: Vec<Citation>,
    /// The numbered context a generator would be given.
    pub context: String,
    pub hits: Vec<Hit>,
    /// How long each step took (`embed`, `retrieve` — reranking included —, `context`,
    /// `answer`), in order: what the query's trace shows as spans.
    pub steps: Vec<Step>,
}

/// One timed step of a query.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub name: &'static str,
    /// From the start of the query.
    pub offset_ms: f64,
    pub duration_ms: f64,
}

/// Times the steps of one query.
struct Stopwatch {
    start: std::time::Instant,
    steps: Vec<Step>,
}

impl Stopwatch {
    fn new() -> Stopwatch {
        Stopwatch {
            start: std::time::Instant::now(),
            steps: Vec::new(),
        }
    }

    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let at = std::time::Instant::now();
        let out = f();
        self.steps.push(Step {
            name,
            offset_ms: (at - self.start).as_secs_f64() * 1e3,
            duration_ms: at.elapsed().as_secs_f64() * 1e3,
        });
        out
    }
}

struct Keyword {
    sequence: u64,
    bm25: Bm25,
    ids: Vec<PointId>,
    payloads: Vec<Map<String, Value>>,
}

/// The metadata key of the ingestion manifest.
const MANIFEST: &str = "rag-manifest";

pub struct Rag {
    collection: Arc<dyn VectorCollection>,
    embedder: Arc<dyn Embedder>,
    keyword: Mutex<Option<Arc<Keyword>>>,
}

fn chunk_id(headings: &[String], text: &str) -> String {
    let mut h = Sha256::new();
    for part in headings {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    h.update(text.as_bytes());
    base::to_hex(&h.finalize()[..12])
}

/// What gets embedded: the heading path gives a chunk the context its own words may lack.
fn embed_text(title: &str, headings: &[String], text: &str) -> String {
    let mut path: Vec<&str> = Vec::new();
    if !title.is_empty() && headings.first().is_none_or(|h| h != title) {
        path.push(title);
    }
    path.extend(headings.iter().map(String::as_str));
    if path.is_empty() {
        text.to_owned()
    } else {
        format!("{}: {text}", path.join(" > "))
    }
}

impl Rag {
    pub fn new(collection: Arc<dyn VectorCollection>, embedder: Arc<dyn Embedder>) -> Result<Rag> {
        if collection.config().dim != embedder.dim() {
            return Err(Error::BadRequest(format!(
                "collection `{}` holds {}-d vectors, the embedder {} makes {}-d",
                collection.name(),
                collection.config().dim,
                embedder.model_name(),
                embedder.dim()
            )));
        }
        Ok(Rag {
            collection,
            embedder,
            keyword: Mutex::new(None),
        })
    }

    pub fn collection(&self) -> &Arc<dyn VectorCollection> {
        &self.collection
    }

    fn load_manifest(&self) -> Result<Manifest> {
        match self.collection.read_meta(MANIFEST)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Corrupt(format!(
                    "ingestion manifest of `{}`: {e}",
                    self.collection.name()
                ))
            }),
            None => Ok(Manifest::default()),
        }
    }

    fn save_manifest(&self, m: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec(m).map_err(|e| Error::Corrupt(format!("manifest: {e}")))?;
        Ok(self.collection.write_meta(MANIFEST, &bytes)?)
    }

    /// Ingests documents. Unchanged sources (same content hash) are skipped; a changed source's
    /// old chunks are replaced; with `complete`, sources ingested before but absent now are
    /// removed. `progress(done, total)` is called after each document.
    pub fn ingest(
        &self,
        docs: Vec<SourceDoc>,
        opts: ChunkOptions,
        complete: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<IngestReport> {
        let mut manifest = self.load_manifest()?;
        let mut report = IngestReport {
            documents: docs.len(),
            ..Default::default()
        };
        let present: HashSet<String> = docs.iter().map(|d| d.source.clone()).collect();
        let total = docs.len();
        let count = |t: &str| self.embedder.count_tokens(t);
        let mut batch: Vec<Point> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let hash = base::to_hex(&Sha256::digest(doc.content.as_bytes()));
            if manifest
                .sources
                .get(&doc.source)
                .is_some_and(|e| e.hash == hash)
            {
                report.unchanged += 1;
                progress(i + 1, total);
                continue;
            }
            let parsed = parse(doc.format, &doc.content);
            let chunks = chunk_document(&parsed, opts, &count);
            if chunks.is_empty() {
                report.skipped.push((doc.source.clone(), "no text".into()));
                progress(i + 1, total);
                continue;
            }
            let mut ids = Vec::with_capacity(chunks.len());
            for (n, c) in chunks.iter().enumerate() {
                let id = chunk_id(&c.headings, &c.text);
                if ids.contains(&id) {
                    continue;
                }
                ids.push(id.clone());
                texts.push(embed_text(&parsed.title, &c.headings, &c.text));
                batch.push(Point {
                    id: PointId::Str(id),
                    vector: Vec::new(),
                    payload: json!({
                        "text": c.text, "source": doc.source, "title": parsed.title,
                        "headings": c.headings, "chunk": n, "tokens": c.tokens,
                    })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                });
            }
            if let Some(old) = manifest.sources.get(&doc.source) {
                dropped.extend(old.chunks.iter().filter(|c| !ids.contains(c)).cloned());
            }
            report.changed += 1;
            report.chunks_added += ids.len();
            manifest
                .sources
                .insert(doc.source.clone(), ManifestEntry { hash, chunks: ids });
            if batch.len() >= 256 {
                self.flush(&mut batch, &mut texts)?;
            }
            progress(i + 1, total);
        }
        self.flush(&mut batch, &mut texts)?;
        if complete {
            let gone: Vec<String> = manifest
                .sources
                .keys()
                .filter(|s| !present.contains(*s))
                .cloned()
                .collect();
            for s in gone {
                if let Some(e) = manifest.sources.remove(&s) {
                    dropped.extend(e.chunks);
                    report.removed += 1;
                }
            }
        }
        // A chunk id another source still holds (same text) stays.
        let still: HashSet<&String> = manifest.sources.values().flat_map(|e| &e.chunks).collect();
        let delete: Vec<PointId> = dropped
            .iter()
            .filter(|c| !still.contains(c))
            .map(|c| PointId::Str(c.clone()))
            .collect();
        report.chunks_deleted = delete.len();
        if !delete.is_empty() {
            self.collection.delete(delete)?;
        }
        self.save_manifest(&manifest)?;
        Ok(report)
    }

    fn flush(&self, batch: &mut Vec<Point>, texts: &mut Vec<String>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = self.embedder.embed(&refs)?;
        for (p, v) in batch.iter_mut().zip(vectors) {
            p.vector = v;
        }
        self.collection.upsert(std::mem::take(batch))?;
        texts.clear();
        Ok(())
    }

    /// The BM25 index of the collection as it is now (rebuilt when the collection changed).
    fn keyword_index(&self) -> Result<Arc<Keyword>> {
        let sequence = self.collection.sequence()?;
        let mut cache = self.keyword.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = cache.as_ref()
            && k.sequence == sequence
        {
            return Ok(k.clone());
        }
        let mut bm25 = Bm25::new();
        let (mut ids, mut payloads) = (Vec::new(), Vec::new());
        let mut offset: Option<PointId> = None;
        loop {
            let (page, next) = self.collection.scroll(None, offset.as_ref(), 10_000)?;
            for p in page {
                let text = p.payload.get("text").and_then(Value::as_str).unwrap_or("");
                let headings: Vec<String> = p
                    .payload
                    .get("headings")
                    .and_then(Value::as_array)
                    .map(|h| {
                        h.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let title = p.payload.get("title").and_then(Value::as_str).unwrap_or("");
                bm25.add(&embed_text(title, &headings, text));
                ids.push(p.id);
                payloads.push(p.payload);
            }
            match next {
                Some(n) => offset = Some(n),
                None => break,
            }
        }
        let k = Arc::new(Keyword {
            sequence,
            bm25,
            ids,
            payloads,
        });
        *cache = Some(k.clone());
        Ok(k)
    }

    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        Ok(self.embedder.embed(&[query])?.pop().unwrap_or_default())
    }

    pub fn retrieve(&self, query: &str, opts: &QueryOptions) -> Result<Vec<Hit>> {
        if query.trim().is_empty() {
            return Err(Error::BadRequest("the query is empty".into()));
        }
        let qv = if opts.mode == Mode::Keyword {
            None
        } else {
            Some(self.embed_query(query)?)
        };
        self.retrieve_with(query, qv, opts)
    }

    /// [`retrieve`](Self::retrieve) with the query already embedded (evaluations embed all
    /// questions in one batch).
    pub fn retrieve_with(
        &self,
        query: &str,
        qv: Option<Vec<f32>>,
        opts: &QueryOptions,
    ) -> Result<Vec<Hit>> {
        if !(1..=1000).contains(&opts.top_k) {
            return Err(Error::BadRequest("top_k must be between 1 and 1000".into()));
        }
        let n = opts.candidates.max(opts.top_k);
        let qv_for_rerank = if opts.rerank > 0 { qv.clone() } else { None };
        let mut by_id: HashMap<PointId, Map<String, Value>> = HashMap::new();
        let mut vector_list = Vec::new();
        let mut vector_scores = Vec::new();
        if opts.mode != Mode::Keyword {
            let mut req = SearchRequest::new(qv.unwrap_or_default(), n);
            req.filter = opts.filter.clone();
            for p in self.collection.search(&req)? {
                vector_scores.push(p.score);
                vector_list.push(p.id.clone());
                by_id.insert(p.id, p.payload.unwrap_or_default());
            }
        }
        let mut keyword_list = Vec::new();
        let mut keyword_scores = Vec::new();
        if opts.mode != Mode::Vector {
            let k = self.keyword_index()?;
            let allow = |d: u32| {
                opts.filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&k.ids[d as usize], &k.payloads[d as usize]))
            };
            for (d, score) in k.bm25.search(query, n, &allow) {
                keyword_scores.push(score);
                let id = k.ids[d as usize].clone();
                keyword_list.push(id.clone());
                by_id
                    .entry(id)
                    .or_insert_with(|| k.payloads[d as usize].clone());
            }
        }
        let ranked: Vec<(PointId, f32)> = match opts.mode {
            Mode::Vector => vector_list
                .iter()
                .cloned()
                .zip((0..).map(|r| 1.0 / (r as f32 + 1.0)))
                .collect(),
            Mode::Keyword => keyword_list
                .iter()
                .cloned()
                .zip((0..).map(|r| 1.0 / (r as f32 + 1.0)))
                .collect(),
            Mode::Hybrid => match opts.fusion {
                Fusion::Rrf { k } => rrf(&[vector_list.clone(), keyword_list.clone()], k),
                Fusion::Relative { vector_weight } => relative_score_fusion(
                    &[
                        (&vector_list, &vector_scores),
                        (&keyword_list, &keyword_scores),
                    ],
                    &[vector_weight, 1.0 - vector_weight],
                ),
            },
        };
        let rank_in =
            |list: &[PointId], id: &PointId| list.iter().position(|x| x == id).map(|r| r + 1);
        let ranked = if opts.rerank > 0 {
            self.rerank(query, qv_for_rerank.as_deref(), ranked, opts.rerank, &by_id)?
        } else {
            ranked
        };
        Ok(ranked
            .into_iter()
            .take(opts.top_k)
            .map(|(id, score)| {
                let p = by_id.remove(&id).unwrap_or_default();
                let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                Hit {
                    vector_rank: rank_in(&vector_list, &id),
                    keyword_rank: rank_in(&keyword_list, &id),
                    score,
                    text: s("text"),
                    source: s("source"),
                    title: s("title"),
                    headings: p
                        .get("headings")
                        .and_then(Value::as_array)
                        .map(|h| {
                            h.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    id,
                }
            })
            .collect())
    }

    /// Re-ranks the first `depth` results by how well their best sentence matches the query
    /// (MiniLM cosine), blended half and half with the retrieval score (both min-max
    /// normalised over the reranked set); the rest keep their order.
    fn rerank(
        &self,
        query: &str,
        qv: Option<&[f32]>,
        ranked: Vec<(PointId, f32)>,
        depth: usize,
        by_id: &HashMap<PointId, Map<String, Value>>,
    ) -> Result<Vec<(PointId, f32)>> {
        let depth = depth.min(ranked.len());
        if depth < 2 {
            return Ok(ranked);
        }
        let mut texts: Vec<String> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (i, (id, _)) in ranked[..depth].iter().enumerate() {
            let text = by_id
                .get(id)
                .and_then(|p| p.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("");
            for s in sentences(text) {
                texts.push(s.to_owned());
                owner.push(i);
            }
        }
        let mut refs: Vec<&str> = Vec::with_capacity(texts.len() + 1);
        if qv.is_none() {
            refs.push(query);
        }
        refs.extend(texts.iter().map(String::as_str));
        let mut vs = self.embedder.embed(&refs)?;
        let q = match qv {
            Some(q) => q.to_vec(),
            None => vs.remove(0),
        };
        let mut best = vec![f32::NEG_INFINITY; depth];
        for (v, &i) in vs.iter().zip(&owner) {
            best[i] = best[i].max(vector::distance::dot(&q, v));
        }
        let norm = |xs: &[f32]| -> Vec<f32> {
            let finite: Vec<f32> = xs.iter().copied().filter(|x| x.is_finite()).collect();
            let lo = finite.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            xs.iter()
                .map(|&x| {
                    if !x.is_finite() {
                        0.0
                    } else if hi > lo {
                        (x - lo) / (hi - lo)
                    } else {
                        1.0
                    }
                })
                .collect()
        };
        let fused: Vec<f32> = ranked[..depth].iter().map(|r| r.1).collect();
        let (nf, nb) = (norm(&fused), norm(&best));
        let mut head: Vec<(PointId, f32)> = ranked[..depth]
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.clone(), 0.5 * nf[i] + 0.5 * nb[i]))
            .collect();
        head.sort_by(|a, b| b.1.total_cmp(&a.1));
        head.extend(ranked.into_iter().skip(depth));
        Ok(head)
    }

    /// Numbered context within `budget` tokens, and the citations it holds.
    pub fn context(&self, hits: &[Hit], budget: usize) -> (String, Vec<Citation>) {
        let mut context = String::new();
        let mut citations = Vec::new();
        let mut used = 0;
        for hit in hits {
            let n = citations.len() + 1;
            let where_ = if hit.headings.is_empty() {
                hit.source.clone()
            } else {
                format!("{} — {}", hit.source, hit.headings.join(" > "))
            };
            let block = format!("[{n}] ({where_})\n{}\n\n", hit.text);
            let cost = self.embedder.count_tokens(&block);
            if used + cost > budget && !citations.is_empty() {
                break;
            }
            used += cost;
            context.push_str(&block);
            citations.push(Citation {
                n,
                id: hit.id.clone(),
                source: hit.source.clone(),
                headings: hit.headings.clone(),
            });
        }
        (context.trim_end().to_owned(), citations)
    }

    /// Retrieval, context, and the extractive answer: the context sentence closest to the
    /// question, with its citation number.
    pub fn answer(&self, query: &str, opts: &QueryOptions) -> Result<Answer> {
        if query.trim().is_empty() {
            return Err(Error::BadRequest("the query is empty".into()));
        }
        let mut watch = Stopwatch::new();
        let qv = if opts.mode == Mode::Keyword {
            None
        } else {
            Some(watch.time("embed", || self.embed_query(query))?)
        };
        let hits = watch.time("retrieve", || self.retrieve_with(query, qv, opts))?;
        let (context, citations) =
            watch.time("context", || self.context(&hits, opts.context_tokens));
        let at = std::time::Instant::now();
        let mut candidates: Vec<(usize, String)> = Vec::new();
        for (hit, c) in hits.iter().zip(&citations) {
            for s in sentences(&hit.text) {
                candidates.push((c.n, s.to_owned()));
            }
        }
        let answer = if candidates.is_empty() {
            "No indexed text answers this question.".to_owned()
        } else {
            let mut texts: Vec<&str> = vec![query];
            texts.extend(candidates.iter().map(|c| c.1.as_str()));
            let vs = self.embedder.embed(&texts)?;
            let q = &vs[0];
            let best = vs[1..]
                .iter()
                .enumerate()
                .map(|(i, v)| (i, vector::distance::dot(q, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(0, |x| x.0);
            format!("{} [{}]", candidates[best].1, candidates[best].0)
        };
        watch.steps.push(Step {
            name: "answer",
            offset_ms: (at - watch.start).as_secs_f64() * 1e3,
            duration_ms: at.elapsed().as_secs_f64() * 1e3,
        });
        Ok(Answer {
            answer,
            citations,
            context,
            hits,
            steps: watch.steps,
        })
    }
}

/// Files under `root` that can be ingested (sorted, hidden entries skipped), with the reason
/// for each file that cannot.
/// A file found for ingestion: its name relative to the root, its path, its format.
pub type FoundFile = (String, std::path::PathBuf, Format);
/// A source that was not ingested and why.
pub type Skipped = (String, String);

pub fn collect_files(root: &std::path::Path) -> (Vec<FoundFile>, Vec<Skipped>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    if root.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match Format::of(root) {
            Some(f) => found.push((name, root.to_owned(), f)),
            None => skipped.push((name, "unsupported file type".into())),
        }
        return (found, skipped);
    }
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            skipped.push((dir.display().to_string(), "cannot read directory".into()));
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                stack.push(path);
            } else {
                match Format::of(&path) {
                    Some(f) => found.push((rel, path, f)),
                    None => skipped.push((rel, "unsupported file type".into())),
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    skipped.sort();
    (found, skipped)
}

/// Reads the files [`collect_files`] found; a file that is not UTF-8 text is skipped with the
/// reason, the rest are returned.
pub fn read_sources(files: Vec<FoundFile>, skipped: &mut Vec<Skipped>) -> Vec<SourceDoc> {
    let mut docs = Vec::new();
    for (rel, path, format) in files {
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(content) => docs.push(SourceDoc {
                    source: rel,
                    content,
                    format,
                }),
                Err(_) => skipped.push((rel, "not UTF-8 text".into())),
            },
            Err(e) => skipped.push((rel, format!("cannot read: {e}"))),
        }
    }
    docs
}
