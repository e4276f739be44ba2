//! Ranking a head's candidates, and the dynamic tree: best-first over products of head
//! probabilities (optionally re-weighted by the context prior).

use std::collections::BinaryHeap;

use decoding_core::Token;

use crate::context::{ContextPrior, Successors};

/// One head's best candidates, best first (higher logit first, lower id on ties, NaN
/// never), with their softmax probabilities when asked for.
#[derive(Clone, Debug, Default)]
pub(crate) struct RankedHead {
    pub(crate) tokens: Vec<Token>,
    pub(crate) probs: Vec<f32>,
    /// `rank_of[token]`: the token's rank among `tokens`, `u32::MAX` if not ranked.
    rank_of: Vec<u32>,
}

impl RankedHead {
    /// Ranks the best `k` candidates of `logits`; `order` is scratch.
    pub(crate) fn rank(
        &mut self,
        logits: &[f32],
        k: usize,
        with_probs: bool,
        order: &mut Vec<u32>,
    ) {
        if self.rank_of.len() == logits.len() {
            for &t in &self.tokens {
                self.rank_of[t as usize] = u32::MAX;
            }
        } else {
            self.rank_of = vec![u32::MAX; logits.len()];
        }
        self.tokens.clear();
        self.probs.clear();
        order.clear();
        order.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, x)| !x.is_nan() && **x != f32::NEG_INFINITY)
                .map(|(i, _)| i as u32),
        );
        let k = k.min(order.len());
        if k == 0 {
            return;
        }
        let better = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, better);
            order.truncate(k);
        }
        order.sort_unstable_by(better);
        self.tokens.extend(order.iter().copied());
        for (r, &t) in order.iter().enumerate() {
            self.rank_of[t as usize] = r as u32;
        }
        if with_probs {
            let max = logits[order[0] as usize];
            let total: f32 = if max == f32::INFINITY {
                1.0
            } else {
                logits
                    .iter()
                    .filter(|x| !x.is_nan())
                    .map(|&x| (x - max).exp())
                    .sum()
            };
            self.probs.extend(order.iter().map(|&t| {
                let x = logits[t as usize];
                if max == f32::INFINITY {
                    f32::from(u8::from(x == max))
                } else {
                    (x - max).exp() / total
                }
            }));
        }
    }

    /// The rank of `token` among the ranked candidates.
    pub(crate) fn rank_of(&self, token: Token) -> Option<usize> {
        match self.rank_of.get(token as usize) {
            Some(&r) if r != u32::MAX => Some(r as usize),
            _ => None,
        }
    }
}

/// A node of a dynamic tree under construction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DynamicNode {
    /// Index of the parent in the node list (0: the root).
    pub(crate) parent: usize,
    pub(crate) depth: usize,
    /// The rank of the node's token among its head's candidates.
    pub(crate) rank: usize,
    pub(crate) token: Token,
    /// The estimated acceptance: the product of the path's (re-weighted) head probabilities.
    pub(crate) score: f32,
}

/// The context prior and the successor index it reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PriorView<'a> {
    pub(crate) prior: &'a ContextPrior,
    pub(crate) successors: &'a Successors,
}

/// The dynamic tree search: repeatedly takes the candidate path of highest score, a path's
/// score being the product of its nodes' head probabilities (each multiplied by the context
/// prior's factor, capped at 1, when a prior is given), until `budget` nodes (root included)
/// are taken or no candidate scores at least `min_score`.
///
/// When a node is taken, its children (the next head's candidates) are listed in decreasing
/// score; the search offers a node's first child and, when a child is taken, its next
/// sibling, so the heap stays small and nodes come out in exactly best-first order.
#[derive(Clone, Debug, Default)]
pub(crate) struct DynamicSearch {
    heap: BinaryHeap<Frontier>,
    /// Children lists of the taken nodes: (re-weighted probability, rank).
    pool: Vec<(f32, u32)>,
    /// Per taken node: the start and length of its children list in `pool`.
    spans: Vec<(usize, usize)>,
    boosted: Vec<u32>,
    offers: u32,
    heads_paid: usize,
}

