//! Batched decoding equals decoding each sequence alone.

use crate::common::RandomDrafts;
use decoding_core::{
    BatchOptions, BatchRequest, DecodeConfig, PerSequence, Plain, Sampling, Token, decode_batch,
    decode_batch_with, generate,
};
use decoding_testkit::toy::HashModel;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

#[derive(Debug, Clone)]
struct Job {
    prompt: Vec<Token>,
    max_new: usize,
    drafts: Option<u64>,
    sample_seed: Option<u64>,
}

fn job() -> impl Strategy<Value = Job> {
    (
        prop::collection::vec(0u32..6, 1..8),
        0usize..25,
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(prompt, max_new, drafts, sample_seed)| Job {
            prompt,
            max_new,
            drafts,
            sample_seed,
        })
}

fn request(job: &Job) -> BatchRequest {
    let sampling = match job.sample_seed {
        Some(_) => Sampling::new(0.9, None, Some(0.95)).unwrap(),
        None => Sampling::greedy(),
    };
    BatchRequest {
        prompt: job.prompt.clone(),
        strategy: match job.drafts {
            Some(seed) => Box::new(RandomDrafts::new(seed, 10)),
            None => Box::new(Plain),
        },
        config: DecodeConfig::new(job.max_new)
            .with_eos([0])
            .with_sampling(sampling)
            .with_max_nodes(10),
        draw: Box::new(Xoshiro256PlusPlus::seed_from_u64(
            job.sample_seed.unwrap_or(0),
        )),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn batched_equals_alone(
        seed in any::<u64>(), jobs in prop::collection::vec(job(), 1..10),
        concurrency in 1usize..5, order_seed in any::<u64>(),
    ) {
        // Arrival order: a seeded shuffle of the jobs.
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        let mut state = order_seed;
        for i in (1..order.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let requests = order.iter().map(|&i| request(&jobs[i])).collect();
        let mut batched = PerSequence::new(|| HashModel::new(6, seed));
        let (results, stats) = decode_batch(&mut batched, requests, concurrency).unwrap();
        prop_assert!(stats.max_in_flight <= concurrency);
        for (result, &i) in results.into_iter().zip(&order) {
            let mut alone = HashModel::new(6, seed);
            let mut r = request(&jobs[i]);
            let expected = generate(&mut alone, &mut r.strategy, &r.prompt, &r.config, &mut *r.draw).unwrap();
            let got = result.unwrap();
            prop_assert_eq!(got.tokens, expected.tokens);
            prop_assert_eq!(got.stop, expected.stop);
            prop_assert_eq!(got.stats.forward_passes(), expected.stats.forward_passes());
        }
    }
}

#[test]
fn one_failing_sequence_does_not_stop_the_others() {
    let mut batched = PerSequence::new(|| HashModel::new(6, 1));
    let good = request(&Job {
        prompt: vec![1, 2],
        max_new: 5,
        drafts: None,
        sample_seed: None,
    });
    let bad = request(&Job {
        prompt: vec![1, 9],
        max_new: 5,
        drafts: None,
        sample_seed: None,
    });
    let (results, _) = decode_batch(&mut batched, vec![bad, good], 2).unwrap();
    assert!(results[0].is_err());
    assert_eq!(results[1].as_ref().unwrap().tokens.len(), 5);
    assert!(decode_batch(&mut batched, Vec::new(), 0).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A total node budget and speculation under load change the trees, never the outputs.
    #[test]
    fn batch_budgets_leave_outputs_unchanged(
        seed in any::<u64>(), jobs in prop::collection::vec(job(), 1..8),
        concurrency in 1usize..5, total in 1usize..12, speculate_up_to in prop::option::of(0usize..4),
    ) {
        let requests = jobs.iter().map(request).collect();
        let mut batched = PerSequence::new(|| HashModel::new(6, seed));
        let options = BatchOptions::new(concurrency)
            .with_max_total_nodes(Some(total))
            .with_speculate_up_to(speculate_up_to);
        let (results, _) = decode_batch_with(&mut batched, requests, &options).unwrap();
        for (result, job) in results.into_iter().zip(&jobs) {
            let mut alone = HashModel::new(6, seed);
            let mut r = request(job);
            let expected = generate(&mut alone, &mut r.strategy, &r.prompt, &r.config, &mut *r.draw).unwrap();
            let got = result.unwrap();
            prop_assert_eq!(&got.tokens, &expected.tokens);
            // No step drafts more than the whole pass may hold.
            prop_assert!(got.stats.steps.iter().all(|s| s.draft_nodes <= total.max(1)));
            if speculate_up_to == Some(0) {
                prop_assert!(got.stats.steps.iter().all(|s| s.draft_nodes == 1));
            }
        }
    }
}

#[test]
fn a_zero_total_budget_is_an_error() {
    let mut batched = PerSequence::new(|| HashModel::new(6, 1));
    let options = BatchOptions::new(2).with_max_total_nodes(Some(0));
    assert!(decode_batch_with(&mut batched, Vec::new(), &options).is_err());
}
