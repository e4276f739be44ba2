//! Caching toy models whose logits depend on the last few tokens.

use std::collections::HashMap;

use ndarray::{ArrayViewMut1, ArrayViewMut2};

use super::{Uncommitted, check_forward, check_truncate, mix, unit};
use decoding_core::{HiddenStates, LogitsModel, ModelError, NodeId, Token, TokenTree};

/// Longest window a [`WindowModel`] supports.
pub const MAX_ORDER: usize = 8;

/// Logits as a function of the last `order()` tokens of the context (fewer at its start).
pub trait WindowLogits {
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Window length, 1..=8.
    fn order(&self) -> usize;
    /// Writes the logits that follow `window` (oldest token first, never empty).
    fn logits(&self, window: &[Token], out: &mut [f32]);
}

/// The last tokens up to one position: the per-position cache entry of a [`WindowModel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct WindowState {
    len: u8,
    tokens: [Token; MAX_ORDER],
}

impl WindowState {
    fn push(mut self, token: Token, order: usize) -> Self {
        if usize::from(self.len) == order {
            self.tokens.copy_within(1..order, 0);
            self.tokens[order - 1] = token;
        } else {
            self.tokens[usize::from(self.len)] = token;
            self.len += 1;
        }
        self
    }

    fn window(&self) -> &[Token] {
        &self.tokens[..usize::from(self.len)]
    }
}

/// A caching [`LogitsModel`] over any [`WindowLogits`]: one state per committed position,
/// each tree node's state derived from its parent's, commit compacting the kept path, the
/// way a transformer keeps its KV cache. Optionally exposes deterministic pseudo-random
/// "final hidden states" (a function of the window) for Medusa-style heads.
#[derive(Clone, Debug)]
pub struct WindowModel<L> {
    logits: L,
    committed: Vec<WindowState>,
    nodes: Vec<WindowState>,
    uncommitted: Uncommitted,
    hidden_size: usize,
    hidden: Vec<f32>,
    hidden_rows: Vec<Option<usize>>,
}

impl<L: WindowLogits> WindowModel<L> {
    /// A model over `logits`. Fails if the order is outside 1..=8 or the vocabulary is empty.
    pub fn from_logits(logits: L) -> Result<Self, ModelError> {
        if !(1..=MAX_ORDER).contains(&logits.order()) {
            return Err(ModelError::msg(format!(
                "window order must be in 1..={MAX_ORDER}, got {}",
                logits.order()
            )));
        }
        if logits.vocab_size() == 0 {
            return Err(ModelError::msg("the vocabulary is empty"));
        }
        Ok(Self {
            logits,
            committed: Vec::new(),
            nodes: Vec::new(),
            uncommitted: Uncommitted::default(),
            hidden_size: 0,
            hidden: Vec::new(),
            hidden_rows: Vec::new(),
        })
    }

    /// Exposes final hidden states of width `size` (0 turns them off).
    pub fn with_hidden_size(mut self, size: usize) -> Self {
        self.hidden_size = size;
        self
    }

    /// The logits function.
    pub fn logits_fn(&self) -> &L {
        &self.logits
    }

    /// The logits for a whole context, computed from scratch (for the recompute adapter).
    pub fn logits_of_context(&self, context: &[Token], out: &mut [f32]) {
        let start = context.len().saturating_sub(self.logits.order());
        self.logits.logits(&context[start..], out);
    }

    /// The hidden state for a whole context, computed from scratch.
    pub fn hidden_of_context(&self, context: &[Token], out: &mut [f32]) {
        let start = context.len().saturating_sub(self.logits.order());
        hidden_of_window(&context[start..], out);
    }
}

fn hidden_of_window(window: &[Token], out: &mut [f32]) {
    let h = window
        .iter()
        .fold(0x4849_4444_454eu64, |h, &t| mix(h ^ u64::from(t)));
    for (i, x) in out.iter_mut().enumerate() {
        *x = 2.0 * unit(mix(h ^ (i as u64) << 20)) - 1.0;
    }
}

