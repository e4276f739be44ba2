//! The lookahead branch: `N - 1` levels of Jacobi trajectories over `W` columns, drafted as
//! one token tree.

use decoding_core::{DecodeError, NodeId, SourceId, SourceSet, Token, TokenTree, TreeError};
use jacobi::{Trajectory, greedy_prediction};
use ndarray::ArrayView2;

/// The source tag of window nodes in the drafted tree.
pub const WINDOW_SOURCE: SourceId = match SourceId::new(0) {
    Some(id) => id,
    None => unreachable!(),
};

const NO_NODE: NodeId = NodeId::MAX;

/// What a window cell's first guess may look at (see [`LookaheadWindow::fill`]).
#[derive(Clone, Copy, Debug)]
pub struct CellContext<'a> {
    /// The cell's absolute position in the sequence.
    pub position: usize,
    /// The token the cell's n-gram hangs from: the level-0 cell of its column, or for a
    /// level-0 cell the cell before it in the chain.
    pub key: Token,
    /// The cells between the key and this one (empty for levels 0 and 1).
    pub prefix: &'a [Token],
    /// The one or two tokens just before the cell on its tree path.
    pub recent: &'a [Token],
}

/// The 2D lookahead window of Fu et al. (2024), aligned to absolute positions.
///
/// With the pending token at position `P`, the cell of level `l` and column `r` guesses
/// position `P + l + r` (`0 <= l <= N - 2`, `0 <= r < W`); cell `(0, 0)` is the pending token
/// itself. Level `l` is a [`Trajectory`] (level 0 starts at `P + 1`, level `l >= 1` at
/// `P + l`). Each step drafts every column `r` as a path: the level-0 cells form a chain from
/// the root, and cell `(l, r)` hangs below cell `(l - 1, r)`, so its tree depth is `l + r`,
/// exactly its position offset. The top level's predictions become the next top level, the
/// other levels move down one, and every level is realigned to the new pending position, so
/// the window stays aligned however many tokens a step emits.
#[derive(Clone, Debug)]
pub struct LookaheadWindow {
    width: usize,
    max_levels: usize,
    levels: Vec<Trajectory>,
    pending: Token,
    pending_position: usize,
    nodes: Vec<NodeId>,
    columns: usize,
    drafted_levels: usize,
    chain: bool,
    predictions: Vec<Token>,
    scratch: Vec<Token>,
}

