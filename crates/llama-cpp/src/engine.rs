//! The shared core of [`LlamaCpp`](crate::LlamaCpp) and [`LlamaCppBatch`](crate::LlamaCppBatch):
//! one llama.cpp context, its batch, and the sequences living in it, each with a range of
//! sequence ids.
//!
//! A sequence keeps its committed context in the cells of one *canonical* id of its range.
//! A forward gives each branch of the tree an id (branch 0 the canonical one, the others free
//! ids of the range), copies the committed cells to the other ids (`llama_memory_seq_cp`,
//! which only tags cells), and adds every node as one batch entry at position
//! `committed + depth` carrying the ids of the branches through it (see `branches.rs`).
//! A commit of a path ending at node `a` keeps the id `k` of the first branch through `a`:
//! it removes every other id of the tree from all cells (a cell left without ids is free),
//! then the cells of `k` past the path; `k` becomes the canonical id. The committed cells
//! carried `k` already, and `k`'s cells up to `a`'s position are exactly the path, in order.

use std::num::NonZeroU32;

use decoding_core::{NodeId, TokenTree, TreeSupport};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use ndarray::{ArrayView1, ArrayViewMut1, ArrayViewMut2};

use crate::branches::Branches;
use crate::error::LlamaCppError;
use crate::model::{LlamaCppModel, backend};
use crate::options::{KvPrecision, LlamaCppOptions, Sizes};

/// `LLAMA_FLASH_ATTN_TYPE_DISABLED` and `_ENABLED`.
const FLASH_ATTENTION_OFF: i32 = 0;
const FLASH_ATTENTION_ON: i32 = 1;

/// Entries per llama.cpp micro-batch (its default).
const MICRO_BATCH: usize = 512;

/// One sequence's state in a context.
#[derive(Debug)]
pub(crate) struct Sequence {
    /// The first id of this sequence's range (its width is the context's `branches`).
    first_id: i32,
    /// The id whose cells hold the committed context.
    canonical: i32,
    committed: usize,
    /// The last forward's tree, its branches and their ids, while uncommitted.
    pending: bool,
    tree: TokenTree,
    branches: Branches,
    branch_ids: Vec<i32>,
    /// Batch index of the last forward's root.
    first_index: i32,
    /// A roll back failed: the cells no longer match `committed` until a reset.
    broken: bool,
}

impl Sequence {
    pub(crate) fn committed(&self) -> usize {
        self.committed
    }
}