/// Cost-aware sizing: the forward cost by tree size and the cost of evaluating one head, in
/// the same unit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizing<'a> {
    pub(crate) cost: &'a decoding_core::CostCurve,
    pub(crate) head_cost: f64,
}

impl Sizing<'_> {
    /// Expected tokens per unit of cost of a step with `nodes` nodes, `expected` tokens and
    /// `heads` heads evaluated.
    pub(crate) fn value(&self, nodes: usize, expected: f64, heads: usize) -> f64 {
        expected / (self.cost.cost(nodes) + self.head_cost * heads as f64)
    }
}

impl DynamicSearch {
    /// Writes the nodes in the order taken (parents first, the root first) into `out`.
    ///
    /// Returns whether the search wanted a deeper head than `heads` holds: the caller may then
    /// evaluate the next head and search again (the result only changes if it was wanted), so
    /// heads that no chosen path reaches are never evaluated.
    ///
    /// With `sizing`, a node whose children would need a head no expanded node needed so far
    /// is left unexpanded unless some number of further nodes no better than it could raise
    /// the expected tokens per unit of cost (forward and heads) above the best so far.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        &mut self,
        heads: &[RankedHead],
        root: Token,
        budget: usize,
        min_score: f32,
        prior: Option<PriorView<'_>>,
        sizing: Option<Sizing<'_>>,
        out: &mut Vec<DynamicNode>,
    ) -> bool {
        out.clear();
        self.heap.clear();
        self.pool.clear();
        self.spans.clear();
        self.offers = 0;
        out.push(DynamicNode {
            parent: 0,
            depth: 0,
            rank: 0,
            token: root,
            score: 1.0,
        });
        let mut wanted_deeper = false;
        wanted_deeper |= self.expand(0, heads, budget, min_score, prior, out);
        self.heads_paid = 1;
        let mut expected = 1.0f64;
        let mut best = sizing.map_or(0.0, |z| z.value(1, expected, 1));
        while out.len() < budget {
            let Some(f) = self.heap.pop() else {
                break;
            };
            expected += f64::from(f.score);
            let (start, _) = self.spans[f.parent];
            let rank = self.pool[start + f.child].1 as usize;
            let depth = out[f.parent].depth + 1;
            out.push(DynamicNode {
                parent: f.parent,
                depth,
                rank,
                token: heads[depth - 1].tokens[rank],
                score: f.score,
            });
            self.offer(f.parent, f.child + 1, out, min_score);
            let n = out.len();
            if let Some(z) = sizing {
                best = best.max(z.value(n, expected, self.heads_paid));
                if depth + 1 > self.heads_paid {
                    let worth = (1..=budget - n).any(|m| {
                        let more = expected + m as f64 * f64::from(f.score);
                        z.value(n + m, more, depth + 1) > best
                    });
                    if !worth {
                        self.spans.push((self.pool.len(), 0));
                        continue;
                    }
                }
            }
            self.heads_paid = self.heads_paid.max(depth + 1);
            wanted_deeper |= self.expand(n - 1, heads, budget, min_score, prior, out);
        }
        wanted_deeper
    }

    /// Heads the last search needed (one more than the deepest expanded node).
    pub(crate) fn heads_paid(&self) -> usize {
        self.heads_paid
    }

    /// Lists the children of the newly taken `node` and offers the first; returns whether
    /// its head is missing.
    fn expand(
        &mut self,
        node: usize,
        heads: &[RankedHead],
        budget: usize,
        min_score: f32,
        prior: Option<PriorView<'_>>,
        out: &[DynamicNode],
    ) -> bool {
        let start = self.pool.len();
        let depth = out[node].depth;
        let missing = depth >= heads.len();
        let room = budget - out.len();
        if let (Some(head), true) = (heads.get(depth), room > 0) {
            match prior {
                None => self
                    .pool
                    .extend((0..head.probs.len().min(room)).map(|r| (head.probs[r], r as u32))),
                Some(view) => self.list_with_prior(head, depth, out[node].token, room, view),
            }
        }
        self.spans.push((start, self.pool.len() - start));
        self.offer(node, 0, out, min_score);
        missing
    }

    /// The children list under the prior: the candidates that followed `parent` in the
    /// context (boosted) merged with the others (damped), both already in decreasing order.
    fn list_with_prior(
        &mut self,
        head: &RankedHead,
        depth: usize,
        parent: Token,
        room: usize,
        view: PriorView<'_>,
    ) {
        let (seen, unseen) = (view.prior.seen(depth), view.prior.unseen(depth));
        self.boosted.clear();
        self.boosted.extend(
            view.successors
                .of(parent)
                .iter()
                .filter_map(|&t| head.rank_of(t).map(|r| r as u32)),
        );
        self.boosted.sort_unstable();
        let score = |r: u32, factor: f32| (head.probs[r as usize] * factor).min(1.0);
        let n = head.probs.len() as u32;
        // Two streams in decreasing score: boosted ranks, and the other ranks in order.
        let (mut next_boosted, mut next_plain, mut skip) = (0usize, 0u32, 0usize);
        for _ in 0..room {
            while skip < self.boosted.len() && self.boosted[skip] < next_plain {
                skip += 1;
            }
            while skip < self.boosted.len() && self.boosted[skip] == next_plain {
                next_plain += 1;
                skip += 1;
            }
            let plain = (next_plain < n).then(|| (score(next_plain, unseen), next_plain));
            let boost = (self.boosted.get(next_boosted)).map(|&r| (score(r, seen), r));
            let take_boost = match (boost, plain) {
                (Some(x), Some(y)) => x.0 > y.0 || (x.0 == y.0 && x.1 < y.1),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if let (true, Some(x)) = (take_boost, boost) {
                self.pool.push(x);
                next_boosted += 1;
            } else if let Some(y) = plain {
                self.pool.push(y);
                next_plain += 1;
            }
        }
    }

    /// Offers child `child` of `parent`'s list, if it exists and scores enough.
    fn offer(&mut self, parent: usize, child: usize, out: &[DynamicNode], min_score: f32) {
        let (start, len) = self.spans[parent];
        if child >= len {
            return;
        }
        let score = out[parent].score * self.pool[start + child].0;
        if score >= min_score && score > 0.0 {
            self.offers += 1;
            self.heap.push(Frontier {
                score,
                order: u32::MAX - self.offers,
                parent,
                child,
            });
        }
    }
}

