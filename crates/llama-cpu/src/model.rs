//! The single-sequence model: [`LogitsModel`] over one sequence of the shared forward pass.

use std::path::Path;
use std::sync::Arc;

use decoding_core::{HiddenStates, LogitsModel, ModelError, NodeId, TokenTree};
use ndarray::{ArrayViewMut1, ArrayViewMut2};

use crate::batch::BatchLlama;
use crate::config::LlamaConfig;
use crate::error::LoadError;
use crate::net::Net;
use crate::sequence::{self, Sequence};

/// A LLaMA-architecture model on the CPU, in f32, implementing [`LogitsModel`] with tree
/// attention and [`HiddenStates`].
///
/// Every node's logits are a function of its path alone, bit for bit: they do not depend on
/// the other nodes of the tree, on how the cache was filled, or on the thread count (see the
/// crate docs). Clones share the weights; [`batch`](Self::batch) serves many sequences
/// with them, and [`early_exit`](Self::early_exit) makes a cheaper model of their first
/// layers (a drafter for self-speculative decoding).
#[derive(Clone, Debug)]
pub struct Llama {
    net: Arc<Net>,
    /// The blocks run: `num_hidden_layers`, or fewer for an early-exit view.
    layers: usize,
    threads: usize,
    min_work: usize,
    sequence: Sequence,
}

/// Multiply-adds below which handing work to another thread costs more than it saves
/// (a channel round trip is a few microseconds).
pub(crate) const MIN_WORK_PER_THREAD: usize = 1 << 16;

impl Llama {
    /// Loads `dir/config.json` and `dir/model.safetensors`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| LoadError::Io { path, source })
        };
        let config_text = String::from_utf8(read("config.json")?)
            .map_err(|e| LoadError::Config(format!("config.json is not UTF-8: {e}")))?;
        let config = LlamaConfig::from_json(&config_text)?;
        Self::from_safetensors(config, &read("model.safetensors")?)
    }

    /// Builds the model from a configuration and the bytes of a safetensors checkpoint.
    pub fn from_safetensors(config: LlamaConfig, checkpoint: &[u8]) -> Result<Self, LoadError> {
        let net = Net::from_safetensors(config, checkpoint)?;
        let layers = net.config.num_hidden_layers;
        Ok(Self {
            sequence: Sequence::new(&net, layers),
            layers,
            net: Arc::new(net),
            threads: 1,
            min_work: MIN_WORK_PER_THREAD,
        })
    }

    /// Uses `threads` threads (at least 1) per forward pass: projections are split by output
    /// columns and attention by heads, between helper threads started inside each call and
    /// joined before it returns. Results are bit-identical for every thread count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Splits a projection or an attention between threads only when each thread gets at
    /// least `multiply_adds` of work (default 65536); 0 splits everything (for tests).
    pub fn with_min_work_per_thread(mut self, multiply_adds: usize) -> Self {
        self.min_work = multiply_adds;
        self
    }

    /// The threads used per forward pass.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The configuration (of the whole checkpoint: an early-exit view runs
    /// [`layers`](Self::layers) of its `num_hidden_layers`).
    pub fn config(&self) -> &LlamaConfig {
        &self.net.config
    }

    /// The transformer blocks a forward pass runs.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// The model that runs only the first `layers` blocks, then the final norm and the
    /// output projection: the early exit that self-speculative decoding drafts with
    /// (LayerSkip, Elhoushi et al., 2024; Draft & Verify, Zhang et al., 2024, who skip
    /// layers). It shares these weights (no copy) and thread settings, and starts with an
    /// empty cache of its own; `layers` must be 1 to `num_hidden_layers`.
    ///
    /// ```
    /// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");
    /// # if !std::path::Path::new(dir).exists() { return Ok(()); }
    /// let target = llama_cpu::Llama::load(dir)?;
    /// let drafter = target.early_exit(2)?;
    /// assert_eq!((drafter.layers(), target.layers()), (2, 8));
    /// assert!(target.early_exit(9).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn early_exit(&self, layers: usize) -> Result<Self, LoadError> {
        let available = self.net.config.num_hidden_layers;
        if !(1..=available).contains(&layers) {
            return Err(LoadError::Layers { layers, available });
        }
        Ok(Self {
            net: Arc::clone(&self.net),
            layers,
            threads: self.threads,
            min_work: self.min_work,
            sequence: Sequence::new(&self.net, layers),
        })
    }

    /// A batched model with no sequences yet, sharing these weights (no copy), thread
    /// settings and layers.
    pub fn batch(&self) -> BatchLlama {
        BatchLlama::new(
            Arc::clone(&self.net),
            self.layers,
            self.threads,
            self.min_work,
        )
    }
}

impl LogitsModel for Llama {
    fn vocab_size(&self) -> usize {
        self.net.config.vocab_size
    }

    fn committed_len(&self) -> usize {
        self.sequence.committed_len()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let items = vec![(&mut self.sequence, tree)];
        sequence::forward(
            &self.net,
            self.layers,
            self.threads,
            self.min_work,
            items,
            logits,
        )
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.sequence.commit(path)
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.sequence.truncate(len)
    }

    fn max_context(&self) -> Option<usize> {
        Some(self.net.config.max_position_embeddings)
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        Some(self)
    }
}

impl HiddenStates for Llama {
    fn hidden_size(&self) -> usize {
        self.net.config.hidden_size
    }

    fn hidden_state(&self, node: NodeId, out: ArrayViewMut1<'_, f32>) -> Result<(), ModelError> {
        self.sequence.hidden_state(node, out)
    }
}
