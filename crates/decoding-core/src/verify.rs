//! Exact verification of a drafted tree against the model's logits.
//!
//! Starting at a node whose logits are known (the root of the draft), the verifier asks what
//! the target distribution would produce next and descends into the child carrying that
//! token; when no child carries it, that token is the *bonus* token and verification stops.
//! The accepted path plus the bonus token is what plain decoding would have produced:
//!
//! * **Greedy.** The next token is the argmax, so the accepted path is the longest path whose
//!   every token is the argmax at its parent, and the bonus is the argmax at the path's end.
//!   Token for token, this is plain greedy decoding.
//! * **Sampling, deterministic drafts.** At a node with target distribution `p` and draft
//!   children `c1..cm` (distinct tokens), the classic *residual rule* accepts `c1` with
//!   probability `p(c1)`; on rejection it sets `p(c1) = 0`, renormalises, and tries `c2` the
//!   same way; if every child is rejected it samples the bonus from the residual. The chance
//!   that `c_i` is accepted is `(1 - p(c1) - ... - p(c_{i-1})) * p(c_i) / (1 - p(c1) - ... -
//!   p(c_{i-1})) = p(c_i)`, and a bonus token `x` outside the children comes out with
//!   probability `(1 - sum p(c_j)) * p(x) / (1 - sum p(c_j)) = p(x)`: every next token has
//!   exactly its target probability, at every node, so by induction the whole emitted
//!   sequence has exactly the distribution of plain sampling. That is the same as drawing
//!   `x ~ p` once and descending into the child equal to `x` (or stopping with `x` as the
//!   bonus), which is how it is computed here: one draw per emitted token, through the same
//!   [`Sampling::sample`] as the plain decoder. So a seeded run of any strategy emits the
//!   *same tokens* as plain sampling with the same seed, not merely the same distribution.
//!
//! Children without logits are never accepted: their successor could not be known.
//!
//! Inside the decoder, a [`Verifier`] does this walk with the whole target of the sequence:
//! each row is processed with its own history by the logits processors, masked by the
//! constraint's state at that point, and sampled; each token is emitted as soon as it is
//! chosen, and the walk stops (and draws no more) where a stop condition fires, so a step
//! consumes exactly one draw per emitted token, as plain decoding does.

use ndarray::{ArrayView1, ArrayView2, Axis};

use crate::constraint::{ConstraintError, ConstraintState, apply_mask};
use crate::decoder::{DecodeConfig, StopReason, stop_reason};
use crate::error::DecodeError;
use crate::logprobs::{LogprobsMode, TokenLogprob, log_softmax, token_logprob};
use crate::process::History;
use crate::sampling::{Draw, Sampling};
use crate::tree::{NodeId, Token, TokenTree};

/// The outcome of verifying a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Accepted nodes from the start node (included) down; `path.len() - 1` drafted tokens
    /// were accepted.
    pub path: Vec<NodeId>,
    /// The token emitted after the last accepted node: drawn from its row, or, when a stop
    /// condition fired at a drafted token, that token (decoding then ends with it, and the
    /// path stops at its parent).
    pub bonus: Token,
}

impl Verification {
    /// Number of drafted tokens accepted (the start node does not count).
    pub fn accepted(&self) -> usize {
        self.path.len().saturating_sub(1)
    }

    /// The last accepted node.
    pub fn last(&self) -> NodeId {
        *self.path.last().unwrap_or(&0)
    }
}

/// Checks that `logits` has one row per node that asked for logits and `vocab_size` columns.
pub fn check_logits_shape(
    tree: &TokenTree,
    logits: &ArrayView2<'_, f32>,
    vocab_size: usize,
) -> Result<(), DecodeError> {
    let (rows, cols) = logits.dim();
    if rows != tree.logits_rows() || cols != vocab_size {
        return Err(DecodeError::LogitsShape {
            rows,
            cols,
            expected_rows: tree.logits_rows(),
            expected_cols: vocab_size,
        });
    }
    Ok(())
}

