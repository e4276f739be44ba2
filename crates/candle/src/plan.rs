//! The layout of one forward pass: which rows belong to which sequence, each node's
//! position, the additive tree-attention mask, and the rows that want logits.
//!
//! The nodes of every sequence's tree are stacked into `T` *flat rows* (sequence after
//! sequence, each tree in node order): the projections and the MLP run on those. Attention
//! runs on a padded batch `[b, heads, N, L]`, where `N` is the largest tree and `L` the
//! longest `committed + nodes` of the batch; the mask hides the padding.

use candle_core::{Device, Result, Tensor};
use decoding_core::TokenTree;

/// One sequence of a forward pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlanItem {
    /// Its slot in the batched KV cache.
    pub(crate) slot: usize,
    /// Its committed length: where its new K/V rows go.
    pub(crate) committed: usize,
    /// Its first flat row.
    pub(crate) offset: usize,
    /// Its tree's nodes.
    pub(crate) nodes: usize,
}

/// Everything one forward pass needs besides the weights and the cache.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The sequences, in slot order (the order of the padded batch).
    pub(crate) items: Vec<PlanItem>,
    /// The token of every flat row, `[T]` u32.
    pub(crate) tokens: Tensor,
    /// The position of every flat row, `committed + depth`, `[T]` u32.
    pub(crate) positions: Tensor,
    /// The additive mask `[b, 1, N, L]`: 0 where a query row may attend, -inf elsewhere.
    pub(crate) mask: Tensor,
    /// With more than one sequence: the flat row of every padded row (`[b * N]`, padding
    /// rows repeat their sequence's last node) and the padded row of every flat row
    /// (`[T]`). `None` for one sequence, whose flat rows are its padded rows.
    pub(crate) padding: Option<(Tensor, Tensor)>,
    /// The flat rows whose logits are wanted, in output order, `[R]` u32.
    pub(crate) logits_rows: Tensor,
    /// Number of logits rows (`R`).
    pub(crate) logits_count: usize,
    /// Largest tree of the batch (`N`).
    pub(crate) nodes: usize,
    /// Key rows attention reads per sequence (`L`).
    pub(crate) keys: usize,
}

impl Plan {
    /// Lays out `trees` (one per sequence, with its slot and committed length, in slot
    /// order) on `device`.
    pub(crate) fn new(trees: &[(usize, usize, &TokenTree)], device: &Device) -> Result<Self> {
        let nodes = trees.iter().map(|(_, _, t)| t.len()).max().unwrap_or(0);
        let keys = trees
            .iter()
            .map(|&(_, committed, t)| committed + t.len())
            .max()
            .unwrap_or(0);
        let mut items = Vec::with_capacity(trees.len());
        let (mut tokens, mut positions, mut logits_rows) = (Vec::new(), Vec::new(), Vec::new());
        let mut mask = Vec::with_capacity(trees.len() * nodes * keys);
        let mut offset = 0;
        for &(slot, committed, tree) in trees {
            items.push(PlanItem {
                slot,
                committed,
                offset,
                nodes: tree.len(),
            });
            tokens.extend_from_slice(tree.tokens());
            positions.extend((0..tree.len()).map(|n| (committed + tree.depth(n)) as u32));
            logits_rows.extend(tree.logits_nodes().map(|n| (offset + n) as u32));
            tree_mask(tree, committed, nodes, keys, &mut mask);
            offset += tree.len();
        }
        let padding = if items.len() > 1 {
            let mut pad = Vec::with_capacity(items.len() * nodes);
            let mut unpad = Vec::with_capacity(offset);
            for (b, item) in items.iter().enumerate() {
                pad.extend((0..nodes).map(|r| (item.offset + r.min(item.nodes - 1)) as u32));
                unpad.extend((0..item.nodes).map(|r| (b * nodes + r) as u32));
            }
            Some((Tensor::new(pad, device)?, Tensor::new(unpad, device)?))
        } else {
            None
        };
        let count = logits_rows.len();
        Ok(Self {
            mask: Tensor::from_vec(mask, (items.len(), 1, nodes, keys), device)?,
            tokens: Tensor::new(tokens, device)?,
            positions: Tensor::new(positions, device)?,
            logits_rows: Tensor::new(logits_rows, device)?,
            logits_count: count,
            items,
            padding,
            nodes,
            keys,
        })
    }

