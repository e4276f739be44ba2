//! The single-sequence model: [`LogitsModel`] over one sequence of the batched forward.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use decoding_core::{
    BatchLogitsModel, HiddenStates, LogitsModel, ModelError, NodeId, SeqId, TokenTree,
};
use llama_cpu::LlamaConfig;
use ndarray::{ArrayViewMut1, ArrayViewMut2};

use crate::batch::BatchCandleLlama;
use crate::error::LoadError;
use crate::net::Net;
use crate::rope::RopeTables;
use crate::weights::Weights;

/// A LLaMA-architecture model on candle, in f32, implementing [`LogitsModel`] with tree
/// attention and [`HiddenStates`].
///
/// It is a [`BatchCandleLlama`] holding one sequence: one forward code path for both.
/// Not `Clone` (its cache is written in place); [`batch`](Self::batch) and
/// [`fresh`](Self::fresh) make more models over the same weights.
#[derive(Debug)]
pub struct CandleLlama {
    inner: BatchCandleLlama,
    seq: SeqId,
}

impl CandleLlama {
    /// Loads `dir/config.json` and `dir/model.safetensors` onto the CPU.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::load_on(dir, &Device::Cpu)
    }

    /// Loads `dir/config.json` and `dir/model.safetensors` onto `device` (the CPU, or a
    /// CUDA or Metal device with the `cuda` or `metal` feature).
    pub fn load_on(dir: impl AsRef<Path>, device: &Device) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| llama_cpu::LoadError::Io { path, source })
        };
        let text = String::from_utf8(read("config.json")?)
            .map_err(|e| llama_cpu::LoadError::Config(format!("config.json is not UTF-8: {e}")))?;
        let config = LlamaConfig::from_json(&text)?;
        Self::from_safetensors(config, &read("model.safetensors")?, device)
    }

    /// Builds the model from a configuration and the bytes of a safetensors checkpoint
    /// (f32, f16 or bf16 tensors, computed in f32).
    pub fn from_safetensors(
        config: LlamaConfig,
        checkpoint: &[u8],
        device: &Device,
    ) -> Result<Self, LoadError> {
        config.validate()?;
        let weights = Weights::from_safetensors(&config, checkpoint, device)?;
        let rope = RopeTables::new(&config, device)?;
        let net = Net {
            config,
            weights,
            rope,
            device: device.clone(),
        };
        Ok(Self::over(BatchCandleLlama::new(Arc::new(net), None)))
    }

    fn over(mut inner: BatchCandleLlama) -> Self {
        let seq = inner.sequences.add();
        Self { inner, seq }
    }

    /// Runs every forward pass on a thread pool of its own with `threads` threads (at
    /// least 1), instead of rayon's global pool (whose size candle takes from
    /// `RAYON_NUM_THREADS`, else the number of cores).
    pub fn with_threads(mut self, threads: usize) -> Result<Self, LoadError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()?;
        self.inner.pool = Some(Arc::new(pool));
        Ok(self)
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        self.inner.config()
    }

    /// The device the weights and the cache live on.
    pub fn device(&self) -> &Device {
        self.inner.device()
    }

    /// A batched model with no sequences yet, sharing these weights (no copy) and thread
    /// pool.
    pub fn batch(&self) -> BatchCandleLlama {
        BatchCandleLlama::new(Arc::clone(&self.inner.net), self.inner.pool.clone())
    }

    /// A model with an empty context, sharing these weights (no copy) and thread pool.
    pub fn fresh(&self) -> Self {
        Self::over(self.batch())
    }
}

impl LogitsModel for CandleLlama {
    fn vocab_size(&self) -> usize {
        self.inner.config().vocab_size
    }

    fn committed_len(&self) -> usize {
        self.inner.sequences.committed_len(self.seq).unwrap_or(0)
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.inner.forward_batch(&[(self.seq, tree)], logits)
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.inner.commit(self.seq, path)
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.inner.truncate(self.seq, len)
    }

    fn max_context(&self) -> Option<usize> {
        self.inner.max_context()
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        Some(self)
    }
}

impl HiddenStates for CandleLlama {
    fn hidden_size(&self) -> usize {
        self.inner.hidden_size()
    }

    fn hidden_state(&self, node: NodeId, out: ArrayViewMut1<'_, f32>) -> Result<(), ModelError> {
        self.inner.sequences.hidden_state(self.seq, node, out)
    }
}