/// One walk's choices: the token drawn at a node, and what emitting it means.
trait Walk {
    /// The token drawn at `node`, whose logits are row `row`.
    fn choose(&mut self, node: NodeId, row: usize) -> Result<Token, DecodeError>;

    /// Emits `token`; whether decoding stops with it.
    fn emit(&mut self, token: Token) -> Result<bool, DecodeError>;
}

/// The exact walk from `start`: draw at the node, emit, descend into the child carrying the
/// token if it has logits and decoding goes on; else the token is the bonus.
fn walk(
    tree: &TokenTree,
    start: NodeId,
    rules: &mut impl Walk,
    out: &mut Verification,
) -> Result<(), DecodeError> {
    out.path.clear();
    let mut node = start;
    loop {
        out.path.push(node);
        let row = row_of(tree, node)?;
        let next = rules.choose(node, row)?;
        let stop = rules.emit(next)?;
        match tree
            .child_with_token(node, next)
            .filter(|&child| !stop && tree.needs_logits(child))
        {
            Some(child) => node = child,
            None => {
                out.bonus = next;
                return Ok(());
            }
        }
    }
}

fn row_of(tree: &TokenTree, node: NodeId) -> Result<usize, DecodeError> {
    tree.logits_row(node).ok_or(DecodeError::Contract(
        "verification reached a node whose logits were not requested",
    ))
}

/// A logits row as a slice (rows of standard-layout arrays already are; others are copied).
fn row_slice<'r>(row: ArrayView1<'r, f32>, copy: &'r mut Vec<f32>) -> &'r [f32] {
    match row.to_slice() {
        Some(slice) => slice,
        None => {
            copy.clear();
            copy.extend(row.iter());
            copy
        }
    }
}

/// Verifies `tree` from node `start` against `logits` under `sampling` alone (no processors,
/// constraint or stop conditions), writing the result into `out`. `draw` is used once per
/// emitted token when sampling and never when greedy; `scratch` is reused between calls.
/// `logits` must have one row per node that asked for logits.
pub fn verify_tree(
    tree: &TokenTree,
    start: NodeId,
    logits: ArrayView2<'_, f32>,
    sampling: &Sampling,
    draw: &mut dyn Draw,
    scratch: &mut Vec<f64>,
    out: &mut Verification,
) -> Result<(), DecodeError> {
    tree.check_node(start)?;
    check_logits_shape(tree, &logits, logits.ncols())?;
    struct Plain<'a, 'b> {
        logits: ArrayView2<'a, f32>,
        sampling: &'b Sampling,
        draw: &'b mut dyn Draw,
        scratch: &'b mut Vec<f64>,
        copy: Vec<f32>,
    }
    impl Walk for Plain<'_, '_> {
        fn choose(&mut self, _node: NodeId, row: usize) -> Result<Token, DecodeError> {
            let values = row_slice(self.logits.row(row), &mut self.copy);
            let sampled = self.sampling.sample(values, self.draw, self.scratch);
            sampled.map_err(|e| e.at_row(row))
        }

        fn emit(&mut self, _token: Token) -> Result<bool, DecodeError> {
            Ok(false)
        }
    }
    let mut plain = Plain {
        logits,
        sampling,
        draw,
        scratch,
        copy: Vec::new(),
    };
    walk(tree, start, &mut plain, out)
}

/// Buffers a verifier reuses from step to step.
#[derive(Debug, Default)]
pub(crate) struct VerifyScratch {
    probs: Vec<f64>,
    row: Vec<f32>,
    logprobs: Vec<f64>,
    path_tokens: Vec<Token>,
}

