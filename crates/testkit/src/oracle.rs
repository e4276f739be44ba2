//! The recompute oracle: what a node's row must be, from the same model evaluating the
//! node's whole context from scratch, as a chain.

use std::collections::{HashMap, HashSet};

use decoding_core::{NodeId, Token, TokenTree};

use crate::compare::{RowDiff, Tolerance, Verdict};
use crate::report::{CheckReport, NearTie};
use crate::violation::{Violation, ViolationKind};

/// The recompute's results at one context.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Expected {
    pub(crate) logits: Vec<f32>,
    pub(crate) hidden: Option<Vec<f32>>,
    pub(crate) heads: Option<Vec<f32>>,
    /// The chain and the positions whose forward gave it (set by [`expected_for`]).
    pub(crate) source: Option<(Vec<Token>, Vec<usize>)>,
}

/// What the model returned for one node of one forward.
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    /// The step (index in the episode's calls) of the forward.
    pub(crate) op: usize,
    pub(crate) node: NodeId,
    /// The committed context followed by the node's path tokens.
    pub(crate) context: Vec<Token>,
    /// How many of `context` were committed.
    pub(crate) committed: usize,
    pub(crate) logits: Vec<f32>,
    pub(crate) hidden: Option<Vec<f32>>,
    pub(crate) heads: Option<Vec<f32>>,
}

impl Observation {
    /// The row `logits` of `node` of `tree`, forwarded at `step` on `committed`.
    pub(crate) fn new(
        step: usize,
        tree: &TokenTree,
        node: NodeId,
        committed: &[Token],
        logits: Vec<f32>,
    ) -> Self {
        let mut context = committed.to_vec();
        context.extend(tree.path_tokens(node));
        Self {
            op: step,
            node,
            context,
            committed: committed.len(),
            logits,
            hidden: None,
            heads: None,
        }
    }

    pub(crate) fn with_extras(mut self, hidden: Option<Vec<f32>>, heads: Option<Vec<f32>>) -> Self {
        self.hidden = hidden;
        self.heads = heads;
        self
    }
}

/// How an observation compares with its recompute.
pub(crate) enum Comparison {
    /// Within tolerance (near-ties and differences recorded in the report).
    Agrees,
    /// The logits disagree: diagnose.
    Logits,
    /// The logits agree, the hidden state or head logits do not.
    Extra(ViolationKind, String),
}

/// Compares `obs` with `expected`, recording the agreement (and any near-tie at `episode`)
/// in `report`.
pub(crate) fn compare(
    tolerance: &Tolerance,
    report: &mut CheckReport,
    episode: usize,
    obs: &Observation,
    expected: &Expected,
) -> Comparison {
    let diff = RowDiff::of(&expected.logits, &obs.logits);
    match tolerance.judge(&expected.logits, &obs.logits, true) {
        Verdict::Fail => return Comparison::Logits,
        Verdict::NearTie { gap } => report.near_tie(NearTie {
            episode,
            step: obs.op,
            node: obs.node,
            expected: diff.expected_argmax.unwrap_or_default(),
            actual: diff.actual_argmax.unwrap_or_default(),
            gap,
        }),
        Verdict::Pass => {}
    }
    report.logits.record(diff.max_abs_diff);
    for (kind, mine, theirs) in [
        (ViolationKind::HiddenStates, &obs.hidden, &expected.hidden),
        (ViolationKind::HeadLogits, &obs.heads, &expected.heads),
    ] {
        let (Some(mine), Some(theirs)) = (mine, theirs) else {
            continue;
        };
        let diff = RowDiff::of(theirs, mine);
        if !tolerance.close(theirs, mine, false) {
            let what = match kind {
                ViolationKind::HiddenStates => "final hidden state",
                _ => "head logits (all heads, row by row)",
            };
            return Comparison::Extra(
                kind,
                format!(
                    "the {what} of node {} differs from the recompute's, although its logits \
                     agree: {diff}",
                    obs.node
                ),
            );
        }
        match kind {
            ViolationKind::HiddenStates => &mut report.hidden_states,
            _ => &mut report.head_logits,
        }
        .record(diff.max_abs_diff);
    }
    Comparison::Agrees
}

/// A chain of `tokens` asking for logits at `positions` only.
pub(crate) fn chain(tokens: &[Token], positions: &[usize]) -> TokenTree {
    let mut tree = TokenTree::from_chain(tokens).expect("a chain of at least one token");
    for n in 0..tree.len() {
        tree.set_needs_logits(n, false);
    }
    for &p in positions {
        tree.set_needs_logits(p, true);
    }
    tree
}

/// Evaluates a chain from scratch and returns the results at the positions asked for.
pub(crate) type ChainEval<'a> =
    dyn FnMut(&[Token], &[usize]) -> Result<Vec<Expected>, Violation> + 'a;

/// The recompute's results for every context, with one chain forward per context that is
/// not a prefix of another (its prefixes' rows come from the same forward: a chain's rows
/// are the logits of its prefixes). Whether that grouping is sound for the model is checked
/// when a row disagrees (the diagnosis recomputes the row alone).
pub(crate) fn expected_for<'c>(
    contexts: impl IntoIterator<Item = &'c [Token]>,
    eval: &mut ChainEval<'_>,
) -> Result<HashMap<Vec<Token>, Expected>, Violation> {
    let wanted: HashSet<&[Token]> = contexts.into_iter().filter(|c| !c.is_empty()).collect();
    let mut longest_first: Vec<&[Token]> = wanted.iter().copied().collect();
    longest_first.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    let mut out: HashMap<Vec<Token>, Expected> = HashMap::new();
    for context in longest_first {
        if out.contains_key(context) {
            continue;
        }
        let positions: Vec<usize> = (1..=context.len())
            .filter(|&len| wanted.contains(&context[..len]) && !out.contains_key(&context[..len]))
            .map(|len| len - 1)
            .collect();
        let rows = eval(context, &positions)?;
        for (&p, mut expected) in positions.iter().zip(rows) {
            expected.source = Some((context.to_vec(), positions.clone()));
            out.insert(context[..=p].to_vec(), expected);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_share_one_forward() {
        let contexts: Vec<Vec<Token>> = vec![vec![1, 2, 3], vec![1, 2], vec![1, 4], vec![1]];
        let mut calls = Vec::new();
        let mut eval = |tokens: &[Token], positions: &[usize]| {
            calls.push((tokens.to_vec(), positions.to_vec()));
            Ok(positions
                .iter()
                .map(|&p| Expected {
                    logits: vec![tokens[p] as f32],
                    hidden: None,
                    heads: None,
                    source: None,
                })
                .collect())
        };
        let out = expected_for(contexts.iter().map(|c| &c[..]), &mut eval).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[&vec![1, 4]].logits, vec![4.0]);
        assert_eq!(
            calls,
            vec![(vec![1, 2, 3], vec![0, 1, 2]), (vec![1, 4], vec![1])]
        );
        let tree = chain(&[5, 6, 7], &[2]);
        assert_eq!(tree.logits_rows(), 1);
        assert_eq!(tree.logits_row(2), Some(0));
    }
}
