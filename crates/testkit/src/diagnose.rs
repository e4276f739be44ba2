//! Classifying a row that disagrees with the recompute, by experiments that replay the
//! episode and change one thing at a time.
//!
//! In order: is the recompute itself repeatable and consistent (one row alone vs inside a
//! longer chain)? Do the same calls give the same row again? Does the row hold another node's logits? Then
//! the same path, alone as a chain on the same cache: if that is right, the tree is at
//! fault (other nodes' tokens: a leak; the node's index: its position; else its
//! composition); if not, the cache is, and replaying the episode from prefills of the
//! context at each earlier step finds the first call after which it goes wrong (a commit, a
//! truncate, a failed call), whose effect is then matched against likely wrong contexts.

use decoding_core::{NodeId, Token, TokenTree};

use crate::compare::{RowDiff, looks_numerical};
use crate::oracle::{Expected, Observation, chain};
use crate::plan::{Action, Misuse, Op, committed_after};
use crate::run::Runner;
use crate::subject::{guarded, succeeded};
use crate::violation::{Violation, ViolationKind};

impl Runner<'_> {
    /// The violation behind `obs` disagreeing with `grouped` (its recompute).
    pub(crate) fn diagnose(
        &mut self,
        ops: &[Op],
        obs: &Observation,
        grouped: &Expected,
    ) -> Violation {
        match self.classify(ops, obs, grouped) {
            Ok(v) | Err(v) => v,
        }
    }

    /// The row of `node` of `tree` forwarded on the state after `ops` (from `reset`).
    fn rerun(&mut self, ops: &[Op], tree: &TokenTree, node: NodeId) -> Result<Vec<f32>, Violation> {
        self.replay(&[], ops)?;
        self.eval(tree, node)
    }

    fn close(&self, expected: &[f32], actual: &[f32]) -> bool {
        self.settings.tolerance.close(expected, actual, true)
    }

    /// Restores the state before `ops`: `reset`, a prefill of `start` committed whole, then
    /// `ops` replayed without checks. Returns the committed context.
    pub(crate) fn replay(&mut self, start: &[Token], ops: &[Op]) -> Result<Vec<Token>, Violation> {
        self.reset()?;
        if !start.is_empty() {
            let tree = chain(start, &[start.len() - 1]);
            self.forward(&tree)?;
            let path: Vec<NodeId> = (0..start.len()).collect();
            let subject = &mut *self.subject;
            succeeded(
                "commit of a prefill chain",
                guarded(|| subject.commit(&path)),
            )?;
        }
        let mut committed = start.to_vec();
        for (i, op) in ops.iter().enumerate() {
            self.execute(op, i, &mut committed, None)?;
        }
        Ok(committed)
    }

    fn classify(
        &mut self,
        ops: &[Op],
        obs: &Observation,
        grouped: &Expected,
    ) -> Result<Violation, Violation> {
        let k = obs.op;
        let tree = ops[k].tree().expect("observations come from forwards");
        let n = obs.node;
        let path_tokens = &obs.context[obs.committed..];
        let pure = self.pure(&obs.context)?.logits;
        let base = |kind: ViolationKind, detail: String| {
            Violation::new(kind, detail)
                .at(tree, n, obs.committed)
                .with_diff(RowDiff::of(&pure, &obs.logits))
        };

        // The recompute must agree with itself before it can judge anything.
        let twice = self.pure(&obs.context)?.logits;
        if !self.close(&pure, &twice) {
            return Ok(base(
                ViolationKind::Nondeterministic,
                format!(
                    "the recompute of this node's context (reset, then one chain of {} tokens) \
                     gave different logits when run twice ({})",
                    obs.context.len(),
                    RowDiff::of(&pure, &twice)
                ),
            ));
        }
        if !self.close(&pure, &grouped.logits) {
            if let Some((chain_tokens, positions)) = &grouped.source {
                let at = positions
                    .iter()
                    .position(|&p| p + 1 == obs.context.len())
                    .expect("the context's row");
                let again = self
                    .recompute(chain_tokens, positions)?
                    .swap_remove(at)
                    .logits;
                if !self.close(&grouped.logits, &again) {
                    return Ok(base(
                        ViolationKind::Nondeterministic,
                        format!(
                            "the recompute (reset, then one chain of {} tokens) gave different \
                             logits when run twice ({})",
                            chain_tokens.len(),
                            RowDiff::of(&grouped.logits, &again)
                        ),
                    ));
                }
            }
            return Ok(base(
                ViolationKind::TreeComposition,
                format!(
                    "the recompute disagrees with itself: the chain of this node's {} context \
                     tokens gives different logits at its last position when that is the only \
                     row asked for than when the same chain is the prefix of a longer one \
                     asking for several rows ({})",
                    obs.context.len(),
                    RowDiff::of(&pure, &grouped.logits)
                ),
            ));
        }

        let again = self.rerun(&ops[..k], tree, n)?;
        if !self.close(&obs.logits, &again) {
            return Ok(base(
                ViolationKind::Nondeterministic,
                format!(
                    "the same calls from reset gave node {n} different logits the second time ({})",
                    RowDiff::of(&obs.logits, &again)
                ),
            ));
        }

        if let Some(v) = self.misplaced(tree, obs, &pure)? {
            return Ok(base(ViolationKind::RowsMisplaced, v));
        }

        let alone = chain(path_tokens, &[path_tokens.len() - 1]);
        let chain_row = self.rerun(&ops[..k], &alone, path_tokens.len() - 1)?;
        if self.close(&pure, &chain_row) {
            let (kind, detail) = self.tree_fault(ops, obs, &pure)?;
            Ok(base(kind, detail))
        } else {
            let (kind, detail) = self.cache_fault(ops, obs, &pure)?;
            Ok(base(kind, detail))
        }
    }

    /// Whether the observed row is another node's expected row.
    fn misplaced(
        &mut self,
        tree: &TokenTree,
        obs: &Observation,
        pure: &[f32],
    ) -> Result<Option<String>, Violation> {
        let committed = &obs.context[..obs.committed];
        for m in (0..tree.len()).filter(|&m| m != obs.node) {
            let mut context = committed.to_vec();
            context.extend(tree.path_tokens(m));
            let theirs = self.pure(&context)?.logits;
            if self.close(&theirs, &obs.logits) && !self.close(pure, &theirs) {
                let row = tree.logits_row(obs.node).unwrap_or_default();
                let where_m = match tree.logits_row(m) {
                    Some(r) => format!("whose row is {r}"),
                    None => "which asked for no logits".into(),
                };
                return Ok(Some(format!(
                    "row {row}, the row of node {}, holds the logits of node {m} ({where_m}): \
                     rows are numbered by TokenTree::logits_row, not by node index",
                    obs.node
                )));
            }
        }
        Ok(None)
    }

    /// The same path alone is right on the same cache: what about the tree breaks it?
    fn tree_fault(
        &mut self,
        ops: &[Op],
        obs: &Observation,
        pure: &[f32],
    ) -> Result<(ViolationKind, String), Violation> {
        let k = obs.op;
        let tree = ops[k].tree().expect("a forward");
        let n = obs.node;
        let mut path = Vec::new();
        tree.path_to(n, &mut path);
        let others: Vec<NodeId> = (0..tree.len()).filter(|m| !path.contains(m)).collect();
        let alone_ok = "the same path evaluated alone, as a chain on the same committed \
                        context, gives the expected logits";

        // Leak: the other nodes' tokens change this node's logits.
        if let Some(changed) = self.retoken(tree, &others) {
            let row = self.rerun(&ops[..k], &changed, n)?;
            if !self.close(&obs.logits, &row) {
                let mut culprit = None;
                for &m in &others {
                    let Some(one) = self.retoken(tree, &[m]) else {
                        continue;
                    };
                    let row = self.rerun(&ops[..k], &one, n)?;
                    if !self.close(&obs.logits, &row) {
                        culprit = Some(m);
                        break;
                    }
                }
                let mut detail = format!(
                    "node {n}'s logits change when the tokens of nodes that are not its \
                     ancestors change (nodes {others:?}: {}); {alone_ok}",
                    RowDiff::of(&obs.logits, &row)
                );
                if let Some(m) = culprit {
                    let relation = if tree.ancestors(m).any(|a| a == n) {
                        "a descendant of it (a node may not see its own future)"
                    } else if tree.parent(m) == tree.parent(n) {
                        "its sibling"
                    } else {
                        "on another branch"
                    };
                    let order = if m < n {
                        "; it comes before node {n} in node order, as a causal mask over node \
                         indices would let it be seen"
                    } else {
                        ""
                    };
                    detail = format!(
                        "{detail}\nchanging node {m} alone (token {}, {relation}{}) is enough",
                        tree.token(m),
                        order.replace("{n}", &n.to_string())
                    );
                }
                return Ok((ViolationKind::AttentionLeak, detail));
            }
        }

        // Position: the node is right once its index equals its depth.
        let depth = tree.depth(n);
        if let Some(reordered) = path_first(tree, &path).filter(|_| n != depth) {
            let row = self.rerun(&ops[..k], &reordered, depth)?;
            if self.close(pure, &row) {
                return Ok((
                    ViolationKind::WrongPosition,
                    format!(
                        "node {n} sits at depth {depth}, so at position {} + {depth}; its logits \
                         are wrong as node {n} and right when the same tree is reordered to make \
                         it node {depth} (its path first); the other nodes' tokens do not matter: \
                         its position follows its index, not its depth",
                        obs.committed
                    ),
                ));
            }
        }

        Ok((
            ViolationKind::TreeComposition,
            format!(
                "node {n}'s logits in this tree of {} nodes ({} rows) are wrong, while {alone_ok}; \
                 neither the other nodes' tokens nor the node's index explain it: the logits \
                 depend on the tree's size, shape or logits flags",
                tree.len(),
                tree.logits_rows()
            ),
        ))
    }

    /// The same path alone is wrong on this cache: which call spoiled the cache?
    fn cache_fault(
        &mut self,
        ops: &[Op],
        obs: &Observation,
        pure: &[f32],
    ) -> Result<(ViolationKind, String), Violation> {
        let k = obs.op;
        let path_tokens = &obs.context[obs.committed..];
        let probe = chain(path_tokens, &[path_tokens.len() - 1]);
        let last = path_tokens.len() - 1;
        // From a prefill of the context before step s, replay steps s..k: the largest s that
        // still fails names the call that spoils a correct cache.
        for s in (1..=k).rev() {
            let start = committed_after(&ops[..s]);
            self.replay(&start, &ops[s..k])?;
            let row = self.eval(&probe, last)?;
            if !self.close(pure, &row) {
                return if s == k {
                    self.prefill_fault(obs, &row)
                } else {
                    self.culprit(ops, s, obs)
                };
            }
        }
        self.culprit(ops, 0, obs)
    }

    /// A prefill of the committed context, then the path: wrong.
    fn prefill_fault(
        &mut self,
        obs: &Observation,
        row: &[f32],
    ) -> Result<(ViolationKind, String), Violation> {
        let committed = &obs.context[..obs.committed];
        let path_tokens = &obs.context[obs.committed..];
        for kept in 0..committed.len() {
            let mut context = committed[..kept].to_vec();
            context.extend_from_slice(path_tokens);
            let theirs = self.pure(&context)?.logits;
            if self.close(&theirs, row) {
                return Ok((
                    ViolationKind::CommitNotAppended,
                    format!(
                        "after a forward of the {} committed tokens as one chain and a commit of \
                         the whole chain, the next nodes behave as if only {kept} of them were kept",
                        committed.len()
                    ),
                ));
            }
        }
        let pure = self.pure(&obs.context)?.logits;
        let diff = RowDiff::of(&pure, row);
        let detail = format!(
            "the path evaluated on top of a prefill of the {} committed tokens (one chain, \
             committed whole) disagrees with the whole context evaluated in one forward ({diff})",
            committed.len()
        );
        if looks_numerical(&diff, &pure) {
            Ok((
                ViolationKind::TreeComposition,
                format!(
                    "{detail}; the difference is small: the committed entries differ numerically \
                     from those of one forward over the whole context"
                ),
            ))
        } else {
            Ok((ViolationKind::CachedContext, detail))
        }
    }

    /// Step `s` turns a correct cache into a wrong one: say how.
    fn culprit(
        &mut self,
        ops: &[Op],
        s: usize,
        obs: &Observation,
    ) -> Result<(ViolationKind, String), Violation> {
        let op = &ops[s];
        let before = committed_after(&ops[..s]);
        let mut after = before.clone();
        op.apply(&mut after);
        let probe = obs.context[obs.committed];
        self.replay(&before, &ops[s..=s])?;
        let live = self.eval(&TokenTree::new(probe), 0)?;
        let with_probe = |context: &[Token]| [context, &[probe]].concat();
        let right = self.pure(&with_probe(&after))?.logits;
        let shows_now = !self.close(&right, &live);
        let later = if shows_now {
            String::new()
        } else {
            format!(
                "; the token right after it still gets the right logits, the failure shows at \
                 step {}",
                obs.op
            )
        };
        let mut matched = None;
        if shows_now {
            for (what, context) in hypotheses(op, &before, &after) {
                let theirs = self.pure(&with_probe(&context))?.logits;
                if self.close(&theirs, &live) {
                    matched = Some(what);
                    break;
                }
            }
        }
        let said = format!(
            "from a prefill of the {} tokens committed before step {s}, replaying the calls from \
             step {s} on fails, from a prefill of the context after it they pass: step {s} ({}) \
             spoils the cache{later}",
            before.len(),
            op.describe()
        );
        let seen = |m: &Option<String>| match m {
            Some(what) => format!(
                "\nright after it, the next token's logits are those of a cache where {what}"
            ),
            None if shows_now => format!(
                "\nright after it, the next token's logits are wrong ({})",
                RowDiff::of(&right, &live)
            ),
            None => String::new(),
        };
        if shows_now && let Some(detail) = self.committed_position(op, &before)? {
            return Ok((ViolationKind::WrongPosition, format!("{said}\n{detail}")));
        }
        let kind = match op {
            Op::Reset | Op::Truncate(_) => ViolationKind::TruncateWrong,
            Op::Misuse(Misuse::SecondCommit { .. }) if matched.as_deref() == Some(TWICE) => {
                ViolationKind::ErrorChangedState
            }
            Op::Misuse(Misuse::SecondCommit { .. }) | Op::Round { .. } => {
                let diff = RowDiff::of(&right, &live);
                let commit = matches!(
                    op,
                    Op::Round {
                        action: Action::Commit(_),
                        ..
                    } | Op::Misuse(_)
                );
                if commit && matched.is_none() && shows_now && looks_numerical(&diff, &right) {
                    return Ok((
                        ViolationKind::TreeComposition,
                        format!(
                            "{said}\nright after it the next token's logits differ only slightly \
                             from those of the same tokens prefilled in one forward ({diff}): the \
                             committed entries depend on the tree they were computed in"
                        ),
                    ));
                }
                ViolationKind::CommitNotAppended
            }
            Op::Misuse(_) => ViolationKind::ErrorChangedState,
        };
        Ok((kind, format!("{said}{}", seen(&matched))))
    }

    /// Whether a commit spoils the cache because a path node sits at the position of its
    /// index: asked for its logits (it may not have been), such a node gets wrong ones in
    /// the tree and right ones once the tree is reordered so that its index is its depth.
    fn committed_position(
        &mut self,
        op: &Op,
        before: &[Token],
    ) -> Result<Option<String>, Violation> {
        let (tree, path) = match op {
            Op::Round {
                tree,
                action: Action::Commit(path),
            }
            | Op::Misuse(Misuse::SecondCommit { tree, path }) => (tree, path),
            _ => return Ok(None),
        };
        let mut all = tree.clone();
        for n in 0..all.len() {
            all.set_needs_logits(n, true);
        }
        for (i, &m) in path
            .iter()
            .enumerate()
            .filter(|&(_, &m)| tree.depth(m) != m)
        {
            let context = [before, &all.path_tokens(m)].concat();
            let expected = self.pure(&context)?.logits;
            self.replay(before, &[])?;
            let row = self.eval(&all, m)?;
            if self.close(&expected, &row) {
                continue;
            }
            let Some(reordered) = path_first(&all, &path[..=i]) else {
                continue;
            };
            self.replay(before, &[])?;
            let row = self.eval(&reordered, i)?;
            if self.close(&expected, &row) {
                return Ok(Some(format!(
                    "node {m} of the path (depth {i}) {}; asked for its logits, it gets wrong \
                     ones as node {m} and right ones when the tree is reordered to make it node \
                     {i}: its entry was computed at the position of its index, not its depth",
                    if tree.needs_logits(m) {
                        "asked for logits"
                    } else {
                        "asked for no logits, so its own row was never checked"
                    }
                )));
            }
        }
        Ok(None)
    }

    /// `tree` with the tokens of `nodes` replaced by others (siblings kept distinct), or
    /// `None` if none could change.
    fn retoken(&self, tree: &TokenTree, nodes: &[NodeId]) -> Option<TokenTree> {
        let mut tokens = tree.tokens().to_vec();
        let mut changed = false;
        for &m in nodes {
            let Some(parent) = tree.parent(m) else {
                continue;
            };
            let taken: Vec<Token> = tree
                .children(parent)
                .filter(|&c| c != m)
                .map(|c| tokens[c])
                .collect();
            if let Some(t) = self
                .settings
                .other_tokens(tokens[m])
                .into_iter()
                .find(|t| !taken.contains(t))
            {
                tokens[m] = t;
                changed = true;
            }
        }
        if !changed {
            return None;
        }
        rebuild(tree, &tokens, &(0..tree.len()).collect::<Vec<_>>())
    }
}