/// A llama.cpp context with its batch buffer.
pub(crate) struct Engine<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// Entries and sequence ids per entry the batch buffer holds.
    capacity: (usize, usize),
    vocab_size: usize,
    hidden_size: Option<usize>,
    sizes: Sizes,
    tree_cells: usize,
    tree_support: TreeSupport,
    threads: usize,
    /// One sequence owns the context: commits may drop every other id at once.
    exclusive: bool,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sizes", &self.sizes)
            .field("tree_support", &self.tree_support)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl<'m> Engine<'m> {
    /// A context for `sequences` sequences.
    pub(crate) fn new(
        model: &'m LlamaCppModel,
        options: &LlamaCppOptions,
        sequences: usize,
    ) -> Result<Self, LlamaCppError> {
        let sizes = options.resolve(sequences, model.trained_context())?;
        if model.is_recurrent() && options.tree_support() == TreeSupport::Trees {
            return Err(LlamaCppError::Options(
                "a model with recurrent layers cannot evaluate token trees; use \
                 TreeSupport::ChainsOnly"
                    .to_string(),
            ));
        }
        let kv = match options.kv_precision() {
            KvPrecision::F32 => KvCacheType::F32,
            KvPrecision::F16 => KvCacheType::F16,
        };
        let cells = sizes.cells as u32;
        let threads = options.threads() as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells))
            .with_n_batch(cells)
            .with_n_ubatch(cells.min(MICRO_BATCH as u32))
            .with_n_seq_max((sequences * sizes.branches) as u32)
            .with_kv_unified(true)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_type_k(kv)
            .with_type_v(kv)
            .with_flash_attention_policy(if options.flash_attention() {
                FLASH_ATTENTION_ON
            } else {
                FLASH_ATTENTION_OFF
            })
            .with_embeddings(options.hidden_states())
            .with_pooling_type(LlamaPoolingType::None);
        let ctx = {
            let _creating = model.lock_creation();
            model
                .inner()
                .new_context(backend()?, params)
                .map_err(LlamaCppError::Context)?
        };
        if (ctx.n_ctx() as usize) < sizes.cells {
            return Err(LlamaCppError::Options(format!(
                "llama.cpp made a context of {} cells, {} were asked for",
                ctx.n_ctx(),
                sizes.cells
            )));
        }
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(1, 1),
            capacity: (1, 1),
            vocab_size: model.vocab_size(),
            hidden_size: options.hidden_states().then(|| model.hidden_size()),
            sizes,
            tree_cells: options.tree_cells(),
            tree_support: options.tree_support(),
            threads: options.threads(),
            exclusive: sequences == 1,
        })
    }

    /// The empty sequence owning id range `slot * branches ..`.
    pub(crate) fn sequence(&self, slot: usize) -> Sequence {
        let first_id = (slot * self.sizes.branches) as i32;
        Sequence {
            first_id,
            canonical: first_id,
            committed: 0,
            pending: false,
            tree: TokenTree::new(0),
            branches: Branches::default(),
            branch_ids: Vec::new(),
            first_index: 0,
            broken: false,
        }
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub(crate) fn context(&self) -> usize {
        self.sizes.context
    }

    pub(crate) fn tree_support(&self) -> TreeSupport {
        self.tree_support
    }

    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    pub(crate) fn hidden_size(&self) -> Option<usize> {
        self.hidden_size
    }

    /// The llama-cpp-2 context.
    pub(crate) fn inner(&self) -> &LlamaContext<'m> {
        &self.ctx
    }

    /// Removes `id` from the cells at positions `from..` (all when `None`).
    fn remove(&mut self, id: i32, from: Option<usize>) -> Result<(), LlamaCppError> {
        let p0 = from.map(|p| p as u32);
        match self.ctx.clear_kv_cache_seq(Some(id as u32), p0, None) {
            Ok(true) => Ok(()),
            Ok(false) => Err(LlamaCppError::Rollback {
                from: from.unwrap_or(0),
            }),
            Err(e) => Err(LlamaCppError::Usage(format!("kv-cache operation: {e}"))),
        }
    }

    /// Drops the uncommitted nodes of `seq`'s last forward.
    fn drop_pending(&mut self, seq: &mut Sequence) -> Result<(), LlamaCppError> {
        if !seq.pending {
            return Ok(());
        }
        seq.pending = false;
        if self.exclusive {
            self.ctx.llama_kv_cache_seq_keep(seq.canonical);
        } else {
            for &id in &seq.branch_ids[1..] {
                self.remove(id, None)?;
            }
        }
        self.remove(seq.canonical, Some(seq.committed))
            .inspect_err(|_| seq.broken = true)
    }

    /// Evaluates each sequence's tree on top of its committed context in one `llama_decode`,
    /// writing the logits rows of the trees one after the other.
    pub(crate) fn forward(
        &mut self,
        items: &mut [(&mut Sequence, &TokenTree)],
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), LlamaCppError> {
        let rows: usize = items.iter().map(|(_, t)| t.logits_rows()).sum();
        if logits.dim() != (rows, self.vocab_size) {
            return Err(LlamaCppError::Usage(format!(
                "logits have shape {:?}, the trees need {rows}x{}",
                logits.dim(),
                self.vocab_size
            )));
        }
        for (seq, _) in items.iter_mut() {
            self.drop_pending(seq)?;
        }
        let (mut entries, mut widest) = (0, 1);
        for (seq, tree) in items.iter_mut() {
            self.check(seq, tree)?;
            seq.branches.compute(tree);
            if seq.branches.count() > self.sizes.branches {
                return Err(LlamaCppError::Capacity(format!(
                    "the tree has {} branches, but each sequence of this context has {} \
                     sequence ids (LlamaCppOptions::with_branches, or fewer nodes per step)",
                    seq.branches.count(),
                    self.sizes.branches
                )));
            }
            entries += tree.len();
            widest = widest.max(seq.branches.count());
        }
        if entries > self.sizes.cells {
            return Err(LlamaCppError::Capacity(format!(
                "the trees have {entries} nodes, the context {} cells",
                self.sizes.cells
            )));
        }
        if entries > self.capacity.0 || widest > self.capacity.1 {
            self.capacity = (entries.max(self.capacity.0), widest.max(self.capacity.1));
            self.batch = LlamaBatch::new(self.capacity.0, self.capacity.1 as i32);
        }
        self.batch.clear();
        let mut index = 0;
        for (seq, tree) in items.iter_mut() {
            let (first, width) = (seq.first_id, self.sizes.branches as i32);
            let canonical = seq.canonical;
            seq.branch_ids.clear();
            seq.branch_ids.push(canonical);
            let free = (first..first + width).filter(|&id| id != canonical);
            seq.branch_ids.extend(free.take(seq.branches.count() - 1));
            seq.pending = true;
            if seq.committed > 0 {
                for &id in &seq.branch_ids[1..] {
                    self.ctx
                        .kv_cache_seq_cp(canonical, id, None, None)
                        .map_err(|e| LlamaCppError::Usage(format!("kv-cache copy: {e}")))?;
                }
            }
            seq.first_index = index;
            let all_outputs = self.hidden_size.is_some();
            for node in 0..tree.len() {
                let ids = &seq.branch_ids[seq.branches.through(node)];
                let pos = (seq.committed + tree.depth(node)) as i32;
                let token = LlamaToken::new(tree.token(node) as i32);
                let output = all_outputs || tree.needs_logits(node);
                self.batch
                    .add(token, pos, ids, output)
                    .map_err(|e| LlamaCppError::Capacity(format!("batch: {e}")))?;
            }
            index += tree.len() as i32;
        }
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            for (seq, _) in items.iter_mut() {
                self.drop_pending(seq)?;
            }
            return Err(LlamaCppError::Decode(e));
        }
        let mut row = 0;
        for (seq, tree) in items.iter_mut() {
            for node in tree.logits_nodes() {
                let r = row
                    + tree
                        .logits_row(node)
                        .expect("a node that needs logits has a row");
                let values = self.ctx.get_logits_ith(seq.first_index + node as i32);
                logits.row_mut(r).assign(&ArrayView1::from(values));
            }
            row += tree.logits_rows();
            seq.tree.clone_from(tree);
        }
        Ok(())
    }

    /// What `forward` checks per sequence before touching the cache.
    fn check(&self, seq: &Sequence, tree: &TokenTree) -> Result<(), LlamaCppError> {
        if seq.broken {
            return Err(LlamaCppError::Usage(
                "the sequence must be reset after a failed roll back".to_string(),
            ));
        }
        tree.check_vocab(self.vocab_size)?;
        if self.tree_support == TreeSupport::ChainsOnly {
            tree.check_chain()?;
        }
        let end = seq.committed + tree.max_depth() + 1;
        if end > self.sizes.context {
            return Err(LlamaCppError::Capacity(format!(
                "the tree reaches {end} tokens, past the context of {}",
                self.sizes.context
            )));
        }
        if seq.committed + tree.len() > self.sizes.context + self.tree_cells {
            return Err(LlamaCppError::Capacity(format!(
                "{} committed tokens and a tree of {} nodes need more than the {} cells of a \
                 sequence (LlamaCppOptions::with_tree_cells)",
                seq.committed,
                tree.len(),
                self.sizes.context + self.tree_cells
            )));
        }
        Ok(())
    }

    /// Keeps `path` of `seq`'s last forward and drops its other nodes.
    pub(crate) fn commit(
        &mut self,
        seq: &mut Sequence,
        path: &[NodeId],
    ) -> Result<(), LlamaCppError> {
        if !seq.pending {
            return Err(LlamaCppError::Usage(
                "commit without a forward since the last commit".to_string(),
            ));
        }
        seq.tree.check_path(path)?;
        let Some(&last) = path.last() else {
            return self.drop_pending(seq);
        };
        let keep = seq.branch_ids[seq.branches.through(last).start];
        seq.pending = false;
        if self.exclusive {
            self.ctx.llama_kv_cache_seq_keep(keep);
        } else {
            for &id in &seq.branch_ids {
                if id != keep {
                    self.remove(id, None)?;
                }
            }
        }
        let end = seq.committed + path.len();
        seq.canonical = keep;
        if seq.tree.children(last).next().is_some() {
            self.remove(keep, Some(end))
                .inspect_err(|_| seq.broken = true)?;
        }
        seq.committed = end;
        Ok(())
    }

    /// Shortens `seq`'s committed context to `len` tokens.
    pub(crate) fn truncate(&mut self, seq: &mut Sequence, len: usize) -> Result<(), LlamaCppError> {
        if len == 0 {
            return self.release(seq);
        }
        self.drop_pending(seq)?;
        if len > seq.committed {
            return Err(LlamaCppError::Usage(format!(
                "cannot truncate {} committed tokens to {len}",
                seq.committed
            )));
        }
        if len < seq.committed {
            self.remove(seq.canonical, Some(len))
                .inspect_err(|_| seq.broken = true)?;
        }
        seq.committed = len;
        Ok(())
    }

    /// Frees every cell of `seq` (a reset).
    pub(crate) fn release(&mut self, seq: &mut Sequence) -> Result<(), LlamaCppError> {
        if seq.broken || seq.pending {
            // Every id of the range: after a failure, which ids hold cells is not known.
            for id in seq.first_id..seq.first_id + self.sizes.branches as i32 {
                self.remove(id, None)?;
            }
        } else {
            self.remove(seq.canonical, None)?;
        }
        seq.pending = false;
        seq.broken = false;
        seq.committed = 0;
        seq.canonical = seq.first_id;
        Ok(())
    }

    /// The final hidden state of `node` of `seq`'s last forward.
    pub(crate) fn hidden_state(
        &self,
        seq: &Sequence,
        node: NodeId,
        mut out: ArrayViewMut1<'_, f32>,
    ) -> Result<(), LlamaCppError> {
        let Some(width) = self.hidden_size else {
            return Err(LlamaCppError::Usage(
                "hidden states are off (LlamaCppOptions::with_hidden_states)".to_string(),
            ));
        };
        if !seq.pending || node >= seq.tree.len() {
            return Err(LlamaCppError::Usage(format!(
                "node {node} is not a node of the last uncommitted forward"
            )));
        }
        if out.len() != width {
            return Err(LlamaCppError::Usage(format!(
                "a hidden state has {width} values, the output {}",
                out.len()
            )));
        }
        let values = self
            .ctx
            .embeddings_ith(seq.first_index + node as i32)
            .map_err(|e| LlamaCppError::Usage(format!("hidden state of node {node}: {e}")))?;
        let values = values.get(..width).ok_or_else(|| {
            LlamaCppError::Usage(format!("llama.cpp gave {} hidden values", values.len()))
        })?;
        out.assign(&ArrayView1::from(values));
        Ok(())
    }
}
