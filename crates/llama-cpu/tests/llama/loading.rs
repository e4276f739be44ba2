//! Checkpoint loading: dtypes, tied and untied embeddings, and clear errors.

use decoding_core::{LogitsModel, TokenTree};
use llama_cpu::{Llama, LlamaConfig, LoadError};
use ndarray::Array2;
use safetensors::Dtype;

use crate::common::{Tensors, random_tensors, tiny_config, to_safetensors};

fn logits(model: &mut Llama) -> Array2<f32> {
    let tree = TokenTree::from_chain(&[5, 1, 30, 2]).unwrap();
    let mut out = Array2::zeros((4, model.vocab_size()));
    model.forward(&tree, out.view_mut()).unwrap();
    out
}

fn load(config: &LlamaConfig, tensors: &Tensors, dtype: Dtype) -> Result<Llama, LoadError> {
    Llama::from_safetensors(config.clone(), &to_safetensors(tensors, dtype))
}

#[test]
fn half_precision_checkpoints_load_as_their_exact_f32_values() {
    let config = tiny_config();
    for (dtype, round) in [
        (
            Dtype::F16,
            (|x| half::f16::from_f32(x).to_f32()) as fn(f32) -> f32,
        ),
        (Dtype::BF16, |x| half::bf16::from_f32(x).to_f32()),
    ] {
        let mut tensors = random_tensors(&config, 3);
        for (_, data) in tensors.values_mut() {
            data.iter_mut().for_each(|x| *x = round(*x));
        }
        let mut from_half = load(&config, &tensors, dtype).unwrap();
        let mut from_f32 = load(&config, &tensors, Dtype::F32).unwrap();
        assert_eq!(logits(&mut from_half), logits(&mut from_f32), "{dtype:?}");
    }
}

#[test]
fn tied_embeddings_use_the_embedding_and_untied_ones_need_lm_head() {
    let tied = tiny_config().with_tied_embeddings(true);
    let tensors = random_tensors(&tied, 4);
    assert!(!tensors.contains_key("lm_head.weight"));
    let mut model = load(&tied, &tensors, Dtype::F32).unwrap();
    // With an lm_head equal to the embedding, an untied model computes the same logits.
    let mut with_head = tensors.clone();
    with_head.insert(
        "lm_head.weight".into(),
        tensors["model.embed_tokens.weight"].clone(),
    );
    let untied = tiny_config();
    let mut explicit = load(&untied, &with_head, Dtype::F32).unwrap();
    assert_eq!(logits(&mut model), logits(&mut explicit));
    // When both exist, lm_head wins even if the config says tied.
    with_head.get_mut("lm_head.weight").unwrap().1[0] += 1.0;
    let mut head_wins = load(&tied, &with_head, Dtype::F32).unwrap();
    assert_ne!(logits(&mut head_wins), logits(&mut model));
    let err = load(&untied, &tensors, Dtype::F32).unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingTensor(name) if name == "lm_head.weight"),
        "{err}"
    );
}

#[test]
fn broken_checkpoints_are_reported_clearly() {
    let config = tiny_config();
    let good = random_tensors(&config, 5);

    let mut missing = good.clone();
    missing.remove("model.layers.1.mlp.up_proj.weight");
    let err = load(&config, &missing, Dtype::F32).unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingTensor(n) if n == "model.layers.1.mlp.up_proj.weight")
    );
    assert!(err.to_string().contains("up_proj"), "{err}");

    let mut reshaped = good.clone();
    let (shape, _) = reshaped
        .get_mut("model.layers.0.self_attn.k_proj.weight")
        .unwrap();
    *shape = vec![shape[1], shape[0]];
    let err = load(&config, &reshaped, Dtype::F32).unwrap_err();
    assert!(
        matches!(&err, LoadError::Shape { name, expected, actual }
            if name.ends_with("k_proj.weight") && expected == &[12, 24] && actual == &[24, 12]),
        "{err}"
    );

    let bytes = to_safetensors(&good, Dtype::F32);
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = Llama::from_safetensors(config.clone(), &bytes[..cut]).unwrap_err();
        assert!(matches!(err, LoadError::Safetensors(_)), "cut {cut}: {err}");
    }

    // One tensor stored as f64.
    let name = "model.norm.weight";
    let mut views: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = good
        .iter()
        .map(|(n, (shape, data))| {
            let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), shape.clone(), Dtype::F32, raw)
        })
        .collect();
    let norm = views.iter_mut().find(|v| v.0 == name).unwrap();
    norm.2 = Dtype::F64;
    norm.3 = good[name]
        .1
        .iter()
        .flat_map(|&x| f64::from(x).to_le_bytes())
        .collect();
    let bytes = safetensors::serialize(
        views.iter().map(|(n, shape, dtype, raw)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), raw).unwrap(),
            )
        }),
        None,
    )
    .unwrap();
    let err = Llama::from_safetensors(config.clone(), &bytes).unwrap_err();
    assert!(
        matches!(&err, LoadError::Dtype { name: n, .. } if n == name),
        "{err}"
    );

    let bad = LlamaConfig::new(37, 24, 20, 2, 4, 3, 64);
    let err = load(&bad, &good, Dtype::F32).unwrap_err();
    assert!(matches!(err, LoadError::Config(_)), "{err}");
}

#[test]
fn directories_are_read_with_io_and_config_errors() {
    let dir = std::env::temp_dir().join(format!("llama-cpu-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Llama::load(&dir).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");

    std::fs::write(dir.join("config.json"), r#"{"vocab_size": 37}"#).unwrap();
    let err = Llama::load(&dir).unwrap_err();
    assert!(matches!(err, LoadError::Config(_)), "{err}");

    let config = r#"{"vocab_size": 37, "hidden_size": 24, "intermediate_size": 20,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500.0}"#;
    std::fs::write(dir.join("config.json"), config).unwrap();
    let tensors = random_tensors(&tiny_config(), 6);
    std::fs::write(
        dir.join("model.safetensors"),
        to_safetensors(&tensors, Dtype::F16),
    )
    .unwrap();
    let model = Llama::load(&dir).unwrap();
    assert_eq!(model.config(), &tiny_config());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The vendored pycoder-16m model reproduces the start of the reference greedy output.
#[test]
fn pycoder_reproduces_the_reference_greedy_prefix() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets");
    let Ok(mut model) = Llama::load(format!("{root}/pycoder-16m")) else {
        eprintln!("assets/pycoder-16m not found; skipping");
        return;
    };
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/eval/dev_eval.json")).unwrap(),
    )
    .unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/eval/dev_greedy.json")).unwrap(),
    )
    .unwrap();
    let case = &cases["cases"][0];
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect()
    };
    let prompt = ids(&case["prompt_ids"]);
    let reference = ids(&expected[case["id"].as_str().unwrap()]);
    let config = decoding_core::DecodeConfig::new(6).with_eos([0]);
    let mut rng = <rand::rngs::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(0);
    let out = decoding_core::generate(
        &mut model.clone().with_threads(2),
        decoding_core::Plain,
        &prompt,
        &config,
        &mut rng,
    )
    .unwrap();
    assert_eq!(out.tokens, reference[..6]);
    assert_eq!(logits(&mut model).dim(), (4, 8192));
}
