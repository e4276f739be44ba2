//! Sampling verification (any temperature, top-k, top-p) of an arbitrary tree against
//! arbitrary logits, with replayed random draws.
//!
//! Oracle 1, losslessness seed for seed: plain sequential sampling with the *same* draws,
//! walking the tree by path lookup: sample the next token at the current node from the
//! model's distribution ([`Sampling::sample`], what the plain decoder calls), move to the
//! node whose root path is the current path plus that token if it exists and has logits,
//! otherwise that token is the bonus. The accepted path and bonus must be exactly that, with
//! one draw per emitted token; NaN or all -inf on the walk must be an `InvalidLogits` error for that row.
//!
//! Oracle 2, the distribution itself: at every node on the path, the library's distribution
//! must equal the definition computed by a full sort (temperature, top-k, top-p, ties by id,
//! to 1e-9), and each emitted token must be the one inverse-CDF sampling picks for its draw.
#![no_main]

use arbitrary::{Result, Unstructured};
use decoding_core::{DecodeError, NodeId, Verification, verify_tree};
use libfuzzer_sys::fuzz_target;
use parallel_decoding_fuzz::sampling::{
    ReplayDraw, arbitrary_logits, arbitrary_sampling, check_distribution, check_draw,
    favour_children,
};
use parallel_decoding_fuzz::tree::{arbitrary_tree, plain_walk};

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let vocab = u.int_in_range(1..=8)?;
    let tree = arbitrary_tree(u, 24, vocab)?;
    let sampling = arbitrary_sampling(u, vocab)?;
    let specials = u.ratio(1, 8)?;
    let mut logits = arbitrary_logits(u, tree.logits_rows(), vocab, specials)?;
    favour_children(u, &tree, &mut logits)?;
    let logit_nodes: Vec<NodeId> = tree.logits_nodes().collect();
    if logit_nodes.is_empty() {
        return Ok(());
    }
    let start = if u.ratio(3, 4)? {
        logit_nodes[0]
    } else {
        *u.choose(&logit_nodes)?
    };
    let raw: Vec<u16> = (0..u.int_in_range(1..=32)?)
        .map(|_| u.arbitrary())
        .collect::<Result<_>>()?;
    let row = |n: NodeId| logits.row(tree.logits_row(n).unwrap()).to_vec();

    let mut draw = ReplayDraw::new(&raw);
    let mut out = Verification::default();
    let mut scratch = Vec::new();
    let result = verify_tree(
        &tree,
        start,
        logits.view(),
        &sampling,
        &mut draw,
        &mut scratch,
        &mut out,
    );

    // Oracle 1: plain sampling with the same draws, through the tree by token paths.
    let mut plain_draw = ReplayDraw::new(&raw);
    let walk = plain_walk(&tree, start, |node| {
        sampling
            .sample(&row(node), &mut plain_draw, &mut scratch)
            .ok()
    });
    let (path, bonus) = match walk {
        Ok(walk) => walk,
        Err(node) => {
            let bad = tree.logits_row(node).unwrap();
            assert!(
                matches!(result, Err(DecodeError::InvalidLogits { row, .. }) if row == bad),
                "invalid logits at row {bad}: {result:?}"
            );
            return Ok(());
        }
    };
    result.unwrap();
    assert_eq!((&out.path, out.bonus), (&path, bonus), "{sampling:?}");
    assert_eq!(
        draw.drawn, plain_draw.drawn,
        "the verifier and plain sampling drew differently"
    );
    if !sampling.is_greedy() {
        assert_eq!(draw.drawn.len(), path.len(), "one draw per emitted token");
    }

    // Oracle 2: each emitted token against the distribution's definition.
    for (i, &node) in path.iter().enumerate() {
        let emitted = match path.get(i + 1) {
            Some(&child) => tree.token(child),
            None => bonus,
        };
        if let Some(probs) = check_distribution(&row(node), &sampling)
            && !sampling.is_greedy()
        {
            check_draw(&probs, draw.drawn[i], emitted);
        }
    }
    // The distribution of every other row too (nodes off the path).
    for node in tree.logits_nodes() {
        check_distribution(&row(node), &sampling);
    }
    // And the last node really stopped: no child with logits carries the bonus.
    let last = *path.last().unwrap();
    assert!(
        tree.children(last)
            .all(|c| !tree.needs_logits(c) || tree.token(c) != bonus)
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let data = parallel_decoding_fuzz::input(data);
    let _ = run(&mut Unstructured::new(&data));
});
