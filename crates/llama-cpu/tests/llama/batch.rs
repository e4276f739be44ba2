//! The batched model: every node's logits and hidden state are the bits the single-sequence
//! model gives, whatever else is in the batch, and batched decoding equals decoding alone.

use decoding_core::{
    BatchLogitsModel, BatchRequest, DecodeConfig, HiddenStates, LogitsModel, Plain, Sampling,
    SeqId, SourceSet, Token, TokenTree, decode_batch, generate,
};
use llama_cpu::Llama;
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use crate::common::{RandomTrees, tiny_model};

/// One step of a sequence: a random tree (entries `(parent pick, token, needs logits)` as
/// in `invariance.rs`), the node whose path is committed, and whether the sequence sits out
/// one round first.
#[derive(Clone, Debug)]
struct Step {
    root: Token,
    nodes: Vec<(usize, Token, bool)>,
    pick: usize,
    skip: bool,
}

/// A sequence: the round it joins, its prompt (a chain, committed whole) and its steps.
#[derive(Clone, Debug)]
struct Plan {
    join: usize,
    prompt: Vec<Token>,
    steps: Vec<Step>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..37u32,
        prop::collection::vec((any::<usize>(), 0..37u32, any::<bool>()), 0..8),
        any::<usize>(),
        prop::bool::weighted(0.25),
    )
        .prop_map(|(root, nodes, pick, skip)| Step {
            root,
            nodes,
            pick,
            skip,
        })
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        0..4usize,
        prop::collection::vec(0..37u32, 0..12),
        prop::collection::vec(step(), 0..5),
    )
        .prop_map(|(join, prompt, steps)| Plan {
            join,
            prompt,
            steps,
        })
}

/// The tree of a step and the path it commits.
fn tree_and_path(step: &Step) -> (TokenTree, Vec<usize>) {
    let mut tree = TokenTree::new(step.root);
    for &(pick, token, logits) in &step.nodes {
        let parent = pick % tree.len();
        tree.push_with(parent, token, logits, SourceSet::EMPTY)
            .unwrap();
    }
    let mut path = Vec::new();
    tree.path_to(step.pick % tree.len(), &mut path);
    (tree, path)
}

/// The trees of a plan in order, with their commit paths: the prompt as a chain (when not
/// empty), then the steps.
fn script(plan: &Plan) -> Vec<(TokenTree, Vec<usize>, bool)> {
    let mut out = Vec::new();
    if !plan.prompt.is_empty() {
        let chain = TokenTree::from_chain(&plan.prompt).unwrap();
        out.push((chain, (0..plan.prompt.len()).collect(), false));
    }
    for step in &plan.steps {
        let (tree, path) = tree_and_path(step);
        out.push((tree, path, step.skip));
    }
    out
}