impl LookaheadWindow {
    /// A window of `width` columns (`W >= 1`) and `levels` levels (`N - 1 >= 1`).
    pub fn new(width: usize, levels: usize) -> Self {
        Self {
            width: width.max(1),
            max_levels: levels.max(1),
            levels: vec![Trajectory::new(1)],
            pending: 0,
            pending_position: 0,
            nodes: Vec::new(),
            columns: 0,
            drafted_levels: 0,
            chain: false,
            predictions: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// `W`.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The levels filled so far (the window fills one level per step, up to `N - 1`).
    pub fn levels(&self) -> &[Trajectory] {
        &self.levels
    }

    /// Whether all `N - 1` levels are filled (the window then yields n-grams).
    pub fn is_full(&self) -> bool {
        self.levels.len() == self.max_levels
    }

    /// The token of cell `(level, column)`, if the window holds it.
    pub fn cell(&self, level: usize, column: usize) -> Option<Token> {
        if level == 0 && column == 0 {
            return Some(self.pending);
        }
        self.levels
            .get(level)
            .and_then(|t| t.get(self.pending_position + level + column))
    }

    /// Forgets every guess: only level 0 remains, empty, after the pending token `pending`
    /// at `position`.
    pub fn reset(&mut self, position: usize, pending: Token) {
        self.levels.truncate(1);
        self.levels[0].reset(position + 1);
        self.pending = pending;
        self.pending_position = position;
        self.columns = 0;
    }

    /// Realigns every level to the pending token `pending` at `position`.
    pub fn align(&mut self, position: usize, pending: Token) {
        self.pending = pending;
        self.pending_position = position;
        for (l, level) in self.levels.iter_mut().enumerate() {
            level.advance_to(position + l.max(1));
        }
    }

    /// Tops every level up to its width (`W - 1` cells for level 0, `W` above), asking
    /// `guess` for each missing cell, lower levels first.
    pub fn fill(&mut self, mut guess: impl FnMut(CellContext<'_>) -> Token) {
        let width = self.width;
        for l in 0..self.levels.len() {
            let target = if l == 0 { width - 1 } else { width };
            while self.levels[l].len() < target {
                let r = self.levels[l].len() + usize::from(l == 0);
                let position = self.pending_position + l + r;
                let token = if l == 0 {
                    let key = self.cell(0, r - 1).unwrap_or(self.pending);
                    let recent = match (r >= 2).then(|| self.cell(0, r - 2)).flatten() {
                        Some(before) => [before, key],
                        None => [key, key],
                    };
                    let skip = usize::from(r < 2);
                    guess(CellContext {
                        position,
                        key,
                        prefix: &[],
                        recent: &recent[skip..],
                    })
                } else {
                    self.scratch.clear();
                    for below in 0..l {
                        let token = self.cell(below, r).unwrap_or(self.pending);
                        self.scratch.push(token);
                    }
                    let path = &self.scratch;
                    guess(CellContext {
                        position,
                        key: path[0],
                        prefix: &path[1..],
                        recent: &path[path.len().saturating_sub(2)..],
                    })
                };
                self.levels[l].push(token);
            }
        }
    }

    /// Drafts the window into `tree` (which holds the root only, or the root and other
    /// branches): whole columns, left to right, while the column's top cell is at most
    /// `max_depth` deep and the tree stays within `max_nodes`. Returns the columns drafted.
    pub fn draft(
        &mut self,
        tree: &mut TokenTree,
        max_depth: usize,
        max_nodes: usize,
        logits: crate::WindowLogits,
    ) -> Result<usize, TreeError> {
        let top = self.levels.len() - 1;
        let all = logits == crate::WindowLogits::All;
        let tag = SourceSet::of(WINDOW_SOURCE);
        self.chain = false;
        self.drafted_levels = self.levels.len();
        self.nodes.clear();
        self.nodes.resize(self.levels.len() * self.width, NO_NODE);
        self.columns = 0;
        for r in 0..self.width {
            let cost = usize::from(r > 0) + top;
            if r + top > max_depth || tree.len() + cost > max_nodes {
                break;
            }
            let mut node = 0;
            if r > 0 {
                let token = self.levels[0].tokens()[r - 1];
                let parent = self.nodes[r - 1];
                node = tree.push_with(parent, token, top == 0 || all, tag)?;
            }
            self.nodes[r] = node;
            for l in 1..=top {
                let token = self.levels[l].tokens()[r];
                node = tree.push_with(node, token, l == top || all, tag)?;
                self.nodes[l * self.width + r] = node;
            }
            self.columns += 1;
        }
        Ok(self.columns)
    }

    /// Drafts only the level-0 chain (for models that evaluate chains only): a Jacobi step.
    pub fn draft_chain(
        &mut self,
        tree: &mut TokenTree,
        max_depth: usize,
        max_nodes: usize,
    ) -> Result<usize, TreeError> {
        self.chain = true;
        self.drafted_levels = 1;
        let len = (self.width - 1)
            .min(max_depth)
            .min(max_nodes.saturating_sub(1));
        let tag = SourceSet::of(WINDOW_SOURCE);
        tree.extend_chain(0, &self.levels[0].tokens()[..len], true, tag)?;
        self.nodes.clear();
        self.nodes.extend(0..=len);
        self.columns = len + 1;
        Ok(self.columns)
    }

    /// Notes a step that drafted nothing of the window.
    pub fn skip(&mut self) {
        self.columns = 0;
        self.chain = false;
    }

    /// Learns from the verified step: reads the top level's predictions, hands every complete
    /// column's n-gram `(key, continuation)` to `harvest` (once the window is full), moves the
    /// levels down and realigns them to the new pending token (`tokens`' last, the sequence
    /// after the step).
    pub fn observe(
        &mut self,
        tree: &TokenTree,
        logits: ArrayView2<'_, f32>,
        tokens: &[Token],
        mut harvest: impl FnMut(Token, &[Token]),
    ) -> Result<(), DecodeError> {
        let new_position = tokens.len() - 1;
        let new_pending = tokens[new_position];
        if self.columns == 0 {
            self.align(new_position, new_pending);
            return Ok(());
        }
        let top = self.drafted_levels - 1;
        self.predictions.clear();
        for r in 0..self.columns {
            let node = self.nodes[top * self.width + r];
            let token = greedy_prediction(tree, logits, node)?
                .ok_or(DecodeError::Contract("a top window node has no logits"))?;
            self.predictions.push(token);
        }
        let first = self.pending_position + top + 1;
        let update = Trajectory::from_tokens(first, self.predictions.iter().copied());
        if self.chain {
            // A Jacobi step on level 0: the predictions replace it.
            self.levels[0] = update;
        } else {
            if self.is_full() {
                for r in 0..self.columns {
                    self.scratch.clear();
                    for l in 1..=top {
                        self.scratch.push(self.levels[l].tokens()[r]);
                    }
                    self.scratch.push(self.predictions[r]);
                    let key = self.cell(0, r).unwrap_or(self.pending);
                    harvest(key, &self.scratch);
                }
                self.levels.remove(0);
            }
            self.levels.push(update);
        }
        self.columns = 0;
        self.align(new_position, new_pending);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WindowLogits;

    /// A full 3-level window of width 3 after pending token 9 at position 10; cell `(l, r)`
    /// holds `10 * l + r` (cell (0, 0) is the pending token).
    fn window() -> LookaheadWindow {
        let mut w = LookaheadWindow::new(3, 3);
        w.reset(10, 9);
        w.levels = vec![
            Trajectory::from_tokens(11, [1, 2]),
            Trajectory::from_tokens(11, [10, 11, 12]),
            Trajectory::from_tokens(12, [20, 21, 22]),
        ];
        w
    }

    #[test]
    fn columns_are_paths_with_depth_equal_to_position_offset() {
        let mut w = window();
        assert!(w.is_full());
        let mut tree = TokenTree::new(9);
        let columns = w.draft(&mut tree, 10, 100, WindowLogits::Top).unwrap();
        assert_eq!(columns, 3);
        // 1 root + 2 level-0 cells + 2 levels * 3 columns.
        assert_eq!(tree.len(), 9);
        for l in 0..3 {
            for r in 0..3 {
                let node = w.nodes[l * 3 + r];
                assert_eq!(tree.depth(node), l + r);
                assert_eq!(Some(tree.token(node)), w.cell(l, r));
                assert_eq!(tree.needs_logits(node), l == 2 || node == 0);
                if l > 0 {
                    assert_eq!(tree.parent(node), Some(w.nodes[(l - 1) * 3 + r]));
                }
            }
        }
    }

    #[test]
    fn budget_and_depth_cut_whole_columns() {
        let mut w = window();
        let mut tree = TokenTree::new(9);
        assert_eq!(w.draft(&mut tree, 3, 100, WindowLogits::Top).unwrap(), 2);
        let mut tree = TokenTree::new(9);
        assert_eq!(w.draft(&mut tree, 10, 6, WindowLogits::Top).unwrap(), 2);
        assert!(tree.len() <= 6);
    }
}