const TWICE: &str = "the path was appended twice";

/// Likely wrong contexts after `op`, with their descriptions (the right one excluded).
fn hypotheses(op: &Op, before: &[Token], after: &[Token]) -> Vec<(String, Vec<Token>)> {
    let with = |extra: &[Token]| [before, extra].concat();
    let mut out: Vec<(String, Vec<Token>)> = Vec::new();
    match op {
        Op::Truncate(_) | Op::Reset => {
            for kept in 0..=before.len() {
                out.push((
                    format!("{kept} of the {} tokens were kept", before.len()),
                    before[..kept].to_vec(),
                ));
            }
        }
        Op::Round { tree, action } => {
            let path: Vec<Token> = after[before.len()..].to_vec();
            let k = path.len();
            out.push(("nothing was kept".into(), before.to_vec()));
            if let Action::Commit(_) = action {
                out.push((
                    format!("the first {k} nodes in node order were kept instead of the path"),
                    with(&tree.tokens()[..k.min(tree.len())]),
                ));
                out.push((
                    "the path was kept in reverse order".into(),
                    with(&path.iter().rev().copied().collect::<Vec<_>>()),
                ));
                if k >= 2 {
                    out.push((
                        "the path's last node was not kept".into(),
                        with(&path[..k - 1]),
                    ));
                }
            }
            out.push((
                "every node of the tree was kept, in node order".into(),
                with(tree.tokens()),
            ));
        }
        Op::Misuse(Misuse::SecondCommit { .. }) => {
            let path: Vec<Token> = after[before.len()..].to_vec();
            out.push((TWICE.into(), [after, &path].concat()));
            out.push(("nothing was kept".into(), before.to_vec()));
        }
        Op::Misuse(m) => {
            if let Misuse::BadPath { tree, .. } = m {
                out.push((
                    "every node of the rejected tree was kept".into(),
                    with(tree.tokens()),
                ));
            }
            for kept in 0..before.len() {
                out.push((
                    format!("only {kept} tokens were kept"),
                    before[..kept].to_vec(),
                ));
            }
        }
    }
    out.retain(|(_, context)| context != after);
    out
}

