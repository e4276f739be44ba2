//! The multi-source tree builder against a naive model of it.
//!
//! Arbitrary sequences of `add`, `add_with`, `add_chain`, `reset`, `rank` and `build` (valid
//! and invalid: out-of-range parents, NaN and negative scores, budget 0). The oracle keeps a
//! list of candidate *paths* (root token first) with their best score, source tags and logits
//! flag, looked up by linear search: the builder's candidate trie must hold exactly those
//! paths, in first-proposed order. `rank` must be the best-first order computed by a quadratic
//! scan (best score, then shallower, then earlier, among candidates whose parent is taken),
//! and `build(b)` its first `b` candidates, as a valid tree carrying the same paths, tags and
//! flags. Every tree is checked against its invariants, and so is the prefill graft of each
//! built tree (`TokenTree::graft_below`).
#![no_main]

use arbitrary::{Result, Unstructured};
use decoding_core::{NodeId, SourceId, SourceSet, Token, TokenTree, TreeBuilder, TreeError};
use libfuzzer_sys::fuzz_target;
use parallel_decoding_fuzz::tree::check_invariants;

/// One candidate as the oracle sees it.
#[derive(Clone, Debug)]
struct Cand {
    path: Vec<Token>,
    parent: Option<usize>,
    score: f32,
    sources: SourceSet,
    needs_logits: bool,
}

struct Oracle {
    cands: Vec<Cand>,
}

impl Oracle {
    fn new(root: Token) -> Self {
        Self {
            cands: vec![Cand {
                path: vec![root],
                parent: None,
                score: f32::INFINITY,
                sources: SourceSet::EMPTY,
                needs_logits: true,
            }],
        }
    }

    /// What `add_with` must do: `Err(())` for an invalid call (nothing changes), else the id.
    fn add(
        &mut self,
        parent: usize,
        token: Token,
        score: f32,
        sources: SourceSet,
        logits: bool,
    ) -> Result<NodeId, ()> {
        if score.is_nan() || score < 0.0 || parent >= self.cands.len() {
            return Err(());
        }
        let mut path = self.cands[parent].path.clone();
        path.push(token);
        match self.cands.iter().position(|c| c.path == path) {
            Some(id) => {
                let c = &mut self.cands[id];
                if score > c.score {
                    c.score = score;
                }
                c.sources = c.sources.union(sources);
                c.needs_logits |= logits;
                Ok(id)
            }
            None => {
                self.cands.push(Cand {
                    path,
                    parent: Some(parent),
                    score,
                    sources,
                    needs_logits: logits,
                });
                Ok(self.cands.len() - 1)
            }
        }
    }

    fn parent(&self, id: usize) -> Option<usize> {
        self.cands[id].parent
    }

    /// Best-first order: the root, then repeatedly the best candidate whose parent is taken
    /// (highest score, then shallowest, then first proposed).
    fn rank(&self) -> Vec<usize> {
        let n = self.cands.len();
        let mut taken = vec![false; n];
        let mut order = vec![0];
        taken[0] = true;
        let better = |a: usize, b: usize| {
            let (ca, cb) = (&self.cands[a], &self.cands[b]);
            if ca.score != cb.score {
                return ca.score > cb.score;
            }
            if ca.path.len() != cb.path.len() {
                return ca.path.len() < cb.path.len();
            }
            a < b
        };
        while order.len() < n {
            let mut best: Option<usize> = None;
            for c in 1..n {
                if !taken[c] && taken[self.parent(c).unwrap()] && best.is_none_or(|b| better(c, b))
                {
                    best = Some(c);
                }
            }
            let best = best.unwrap();
            taken[best] = true;
            order.push(best);
        }
        order
    }
}

fn score(u: &mut Unstructured<'_>) -> Result<f32> {
    Ok(match u.int_in_range(0u8..=15)? {
        0 => 0.0,
        1 => 1.0,
        2 => f32::INFINITY,
        3 => f32::NAN,
        4 => -0.5,
        5 => f32::MIN_POSITIVE / 4.0,
        6 => 2.5,
        // -0.0 is a valid score equal to 0.0 (the builder normalises it).
        7 => -0.0,
        _ => f32::from(u.int_in_range(0u8..=8)?) / 8.0,
    })
}

fn source_set(u: &mut Unstructured<'_>) -> Result<SourceSet> {
    let mut set = SourceSet::EMPTY;
    for _ in 0..u.int_in_range(0..=3)? {
        set = set.union(SourceSet::of(
            SourceId::new(u.int_in_range(0..=31)?).unwrap(),
        ));
    }
    Ok(set)
}

fn check_candidates(builder: &TreeBuilder, oracle: &Oracle) {
    let cands = builder.candidates();
    check_invariants(cands);
    assert_eq!(cands.len(), oracle.cands.len());
    for (id, c) in oracle.cands.iter().enumerate() {
        assert_eq!(cands.path_tokens(id), c.path, "candidate {id}");
        assert_eq!(cands.sources(id), c.sources, "candidate {id}");
        assert_eq!(cands.needs_logits(id), c.needs_logits, "candidate {id}");
        assert_eq!(builder.score(id), c.score, "candidate {id}");
    }
}

