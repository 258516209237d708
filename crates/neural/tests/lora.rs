//! The trainable decoder and LoRA against the reference implementation, and the training loop on
//! small models: a tiny LLaMA in the Hugging Face layout with a PEFT adapter, both made by
//! transformers + peft (fixtures/gen_tiny_llama.py) with the logits they compute; gradients
//! against finite differences; training that lowers the loss and resumes from a checkpoint.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use neural::decoder::{Decoder, LlamaConfig};
use neural::lora::{Lora, LoraConfig};
use neural::train::{self, Event, Sequence, TrainConfig};
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama")
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn all_logits(model: &Decoder, lora: Option<&Lora>, ids: &[u32]) -> Vec<Vec<f32>> {
    let input = Tensor::from_slice(ids, (1, ids.len()), &Device::Cpu).unwrap();
    let h = model.hidden(&input, 0, None, lora, None).unwrap();
    model
        .logits(&h)
        .unwrap()
        .i(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn max_diff(got: &[Vec<f32>], want: &serde_json::Value) -> f32 {
    let mut worst = 0f32;
    for (row, w) in got.iter().zip(want.as_array().unwrap()) {
        for (g, w) in row.iter().zip(w.as_array().unwrap()) {
            worst = worst.max((g - w.as_f64().unwrap() as f32).abs());
        }
    }
    worst
}

fn tiny() -> Decoder {
    Decoder::load_hf(&fixture_dir().join("model"), DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn a_hugging_face_checkpoint_gives_the_reference_logits() {
    let model = tiny();
    assert_eq!(model.config.layers, 2);
    assert_eq!((model.config.heads, model.config.kv_heads), (4, 2));
    let r = reference();
    for (k, seq) in r["ids"].as_array().unwrap().iter().enumerate() {
        let got = all_logits(&model, None, &ids(seq));
        let d = max_diff(&got, &r["base"][k]);
        assert!(d < 1e-4, "sequence {k}: max |difference| {d}");
    }
}

#[test]
fn a_peft_adapter_from_python_applies_merges_and_unmerges() {
    let model = tiny();
    let lora = Lora::load_peft(
        &fixture_dir().join("adapter"),
        &model.config,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(lora.config.rank, 4);
    assert_eq!(lora.config.targets.len(), 7);
    let merged = model.merged(&lora, 1.0).unwrap();
    let unmerged = merged.merged(&lora, -1.0).unwrap();
    let r = reference();
    for (k, seq) in r["ids"].as_array().unwrap().iter().enumerate() {
        let seq = ids(seq);
        let d = max_diff(&all_logits(&model, Some(&lora), &seq), &r["adapted"][k]);
        assert!(d < 1e-4, "adapter on the fly, sequence {k}: {d}");
        let d = max_diff(&all_logits(&merged, None, &seq), &r["merged"][k]);
        assert!(d < 1e-4, "merged, sequence {k}: {d}");
        let d = max_diff(&all_logits(&unmerged, None, &seq), &r["base"][k]);
        assert!(d < 1e-4, "unmerged gives the base back, sequence {k}: {d}");
        // The adapter really changes the output.
        assert!(max_diff(&all_logits(&model, None, &seq), &r["adapted"][k]) > 1e-3);
    }
}

#[test]
fn our_adapters_are_written_in_peft_layout_and_read_back() {
    let model = tiny();
    let mut lora = Lora::init(
        LoraConfig::new(2, 4.0, 0.1, "q_proj,down_proj", true).unwrap(),
        &model.config,
        "tiny-llama",
        3,
        &Device::Cpu,
    )
    .unwrap();
    lora.randomize_b(4, 0.3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    lora.save_peft(dir.path()).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 2);
    assert_eq!(cfg["use_rslora"], true);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "down_proj"])
    );
    let tensors =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    assert_eq!(tensors.len(), 2 * 2 * 2, "2 layers × 2 modules × (A, B)");
    let a = &tensors["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"];
    assert_eq!(a.dims(), &[2, 48]);
    let back = Lora::load_peft(dir.path(), &model.config, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(back.config, lora.config);
    let seq = [1u32, 7, 9, 30, 2];
    let (x, y) = (
        all_logits(&model, Some(&lora), &seq),
        all_logits(&model, Some(&back), &seq),
    );
    assert_eq!(x, y);
    assert_eq!(
        lora.parameter_count(),
        2 * (2 * 32 + 32 * 2) + 2 * (2 * 48 + 32 * 2)
    );
    // For the interop check in the other direction (`gen_tiny_llama.py DIR` loads this adapter
    // with Python's peft and compares): CAPSTAN_PEFT_EXPORT=DIR writes it with our logits.
    if let Some(out) = std::env::var_os("CAPSTAN_PEFT_EXPORT") {
        let out = PathBuf::from(out);
        lora.save_peft(&out).unwrap();
        let logits: Vec<Vec<Vec<f32>>> = reference()["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| all_logits(&model, Some(&lora), &ids(s)))
            .collect();
        std::fs::write(
            out.join("capstan_logits.json"),
            serde_json::to_string(&logits).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn an_adapter_for_another_base_or_a_broken_one_is_refused_by_name() {
    let other = LlamaConfig {
        hidden: 48,
        intermediate: 64,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        context: 64,
        rms_eps: 1e-5,
        rope_base: 10_000.0,
        vocab: 64,
        tie_embeddings: true,
        qkv_bias: false,
    };
    let e = Lora::load_peft(
        &fixture_dir().join("adapter"),
        &other,
        DType::F32,
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("base_model.model.model.layers."), "{e}");
    assert!(e.contains("another base model"), "{e}");
    let fewer = LlamaConfig {
        layers: 1,
        hidden: 32,
        intermediate: 48,
        ..other.clone()
    };
    let e = Lora::load_peft(
        &fixture_dir().join("adapter"),
        &fewer,
        DType::F32,
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("for layer 1 but the base model has 1 layers"),
        "{e}"
    );
    // A config without weights, and DoRA, are refused; a missing adapter is "not found".
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("adapter/adapter_config.json"),
        dir.path().join("adapter_config.json"),
    )
    .unwrap();
    let model = tiny();
    assert!(Lora::load_peft(dir.path(), &model.config, DType::F32, &Device::Cpu).is_err());
    let mut cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture_dir().join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    cfg["use_dora"] = true.into();
    std::fs::write(dir.path().join("adapter_config.json"), cfg.to_string()).unwrap();
    let e = Lora::load_peft(dir.path(), &model.config, DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("DoRA"), "{e}");
    assert!(matches!(
        Lora::load_peft(
            &dir.path().join("nope"),
            &model.config,
            DType::F32,
            &Device::Cpu
        ),
        Err(neural::Error::NotFound(_))
    ));
    // A checkpoint whose tensor shapes do not match its config names the tensor.
    let broken = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("model/config.json")).unwrap())
            .unwrap();
    config["intermediate_size"] = 40.into();
    std::fs::write(broken.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        fixture_dir().join("model/model.safetensors"),
        broken.path().join("model.safetensors"),
    )
    .unwrap();
    let e = Decoder::load_hf(broken.path(), DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("[48, 32]"),
        "{e}"
    );
}

fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        hidden: 16,
        intermediate: 24,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        context: 32,
        rms_eps: 1e-6,
        rope_base: 10_000.0,
        vocab: 20,
        tie_embeddings: true,
        qkv_bias: false,
    }
}

/// Analytic gradients (candle's backward) of the loss against central differences, in f64.
fn check_gradients(model: &Decoder, lora: Option<&Lora>, vars: &[(String, Var)], picks: usize) {
    let seq = Sequence {
        ids: vec![3, 7, 1, 12, 19, 4, 4, 8, 15],
        target_from: 3,
    };
    let loss = |train: bool| -> f64 {
        let (l, _) = train::sequence_loss(model, lora, &seq, train.then_some(1)).unwrap();
        l.to_scalar::<f64>().unwrap()
    };
    let (l, _) = train::sequence_loss(model, lora, &seq, Some(1)).unwrap();
    let grads = l.backward().unwrap();
    let h = 1e-6;
    let mut checked = 0;
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .expect("a gradient for every variable");
        let g: Vec<f64> = g.flatten_all().unwrap().to_vec1().unwrap();
        let w0: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let step = (w0.len() / picks).max(1);
        for k in (0..w0.len()).step_by(step).take(picks) {
            let mut w = w0.clone();
            let set = |w: &[f64]| {
                var.set(&Tensor::from_slice(w, var.dims(), &Device::Cpu).unwrap())
                    .unwrap()
            };
            w[k] = w0[k] + h;
            set(&w);
            let up = loss(true);
            w[k] = w0[k] - h;
            set(&w);
            let down = loss(true);
            set(&w0);
            let numeric = (up - down) / (2.0 * h);
            let tol = 1e-6 + 1e-5 * numeric.abs().max(g[k].abs());
            assert!(
                (numeric - g[k]).abs() < tol,
                "{name}[{k}]: backward {} vs finite difference {numeric}",
                g[k]
            );
            checked += 1;
        }
    }
    assert!(checked >= vars.len());
}

#[test]
fn the_fused_inference_kernels_and_the_differentiable_ops_agree() {
    let model = tiny();
    let seq = Sequence {
        ids: vec![3, 7, 1, 12, 19, 4, 4, 8, 15],
        target_from: 3,
    };
    let loss = |train: Option<u64>| -> f32 {
        let (l, _) = train::sequence_loss(&model, None, &seq, train).unwrap();
        l.to_scalar::<f32>().unwrap()
    };
    assert!((loss(None) - loss(Some(1))).abs() < 1e-5);
}

#[test]
fn lora_gradients_equal_finite_differences() {
    let model = Decoder::random(tiny_config(), 11, DType::F64).unwrap();
    let mut lora = Lora::init(
        LoraConfig::new(3, 6.0, 0.0, "all-linear", false).unwrap(),
        &model.config,
        "random",
        5,
        &Device::Cpu,
    )
    .unwrap();
    lora.randomize_b(6, 0.2).unwrap();
    lora.to_dtype(DType::F64).unwrap();
    let vars = lora.trainable().unwrap();
    assert_eq!(vars.len(), 2 * 7 * 2);
    check_gradients(&model, Some(&lora), &vars, 3);
}

#[test]
fn full_model_gradients_equal_finite_differences() {
    let mut model = Decoder::random(tiny_config(), 12, DType::F64).unwrap();
    let vars = model.trainable().unwrap();
    // embed, 2 × (2 norms + 7 projections), final norm; the head is tied to the embedding.
    assert_eq!(vars.len(), 1 + 2 * 9 + 1);
    check_gradients(&model, None, &vars, 2);
}

/// Sequences of a learnable rule: after a prompt `a b`, the response counts up from `a + b`.
fn counting_task(n: usize, seed: u64) -> Vec<Sequence> {
    let mut rng = base::rng::Rng::new(seed);
    (0..n)
        .map(|_| {
            let a = (rng.next_u64() % 5) as u32;
            let b = (rng.next_u64() % 5) as u32;
            let mut ids = vec![0, 1 + a, 1 + b];
            let target_from = ids.len();
            for k in 0..5 {
                ids.push(1 + (a + b + k) % 19);
            }
            Sequence { ids, target_from }
        })
        .collect()
}

#[test]
fn lora_training_lowers_the_loss_stops_early_and_resumes_exactly() {
    let data = counting_task(64, 1);
    let eval = counting_task(16, 2);
    let fresh = |seed| {
        let model = Decoder::random(tiny_config(), 13, DType::F32).unwrap();
        let lora = Lora::init(
            LoraConfig::new(4, 8.0, 0.05, "all-linear", false).unwrap(),
            &model.config,
            "random",
            seed,
            &Device::Cpu,
        )
        .unwrap();
        (model, lora)
    };
    let cfg = TrainConfig {
        epochs: 3,
        lr: 1e-2,
        warmup_steps: 4,
        grad_accum: 4,
        eval_every: 8,
        checkpoint_every: 6,
        seed: 9,
        ..TrainConfig::default()
    };
    let (mut model, mut lora) = fresh(1);
    let (before, _) = train::evaluate(&model, Some(&lora), &eval).unwrap();
    let mut evals = Vec::new();
    let mut losses = Vec::new();
    let out = train::train(
        &mut model,
        Some(&mut lora),
        &data,
        &eval,
        &cfg,
        None,
        &mut |e| {
            match e {
                Event::Eval { loss, .. } => evals.push(*loss),
                Event::Step { loss, .. } => losses.push(*loss),
                Event::Checkpoint { .. } => {}
            }
            true
        },
    )
    .unwrap();
    assert_eq!(out.steps, 3 * 16);
    let (after, ppl) = train::evaluate(&model, Some(&lora), &eval).unwrap();
    assert!(
        after < before * 0.6,
        "held-out loss {before:.3} → {after:.3} (steps {losses:?})"
    );
    assert!((ppl - after.exp()).abs() < 1e-9);
    assert_eq!(evals.len(), 6);
    // The weights kept are the best evaluation's.
    let best = evals.iter().copied().fold(f64::INFINITY, f64::min);
    assert!((after - best).abs() < 1e-6, "{after} vs best {best}");

    // A run killed after 18 steps and started again ends where an uninterrupted run ends.
    let dir = tempfile::tempdir().unwrap();
    let (mut m1, mut l1) = fresh(1);
    let stop_at = 18;
    let first = train::train(
        &mut m1,
        Some(&mut l1),
        &data,
        &eval,
        &cfg,
        Some(dir.path()),
        &mut |e| !matches!(e, Event::Step { step, .. } if *step >= stop_at),
    )
    .unwrap();
    assert!(first.cancelled);
    assert_eq!(first.steps, stop_at);
    let (mut m2, mut l2) = fresh(1);
    let second = train::train(
        &mut m2,
        Some(&mut l2),
        &data,
        &eval,
        &cfg,
        Some(dir.path()),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(second.resumed_from, Some(stop_at));
    assert_eq!(second.steps, 48);
    let (resumed, _) = train::evaluate(&m2, Some(&l2), &eval).unwrap();
    assert!(
        (resumed - after).abs() < 1e-4,
        "resumed run {resumed} vs uninterrupted {after}"
    );

    // Early stopping: held-out answers that contradict the training answers (shifted by 7)
    // get worse once training fits its own, and patience ends the run.
    let contradicting: Vec<Sequence> = eval
        .iter()
        .map(|s| {
            let mut ids = s.ids.clone();
            for id in &mut ids[s.target_from..] {
                *id = 1 + (*id - 1 + 7) % 19;
            }
            Sequence {
                ids,
                target_from: s.target_from,
            }
        })
        .collect();
    let (mut m3, mut l3) = fresh(2);
    let patient = TrainConfig {
        patience: Some(2),
        eval_every: 2,
        ..cfg.clone()
    };
    let out = train::train(
        &mut m3,
        Some(&mut l3),
        &data,
        &contradicting,
        &patient,
        None,
        &mut |_| true,
    )
    .unwrap();
    assert!(out.stopped_early, "{out:?}");
    assert!(out.steps < 48);
}

#[test]
fn bad_training_input_is_refused() {
    let mut model = Decoder::random(tiny_config(), 13, DType::F32).unwrap();
    let mut lora = Lora::init(
        LoraConfig::new(2, 4.0, 0.0, "q_proj", false).unwrap(),
        &model.config,
        "random",
        1,
        &Device::Cpu,
    )
    .unwrap();
    let cfg = TrainConfig::default();
    let e = train::train(
        &mut model,
        Some(&mut lora),
        &[],
        &[],
        &cfg,
        None,
        &mut |_| true,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("empty"), "{e}");
    let too_long = Sequence {
        ids: vec![1; 40],
        target_from: 2,
    };
    let e = train::train(
        &mut model,
        Some(&mut lora),
        &[too_long],
        &[],
        &cfg,
        None,
        &mut |_| true,
    )
    .err()
    .unwrap();
    assert!(
        matches!(e, neural::Error::ContextLength { limit: 32, .. }),
        "{e}"
    );
}
