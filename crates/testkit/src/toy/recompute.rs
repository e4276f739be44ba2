//! The recompute adapter: a context-to-logits function as a [`LogitsModel`].

use ndarray::ArrayViewMut2;

use super::{Uncommitted, check_forward, check_truncate};
use decoding_core::{LogitsModel, ModelError, NodeId, Token, TokenTree};

/// Next-token logits as a function of the whole context (every token before the next one).
///
/// Implemented for every `FnMut(&[Token], &mut [f32])`.
pub trait ContextLogits {
    /// Writes the logits that follow `context` (never empty) into `out`.
    fn logits(&mut self, context: &[Token], out: &mut [f32]);
}

impl<F: FnMut(&[Token], &mut [f32])> ContextLogits for F {
    fn logits(&mut self, context: &[Token], out: &mut [f32]) {
        self(context, out)
    }
}

/// Any function from a context (every token before the next one) to next-token logits, as a
/// [`LogitsModel`] that recomputes each node from its full path: the committed context
/// followed by the node's root-to-node path.
///
/// Slow by design and obviously correct: it is the reference that caching implementations
/// (toy or real) are tested against.
///
/// ```
/// use decoding_core::{LogitsModel, TokenTree};
/// use decoding_testkit::toy::RecomputeModel;
/// use ndarray::Array2;
///
/// // A model that always predicts (last token + 1) mod 4.
/// let mut model = RecomputeModel::new(4, |ctx: &[u32], out: &mut [f32]| {
///     out.fill(0.0);
///     out[(ctx[ctx.len() - 1] as usize + 1) % 4] = 1.0;
/// });
/// let tree = TokenTree::from_chain(&[0, 1]).unwrap();
/// let mut logits = Array2::zeros((2, 4));
/// model.forward(&tree, logits.view_mut()).unwrap();
/// assert_eq!(logits.row(1).to_vec(), vec![0.0, 0.0, 1.0, 0.0]);
/// ```
#[derive(Clone, Debug)]
pub struct RecomputeModel<F> {
    vocab_size: usize,
    function: F,
    committed: Vec<Token>,
    uncommitted: Uncommitted,
    max_context: Option<usize>,
    context: Vec<Token>,
}

impl<F: ContextLogits> RecomputeModel<F> {
    /// Wraps `function`, which writes `vocab_size` logits for a non-empty context.
    pub fn new(vocab_size: usize, function: F) -> Self {
        Self {
            vocab_size,
            function,
            committed: Vec::new(),
            uncommitted: Uncommitted::default(),
            max_context: None,
            context: Vec::new(),
        }
    }

    /// Limits the context to `max` tokens (forwards past it fail).
    pub fn with_max_context(mut self, max: usize) -> Self {
        self.max_context = Some(max);
        self
    }

    /// The logits function.
    pub fn function(&self) -> &F {
        &self.function
    }

    /// The logits function, mutably.
    pub fn function_mut(&mut self) -> &mut F {
        &mut self.function
    }

    /// The committed context.
    pub fn committed(&self) -> &[Token] {
        &self.committed
    }
}

impl<F: ContextLogits> LogitsModel for RecomputeModel<F> {
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn committed_len(&self) -> usize {
        self.committed.len()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        check_forward(tree, &logits, self.vocab_size)?;
        if let Some(max) = self.max_context
            && self.committed.len() + tree.max_depth() + 1 > max
        {
            return Err(ModelError::msg("the tree does not fit the context"));
        }
        let mut path = Vec::new();
        let mut row_buffer = vec![0.0; self.vocab_size];
        for node in tree.logits_nodes() {
            tree.path_to(node, &mut path);
            self.context.clone_from(&self.committed);
            self.context.extend(path.iter().map(|&n| tree.token(n)));
            self.function.logits(&self.context, &mut row_buffer);
            let row = tree.logits_row(node).unwrap_or_default();
            logits.row_mut(row).assign(&ndarray::aview1(&row_buffer));
        }
        self.uncommitted.set(tree);
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        let tree = self.uncommitted.take(path)?;
        self.committed.extend(path.iter().map(|&n| tree.token(n)));
        Ok(())
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        check_truncate(len, self.committed.len())?;
        self.committed.truncate(len);
        self.uncommitted.clear();
        Ok(())
    }

    fn max_context(&self) -> Option<usize> {
        self.max_context
    }
}
