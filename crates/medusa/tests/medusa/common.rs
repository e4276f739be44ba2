//! Test helpers: random heads, a toy engine whose heads know the future (so drafts are
//! often accepted).

use std::sync::Arc;

use decoding_core::{
    HeadLogits, HiddenStates, LogitsModel, ModelError, NodeId, Token, TokenTree, argmax,
};
use decoding_testkit::toy::HashModel;
use medusa::{HeadWeights, MedusaHeads, ResBlock};
use ndarray::{Array1, Array2, ArrayViewMut2};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

pub(crate) fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// `num_heads` random heads with `blocks` residual blocks each, for a model of width `d`
/// and vocabulary `vocab`; the last head shares `lm_head` when `share` is set.
pub(crate) fn random_heads(
    seed: u64,
    num_heads: usize,
    d: usize,
    vocab: usize,
    blocks: usize,
    share: bool,
) -> MedusaHeads {
    let mut rng = rng(seed);
    let mut matrix =
        |r: usize, c: usize| Array2::from_shape_fn((r, c), |_| rng.random_range(-1.0f32..1.0));
    let mut heads = Vec::new();
    for k in 0..num_heads {
        let blocks = (0..blocks)
            .map(|_| ResBlock::new(matrix(d, d), Array1::from_elem(d, 0.1)).unwrap())
            .collect();
        let output = (!(share && k == num_heads - 1)).then(|| matrix(vocab, d));
        heads.push(HeadWeights::new(blocks, output));
    }
    let lm_head = share.then(|| matrix(vocab, d));
    MedusaHeads::new(heads, lm_head).unwrap()
}

pub(crate) fn arc_heads(seed: u64, num_heads: usize, d: usize, vocab: usize) -> Arc<MedusaHeads> {
    let heads = random_heads(seed, num_heads, d, vocab, 1, seed.is_multiple_of(2));
    Arc::new(if seed % 3 == 1 {
        heads.with_bf16_outputs()
    } else {
        heads
    })
}

/// A toy engine computing its own head logits: head `k` at a node puts a large logit on the
/// true greedy token `k + 2` positions ahead with probability `hit`, otherwise on a wrong
/// token, over small pseudo-random noise (all a deterministic function of the node's
/// context). Also exposes the inner model's hidden states.
pub(crate) struct OracleHeads {
    pub(crate) inner: HashModel,
    pub(crate) num_heads: usize,
    pub(crate) hit: f64,
    committed: Vec<Token>,
    last_tree: Option<TokenTree>,
}

impl OracleHeads {
    pub(crate) fn new(inner: HashModel, num_heads: usize, hit: f64) -> Self {
        Self {
            inner,
            num_heads,
            hit,
            committed: Vec::new(),
            last_tree: None,
        }
    }

    /// The greedy continuation of `context`, `n` tokens.
    fn greedy(&self, context: &[Token], n: usize) -> Vec<Token> {
        let mut context = context.to_vec();
        let mut row = vec![0.0; self.inner.vocab_size()];
        for _ in 0..n {
            self.inner.logits_of_context(&context, &mut row);
            context.push(argmax(&row).unwrap_or(0));
        }
        context.split_off(context.len() - n)
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl LogitsModel for OracleHeads {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn committed_len(&self) -> usize {
        self.inner.committed_len()
    }
    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.inner.forward(tree, logits)?;
        self.last_tree = Some(tree.clone());
        Ok(())
    }
    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.inner.commit(path)?;
        let tree = self
            .last_tree
            .take()
            .ok_or_else(|| ModelError::msg("no forward"))?;
        self.committed.extend(path.iter().map(|&n| tree.token(n)));
        Ok(())
    }
    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.inner.truncate(len)?;
        self.committed.truncate(len);
        self.last_tree = None;
        Ok(())
    }
    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        self.inner.hidden_states()
    }
    fn head_logits(&mut self) -> Option<&mut dyn HeadLogits> {
        Some(self)
    }
}

impl HeadLogits for OracleHeads {
    fn num_heads(&self) -> usize {
        self.num_heads
    }

    fn head_logits(
        &mut self,
        node: NodeId,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let tree = self
            .last_tree
            .as_ref()
            .ok_or_else(|| ModelError::msg("no forward"))?;
        tree.check_node(node)?;
        let mut context = self.committed.clone();
        context.extend(tree.path_tokens(node));
        let future = self.greedy(&context, self.num_heads + 1);
        let seed = context.iter().fold(17u64, |h, &t| mix(h ^ u64::from(t)));
        let vocab = self.vocab_size() as u64;
        for (k, mut row) in out.rows_mut().into_iter().enumerate() {
            let h = mix(seed ^ ((k as u64 + 1) * 0x1234_5678));
            for (v, x) in row.iter_mut().enumerate() {
                *x = (mix(h ^ v as u64) >> 40) as f32 / (1u64 << 24) as f32;
            }
            let draw = (mix(h ^ 0xABCD) >> 11) as f64 / (1u64 << 53) as f64;
            let hit = draw < self.hit;
            let target = if hit {
                future[k + 1]
            } else {
                (mix(h ^ 0xDCBA) % vocab) as Token
            };
            row[target as usize] += 5.0;
        }
        Ok(())
    }
}
