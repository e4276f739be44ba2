//! The model configuration: the fields of a Hugging Face LLaMA `config.json` that the forward
//! pass needs, checked once when read.

use serde::Deserialize;

use crate::error::LoadError;

/// Shape and hyper-parameters of a LLaMA-architecture model (HF `LlamaConfig` field names).
///
/// Read it with [`from_json`](Self::from_json), which validates it; a value built by hand is
/// validated when the model is built.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct LlamaConfig {
    /// Vocabulary size: rows of the embedding and of the output projection.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Longest context (positions `0..max_position_embeddings`).
    pub max_position_embeddings: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Whether the output projection is the embedding matrix (used only when the checkpoint
    /// has no `lm_head.weight`).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Activation of the feed-forward layer; only `silu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// RoPE scaling; only `null` (no scaling) is supported.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Biases on the attention projections; only `false` is supported.
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the feed-forward projections; only `false` is supported.
    #[serde(default)]
    pub mlp_bias: bool,
}

fn default_rope_theta() -> f64 {
    10_000.0
}

fn default_act() -> String {
    "silu".to_string()
}

impl LlamaConfig {
    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let config: Self =
            serde_json::from_str(text).map_err(|e| LoadError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// A configuration with the given shape and the defaults of the other fields
    /// (theta 10000, eps 1e-5, untied embeddings), for tests and benchmarks. Call
    /// [`validate`](Self::validate) or build a model to check it.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
        max_position_embeddings: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: Some(num_key_value_heads),
            head_dim: None,
            max_position_embeddings,
            rms_norm_eps: 1e-5,
            rope_theta: default_rope_theta(),
            tie_word_embeddings: false,
            hidden_act: default_act(),
            rope_scaling: None,
            attention_bias: false,
            mlp_bias: false,
        }
    }

    /// With tied (`true`) or untied input and output embeddings.
    pub fn with_tied_embeddings(mut self, tied: bool) -> Self {
        self.tie_word_embeddings = tied;
        self
    }

    /// With another RoPE base frequency.
    pub fn with_rope_theta(mut self, theta: f64) -> Self {
        self.rope_theta = theta;
        self
    }

    /// Number of key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_width(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Checks that the shape is consistent and that no unsupported feature is asked for.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |msg: String| Err(LoadError::Config(msg));
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if self.vocab_size > u32::MAX as usize {
            return bad(format!(
                "vocab_size {} does not fit token ids",
                self.vocab_size
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let head = self.head_width();
        if head == 0 || !head.is_multiple_of(2) {
            return bad(format!(
                "the head width must be even and positive, got {head}"
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!(
                "rms_norm_eps must be positive, got {}",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!(
                "rope_theta must be positive, got {}",
                self.rope_theta
            ));
        }
        if self.hidden_act != "silu" {
            return bad(format!(
                "hidden_act `{}` is not supported (only silu)",
                self.hidden_act
            ));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return bad("rope_scaling is not supported".to_string());
        }
        if self.attention_bias || self.mlp_bias {
            return bad("attention and mlp biases are not supported".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pycoder_config_and_rejects_bad_ones() {
        let text = r#"{"vocab_size": 8192, "hidden_size": 384, "intermediate_size": 1024,
            "num_hidden_layers": 8, "num_attention_heads": 6, "num_key_value_heads": 2,
            "max_position_embeddings": 1024, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
            "tie_word_embeddings": true, "hidden_act": "silu", "torch_dtype": "float16"}"#;
        let config = LlamaConfig::from_json(text).unwrap();
        assert_eq!((config.kv_heads(), config.head_width()), (2, 64));
        assert!(config.tie_word_embeddings);
        let broken = [
            text.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4"),
            text.replace("\"hidden_size\": 384", "\"hidden_size\": 380"),
            text.replace("\"silu\"", "\"gelu\""),
            text.replace("1e-05", "0.0"),
            text.replace("\"vocab_size\": 8192,", ""),
            text.replace("8192", "\"many\""),
            text.replace(
                "\"rope_theta\": 10000.0",
                "\"rope_scaling\": {\"type\": \"linear\"}",
            ),
        ];
        for text in broken {
            let err = LlamaConfig::from_json(&text).unwrap_err();
            assert!(matches!(err, LoadError::Config(_)), "{err}");
        }
    }
}