    /// Number of sequences (`b`).
    pub(crate) fn batch(&self) -> usize {
        self.items.len()
    }

    /// Whether the slots are `0 .. b` in order, so that attention can read the cache
    /// through a view instead of gathering the sequences' rows.
    pub(crate) fn slots_are_leading(&self) -> bool {
        self.items
            .iter()
            .enumerate()
            .all(|(i, item)| item.slot == i)
    }
}

/// Appends the `rows x keys` mask of one sequence: query row `r < tree.len()` sees the
/// `committed` cached rows and the new rows `committed + m` of its ancestors `m` and itself;
/// padding rows (and padding keys) are hidden, except that a padding row sees key 0 so that
/// its softmax stays finite (its output is never read).
fn tree_mask(tree: &TokenTree, committed: usize, rows: usize, keys: usize, out: &mut Vec<f32>) {
    let start = out.len();
    out.resize(start + rows * keys, f32::NEG_INFINITY);
    for r in 0..tree.len() {
        let row = start + r * keys;
        out[row..row + committed].fill(0.0);
        // The parent comes before the child, so its row already holds its ancestors.
        if let Some(parent) = tree.parent(r) {
            let from = start + parent * keys + committed;
            out.copy_within(from..from + parent + 1, row + committed);
        }
        out[row + committed + r] = 0.0;
    }
    for r in tree.len()..rows {
        out[start + r * keys] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(mask: &[f32], keys: usize, row: usize) -> Vec<usize> {
        (0..keys).filter(|&k| mask[row * keys + k] == 0.0).collect()
    }

    #[test]
    fn rows_see_the_cache_their_ancestors_and_themselves() {
        // 0 -> 1 -> 3, 0 -> 2
        let tree = TokenTree::from_parents(&[5, 6, 7, 8], &[None, Some(0), Some(0), Some(1)], None)
            .unwrap();
        let mut mask = Vec::new();
        tree_mask(&tree, 2, 5, 7, &mut mask);
        assert_eq!(visible(&mask, 7, 0), [0, 1, 2]);
        assert_eq!(visible(&mask, 7, 1), [0, 1, 2, 3]);
        assert_eq!(visible(&mask, 7, 2), [0, 1, 2, 4]);
        assert_eq!(visible(&mask, 7, 3), [0, 1, 2, 3, 5]);
        assert_eq!(visible(&mask, 7, 4), [0], "a padding row sees key 0 only");
        assert!(mask[6] == f32::NEG_INFINITY, "padding keys are hidden");
    }

    #[test]
    fn positions_follow_depth_and_padding_maps_back() {
        let chain = TokenTree::from_chain(&[1, 2, 3]).unwrap();
        let mut tree = TokenTree::new(4);
        tree.push(0, 5).unwrap();
        tree.push(0, 6).unwrap();
        tree.set_needs_logits(1, false);
        let plan = Plan::new(&[(0, 0, &chain), (1, 4, &tree)], &Device::Cpu).unwrap();
        assert_eq!(plan.positions.to_vec1::<u32>().unwrap(), [0, 1, 2, 4, 5, 5]);
        assert_eq!(plan.logits_rows.to_vec1::<u32>().unwrap(), [0, 1, 2, 3, 5]);
        assert_eq!((plan.nodes, plan.keys), (3, 7));
        let (pad, unpad) = plan.padding.as_ref().unwrap();
        assert_eq!(pad.to_vec1::<u32>().unwrap(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(unpad.to_vec1::<u32>().unwrap(), [0, 1, 2, 3, 4, 5]);
        assert!(plan.slots_are_leading());
        assert_eq!(plan.mask.dims(), [2, 1, 3, 7]);
    }
}
