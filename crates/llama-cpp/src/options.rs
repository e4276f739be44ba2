//! How a llama.cpp context is made: threads, sizes, tree support, precision. Checked once,
//! when the context is created.

use decoding_core::TreeSupport;

use crate::error::LlamaCppError;

/// Most sequence ids a llama.cpp context has (`LLAMA_MAX_SEQ`).
pub const MAX_SEQUENCE_IDS: usize = 256;

/// The precision of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvPrecision {
    /// 32-bit floats (the default here: what an f32 reference computes).
    F32,
    /// 16-bit floats (llama.cpp's own default: half the memory, keys and values rounded).
    F16,
}

/// Options of a llama.cpp context for [`LlamaCpp`](crate::LlamaCpp) and
/// [`LlamaCppBatch`](crate::LlamaCppBatch).
///
/// ```
/// use decoding_llama_cpp::LlamaCppOptions;
///
/// let options = LlamaCppOptions::new().with_threads(2).with_context(1024).with_branches(32);
/// assert_eq!(options.threads(), 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaCppOptions {
    threads: usize,
    context: Option<usize>,
    tree_cells: usize,
    branches: Option<usize>,
    tree_support: TreeSupport,
    hidden_states: bool,
    kv: KvPrecision,
    flash_attention: bool,
}

impl Default for LlamaCppOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl LlamaCppOptions {
    /// One thread, the model's trained context, 256 cells for trees, token trees, no hidden
    /// states, an f32 KV cache, no flash attention.
    pub fn new() -> Self {
        Self {
            threads: 1,
            context: None,
            tree_cells: 256,
            branches: None,
            tree_support: TreeSupport::Trees,
            hidden_states: false,
            kv: KvPrecision::F32,
            flash_attention: false,
        }
    }

    /// Threads per forward pass (llama.cpp's `n_threads` and `n_threads_batch`).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The longest context per sequence, committed tokens plus tree depth
    /// ([`max_context`](decoding_core::LogitsModel::max_context)); default: the context
    /// the model was trained with.
    pub fn with_context(mut self, tokens: usize) -> Self {
        self.context = Some(tokens);
        self
    }

    /// KV-cache cells reserved per sequence beyond its context, for the uncommitted nodes of
    /// a tree (a tree of `n` nodes at depth `d` needs `n - d - 1` of them); default 256.
    pub fn with_tree_cells(mut self, cells: usize) -> Self {
        self.tree_cells = cells;
        self
    }

    /// Sequence ids per sequence: the most branches (leaves) a tree may have. Default: 64 for
    /// one sequence, `256 / sequences` (at most 64) for a batch.
    pub fn with_branches(mut self, branches: usize) -> Self {
        self.branches = Some(branches);
        self
    }

    /// Token trees (the default) or chains only (the fallback for models whose memory has
    /// no per-cell sequence mask, such as recurrent layers).
    pub fn with_tree_support(mut self, support: TreeSupport) -> Self {
        self.tree_support = support;
        self
    }

    /// Exposes final hidden states (for Medusa heads run by the library). llama.cpp then
    /// computes the output of every node of a forward, logits included: slower prefill.
    pub fn with_hidden_states(mut self, enabled: bool) -> Self {
        self.hidden_states = enabled;
        self
    }

    /// The KV-cache precision (default f32).
    pub fn with_kv_precision(mut self, kv: KvPrecision) -> Self {
        self.kv = kv;
        self
    }

    /// Uses llama.cpp's flash attention (default off: its CPU kernel switches between
    /// chunked and tiled forms by batch shape and thread count, so a node's logits would
    /// depend on those more than without it).
    pub fn with_flash_attention(mut self, enabled: bool) -> Self {
        self.flash_attention = enabled;
        self
    }

    /// KV-cache cells per sequence for uncommitted tree nodes.
    pub fn tree_cells(&self) -> usize {
        self.tree_cells
    }

    /// Threads per forward pass.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The tree support asked for.
    pub fn tree_support(&self) -> TreeSupport {
        self.tree_support
    }

    /// Whether hidden states are exposed.
    pub fn hidden_states(&self) -> bool {
        self.hidden_states
    }

    /// The KV-cache precision.
    pub fn kv_precision(&self) -> KvPrecision {
        self.kv
    }

    /// Whether flash attention is on.
    pub fn flash_attention(&self) -> bool {
        self.flash_attention
    }

    /// The checked sizes for `sequences` sequences of a model trained on `trained` tokens.
    pub(crate) fn resolve(&self, sequences: usize, trained: usize) -> Result<Sizes, LlamaCppError> {
        let bad = |msg: String| Err(LlamaCppError::Options(msg));
        if self.threads == 0 || self.threads > i32::MAX as usize {
            return bad(format!("threads must be positive, got {}", self.threads));
        }
        if sequences == 0 {
            return bad("a context needs at least one sequence".to_string());
        }
        let context = self.context.unwrap_or(trained);
        if context == 0 {
            return bad("the context must hold at least one token".to_string());
        }
        let chains = self.tree_support == TreeSupport::ChainsOnly;
        let branches = match (chains, self.branches) {
            (true, _) => 1,
            (false, Some(b)) => b,
            (false, None) => (MAX_SEQUENCE_IDS / sequences).min(64),
        };
        if branches == 0 {
            return bad("each sequence needs at least one sequence id (branch)".to_string());
        }
        if sequences * branches > MAX_SEQUENCE_IDS {
            return bad(format!(
                "{sequences} sequences of {branches} branches need {} sequence ids; llama.cpp \
                 has {MAX_SEQUENCE_IDS}",
                sequences * branches
            ));
        }
        let cells = (context + self.tree_cells)
            .checked_mul(sequences)
            .filter(|&c| c <= i32::MAX as usize)
            .ok_or_else(|| {
                LlamaCppError::Options(format!(
                    "{sequences} sequences of {context} + {} cells overflow llama.cpp's sizes",
                    self.tree_cells
                ))
            })?;
        // llama.cpp reserves an output row per sequence id at creation, within its batch size
        // (at most the cells): a context has at least as many cells as sequence ids.
        let cells = cells.max(sequences * branches);
        Ok(Sizes {
            context,
            cells,
            branches,
        })
    }
}

/// The sizes of a context, checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Committed tokens plus tree depth per sequence.
    pub(crate) context: usize,
    /// KV-cache cells of the whole context.
    pub(crate) cells: usize,
    /// Sequence ids per sequence.
    pub(crate) branches: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_sequences_and_bad_options_are_rejected() {
        let s = LlamaCppOptions::new().resolve(1, 1024).unwrap();
        assert_eq!((s.context, s.cells, s.branches), (1024, 1280, 64));
        let s = LlamaCppOptions::new().resolve(8, 512).unwrap();
        assert_eq!((s.cells, s.branches), (8 * 768, 32));
        let chains = LlamaCppOptions::new().with_tree_support(TreeSupport::ChainsOnly);
        assert_eq!(chains.resolve(200, 64).unwrap().branches, 1);
        for (options, sequences) in [
            (LlamaCppOptions::new().with_threads(0), 1),
            (LlamaCppOptions::new().with_context(0), 1),
            (LlamaCppOptions::new().with_branches(0), 1),
            (LlamaCppOptions::new().with_branches(64), 5),
            (LlamaCppOptions::new(), 0),
            (LlamaCppOptions::new().with_context(usize::MAX / 2), 4),
        ] {
            let err = options.resolve(sequences, 1024).unwrap_err();
            assert!(matches!(err, LlamaCppError::Options(_)), "{err}");
        }
    }
}
