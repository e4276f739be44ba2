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

use ndarray::ArrayView2;

use crate::error::DecodeError;
use crate::sampling::{Draw, Sampling};
use crate::tree::{NodeId, Token, TokenTree};

/// The outcome of verifying a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Accepted nodes from the start node (included) down; `path.len() - 1` drafted tokens
    /// were accepted.
    pub path: Vec<NodeId>,
    /// The token the model produces after the last accepted node.
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

/// Verifies `tree` from node `start` against `logits` under `sampling`, writing the result into
/// `out`. `draw` is used once per emitted token when sampling and never when greedy;
/// `scratch` is reused between calls.
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
    out.path.clear();
    let mut node = start;
    loop {
        out.path.push(node);
        let row = tree.logits_row(node).ok_or(DecodeError::State(
            "verification reached a node whose logits were not requested",
        ))?;
        let logits_row = logits.row(row);
        let next = match logits_row.as_slice() {
            Some(slice) => sampling.sample(slice, draw, scratch),
            None => sampling.sample(&logits_row.to_vec(), draw, scratch),
        }
        .map_err(|e| e.at_row(row))?;
        match tree
            .child_with_token(node, next)
            .filter(|&child| tree.needs_logits(child))
        {
            Some(child) => node = child,
            None => {
                out.bonus = next;
                return Ok(());
            }
        }
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

    #[test]
    fn greedy_follows_argmax_and_returns_bonus() {
        // root 0 -> {1 -> 2, 3}; argmax: root->1, node1->2, node2->4.
        let tree = TokenTree::from_parents(&[0, 1, 2, 3], &[None, Some(0), Some(1), Some(0)], None)
            .unwrap();
        let logits = one_hot(&[1, 2, 4, 0], 5);
        let mut out = Verification::default();
        let mut rng = rng();
        verify_tree(
            &tree,
            0,
            logits.view(),
            &Sampling::greedy(),
            &mut rng,
            &mut Vec::new(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.path, vec![0, 1, 2]);
        assert_eq!(out.bonus, 4);
    }

    #[test]
    fn nodes_without_logits_are_not_accepted() {
        let tree =
            TokenTree::from_parents(&[0, 1], &[None, Some(0)], Some(&[true, false])).unwrap();
        let logits = one_hot(&[1], 3);
        let mut out = Verification::default();
        let mut rng = rng();
        verify_tree(
            &tree,
            0,
            logits.view(),
            &Sampling::greedy(),
            &mut rng,
            &mut Vec::new(),
            &mut out,
        )
        .unwrap();
        assert_eq!((out.path.clone(), out.bonus), (vec![0], 1));
    }

    #[test]
    fn nan_logits_are_an_error() {
        let tree = TokenTree::new(0);
        let logits = Array2::from_elem((1, 3), f32::NAN);
        let mut out = Verification::default();
        let mut rng = rng();
        let err = verify_tree(
            &tree,
            0,
            logits.view(),
            &Sampling::greedy(),
            &mut rng,
            &mut Vec::new(),
            &mut out,
        );
        assert!(matches!(err, Err(DecodeError::InvalidLogits { row: 0 })));
    }
}