impl<L: WindowLogits> LogitsModel for WindowModel<L> {
    fn vocab_size(&self) -> usize {
        self.logits.vocab_size()
    }

    fn committed_len(&self) -> usize {
        self.committed.len()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        check_forward(tree, &logits, self.vocab_size())?;
        let order = self.logits.order();
        let base = self.committed.last().copied().unwrap_or_default();
        self.nodes.clear();
        for node in 0..tree.len() {
            let parent_state = tree.parent(node).map_or(base, |p| self.nodes[p]);
            self.nodes.push(parent_state.push(tree.token(node), order));
        }
        self.hidden.clear();
        self.hidden_rows.clear();
        let mut row_buffer = vec![0.0; self.vocab_size()];
        for node in 0..tree.len() {
            let Some(row) = tree.logits_row(node) else {
                self.hidden_rows.push(None);
                continue;
            };
            let window = self.nodes[node].window();
            self.logits.logits(window, &mut row_buffer);
            logits.row_mut(row).assign(&ndarray::aview1(&row_buffer));
            self.hidden_rows.push(Some(row));
            let start = self.hidden.len();
            self.hidden.resize(start + self.hidden_size, 0.0);
            hidden_of_window(window, &mut self.hidden[start..]);
        }
        self.uncommitted.set(tree);
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.uncommitted.take(path)?;
        self.committed.extend(path.iter().map(|&n| self.nodes[n]));
        Ok(())
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        check_truncate(len, self.committed.len())?;
        self.committed.truncate(len);
        self.uncommitted.clear();
        Ok(())
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        if self.hidden_size == 0 {
            None
        } else {
            Some(self)
        }
    }
}

impl<L: WindowLogits> HiddenStates for WindowModel<L> {
    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn hidden_state(
        &self,
        node: NodeId,
        mut out: ArrayViewMut1<'_, f32>,
    ) -> Result<(), ModelError> {
        let row = self
            .hidden_rows
            .get(node)
            .copied()
            .flatten()
            .ok_or_else(|| ModelError::msg(format!("node {node} has no hidden state")))?;
        let d = self.hidden_size;
        out.assign(&ndarray::aview1(&self.hidden[row * d..(row + 1) * d]));
        Ok(())
    }
}

/// Pseudo-random logits of the last `order` tokens: `sharpness * u`, with `u` uniform in
/// [0, 1) from a hash of the seed, the window and the token.
#[derive(Clone, Debug)]
pub struct HashLogits {
    vocab_size: usize,
    seed: u64,
    order: usize,
    sharpness: f32,
}

impl HashLogits {
    /// Logits of the last `order` tokens (1..=8), scaled by `sharpness`.
    pub fn new(vocab_size: usize, seed: u64, order: usize, sharpness: f32) -> Self {
        Self {
            vocab_size,
            seed,
            order,
            sharpness,
        }
    }
}

impl WindowLogits for HashLogits {
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn order(&self) -> usize {
        self.order
    }

    fn logits(&self, window: &[Token], out: &mut [f32]) {
        let h = window
            .iter()
            .fold(mix(self.seed), |h, &t| mix(h ^ u64::from(t)));
        for (v, x) in out.iter_mut().enumerate() {
            *x = self.sharpness * unit(mix(h ^ (v as u64).wrapping_mul(0x9E37_79B9)));
        }
    }
}

/// A seeded model whose logits are a pseudo-random function of the last two tokens (by
/// default): cheap, deterministic, and with greedy output that falls into loops, as small
/// real models do.
pub type HashModel = WindowModel<HashLogits>;