fn forward(model: &mut Llama, tree: &TokenTree) -> Array2<f32> {
    let mut logits = Array2::from_elem((tree.logits_rows(), model.vocab_size()), f32::NAN);
    model.forward(tree, logits.view_mut()).unwrap();
    logits
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Sequences join at different rounds, sit rounds out, go through the batch in a
    /// shuffled order and leave when their script ends; each one's rows and hidden states
    /// equal those of a single-sequence model running the same script alone.
    #[test]
    fn batched_forwards_equal_single_sequence_forwards(
        seed in 0..4u64,
        plans in prop::collection::vec(plan(), 1..5),
        order_seed in any::<u64>(),
        threads in 1..3usize,
    ) {
        let (model, _) = tiny_model(seed);
        let mut batched = model.batch().with_threads(threads).with_min_work_per_thread(0);
        let scripts: Vec<_> = plans.iter().map(script).collect();
        let mut alone: Vec<Llama> = plans.iter().map(|_| model.clone()).collect();
        let mut ids: Vec<Option<SeqId>> = vec![None; plans.len()];
        let mut next = vec![0usize; plans.len()];
        let mut sat_out = vec![false; plans.len()];
        let mut left = Vec::new();
        let mut state = order_seed;
        let mut hidden = Array1::zeros(0);
        let mut expected_hidden = Array1::zeros(batched.hidden_size());
        for round in 0.. {
            for (s, plan) in plans.iter().enumerate() {
                if ids[s].is_none() && plan.join <= round && next[s] < scripts[s].len() {
                    ids[s] = Some(batched.add_sequence().unwrap());
                }
            }
            // This round's batch: the sequences in flight that do not sit it out, shuffled.
            let mut members: Vec<usize> = (0..plans.len())
                .filter(|&s| ids[s].is_some())
                .filter(|&s| {
                    let sit = scripts[s][next[s]].2 && !sat_out[s];
                    sat_out[s] |= sit;
                    !sit
                })
                .collect();
            for i in (1..members.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                members.swap(i, (state >> 33) as usize % (i + 1));
            }
            let items: Vec<(SeqId, &TokenTree)> = members
                .iter()
                .map(|&s| (ids[s].unwrap(), &scripts[s][next[s]].0))
                .collect();
            let rows: usize = items.iter().map(|(_, t)| t.logits_rows()).sum();
            let mut logits = Array2::from_elem((rows, batched.vocab_size()), f32::NAN);
            batched.forward_batch(&items, logits.view_mut()).unwrap();

            let mut first = 0;
            for &s in &members {
                let (tree, path, _) = &scripts[s][next[s]];
                let id = ids[s].unwrap();
                let own = forward(&mut alone[s], tree);
                let mine = logits.slice_axis(Axis(0), (first..first + own.nrows()).into());
                prop_assert_eq!(mine, own.view(), "sequence {} step {}", s, next[s]);
                first += own.nrows();
                for n in tree.logits_nodes() {
                    batched.hidden_state(id, n, &mut hidden).unwrap();
                    alone[s].hidden_state(n, expected_hidden.view_mut()).unwrap();
                    prop_assert_eq!(&hidden, &expected_hidden);
                }
                batched.commit(id, path).unwrap();
                alone[s].commit(path).unwrap();
                prop_assert_eq!(batched.committed_len(id).unwrap(), alone[s].committed_len());
                next[s] += 1;
                sat_out[s] = false;
                if next[s] == scripts[s].len() {
                    batched.remove_sequence(id).unwrap();
                    ids[s] = None;
                    left.push(id);
                }
            }
            let waiting = (0..plans.len()).any(|s| next[s] < scripts[s].len());
            if !waiting {
                break;
            }
        }
        prop_assert_eq!(batched.sequences(), 0);
        for id in left {
            prop_assert!(batched.commit(id, &[0]).is_err());
            prop_assert!(batched.committed_len(id).is_err());
        }
    }

    /// `decode_batch` over the batched model gives every request exactly what `generate`
    /// gives it alone on the single-sequence model: greedy or sampled, plain or with random
    /// drafted trees, whatever the concurrency.
    #[test]
    fn decode_batch_equals_generate_alone(
        seed in 0..4u64,
        jobs in prop::collection::vec(
            (prop::collection::vec(0..37u32, 1..10), 0..20usize, any::<bool>(), prop::option::of(any::<u64>())),
            1..7,
        ),
        concurrency in 1..5usize,
        draft_seed in any::<u64>(),
    ) {
        let (model, _) = tiny_model(seed);
        let config = |max_new: usize, sample: Option<u64>| {
            let sampling = match sample {
                Some(_) => Sampling::new(0.9, None, Some(0.95)).unwrap(),
                None => Sampling::greedy(),
            };
            DecodeConfig::new(max_new).with_eos([0]).with_sampling(sampling).with_max_nodes(12)
        };
        let draw = |sample: Option<u64>| Xoshiro256PlusPlus::seed_from_u64(sample.unwrap_or(0));
        // Each job's greedy output, the truth the random drafts follow.
        let truths: Vec<Vec<Token>> = jobs
            .iter()
            .map(|(prompt, max_new, _, _)| {
                let plain = generate(&mut model.clone(), Plain, prompt, &config(*max_new, None), &mut draw(None));
                plain.unwrap().tokens
            })
            .collect();
        let strategy = |i: usize| -> Box<dyn decoding_core::Strategy> {
            if jobs[i].2 {
                Box::new(RandomTrees {
                    rng: Xoshiro256PlusPlus::seed_from_u64(draft_seed ^ i as u64),
                    vocab: 37,
                    truth: truths[i].clone(),
                })
            } else {
                Box::new(Plain)
            }
        };
        let requests = jobs
            .iter()
            .enumerate()
            .map(|(i, (prompt, max_new, _, sample))| BatchRequest {
                prompt: prompt.clone(),
                strategy: strategy(i),
                config: config(*max_new, *sample),
                draw: Box::new(draw(*sample)),
            })
            .collect();
        let mut batched = model.batch();
        let (results, stats) = decode_batch(&mut batched, requests, concurrency).unwrap();
        prop_assert!(stats.max_in_flight <= concurrency);
        prop_assert_eq!(batched.sequences(), 0);
        for (i, result) in results.into_iter().enumerate() {
            let (prompt, max_new, _, sample) = &jobs[i];
            let alone = generate(
                &mut model.clone(),
                strategy(i),
                prompt,
                &config(*max_new, *sample),
                &mut draw(*sample),
            )
            .unwrap();
            let got = result.unwrap();
            prop_assert_eq!(&got.tokens, &alone.tokens, "job {}", i);
            prop_assert_eq!(got.stats.forward_passes(), alone.stats.forward_passes());
            if sample.is_none() {
                prop_assert_eq!(&got.tokens, &truths[i]);
            }
        }
    }
}