/// `tree` reordered with `path` (root to a node) first, then the other nodes in their order.
fn path_first(tree: &TokenTree, path: &[NodeId]) -> Option<TokenTree> {
    let mut order = path.to_vec();
    order.extend((0..tree.len()).filter(|m| !path.contains(m)));
    rebuild(tree, tree.tokens(), &order)
}

/// The tree with nodes in `order` (old ids, parents before children) and `tokens` (by old
/// id), keeping parents and logits flags; `None` if that makes two siblings equal.
fn rebuild(tree: &TokenTree, tokens: &[Token], order: &[NodeId]) -> Option<TokenTree> {
    let mut new_id = vec![0; tree.len()];
    for (i, &old) in order.iter().enumerate() {
        new_id[old] = i;
    }
    let new_tokens: Vec<Token> = order.iter().map(|&o| tokens[o]).collect();
    let parents: Vec<Option<NodeId>> = order
        .iter()
        .map(|&o| tree.parent(o).map(|p| new_id[p]))
        .collect();
    let flags: Vec<bool> = order.iter().map(|&o| tree.needs_logits(o)).collect();
    TokenTree::from_parents(&new_tokens, &parents, Some(&flags)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_first_keeps_the_tree() {
        let tree = TokenTree::from_parents(&[1, 2, 3, 4], &[None, Some(0), Some(0), Some(2)], None)
            .unwrap();
        let moved = path_first(&tree, &[0, 2, 3]).unwrap();
        assert_eq!(moved.tokens(), &[1, 3, 4, 2]);
        assert_eq!(moved.parent(2), Some(1));
        assert_eq!(moved.parent(3), Some(0));
        assert_eq!(moved.depth(2), 2);
    }
}