/// The parts of a sequence a [`Verifier`] works on, lent by the decoder.
pub(crate) struct SequenceParts<'a> {
    pub(crate) config: &'a DecodeConfig,
    pub(crate) tokens: &'a mut Vec<Token>,
    pub(crate) prompt_len: usize,
    pub(crate) constraint: Option<&'a mut Box<dyn ConstraintState>>,
    pub(crate) logprobs: &'a mut Vec<TokenLogprob>,
    pub(crate) draw: &'a mut dyn Draw,
    pub(crate) scratch: &'a mut VerifyScratch,
}

/// One step's verification inside the decoder: the drafted tree, its logits and the
/// sequence's whole target (processors, constraint, sampling, logprobs, stop conditions).
///
/// [`Strategy::verify`](crate::Strategy::verify) receives it. The default calls
/// [`exact`](Self::exact), the lossless walk; a lossy rule (Medusa's typical acceptance)
/// reads [`distribution`](Self::distribution) at the nodes it wants and then emits the path it
/// accepts with [`accept`](Self::accept). Either way the tokens are emitted here, one at a
/// time, so stop conditions, constraints and logprobs behave as in plain decoding.
pub struct Verifier<'a> {
    tree: &'a TokenTree,
    logits: ArrayView2<'a, f32>,
    seq: SequenceParts<'a>,
    out: &'a mut Verification,
    /// The logprob entry of the token last chosen, until it is emitted.
    chosen: Option<TokenLogprob>,
    emitted: usize,
    stop: Option<StopReason>,
    done: bool,
}

impl<'a> Verifier<'a> {
    pub(crate) fn new(
        tree: &'a TokenTree,
        logits: ArrayView2<'a, f32>,
        seq: SequenceParts<'a>,
        out: &'a mut Verification,
    ) -> Self {
        Self {
            tree,
            logits,
            seq,
            out,
            chosen: None,
            emitted: 0,
            stop: None,
            done: false,
        }
    }

