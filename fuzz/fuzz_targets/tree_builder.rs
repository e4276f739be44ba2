//! The multi-source tree builder: whatever drafts arrive, the built tree is valid, holds
//! exactly min(budget, candidates) nodes, keeps every kept node's parent, maps candidates to
//! nodes with the same path, and keeps the best-first choice (checked against a quadratic
//! simulation of best-first selection).
#![no_main]

use decoding_core::{SourceId, TokenTree, TreeBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&budget, ops)) = data.split_first() else {
        return;
    };
    let budget = usize::from(budget % 40) + 1;
    let mut builder = TreeBuilder::new(0);
    for op in ops.chunks_exact(4) {
        let n = builder.candidates().len();
        let parent = usize::from(op[0]) % n;
        let token = u32::from(op[1] % 6);
        let score = f32::from(op[2]) / 255.0;
        let source = SourceId::new(usize::from(op[3] % 32)).unwrap();
        builder.add(parent, token, score, source).unwrap();
    }
    let candidates = builder.candidates().clone();
    let (mut out, mut map) = (TokenTree::new(0), Vec::new());
    builder.build(budget, &mut out, &mut map).unwrap();
    assert_eq!(out.len(), budget.min(candidates.len()));

    // Oracle: repeatedly take the best candidate whose parent is taken.
    let key = |c: usize| (builder.score(c), std::cmp::Reverse(candidates.depth(c)), std::cmp::Reverse(c));
    let mut taken = vec![false; candidates.len()];
    taken[0] = true;
    for _ in 1..out.len() {
        let best = (1..candidates.len())
            .filter(|&c| !taken[c] && taken[candidates.parent(c).unwrap()])
            .max_by(|&a, &b| key(a).partial_cmp(&key(b)).unwrap())
            .unwrap();
        taken[best] = true;
    }
    for c in 0..candidates.len() {
        assert_eq!(map[c].is_some(), taken[c], "candidate {c}");
        if let Some(node) = map[c] {
            assert_eq!(candidates.path_tokens(c), out.path_tokens(node));
            assert_eq!(candidates.sources(c), out.sources(node));
        }
    }
    // The output is a valid tree: rebuilding it from raw arrays succeeds.
    let parents: Vec<Option<usize>> = (0..out.len()).map(|n| out.parent(n)).collect();
    TokenTree::from_parents(out.tokens(), &parents, None).unwrap();
});
