//! Verification of an arbitrary tree against arbitrary logits. Greedy: the result equals a
//! brute-force search for the longest argmax path. Sampling (any temperature, top-k, top-p):
//! the path is a root path of nodes with logits, every accepted token and the bonus have
//! positive target probability, and the bonus is not a child the verifier should have taken.
#![no_main]

use decoding_core::{Sampling, Token, TokenTree, Verification, argmax, verify_tree};
use libfuzzer_sys::fuzz_target;
use ndarray::Array2;

/// Replays fuzz bytes as randomness.
struct Bytes<'a>(&'a [u8], usize);

impl decoding_core::Draw for Bytes<'_> {
    fn uniform(&mut self) -> f64 {
        let b = self.0.get(self.1 % self.0.len().max(1)).copied().unwrap_or(0);
        self.1 += 1;
        f64::from(b) / 256.0
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(4);
    let vocab = usize::from(head[0] % 6) + 1;
    let nodes = usize::from(head[1] % 16) + 1;
    let (structure, rest) = rest.split_at(rest.len().min(nodes * 2));
    let mut tokens: Vec<Token> = vec![0];
    let mut parents = vec![None];
    let mut flags = vec![true];
    for (i, pair) in structure.chunks_exact(2).enumerate() {
        tokens.push(u32::from(pair[0]) % vocab as u32);
        parents.push(Some(usize::from(pair[1]) % (i + 1)));
        flags.push(pair[1] & 0x80 == 0);
    }
    // Malformed trees (duplicate siblings) must be rejected with an error, never a panic.
    let Ok(tree) = TokenTree::from_parents(&tokens, &parents, Some(&flags)) else {
        return;
    };
    let rows = tree.logits_rows();
    let logits = Array2::from_shape_fn((rows, vocab), |(r, c)| {
        let b = rest.get(r * vocab + c).copied().unwrap_or(0);
        f32::from(b % 8) - 4.0
    });
    let next = |n: usize| argmax(logits.row(tree.logits_row(n).unwrap()).as_slice().unwrap()).unwrap();
    let mut out = Verification::default();
    let mut draw = Bytes(rest, 0);
    verify_tree(&tree, 0, logits.view(), &Sampling::greedy(), &mut draw, &mut Vec::new(), &mut out).unwrap();
    // Brute force: the longest path of argmax tokens through nodes with logits.
    let mut best = vec![0];
    let mut path = Vec::new();
    for node in 0..tree.len() {
        tree.path_to(node, &mut path);
        if path.iter().all(|&n| tree.needs_logits(n))
            && path.windows(2).all(|w| next(w[0]) == tree.token(w[1]))
            && path.len() > best.len()
        {
            best = path.clone();
        }
    }
    assert_eq!(out.path, best);
    assert_eq!(out.bonus, next(*best.last().unwrap()));

    let temperature = f32::from(head[2] % 20 + 1) / 10.0;
    let top_k = (head[3] & 0x07 != 0).then_some(usize::from(head[3] & 0x07));
    let top_p = (head[3] & 0xF0 != 0).then_some(f32::from(head[3] >> 4) / 15.0);
    let sampling = Sampling::new(temperature, top_k, top_p).unwrap();
    verify_tree(&tree, 0, logits.view(), &sampling, &mut draw, &mut Vec::new(), &mut out).unwrap();
    tree.check_path(&out.path).unwrap();
    let mut p = Vec::new();
    for (i, &node) in out.path.iter().enumerate() {
        assert!(tree.needs_logits(node));
        sampling
            .distribution(logits.row(tree.logits_row(node).unwrap()).as_slice().unwrap(), &mut p)
            .unwrap();
        let emitted = match out.path.get(i + 1) {
            Some(&child) => tree.token(child),
            None => out.bonus,
        };
        assert!(p[emitted as usize] > 0.0, "emitted a token of probability 0");
    }
    let last = *out.path.last().unwrap();
    assert!(tree.children(last).all(|c| !tree.needs_logits(c) || tree.token(c) != out.bonus));
});
