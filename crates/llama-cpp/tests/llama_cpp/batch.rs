//! The batched model: sequences sharing one context and one `llama_decode` see only their
//! own cache, and each gets what it gets alone.

use decoding_core::{BatchLogitsModel, LogitsModel, SeqId, Token, TokenTree};
use decoding_llama_cpp::{LlamaCppError, LlamaCppOptions};
use ndarray::{Array2, Axis};

use crate::common::{TOLERANCE, compare, context, forward, from_scratch, tiny};

fn tree(tokens: &[Token], parents: &[Option<usize>]) -> TokenTree {
    TokenTree::from_parents(tokens, parents, None).unwrap()
}

#[test]
fn sequences_in_one_batch_match_recomputing_each_alone() {
    let mut batch = tiny().batch(&LlamaCppOptions::new(), 4).unwrap();
    let mut reference = context(tiny());
    let seqs: Vec<SeqId> = (0..3).map(|_| batch.add_sequence().unwrap()).collect();
    let mut contexts: Vec<Vec<Token>> = vec![Vec::new(); 3];
    let prompts = [vec![5, 6, 7], vec![9], vec![100, 101, 102, 103, 104]];
    let trees = [
        tree(&[8, 9, 10, 11], &[None, Some(0), Some(0), Some(2)]),
        tree(&[3, 4], &[None, Some(0)]),
        tree(
            &[1, 2, 3, 4, 5],
            &[None, Some(0), Some(0), Some(0), Some(1)],
        ),
    ];
    for round in 0..3 {
        let items: Vec<(SeqId, TokenTree)> = if round == 0 {
            seqs.iter()
                .zip(&prompts)
                .map(|(&s, p)| (s, TokenTree::from_chain(p).unwrap()))
                .collect()
        } else {
            // Sequence 1 sits the second round out; the others change order.
            let order: &[usize] = if round == 1 { &[2, 0] } else { &[0, 1, 2] };
            order.iter().map(|&i| (seqs[i], trees[i].clone())).collect()
        };
        let refs: Vec<(SeqId, &TokenTree)> = items.iter().map(|(s, t)| (*s, t)).collect();
        let rows: usize = refs.iter().map(|(_, t)| t.logits_rows()).sum();
        let mut logits = Array2::from_elem((rows, batch.vocab_size()), f32::NAN);
        batch.forward_batch(&refs, logits.view_mut()).unwrap();
        let mut offset = 0;
        for (seq, tree) in &refs {
            let i = seqs.iter().position(|s| s == seq).unwrap();
            for node in 0..tree.len() {
                let mut path = contexts[i].clone();
                path.extend(tree.path_tokens(node));
                let expected = from_scratch(&mut reference, &path);
                let row = logits.index_axis(Axis(0), offset + node);
                let (diff, agree) = compare(row.as_slice().unwrap(), &expected);
                assert!(
                    diff <= TOLERANCE && agree,
                    "round {round}, seq {i}, node {node}: {diff}"
                );
            }
            offset += tree.len();
            // Commit the last node's path.
            let last = tree.len() - 1;
            let mut path = Vec::new();
            tree.path_to(last, &mut path);
            batch.commit(*seq, &path).unwrap();
            contexts[i].extend(tree.path_tokens(last));
            assert_eq!(batch.committed_len(*seq).unwrap(), contexts[i].len());
        }
    }
    // A removed sequence frees its slot; the others keep their caches.
    batch.remove_sequence(seqs[1]).unwrap();
    let again = batch.add_sequence().unwrap();
    assert_eq!(batch.committed_len(again).unwrap(), 0);
    let next = TokenTree::new(42);
    let mut one = Array2::zeros((1, batch.vocab_size()));
    batch
        .forward_batch(&[(seqs[0], &next)], one.view_mut())
        .unwrap();
    let mut path = contexts[0].clone();
    path.push(42);
    let (diff, _) = compare(
        one.row(0).as_slice().unwrap(),
        &from_scratch(&mut reference, &path),
    );
    assert!(diff <= TOLERANCE);
}

#[test]
fn batch_misuse_is_an_error() {
    let mut batch = tiny().batch(&LlamaCppOptions::new(), 2).unwrap();
    let a = batch.add_sequence().unwrap();
    let b = batch.add_sequence().unwrap();
    let full = batch.add_sequence().unwrap_err();
    let is = |e: &decoding_core::ModelError| e.inner().downcast_ref::<LlamaCppError>().is_some();
    assert!(is(&full), "{full}");
    let t = TokenTree::new(1);
    let mut logits = Array2::zeros((2, batch.vocab_size()));
    assert!(
        batch
            .forward_batch(&[(a, &t), (a, &t)], logits.view_mut())
            .is_err()
    );
    assert!(
        batch
            .forward_batch(&[(a, &t), (SeqId(99), &t)], logits.view_mut())
            .is_err()
    );
    assert!(batch.commit(b, &[0]).is_err(), "commit without a forward");
    batch
        .forward_batch(&[(a, &t), (b, &t)], logits.view_mut())
        .unwrap();
    batch.commit(a, &[0]).unwrap();
    batch.commit(b, &[]).unwrap();
    assert_eq!(
        (
            batch.committed_len(a).unwrap(),
            batch.committed_len(b).unwrap()
        ),
        (1, 0)
    );
    assert!(batch.remove_sequence(SeqId(99)).is_err());
    // A single-sequence model agrees with the batched one on the same context.
    let mut single = context(tiny());
    forward(&mut single, &TokenTree::new(1));
    single.commit(&[0]).unwrap();
    assert_eq!(single.committed_len(), 1);
}