impl HashModel {
    /// Vocabulary of `vocab_size` tokens (at least 1), seed `seed`, window of 2, sharpness 6.
    ///
    /// # Panics
    /// If `vocab_size` is 0.
    pub fn new(vocab_size: usize, seed: u64) -> Self {
        Self::with_order(vocab_size, seed, 2, 6.0).expect("order 2 and a non-empty vocabulary")
    }

    /// Full control: window `order` (1..=8) and logit scale `sharpness` (higher: peakier).
    pub fn with_order(
        vocab_size: usize,
        seed: u64,
        order: usize,
        sharpness: f32,
    ) -> Result<Self, ModelError> {
        WindowModel::from_logits(HashLogits::new(vocab_size, seed, order, sharpness))
    }
}

/// An n-gram table with backoff: counts of each token after each context of up to
/// `order - 1` tokens; logits are `ln(count + 0.01)` under the longest context seen.
#[derive(Clone, Debug)]
pub struct NgramTable {
    vocab_size: usize,
    order: usize,
    counts: HashMap<Vec<Token>, HashMap<Token, u32>>,
}

impl NgramTable {
    /// Counts the n-grams of `text` (tokens must be below `vocab_size`).
    pub fn from_text(vocab_size: usize, order: usize, text: &[Token]) -> Result<Self, ModelError> {
        if !(1..=MAX_ORDER).contains(&order) {
            return Err(ModelError::msg(format!(
                "n-gram order must be in 1..={MAX_ORDER}, got {order}"
            )));
        }
        if let Some(&t) = text.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(ModelError::msg(format!(
                "token {t} of the text is outside the vocabulary of {vocab_size}"
            )));
        }
        let mut counts: HashMap<Vec<Token>, HashMap<Token, u32>> = HashMap::new();
        for end in 0..text.len() {
            for k in 0..order.min(end + 1) {
                let context = text[end - k..end].to_vec();
                *counts
                    .entry(context)
                    .or_default()
                    .entry(text[end])
                    .or_default() += 1;
            }
        }
        Ok(Self {
            vocab_size,
            order,
            counts,
        })
    }
}

impl WindowLogits for NgramTable {
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn order(&self) -> usize {
        // The window includes the token being continued: n - 1 tokens of context.
        (self.order - 1).max(1)
    }

    fn logits(&self, window: &[Token], out: &mut [f32]) {
        let usable = window.len().min(self.order - 1);
        let found = (0..=usable)
            .rev()
            .find_map(|k| self.counts.get(&window[window.len() - k..]));
        out.fill(0.01f32.ln());
        if let Some(next) = found {
            for (&token, &count) in next {
                out[token as usize] = (count as f32 + 0.01).ln();
            }
        }
    }
}

/// An n-gram language model of a token text, with a per-position cache.
pub type NgramModel = WindowModel<NgramTable>;

impl NgramModel {
    /// The order-`order` model of `text`.
    pub fn from_text(vocab_size: usize, order: usize, text: &[Token]) -> Result<Self, ModelError> {
        WindowModel::from_logits(NgramTable::from_text(vocab_size, order, text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn ngram_model_continues_its_text() {
        let text = [1, 2, 3, 1, 2, 4, 1, 2, 3];
        let mut model = NgramModel::from_text(5, 3, &text).unwrap();
        let tree = TokenTree::from_chain(&[1, 2]).unwrap();
        let mut logits = Array2::zeros((2, 5));
        model.forward(&tree, logits.view_mut()).unwrap();
        assert_eq!(
            decoding_core::argmax(logits.row(1).as_slice().unwrap()),
            Some(3)
        );
        assert_eq!(
            decoding_core::argmax(logits.row(0).as_slice().unwrap()),
            Some(2)
        );
    }

    #[test]
    fn invalid_orders_are_errors() {
        assert!(HashModel::with_order(4, 0, 0, 1.0).is_err());
        assert!(HashModel::with_order(4, 0, 9, 1.0).is_err());
        assert!(NgramModel::from_text(4, 2, &[1, 7]).is_err());
    }
}
