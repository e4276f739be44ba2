//! Ranking a head's candidates, and the dynamic tree: best-first over products of head
//! probabilities.

use decoding_core::Token;

/// One head's best candidates, best first (higher logit first, lower id on ties, NaN
/// never), with their softmax probabilities when asked for.
#[derive(Clone, Debug, Default)]
pub(crate) struct RankedHead {
    pub(crate) tokens: Vec<Token>,
    pub(crate) probs: Vec<f32>,
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
}

/// A node of a dynamic tree under construction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DynamicNode {
    /// Index of the parent in the node list (0: the root).
    pub(crate) parent: usize,
    pub(crate) depth: usize,
    pub(crate) rank: usize,
    /// The estimated acceptance: the product of the path's head probabilities.
    pub(crate) score: f32,
}

/// Builds the dynamic tree: repeatedly takes the candidate path of highest score, a path's
/// score being the product of its nodes' head probabilities, until `budget` nodes (root
/// included) are taken or no candidate scores at least `min_score`. Writes the nodes in
/// the order taken (parents first) into `out`, the root first.
///
/// Because every head's candidates are sorted by probability, the search can offer children
/// lazily (a node's best child and its next sibling when it is taken) and still take nodes
/// in exactly best-first order.
///
/// Returns whether the search wanted a deeper head than `heads` holds: the caller may then
/// evaluate the next head and search again (the result only changes if it was wanted), so
/// heads that no chosen path reaches are never evaluated.
pub(crate) fn build_dynamic(
    heads: &[RankedHead],
    budget: usize,
    min_score: f32,
    heap: &mut std::collections::BinaryHeap<Frontier>,
    out: &mut Vec<DynamicNode>,
) -> bool {
    let mut wanted_deeper = false;
    out.clear();
    out.push(DynamicNode {
        parent: 0,
        depth: 0,
        rank: 0,
        score: 1.0,
    });
    heap.clear();
    let mut offers = 0u32;
    let mut offer = |heap: &mut std::collections::BinaryHeap<Frontier>,
                     parent: usize,
                     parent_score: f32,
                     depth: usize,
                     rank: usize| {
        let Some(head) = heads.get(depth - 1) else {
            wanted_deeper = true;
            return;
        };
        let Some(&p) = head.probs.get(rank) else {
            return;
        };
        let score = parent_score * p;
        if score >= min_score && score > 0.0 {
            offers += 1;
            heap.push(Frontier {
                score,
                order: u32::MAX - offers,
                parent,
                depth,
                rank,
            });
        }
    };
    offer(heap, 0, 1.0, 1, 0);
    while out.len() < budget {
        let Some(f) = heap.pop() else {
            break;
        };
        out.push(DynamicNode {
            parent: f.parent,
            depth: f.depth,
            rank: f.rank,
            score: f.score,
        });
        let node = out.len() - 1;
        offer(heap, f.parent, out[f.parent].score, f.depth, f.rank + 1);
        offer(heap, node, f.score, f.depth + 1, 0);
    }
    wanted_deeper
}

/// The number of nodes (root included) of the best-first list `nodes` that maximises the
/// expected tokens per unit of cost, `(1 + sum of the kept scores) / cost(n)`.
pub(crate) fn best_size(nodes: &[DynamicNode], cost: &decoding_core::CostCurve) -> usize {
    let mut expected = 1.0f64;
    let mut best = (1.0 / cost.cost(1), 1);
    for (i, node) in nodes.iter().enumerate().skip(1) {
        expected += f64::from(node.score);
        let value = expected / cost.cost(i + 1);
        if value > best.0 {
            best = (value, i + 1);
        }
    }
    best.1
}

/// A frontier entry of the dynamic search: highest score first, then the earliest offer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frontier {
    score: f32,
    order: u32,
    parent: usize,
    depth: usize,
    rank: usize,
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

    fn ranked(logits: &[f32], k: usize) -> RankedHead {
        let mut r = RankedHead::default();
        r.rank(logits, k, true, &mut Vec::new());
        r
    }

    #[test]
    fn ranking_orders_by_logit_then_id_and_skips_nan() {
        let r = ranked(&[1.0, 3.0, f32::NAN, 3.0, f32::NEG_INFINITY], 10);
        assert_eq!(r.tokens, vec![1, 3, 0]);
        let total = 2.0 * 1.0 + (-2.0f32).exp();
        assert!((r.probs[0] - 1.0 / total).abs() < 1e-6);
        assert_eq!(ranked(&[0.0, f32::INFINITY], 2).probs, vec![1.0, 0.0]);
        assert!(ranked(&[f32::NAN], 3).tokens.is_empty());
    }

    #[test]
    fn dynamic_tree_is_best_first() {
        // head 0: probs .5 .3 .2 ; head 1: .7 .3
        let h0 = ranked(&[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()], 3);
        let h1 = ranked(&[0.7f32.ln(), 0.3f32.ln()], 2);
        let mut out = Vec::new();
        build_dynamic(&[h0, h1], 6, 0.0, &mut Default::default(), &mut out);
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
        build_dynamic(
            &[ranked(&[0.0, 0.0], 2)],
            10,
            0.4,
            &mut Default::default(),
            &mut out,
        );
        assert_eq!(out.len(), 3, "both halves pass a 0.4 floor");
        build_dynamic(
            &[ranked(&[0.0, 0.0], 2)],
            10,
            0.6,
            &mut Default::default(),
            &mut out,
        );
        assert_eq!(out.len(), 1, "nothing passes a 0.6 floor");
    }

    #[test]
    fn cost_aware_size_maximises_tokens_per_cost() {
        let node = |score| DynamicNode {
            parent: 0,
            depth: 1,
            rank: 0,
            score,
        };
        let nodes = [node(1.0), node(0.9), node(0.5), node(0.1)];
        // Flat cost: keep everything; steep cost: keep what pays for itself.
        let flat = decoding_core::CostCurve::linear(1.0, 0.0).unwrap();
        assert_eq!(best_size(&nodes, &flat), 4);
        let steep = decoding_core::CostCurve::linear(1.0, 0.3).unwrap();
        // (1) / 1.3 = .77, (1.9) / 1.6 = 1.19, (2.4) / 1.9 = 1.26, (2.5) / 2.2 = 1.14
        assert_eq!(best_size(&nodes, &steep), 3);
        let prohibitive = decoding_core::CostCurve::linear(1.0, 10.0).unwrap();
        assert_eq!(best_size(&nodes, &prohibitive), 1);
    }

    #[test]
    fn lazy_head_evaluation_builds_the_same_tree() {
        use rand::{RngExt, SeedableRng};
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
            let (mut eager, mut lazy) = (Vec::new(), Vec::new());
            build_dynamic(
                &heads,
                budget,
                min_score,
                &mut Default::default(),
                &mut eager,
            );
            let mut known = 0;
            while build_dynamic(
                &heads[..known],
                budget,
                min_score,
                &mut Default::default(),
                &mut lazy,
            ) && known < heads.len()
            {
                known += 1;
            }
            let key = |v: &[DynamicNode]| {
                v.iter()
                    .map(|n| (n.parent, n.depth, n.rank))
                    .collect::<Vec<_>>()
            };
            assert_eq!(key(&eager), key(&lazy));
        }
    }
}