    /// The drafted tree (rooted at the pending token).
    pub fn tree(&self) -> &'a TokenTree {
        self.tree
    }

    /// One row per node of the tree that asked for logits, as the model wrote them.
    pub fn logits(&self) -> ArrayView2<'a, f32> {
        self.logits
    }

    /// The sampling rule (greedy or random).
    pub fn sampling(&self) -> &Sampling {
        self.seq.config.sampling()
    }

    /// The source of randomness, for a custom rule's own draws.
    pub fn draw(&mut self) -> &mut dyn Draw {
        self.seq.draw
    }

    /// Verifies exactly (see the module docs): the output is plain decoding's.
    pub fn exact(&mut self) -> Result<(), DecodeError> {
        self.begin()?;
        let tree = self.tree;
        let mut out = std::mem::take(self.out);
        let walked = walk(tree, 0, self, &mut out);
        *self.out = out;
        walked?;
        self.done = true;
        Ok(())
    }

    /// The target distribution at `node` (one probability per token): its row processed with
    /// the node's own history (the sequence, then the node's ancestors), masked by the
    /// constraint's state there, then the sampling rule. Only before anything is emitted.
    pub fn distribution(&mut self, node: NodeId) -> Result<&[f64], DecodeError> {
        if self.emitted > 0 || self.done {
            return Err(DecodeError::State(
                "distribution is only available before tokens are emitted",
            ));
        }
        self.tree.check_node(node)?;
        let row = row_of(self.tree, node)?;
        let scratch = &mut *self.seq.scratch;
        let path = &mut scratch.path_tokens;
        // The drafted tokens from below the root (the pending token, already in the
        // sequence) down to the node itself.
        path.clear();
        if node != 0 {
            path.push(self.tree.token(node));
            path.extend(self.tree.ancestors(node).map(|n| self.tree.token(n)));
            path.pop();
            path.reverse();
        }
        let mut fork = match self.seq.constraint.as_deref() {
            Some(state) => {
                let mut fork = state.fork();
                for &token in path.iter() {
                    fork.advance(token)?;
                }
                Some(fork)
            }
            None => None,
        };
        let history = History::new(self.seq.tokens, path, self.seq.prompt_len);
        let config = self.seq.config;
        let values = target_row(
            config,
            &history,
            fork.as_deref_mut(),
            self.logits,
            row,
            &mut scratch.row,
        )?;
        self.seq
            .config
            .sampling()
            .distribution(values, &mut scratch.probs)
            .map_err(|e| e.at_row(row))?;
        Ok(&scratch.probs)
    }

    /// Emits the drafted tokens of `path` (root first, each node a child of the previous,
    /// every node with logits), then draws the token after its last node from that node's
    /// row, as plain decoding would after the same tokens. Stops early, drawing nothing
    /// more, where a stop condition fires. For rules that choose the accepted path
    /// themselves; the exact rule is [`exact`](Self::exact).
    pub fn accept(&mut self, path: &[NodeId]) -> Result<(), DecodeError> {
        self.begin()?;
        self.tree.check_path(path)?;
        if path.first() != Some(&0) {
            return Err(DecodeError::Contract(
                "an accepted path must start at the root",
            ));
        }
        let mut out = std::mem::take(self.out);
        let accepted = self.accept_path(path, &mut out);
        *self.out = out;
        accepted?;
        self.done = true;
        Ok(())
    }

    fn accept_path(&mut self, path: &[NodeId], out: &mut Verification) -> Result<(), DecodeError> {
        out.path.clear();
        for (i, &node) in path.iter().enumerate() {
            out.path.push(node);
            let row = row_of(self.tree, node)?;
            let next = match path.get(i + 1) {
                Some(&child) => {
                    let token = self.tree.token(child);
                    self.note_logprob(row, token)?;
                    token
                }
                None => self.choose(node, row)?,
            };
            if self.emit(next)? || i + 1 == path.len() {
                out.bonus = next;
                return Ok(());
            }
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), DecodeError> {
        if self.emitted > 0 || self.done {
            return Err(DecodeError::State("a step is verified once"));
        }
        Ok(())
    }

    /// Records the logprob entry of `token`, drawn from row `row` at the next position, if
    /// logprobs are asked for.
    fn note_logprob(&mut self, row: usize, token: Token) -> Result<(), DecodeError> {
        if self.seq.config.logprobs().is_none() {
            return Ok(());
        }
        let scratch = &mut *self.seq.scratch;
        let history = History::new(self.seq.tokens, &[], self.seq.prompt_len);
        let state = self.seq.constraint.as_deref_mut().map(|s| &mut **s);
        let config = self.seq.config;
        let values = target_row(config, &history, state, self.logits, row, &mut scratch.row)?;
        self.chosen = logprob_entry(
            config,
            values,
            token,
            &mut scratch.probs,
            &mut scratch.logprobs,
        )
        .map_err(|e| e.at_row(row))?;
        Ok(())
    }

    /// Whether the walk has emitted its tokens (by [`exact`](Self::exact) or
    /// [`accept`](Self::accept)), and the stop condition that fired, if any.
    pub(crate) fn finish(self) -> Result<Option<StopReason>, DecodeError> {
        if !self.done {
            return Err(DecodeError::Contract(
                "a strategy's verify must call Verifier::exact or Verifier::accept",
            ));
        }
        Ok(self.stop)
    }
}

