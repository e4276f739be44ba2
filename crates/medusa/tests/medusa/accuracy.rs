//! Measuring rank accuracies on a model and data, and building trees from them.

use crate::common::{OracleHeads, random_heads, rng};
use decoding_core::{DecodeConfig, Plain, generate};
use decoding_testkit::toy::HashModel;
use medusa::{CandidateTree, HeadScratch, HeadSource, RankAccuracyMeter};
use ndarray::{Array1, Array2};
use std::sync::Arc;

#[test]
fn meter_agrees_with_brute_force_on_library_heads() {
    let (vocab, d, heads) = (7, 4, 3);
    let mut model = HashModel::new(vocab, 11).with_hidden_size(d);
    let medusa_heads = Arc::new(random_heads(5, heads, d, vocab, 2, false));
    let tokens: Vec<u32> = (0..40).map(|i| (i * 5 % 7) as u32).collect();
    let first = 10;
    let mut meter = RankAccuracyMeter::new(heads, vocab).unwrap();
    let source = HeadSource::Library(medusa_heads.clone());
    meter
        .observe_sequence(&mut model, &source, &tokens, first)
        .unwrap();
    let measured = meter.accuracies();

    // Brute force: hidden state of every prefix, head logits, rank of the target.
    let mut hits = vec![vec![0usize; vocab]; heads];
    let mut counts = vec![0usize; heads];
    // Context prior: (hits, mass) of candidates whose (parent, candidate) bigram occurs in
    // tokens[..=t + 1], then of the others.
    let mut context = vec![[0.0f64; 4]; heads];
    let mut hidden = vec![0.0f32; d];
    let mut logits = Array2::zeros((heads, vocab));
    for t in 0..tokens.len() {
        model.hidden_of_context(&tokens[..=t], &mut hidden);
        let h = Array1::from_vec(hidden.clone());
        medusa_heads
            .logits(h.view(), logits.view_mut(), &mut HeadScratch::default())
            .unwrap();
        for k in 0..heads {
            let at = t + k + 2;
            if at < first || at >= tokens.len() {
                continue;
            }
            counts[k] += 1;
            let row = logits.row(k);
            let target = tokens[at] as usize;
            let rank = (0..vocab)
                .filter(|&v| row[v] > row[target] || (row[v] == row[target] && v < target))
                .count();
            hits[k][rank] += 1;
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let total: f32 = row.iter().map(|&x| (x - max).exp()).sum();
            let parent = tokens[t + k + 1];
            for v in 0..vocab {
                let seen = tokens[..=t + 1].windows(2).any(|w| w == [parent, v as u32]);
                let side = if seen { 0 } else { 2 };
                context[k][side] += f64::from(u8::from(v == target));
                context[k][side + 1] += f64::from((row[v] - max).exp() / total);
            }
        }
    }
    for k in 0..heads {
        assert_eq!(meter.positions(k), counts[k] as u64);
        let mut cumulative = 0;
        for (r, &h) in hits[k].iter().enumerate() {
            cumulative += h;
            let expected = cumulative as f64 / counts[k] as f64;
            assert!((measured.top_r(k, r + 1) - expected).abs() < 1e-12);
        }
        assert!((measured.top_r(k, vocab) - 1.0).abs() < 1e-12);
    }
    let prior = meter.context_prior().unwrap();
    for (k, c) in context.iter().enumerate() {
        let expect = |hits: f64, mass: f64| if hits > 0.0 { hits / mass } else { 1.0 };
        assert!(
            (f64::from(prior.seen(k)) - expect(c[0], c[1])).abs() < 1e-4,
            "head {k}"
        );
        assert!(
            (f64::from(prior.unseen(k)) - expect(c[2], c[3])).abs() < 1e-4,
            "head {k}"
        );
    }
}

#[test]
fn oracle_heads_measure_as_accurate_and_give_deep_sparse_trees() {
    let mut model = OracleHeads::new(HashModel::new(30, 4).with_hidden_size(3), 3, 0.9);
    let prompt = [1, 2, 3];
    let out = generate(
        &mut model,
        Plain,
        &prompt,
        &DecodeConfig::new(80),
        &mut rng(0),
    )
    .unwrap();
    let tokens: Vec<u32> = prompt.iter().copied().chain(out.tokens).collect();
    let mut meter = RankAccuracyMeter::new(3, 10).unwrap();
    meter
        .observe_sequence(
            &mut model,
            &HeadSource::Engine { num_heads: 3 },
            &tokens,
            prompt.len(),
        )
        .unwrap();
    let acc = meter.accuracies();
    for k in 0..3 {
        assert!(acc.top_r(k, 1) > 0.7, "head {k}: {}", acc.top_r(k, 1));
    }
    let tree = CandidateTree::sparse(&acc, 8).unwrap();
    assert_eq!(tree.choices()[..3], [vec![0], vec![0, 0], vec![0, 0, 0]]);
    assert!(tree.expected_accepted(&acc) > 1.5);
}