fn check_build(builder: &mut TreeBuilder, oracle: &Oracle, budget: usize, prefix: &[Token]) {
    let (mut out, mut map) = (TokenTree::new(7), vec![Some(3)]);
    if budget == 0 {
        assert_eq!(
            builder.build(0, &mut out, &mut map),
            Err(TreeError::ZeroBudget)
        );
        return;
    }
    builder.build(budget, &mut out, &mut map).unwrap();
    let order = oracle.rank();
    assert_eq!(builder.ranked(), &order[..], "build ranks like rank()");
    let n = oracle.cands.len();
    assert_eq!(out.len(), budget.min(n));
    assert_eq!(map.len(), n);
    let kept = &order[..out.len()];
    let mut nodes = Vec::new();
    for (id, c) in oracle.cands.iter().enumerate() {
        assert_eq!(
            map[id].is_some(),
            kept.contains(&id),
            "candidate {id} kept?"
        );
        if let Some(node) = map[id] {
            assert_eq!(out.path_tokens(node), c.path);
            assert_eq!(out.sources(node), c.sources);
            assert_eq!(out.needs_logits(node), c.needs_logits);
            nodes.push(node);
        }
    }
    nodes.sort_unstable();
    assert_eq!(
        nodes,
        (0..out.len()).collect::<Vec<_>>(),
        "map is a bijection onto the tree"
    );
    check_invariants(&out);

    // The first step's tree: the prompt as a chain without logits, the draft below it.
    let mut grafted = TokenTree::new(0);
    out.graft_below(prefix, &mut grafted);
    check_invariants(&grafted);
    let offset = prefix.len();
    assert_eq!(grafted.len(), offset + out.len());
    for node in 0..offset {
        assert!(!grafted.needs_logits(node));
        assert_eq!(grafted.path_tokens(node), prefix[..=node]);
    }
    for node in 0..out.len() {
        let mut path = prefix.to_vec();
        path.extend(out.path_tokens(node));
        assert_eq!(grafted.path_tokens(offset + node), path);
        assert_eq!(grafted.needs_logits(offset + node), out.needs_logits(node));
        assert_eq!(grafted.sources(offset + node), out.sources(node));
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let root = u.int_in_range(0..=5)?;
    let mut builder = TreeBuilder::new(root);
    let mut oracle = Oracle::new(root);
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        let len = oracle.cands.len();
        match u.int_in_range(0u8..=15)? {
            0..=6 => {
                let parent = u.int_in_range(0..=len)?;
                let token = u.int_in_range(0..=5)?;
                let s = score(u)?;
                let index = u.int_in_range(0..=33)?;
                let Some(source) = SourceId::new(index) else {
                    assert!(index >= SourceId::MAX);
                    continue;
                };
                assert_eq!(source.index(), index);
                let got = builder.add(parent, token, s, source);
                let want = oracle.add(parent, token, s, SourceSet::of(source), true);
                assert_eq!(got.ok(), want.ok(), "add({parent}, {token}, {s})");
            }
            7..=8 => {
                let parent = u.int_in_range(0..=len)?;
                let token = u.int_in_range(0..=5)?;
                let (s, sources, logits) = (score(u)?, source_set(u)?, u.ratio(3, 4)?);
                let got = builder.add_with(parent, token, s, sources, logits);
                let want = oracle.add(parent, token, s, sources, logits);
                assert_eq!(got.ok(), want.ok(), "add_with({parent}, {token}, {s})");
            }
            9..=11 => {
                let parent = u.int_in_range(0..=len)?;
                let tokens: Vec<Token> = (0..u.int_in_range(0..=6)?)
                    .map(|_| u.int_in_range(0..=5))
                    .collect::<Result<_>>()?;
                let scores: Vec<f32> = (0..u.int_in_range(0..=7)?)
                    .map(|_| score(u))
                    .collect::<Result<_>>()?;
                let source = SourceId::new(u.int_in_range(0..=31)?).unwrap();
                let got = builder.add_chain(parent, &tokens, &scores, source);
                // add_chain = add node by node, a missing score repeating the last one.
                let mut node = Ok(parent);
                let mut s = 1.0;
                for (i, &t) in tokens.iter().enumerate() {
                    s = scores.get(i).copied().unwrap_or(s);
                    node = node.and_then(|p| oracle.add(p, t, s, SourceSet::of(source), true));
                }
                if tokens.is_empty() {
                    // An empty chain returns the parent (not checked against the tree: an
                    // out-of-range parent may come back as is).
                    assert!(got == Ok(parent) || (parent >= len && got.is_err()));
                } else {
                    assert_eq!(
                        got.ok(),
                        node.ok(),
                        "add_chain({parent}, {tokens:?}, {scores:?})"
                    );
                }
            }
            12 => {
                let order = oracle.rank();
                assert_eq!(builder.rank(), &order[..]);
                assert_eq!(builder.ranked(), &order[..]);
            }
            13 => {
                if u.ratio(1, 4)? {
                    let root = u.int_in_range(0..=5)?;
                    builder.reset(root);
                    oracle = Oracle::new(root);
                }
            }
            _ => {
                let budget = u.int_in_range(0..=len + 1)?;
                let prefix: Vec<Token> = (0..u.int_in_range(0..=3)?)
                    .map(|_| u.int_in_range(0..=5))
                    .collect::<Result<_>>()?;
                check_build(&mut builder, &oracle, budget, &prefix);
            }
        }
        check_candidates(&builder, &oracle);
    }
    let len = oracle.cands.len();
    for budget in [1, 2, len / 2 + 1, len, len + 3] {
        check_build(&mut builder, &oracle, budget, &[9]);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let data = parallel_decoding_fuzz::input(data);
    let _ = run(&mut Unstructured::new(&data));
});
