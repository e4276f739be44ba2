//! Checkpoint loading: dtypes, tied and untied embeddings, and clear errors.

use candle_core::{DType, Device, Tensor};
use decoding_candle::{CandleLlama, LlamaConfig, LoadError};
use decoding_core::{LogitsModel, TokenTree};
use llama_cpu::LoadError as Checkpoint;
use ndarray::Array2;

use crate::common::{checkpoint, random_weights, tiny_config};

fn logits(model: &mut CandleLlama) -> Array2<f32> {
    let tree = TokenTree::from_chain(&[5, 1, 30, 2]).unwrap();
    let mut out = Array2::zeros((4, model.vocab_size()));
    model.forward(&tree, out.view_mut()).unwrap();
    out
}

fn load(config: &LlamaConfig, bytes: &[u8]) -> Result<CandleLlama, LoadError> {
    CandleLlama::from_safetensors(config.clone(), bytes, &Device::Cpu)
}

#[test]
fn half_precision_checkpoints_load_as_their_exact_f32_values() {
    let config = tiny_config();
    for dtype in [DType::F16, DType::BF16] {
        // Weights that are exactly representable in the half type.
        let weights: std::collections::BTreeMap<String, Tensor> = random_weights(&config, 3)
            .into_iter()
            .map(|(n, t)| (n, t.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap()))
            .collect();
        let mut half = load(&config, &checkpoint(&weights, dtype)).unwrap();
        let mut full = load(&config, &checkpoint(&weights, DType::F32)).unwrap();
        assert_eq!(logits(&mut half), logits(&mut full), "{dtype:?}");
    }
}

#[test]
fn tied_embeddings_use_the_embedding_and_untied_ones_need_lm_head() {
    let tied = tiny_config().with_tied_embeddings(true);
    let weights = random_weights(&tied, 4);
    let mut model = load(&tied, &checkpoint(&weights, DType::F32)).unwrap();
    let mut with_head = weights.clone();
    with_head.insert(
        "lm_head.weight".into(),
        weights["model.embed_tokens.weight"].clone(),
    );
    let untied = tiny_config();
    let mut explicit = load(&untied, &checkpoint(&with_head, DType::F32)).unwrap();
    assert_eq!(logits(&mut model), logits(&mut explicit));
    let err = load(&untied, &checkpoint(&weights, DType::F32)).unwrap_err();
    assert!(
        matches!(&err, LoadError::Checkpoint(Checkpoint::MissingTensor(n)) if n == "lm_head.weight"),
        "{err}"
    );
}

#[test]
fn broken_checkpoints_are_reported_clearly() {
    let config = tiny_config();
    let good = random_weights(&config, 5);

    let mut missing = good.clone();
    missing.remove("model.layers.1.mlp.up_proj.weight");
    let err = load(&config, &checkpoint(&missing, DType::F32)).unwrap_err();
    assert!(
        matches!(&err, LoadError::Checkpoint(Checkpoint::MissingTensor(n)) if n.contains("up_proj")),
        "{err}"
    );

    let mut reshaped = good.clone();
    let name = "model.layers.0.self_attn.k_proj.weight".to_string();
    reshaped.insert(
        name.clone(),
        Tensor::zeros((13, 24), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load(&config, &checkpoint(&reshaped, DType::F32)).unwrap_err();
    assert!(
        matches!(&err, LoadError::Checkpoint(Checkpoint::Shape { name: n, expected, .. }) if *n == name && expected == &[12, 24]),
        "{err}"
    );

    let mut integers = good.clone();
    integers.insert(
        "model.norm.weight".into(),
        Tensor::zeros(24, DType::U32, &Device::Cpu).unwrap(),
    );
    let err = load(&config, &checkpoint(&integers, DType::F32)).unwrap_err();
    assert!(
        matches!(&err, LoadError::Checkpoint(Checkpoint::Dtype { .. })),
        "{err}"
    );

    let bytes = checkpoint(&good, DType::F32);
    let err = load(&config, &bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(&err, LoadError::Safetensors(_)), "{err}");
    let err = load(&config, b"not a checkpoint").unwrap_err();
    assert!(matches!(&err, LoadError::Safetensors(_)), "{err}");

    let bad = LlamaConfig::new(37, 24, 20, 2, 4, 3, 96);
    let err = load(&bad, &bytes).unwrap_err();
    assert!(
        matches!(&err, LoadError::Checkpoint(Checkpoint::Config(_))),
        "{err}"
    );

    let err = CandleLlama::load("/nonexistent/model").unwrap_err();
    assert!(
        matches!(&err, LoadError::Checkpoint(Checkpoint::Io { .. })),
        "{err}"
    );
}
