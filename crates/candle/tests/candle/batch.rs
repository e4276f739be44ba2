//! The batched model against the single-sequence one: logits within the tolerance whatever
//! else is in the batch (padded trees, other context lengths, any slot order), and batched
//! decoding token-identical to decoding each sequence alone.

use decoding_core::{
    BatchLogitsModel, BatchRequest, DecodeConfig, LogitsModel, Plain, SeqId, Strategy, Token,
    TokenTree, decode_batch, generate,
};
use ndarray::{Array2, Axis};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::common::{TOLERANCE, relative_gap, tiny_model};
use crate::reference::{OracleTrees, random_tree};

#[test]
fn batched_logits_match_each_sequence_alone() {
    let model = tiny_model(2);
    let mut batch = model.batch();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    // Five sequences with prompts of different lengths, each mirrored by a model of its own.
    let mut alone: Vec<_> = (0..5).map(|_| model.fresh()).collect();
    let seqs: Vec<SeqId> = (0..5).map(|_| batch.add_sequence().unwrap()).collect();
    for (i, &seq) in seqs.iter().enumerate() {
        let prompt: Vec<Token> = (0..3 + 7 * i).map(|_| rng.random_range(0..37)).collect();
        let chain = TokenTree::from_chain(&prompt).unwrap();
        let mut sink = Array2::zeros((chain.logits_rows(), 37));
        batch
            .forward_batch(&[(seq, &chain)], sink.view_mut())
            .unwrap();
        batch
            .commit(seq, &(0..prompt.len()).collect::<Vec<_>>())
            .unwrap();
        alone[i].forward(&chain, sink.view_mut()).unwrap();
        alone[i]
            .commit(&(0..prompt.len()).collect::<Vec<_>>())
            .unwrap();
    }
    // Rounds over all sequences (slots 0..5, read in place), then over subsets in shuffled
    // order (gathered).
    for round in 0..8 {
        let mut members: Vec<usize> = (0..5).collect();
        if round >= 3 {
            members.retain(|_| rng.random_range(0..3) != 0);
            members.reverse();
            if members.is_empty() {
                members.push(round % 5);
            }
        }
        let trees: Vec<TokenTree> = members
            .iter()
            .map(|_| random_tree(&mut rng, 12, 37))
            .collect();
        let items: Vec<(SeqId, &TokenTree)> = members
            .iter()
            .zip(&trees)
            .map(|(&i, t)| (seqs[i], t))
            .collect();
        let rows: usize = trees.iter().map(TokenTree::logits_rows).sum();
        let mut together = Array2::zeros((rows, 37));
        batch.forward_batch(&items, together.view_mut()).unwrap();
        let mut first = 0;
        for (&i, tree) in members.iter().zip(&trees) {
            let mut own = Array2::zeros((tree.logits_rows(), 37));
            alone[i].forward(tree, own.view_mut()).unwrap();
            let mine = together.slice_axis(Axis(0), (first..first + tree.logits_rows()).into());
            for (a, b) in mine.rows().into_iter().zip(own.rows()) {
                let gap = relative_gap(&a.to_vec(), &b.to_vec());
                assert!(
                    gap < TOLERANCE,
                    "round {round}, sequence {i}: relative gap {gap}"
                );
            }
            first += tree.logits_rows();
            let mut path = Vec::new();
            tree.path_to(rng.random_range(0..tree.len()), &mut path);
            batch.commit(seqs[i], &path).unwrap();
            alone[i].commit(&path).unwrap();
            assert_eq!(
                batch.committed_len(seqs[i]).unwrap(),
                alone[i].committed_len()
            );
        }
    }
}

#[test]
fn batched_decoding_equals_decoding_each_sequence_alone() {
    let model = tiny_model(0);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let prompts: Vec<Vec<Token>> = (0..7)
        .map(|_| {
            (0..rng.random_range(1..16))
                .map(|_| rng.random_range(0..37))
                .collect()
        })
        .collect();
    let config = |i: usize| DecodeConfig::new(12 + 5 * i).with_eos([0]);
    let alone: Vec<Vec<Token>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            generate(&mut model.fresh(), Plain, p, &config(i), &mut rng)
                .unwrap()
                .tokens
        })
        .collect();
    let requests = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let strategy: Box<dyn Strategy> = if i % 2 == 0 {
                Box::new(Plain)
            } else {
                Box::new(OracleTrees {
                    rng: Xoshiro256PlusPlus::seed_from_u64(i as u64),
                    truth: alone[i].clone(),
                })
            };
            BatchRequest {
                prompt: prompt.clone(),
                strategy,
                config: config(i),
                draw: Box::new(Xoshiro256PlusPlus::seed_from_u64(0)),
            }
        })
        .collect();
    // Three in flight: sequences join and leave, so slots are reused and batches are
    // sometimes not slots 0..b.
    let mut batch = model.batch();
    let (results, stats) = decode_batch(&mut batch, requests, 3).unwrap();
    assert_eq!(stats.max_in_flight, 3);
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap().tokens, alone[i], "sequence {i}");
    }
    assert_eq!(batch.sequences(), 0);
}