impl Walk for Verifier<'_> {
    fn choose(&mut self, _node: NodeId, row: usize) -> Result<Token, DecodeError> {
        let scratch = &mut *self.seq.scratch;
        let history = History::new(self.seq.tokens, &[], self.seq.prompt_len);
        let state = self.seq.constraint.as_deref_mut().map(|s| &mut **s);
        let config = self.seq.config;
        let values = target_row(config, &history, state, self.logits, row, &mut scratch.row)?;
        let token = config
            .sampling()
            .sample(values, self.seq.draw, &mut scratch.probs)
            .map_err(|e| e.at_row(row))?;
        self.chosen = logprob_entry(
            config,
            values,
            token,
            &mut scratch.probs,
            &mut scratch.logprobs,
        )
        .map_err(|e| e.at_row(row))?;
        Ok(token)
    }

    fn emit(&mut self, token: Token) -> Result<bool, DecodeError> {
        let vocab = self.logits.ncols();
        if token as usize >= vocab {
            return Err(DecodeError::TokenOutOfVocab {
                token,
                vocab_size: vocab,
            });
        }
        if let Some(state) = self.seq.constraint.as_deref_mut() {
            state.advance(token)?;
        }
        self.seq.tokens.push(token);
        if let Some(entry) = self.chosen.take() {
            self.seq.logprobs.push(entry);
        }
        self.emitted += 1;
        self.stop = stop_reason(self.seq.config, &self.seq.tokens[self.seq.prompt_len..]);
        Ok(self.stop.is_some())
    }
}

/// Row `row` of `logits` as the target sees it at the position after `history`: as the
/// model wrote it when there is nothing to apply, else copied into `buf`, run through the
/// configuration's processors and masked by the constraint's `state` there.
pub(crate) fn target_row<'r>(
    config: &DecodeConfig,
    history: &History<'_>,
    state: Option<&mut (dyn ConstraintState + 'static)>,
    logits: ArrayView2<'r, f32>,
    row: usize,
    buf: &'r mut Vec<f32>,
) -> Result<&'r [f32], DecodeError> {
    let processors = config.processors();
    let values = logits.index_axis_move(Axis(0), row);
    if processors.is_empty() && state.is_none() {
        return Ok(row_slice(values, buf));
    }
    buf.clear();
    buf.extend(values.iter());
    for processor in processors {
        processor.process(history, buf);
    }
    if let Some(state) = state {
        apply_mask(state, buf)?;
    }
    Ok(buf)
}

/// The logprob entry of `token` drawn from `values` (the processed row), if asked for.
fn logprob_entry(
    config: &DecodeConfig,
    values: &[f32],
    token: Token,
    probs: &mut Vec<f64>,
    logprobs: &mut Vec<f64>,
) -> Result<Option<TokenLogprob>, crate::sampling::InvalidLogits> {
    let Some(wanted) = config.logprobs() else {
        return Ok(None);
    };
    match wanted.mode {
        LogprobsMode::Processed => log_softmax(values, logprobs),
        LogprobsMode::Sampled => {
            config.sampling().distribution(values, probs)?;
            logprobs.clear();
            logprobs.extend(probs.iter().map(|p| p.ln()));
        }
    }
    Ok(Some(token_logprob(token, logprobs, wanted.top)))
}

/// What [`verify_step`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct StepVerification {
    /// The accepted path and the bonus token.
    pub verification: Verification,
    /// The emitted tokens.
    pub emitted: Vec<Token>,
    /// Their logprobs, if `config` asks for them.
    pub logprobs: Vec<TokenLogprob>,
    /// The stop condition that fired, if any.
    pub stop: Option<StopReason>,
}

