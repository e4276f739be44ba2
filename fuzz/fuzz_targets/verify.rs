//! Greedy verification of an arbitrary tree against arbitrary logits (ties, `-inf`, `+inf`,
//! NaN), from an arbitrary start node.
//!
//! Oracle: plain greedy decoding walked through the tree by path lookup: take the argmax
//! (first maximum) at the current node, move to the node whose root path is the current path
//! plus that token if it exists and has logits, otherwise that token is the bonus. The
//! result must equal it, and equal the brute-force longest path of argmax tokens among all
//! nodes below the start; a NaN or an all -inf row on the walk must be an `InvalidLogits` error for exactly that
//! row; an invalid start must be an error. Greedy verification draws no randomness, and
//! sampling with `top_k = 1` (any temperature) must accept the same path.
#![no_main]

use arbitrary::{Result, Unstructured};
use decoding_core::{DecodeError, NodeId, Sampling, Verification, verify_tree};
use libfuzzer_sys::fuzz_target;
use parallel_decoding_fuzz::sampling::{
    ReplayDraw, arbitrary_logits, favour_children, naive_argmax,
};
use parallel_decoding_fuzz::tree::{arbitrary_tree, plain_walk};

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let vocab = u.int_in_range(1..=8)?;
    let tree = arbitrary_tree(u, 24, vocab)?;
    let specials = u.ratio(1, 6)?;
    let mut logits = arbitrary_logits(u, tree.logits_rows(), vocab, specials)?;
    favour_children(u, &tree, &mut logits)?;
    let logit_nodes: Vec<NodeId> = tree.logits_nodes().collect();
    let start = if !logit_nodes.is_empty() && u.ratio(7, 8)? {
        if u.ratio(3, 4)? {
            logit_nodes[0]
        } else {
            *u.choose(&logit_nodes)?
        }
    } else {
        u.int_in_range(0..=tree.len())?
    };
    let row = |n: NodeId| logits.row(tree.logits_row(n).unwrap()).to_vec();

    let mut draw = ReplayDraw::new(&[1234, 40000]);
    let mut out = Verification {
        path: vec![5, 6],
        bonus: 99,
    };
    let result = verify_tree(
        &tree,
        start,
        logits.view(),
        &Sampling::greedy(),
        &mut draw,
        &mut Vec::new(),
        &mut out,
    );
    assert!(draw.drawn.is_empty(), "greedy verification drew randomness");
    if start >= tree.len() || !tree.needs_logits(start) {
        assert!(result.is_err(), "start {start} is invalid");
        return Ok(());
    }

    // The oracle: greedy decoding through the tree, nodes found by their token paths.
    let (path, bonus) = match plain_walk(&tree, start, |node| naive_argmax(&row(node))) {
        Ok(walk) => walk,
        Err(node) => {
            let bad = tree.logits_row(node).unwrap();
            assert!(
                matches!(result, Err(DecodeError::InvalidLogits { row, .. }) if row == bad),
                "NaN at row {bad}: {result:?}"
            );
            return Ok(());
        }
    };
    result.unwrap();
    assert_eq!((&out.path, out.bonus), (&path, bonus));
    assert_eq!(out.accepted(), path.len() - 1);
    assert_eq!(out.last(), *path.last().unwrap());

    // Brute force: the longest path below `start` of argmax tokens through nodes with logits.
    let mut longest = vec![start];
    let mut walk = Vec::new();
    for node in 0..tree.len() {
        tree.path_to(node, &mut walk);
        let Some(at) = walk.iter().position(|&n| n == start) else {
            continue;
        };
        let walk = &walk[at..];
        if walk.iter().all(|&n| tree.needs_logits(n))
            && walk
                .windows(2)
                .all(|w| naive_argmax(&row(w[0])) == Some(tree.token(w[1])))
            && walk.len() > longest.len()
        {
            longest = walk.to_vec();
        }
    }
    assert_eq!(out.path, longest);

    // Sampling restricted to the single best token is greedy decoding.
    let temperature = f32::from(u.int_in_range(1u8..=30)?) / 10.0;
    let top_p = if u.arbitrary()? { Some(0.5) } else { None };
    let top1 = Sampling::new(temperature, Some(1), top_p).unwrap();
    let all_neg_inf = tree
        .logits_nodes()
        .any(|n| row(n).iter().all(|&x| x == f32::NEG_INFINITY));
    if !all_neg_inf {
        let mut sampled = Verification::default();
        let mut draw = ReplayDraw::new(&[0, 65535, 30000]);
        verify_tree(
            &tree,
            start,
            logits.view(),
            &top1,
            &mut draw,
            &mut Vec::new(),
            &mut sampled,
        )
        .unwrap();
        assert_eq!(sampled, out, "top-1 sampling differs from greedy");
        assert_eq!(draw.drawn.len(), path.len(), "one draw per emitted token");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let data = parallel_decoding_fuzz::input(data);
    let _ = run(&mut Unstructured::new(&data));
});
