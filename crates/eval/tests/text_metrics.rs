//! Our text metrics against the reference implementations' own numbers on 130 pairs (SQuAD v1.1
//! dev answers made into predictions, and hand-written strings that stress tokenizers):
//! `tests/fixtures/text_metrics.json`, written by `gen_eval_fixtures.py` with the official SQuAD
//! v1.1 evaluation code, sacrebleu 2.6.0 and rouge-score 0.1.2.

use eval::text;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/text_metrics.json")).expect("fixture")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn squad_bleu_and_rouge_equal_the_reference_implementations() {
    let f = fixture();
    let pairs = f["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 130);
    let mut preds = Vec::new();
    let mut refs = Vec::new();
    for p in pairs {
        let pred = p["prediction"].as_str().expect("prediction");
        let r: Vec<String> = serde_json::from_value(p["references"].clone()).expect("refs");
        let em = text::exact_match(pred, &r);
        assert_eq!(
            em,
            p["squad_em"].as_f64().unwrap(),
            "EM of {pred:?} vs {r:?}"
        );
        let f1 = text::token_f1(pred, &r);
        assert!(
            close(f1, p["squad_f1"].as_f64().unwrap()),
            "F1 of {pred:?} vs {r:?}: {f1} vs {}",
            p["squad_f1"]
        );
        let bleu = text::sentence_bleu(pred, &r);
        assert!(
            close(bleu, p["sentence_bleu"].as_f64().unwrap()),
            "BLEU of {pred:?} vs {r:?}: {bleu} vs {} (tokens {:?})",
            p["sentence_bleu"],
            text::tokenize_13a(pred)
        );
        let rl = text::rouge_l(pred, &r[0]);
        let want = &p["rouge_l"];
        assert!(
            close(rl.precision, want["precision"].as_f64().unwrap())
                && close(rl.recall, want["recall"].as_f64().unwrap())
                && close(rl.fmeasure, want["fmeasure"].as_f64().unwrap()),
            "ROUGE-L of {pred:?} vs {:?}: {rl:?} vs {want}",
            r[0]
        );
        preds.push(pred.to_owned());
        refs.push(vec![r[0].clone()]);
    }
    let c = text::corpus_bleu(&preds, &refs);
    let want = &f["corpus_bleu"];
    assert!(
        close(c.score, want["score"].as_f64().unwrap()),
        "{c:?} vs {want}"
    );
    assert!(close(c.bp, want["bp"].as_f64().unwrap()));
    for (i, p) in c.precisions.iter().enumerate() {
        assert!(
            close(*p, want["precisions"][i].as_f64().unwrap()),
            "p{} {p} vs {}",
            i + 1,
            want["precisions"][i]
        );
    }
}