#[test]
fn misuse_is_an_error_and_leaves_every_sequence_as_it_was() {
    let (model, _) = tiny_model(3);
    let mut batched = model.batch();
    assert_eq!(batched.max_context(), Some(64));
    let (a, b) = (
        batched.add_sequence().unwrap(),
        batched.add_sequence().unwrap(),
    );
    let prompt = TokenTree::from_chain(&[3, 4, 5]).unwrap();
    let next = TokenTree::new(6);
    let logits = |rows: usize| Array2::<f32>::zeros((rows, 37));
    assert!(
        batched.commit(a, &[0]).is_err(),
        "commit before any forward"
    );
    batched
        .forward_batch(&[(a, &prompt), (b, &next)], logits(4).view_mut())
        .unwrap();
    batched.commit(a, &[0, 1, 2]).unwrap();
    batched.commit(b, &[0]).unwrap();

    let mut before = logits(2);
    batched
        .forward_batch(&[(a, &next), (b, &next)], before.view_mut())
        .unwrap();

    let unknown = SeqId(99);
    let too_deep = TokenTree::from_chain(&[1; 62]).unwrap();
    let bad_vocab = TokenTree::new(37);
    for (items, rows, why) in [
        (vec![(a, &next), (unknown, &next)], 2, "unknown sequence"),
        (vec![(a, &next), (a, &next)], 2, "a sequence twice"),
        (vec![(a, &next), (b, &next)], 1, "too few rows"),
        (
            vec![(a, &next), (b, &bad_vocab)],
            2,
            "token outside the vocabulary",
        ),
        (
            vec![(b, &next), (a, &too_deep)],
            63,
            "tree past the last position",
        ),
    ] {
        let error = batched.forward_batch(&items, logits(rows).view_mut());
        assert!(error.is_err(), "{why}");
    }
    assert!(
        batched
            .forward_batch(&[(a, &next)], Array2::zeros((1, 36)).view_mut())
            .is_err()
    );
    assert!(batched.commit(unknown, &[0]).is_err());
    assert!(batched.remove_sequence(unknown).is_err());
    assert!(batched.committed_len(unknown).is_err());
    let mut hidden = Array1::zeros(3);
    assert!(batched.hidden_state(unknown, 0, &mut hidden).is_err());

    // The failed calls changed nothing: the uncommitted nodes of the last good forward are
    // still there to commit, and a new forward gives the same rows.
    batched.hidden_state(b, 0, &mut hidden).unwrap();
    assert_eq!(hidden.len(), 24, "the buffer is resized");
    batched.commit(a, &[]).unwrap();
    batched.commit(b, &[]).unwrap();
    assert_eq!(
        (
            batched.committed_len(a).unwrap(),
            batched.committed_len(b).unwrap()
        ),
        (3, 1)
    );
    let mut after = logits(2);
    batched
        .forward_batch(&[(a, &next), (b, &next)], after.view_mut())
        .unwrap();
    assert_eq!(before, after);
    // A node that asked for no logits has no hidden state.
    let mut quiet = TokenTree::from_chain(&[1, 2]).unwrap();
    quiet.set_needs_logits(0, false);
    batched
        .forward_batch(&[(b, &quiet)], logits(1).view_mut())
        .unwrap();
    assert!(batched.hidden_state(b, 0, &mut hidden).is_err());
    batched.hidden_state(b, 1, &mut hidden).unwrap();
    // An empty batch is a no-op.
    batched.forward_batch(&[], logits(0).view_mut()).unwrap();
    batched.commit(b, &[0, 1]).unwrap();
    batched.remove_sequence(a).unwrap();
    assert!(batched.remove_sequence(a).is_err());
    assert_eq!(batched.sequences(), 1);
}