/// The number of nodes (root included) of the best-first list `nodes` that maximises the
/// expected tokens per unit of cost, `(1 + sum of the kept scores) / cost`, the `heads`
/// evaluated being paid whatever is kept.
pub(crate) fn best_size(nodes: &[DynamicNode], sizing: Sizing<'_>, heads: usize) -> usize {
    let mut expected = 1.0f64;
    let mut best = (sizing.value(1, expected, heads), 1);
    for (i, node) in nodes.iter().enumerate().skip(1) {
        expected += f64::from(node.score);
        let value = sizing.value(i + 1, expected, heads);
        if value > best.0 {
            best = (value, i + 1);
        }
    }
    best.1
}

/// A frontier entry of the dynamic search: highest score first, then the earliest offer.
#[derive(Clone, Copy, Debug)]
struct Frontier {
    score: f32,
    order: u32,
    parent: usize,
    child: usize,
}

impl PartialEq for Frontier {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Frontier {}

impl PartialOrd for Frontier {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Frontier {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.order.cmp(&other.order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn ranked(logits: &[f32], k: usize) -> RankedHead {
        let mut r = RankedHead::default();
        r.rank(logits, k, true, &mut Vec::new());
        r
    }

    fn build(
        heads: &[RankedHead],
        budget: usize,
        min_score: f32,
        prior: Option<PriorView<'_>>,
    ) -> (Vec<DynamicNode>, bool) {
        let mut out = Vec::new();
        let deeper =
            DynamicSearch::default().build(heads, 0, budget, min_score, prior, None, &mut out);
        (out, deeper)
    }

    #[test]
    fn ranking_orders_by_logit_then_id_and_skips_nan() {
        let r = ranked(&[1.0, 3.0, f32::NAN, 3.0, f32::NEG_INFINITY], 10);
        assert_eq!(r.tokens, vec![1, 3, 0]);
        assert_eq!(
            (r.rank_of(3), r.rank_of(2), r.rank_of(99)),
            (Some(1), None, None)
        );
        let total = 2.0 * 1.0 + (-2.0f32).exp();
        assert!((r.probs[0] - 1.0 / total).abs() < 1e-6);
        assert_eq!(ranked(&[0.0, f32::INFINITY], 2).probs, vec![1.0, 0.0]);
        assert!(ranked(&[f32::NAN], 3).tokens.is_empty());
        let mut again = ranked(&[1.0, 2.0, 3.0], 3);
        again.rank(&[3.0, 2.0, 1.0], 1, false, &mut Vec::new());
        assert_eq!((again.rank_of(0), again.rank_of(2)), (Some(0), None));
    }

    #[test]
    fn dynamic_tree_is_best_first() {
        // head 0: probs .5 .3 .2 ; head 1: .7 .3
        let h0 = ranked(&[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()], 3);
        let h1 = ranked(&[0.7f32.ln(), 0.3f32.ln()], 2);
        let (out, deeper) = build(&[h0, h1], 6, 0.0, None);
        // scores: [0] .5, [0,0] .35, [1] .3, [1,0] .21, [2] .2, [0,1] .15, ...
        let summary: Vec<(usize, usize, usize)> =
            out.iter().map(|n| (n.parent, n.depth, n.rank)).collect();
        let expected = vec![
            (0, 0, 0),
            (0, 1, 0),
            (1, 2, 0),
            (0, 1, 1),
            (3, 2, 0),
            (0, 1, 2),
        ];
        assert_eq!(summary, expected);
        assert!(
            deeper,
            "depth-2 nodes were taken and there is no third head"
        );
        let half = ranked(&[0.0, 0.0], 2);
        assert_eq!(build(std::slice::from_ref(&half), 10, 0.4, None).0.len(), 3);
        assert_eq!(build(std::slice::from_ref(&half), 10, 0.6, None).0.len(), 1);
    }

    #[test]
    fn the_prior_reorders_candidates_by_context() {
        // head 0: tokens 0 (.5), 1 (.3), 2 (.2); the context saw 0 -> 2 only.
        let h0 = ranked(&[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()], 3);
        let mut successors = Successors::default();
        successors.update(&[0, 2]);
        let prior = ContextPrior::new(vec![3.0], vec![0.5]).unwrap();
        let view = PriorView {
            prior: &prior,
            successors: &successors,
        };
        let (out, _) = build(std::slice::from_ref(&h0), 4, 0.0, Some(view));
        // 2: min(.6, 1) = .6 ; 0: .25 ; 1: .15
        let tokens: Vec<Token> = out.iter().map(|n| n.token).collect();
        assert_eq!(tokens, vec![0, 2, 0, 1]);
        assert!((out[1].score - 0.6).abs() < 1e-6);
    }

    /// Exhaustive best-first over fully expanded children, for comparison.
    fn reference_scores(
        heads: &[RankedHead],
        root: Token,
        budget: usize,
        prior: Option<PriorView<'_>>,
    ) -> Vec<f32> {
        let factor = |depth: usize, parent: Token, token: Token| match prior {
            None => 1.0,
            Some(v) if v.successors.contains(parent, token) => v.prior.seen(depth),
            Some(v) => v.prior.unseen(depth),
        };
        // (score, depth, token)
        let mut frontier: Vec<(f32, usize, Token)> = vec![];
        let mut taken = vec![];
        let expand =
            |frontier: &mut Vec<(f32, usize, Token)>, s: f32, depth: usize, parent: Token| {
                if let Some(h) = heads.get(depth) {
                    for (r, &t) in h.tokens.iter().enumerate() {
                        frontier.push((
                            s * (h.probs[r] * factor(depth, parent, t)).min(1.0),
                            depth + 1,
                            t,
                        ));
                    }
                }
            };
        expand(&mut frontier, 1.0, 0, root);
        while taken.len() + 1 < budget && !frontier.is_empty() {
            let best = (0..frontier.len())
                .max_by(|&a, &b| frontier[a].0.total_cmp(&frontier[b].0))
                .unwrap();
            let (s, depth, t) = frontier.swap_remove(best);
            taken.push(s);
            expand(&mut frontier, s, depth, t);
        }
        taken
    }

    #[test]
    fn search_matches_exhaustive_best_first_with_and_without_prior() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(11);
        for _ in 0..300 {
            let vocab = rng.random_range(2..12);
            let heads: Vec<RankedHead> = (0..rng.random_range(1..4))
                .map(|_| {
                    let logits: Vec<f32> =
                        (0..vocab).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                    ranked(&logits, rng.random_range(1..=vocab))
                })
                .collect();
            let context: Vec<Token> = (0..rng.random_range(0..30))
                .map(|_| rng.random_range(0..vocab as Token))
                .collect();
            let mut successors = Successors::default();
            successors.update(&context);
            let prior = ContextPrior::new(
                vec![rng.random_range(1.0..4.0)],
                vec![rng.random_range(0.3..1.0)],
            )
            .unwrap();
            let budget = rng.random_range(1..30);
            for with_prior in [false, true] {
                let view = with_prior.then_some(PriorView {
                    prior: &prior,
                    successors: &successors,
                });
                let (out, _) = build(&heads, budget, 0.0, view);
                let ours: Vec<f32> = out[1..].iter().map(|n| n.score).collect();
                let reference = reference_scores(&heads, 0, budget, view);
                assert_eq!(ours.len(), reference.len());
                for (a, b) in ours.iter().zip(&reference) {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.max(1e-30),
                        "{ours:?} vs {reference:?}"
                    );
                }
                // Parents come first and depths add up.
                for (i, n) in out.iter().enumerate().skip(1) {
                    assert!(n.parent < i && n.depth == out[n.parent].depth + 1);
                }
            }
        }
    }