/// Verifies one drafted `tree` exactly as the decoder does, outside a decoding loop (for
/// tests of custom verifiers, fuzzing and benchmarks): `strategy`'s
/// [`verify`](crate::Strategy::verify) runs on `logits` with the whole target of `config`
/// (processors, constraint, sampling, logprobs, stop conditions), for a sequence that so far
/// holds `tokens` (the first `prompt_len` of them the prompt; the last one is the tree's
/// root). A constraint's state is started after the prompt and advanced over the rest.
pub fn verify_step<S: crate::Strategy + ?Sized>(
    strategy: &mut S,
    tree: &TokenTree,
    logits: ArrayView2<'_, f32>,
    config: &DecodeConfig,
    tokens: &[Token],
    prompt_len: usize,
    draw: &mut dyn Draw,
) -> Result<StepVerification, DecodeError> {
    let vocab_size = logits.ncols();
    config.validate(vocab_size)?;
    check_logits_shape(tree, &logits, vocab_size)?;
    if tokens.last() != Some(&tree.root_token()) || prompt_len == 0 || prompt_len > tokens.len() {
        return Err(DecodeError::Contract(
            "the sequence must hold the prompt and end with the tree's root",
        ));
    }
    let mut constraint = match config.constraint() {
        Some(c) => {
            let mut state = c.start(&tokens[..prompt_len], vocab_size)?;
            for &token in &tokens[prompt_len..] {
                state.advance(token)?;
            }
            Some(state)
        }
        None => None,
    };
    let mut sequence = tokens.to_vec();
    let (mut logprobs, mut scratch) = (Vec::new(), VerifyScratch::default());
    let mut verification = Verification::default();
    let seq = SequenceParts {
        config,
        tokens: &mut sequence,
        prompt_len,
        constraint: constraint.as_mut(),
        logprobs: &mut logprobs,
        draw,
        scratch: &mut scratch,
    };
    let mut verifier = Verifier::new(tree, logits, seq, &mut verification);
    strategy.verify(&mut verifier)?;
    let stop = verifier.finish()?;
    Ok(StepVerification {
        verification,
        emitted: sequence[tokens.len()..].to_vec(),
        logprobs,
        stop,
    })
}

impl From<ConstraintError> for DecodeError {
    fn from(error: ConstraintError) -> Self {
        DecodeError::Constraint(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn rng() -> rand::rngs::Xoshiro256PlusPlus {
        rand::SeedableRng::seed_from_u64(7)
    }

    fn one_hot(rows: &[usize], vocab: usize) -> Array2<f32> {
        let mut a = Array2::zeros((rows.len(), vocab));
        for (r, &t) in rows.iter().enumerate() {
            a[[r, t]] = 1.0;
        }
        a
    }

    fn verify_greedy(tree: &TokenTree, logits: &Array2<f32>) -> Result<Verification, DecodeError> {
        let mut out = Verification::default();
        let mut rng = rng();
        let sampling = Sampling::greedy();
        verify_tree(
            tree,
            0,
            logits.view(),
            &sampling,
            &mut rng,
            &mut Vec::new(),
            &mut out,
        )?;
        Ok(out)
    }

    #[test]
    fn greedy_follows_argmax_and_returns_bonus() {
        // root 0 -> {1 -> 2, 3}; argmax: root->1, node1->2, node2->4.
        let tree = TokenTree::from_parents(&[0, 1, 2, 3], &[None, Some(0), Some(1), Some(0)], None)
            .unwrap();
        let out = verify_greedy(&tree, &one_hot(&[1, 2, 4, 0], 5)).unwrap();
        assert_eq!(out.path, vec![0, 1, 2]);
        assert_eq!(out.bonus, 4);
    }

    #[test]
    fn nodes_without_logits_are_not_accepted() {
        let tree =
            TokenTree::from_parents(&[0, 1], &[None, Some(0)], Some(&[true, false])).unwrap();
        let out = verify_greedy(&tree, &one_hot(&[1], 3)).unwrap();
        assert_eq!((out.path, out.bonus), (vec![0], 1));
    }

    #[test]
    fn nan_logits_are_an_error() {
        let tree = TokenTree::new(0);
        let logits = Array2::from_elem((1, 3), f32::NAN);
        let err = verify_greedy(&tree, &logits);
        assert!(matches!(
            err,
            Err(DecodeError::InvalidLogits { row: 0, .. })
        ));
    }

    /// Issue 18, item 3: a 2-node chain with one logits row panicked (unchecked indexing).
    #[test]
    fn too_few_rows_are_a_shape_error() {
        let tree = TokenTree::from_chain(&[0, 1]).unwrap();
        let err = verify_greedy(&tree, &one_hot(&[1], 3)).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::LogitsShape {
                    rows: 1,
                    expected_rows: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
}