    #[test]
    fn cost_aware_size_maximises_tokens_per_cost() {
        let node = |score| DynamicNode {
            parent: 0,
            depth: 1,
            rank: 0,
            token: 0,
            score,
        };
        let nodes = [node(1.0), node(0.9), node(0.5), node(0.1)];
        // Flat cost: keep everything; steep cost: keep what pays for itself.
        let size = |cost: &decoding_core::CostCurve| {
            let sizing = Sizing {
                cost,
                head_cost: 0.0,
            };
            best_size(&nodes, sizing, 1)
        };
        assert_eq!(
            size(&decoding_core::CostCurve::linear(1.0, 0.0).unwrap()),
            4
        );
        // (1) / 1.3 = .77, (1.9) / 1.6 = 1.19, (2.4) / 1.9 = 1.26, (2.5) / 2.2 = 1.14
        assert_eq!(
            size(&decoding_core::CostCurve::linear(1.0, 0.3).unwrap()),
            3
        );
        assert_eq!(
            size(&decoding_core::CostCurve::linear(1.0, 10.0).unwrap()),
            1
        );
    }

    #[test]
    fn lazy_head_evaluation_builds_the_same_tree() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(5);
        for _ in 0..200 {
            let heads: Vec<RankedHead> = (0..rng.random_range(1..5))
                .map(|_| {
                    let logits: Vec<f32> = (0..rng.random_range(1..20))
                        .map(|_| rng.random_range(-3.0f32..3.0))
                        .collect();
                    ranked(&logits, 20)
                })
                .collect();
            let budget = rng.random_range(1..40);
            let min_score = if rng.random_bool(0.5) { 0.0 } else { 0.01 };
            let (eager, _) = build(&heads, budget, min_score, None);
            let mut known = 0;
            let lazy = loop {
                let (out, deeper) = build(&heads[..known], budget, min_score, None);
                if !deeper || known == heads.len() {
                    break out;
                }
                known += 1;
            };
            let key = |v: &[DynamicNode]| {
                v.iter()
                    .map(|n| (n.parent, n.depth, n.rank))
                    .collect::<Vec<_>>()
            };
            assert_eq!(key(&eager), key(&lazy));
        }
    }
}
