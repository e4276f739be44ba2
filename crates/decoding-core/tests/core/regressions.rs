//! Regression tests of defects found by an independent differential test (issue 18) and by a
//! new user's integration (issue 16), one per finding, named after it.

use crate::common::{Oracle, RandomDrafts};
use decoding_core::{
    Composite, DecodeConfig, DecodeError, Draw, LogitsModel, ModelError, NodeBudget, NodeId, Plain,
    Sampling, Strategy, Token, TokenTree, generate,
};
use decoding_testkit::toy::{ChainsOnlyModel, HashModel};
use ndarray::ArrayViewMut2;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

/// A generator that counts its draws.
struct Counting {
    inner: Xoshiro256PlusPlus,
    draws: usize,
}

impl Counting {
    fn new(seed: u64) -> Self {
        Self {
            inner: Xoshiro256PlusPlus::seed_from_u64(seed),
            draws: 0,
        }
    }
}

impl Draw for Counting {
    fn uniform(&mut self) -> f64 {
        self.draws += 1;
        self.inner.uniform()
    }
}

fn forced_chain_source(seed: u64) -> Box<dyn Strategy> {
    Box::new(RandomDrafts::new(seed, 6))
}

/// Issue 18, item 1: two sources that each draft a chain (and need all of it) were merged into
/// a branching tree on a chains-only model, and decoding failed with `NotAChain`.
#[test]
fn issue18_composite_keeps_one_chain_on_chains_only_models() {
    let prompt = [1, 2, 3];
    let config = DecodeConfig::new(5);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let plain = generate(&mut HashModel::new(4, 1), Plain, &prompt, &config, &mut rng).unwrap();
    for seeds in [(1, 2), (3, 4), (5, 6)] {
        let composite = Composite::new(
            vec![forced_chain_source(seeds.0), forced_chain_source(seeds.1)],
            NodeBudget::Fixed,
        )
        .unwrap();
        let mut model = ChainsOnlyModel(HashModel::new(4, 1));
        let out = generate(&mut model, composite, &prompt, &config, &mut rng).unwrap();
        assert_eq!(out.tokens, plain.tokens);
    }
}

/// Issue 18, item 2: the verifier drew once per node it descended into, also past a stop
/// condition inside an accepted chunk. A generator reused for the next sequence then
/// diverged from plain sampling's. One draw per emitted token, never more.
#[test]
fn issue18_sampling_draws_once_per_emitted_token_through_stops() {
    let sampling = Sampling::new(0.8, None, None).unwrap();
    let prompt = [1, 2];
    let mut reference = HashModel::new(6, 9);
    let continuation = {
        let config = DecodeConfig::new(40).with_sampling(sampling);
        let out = generate(
            &mut reference,
            Plain,
            &prompt,
            &config,
            &mut Counting::new(3),
        );
        out.unwrap().tokens
    };
    // Stop inside the chunk the oracle drafts: at the EOS, the stop sequence, the limit.
    let stops = [
        DecodeConfig::new(40).with_eos([continuation[4]]),
        DecodeConfig::new(40).with_stop_sequence(continuation[3..6].to_vec()),
        DecodeConfig::new(7),
    ];
    let mut sped_up = false;
    for config in stops {
        let config = config.with_sampling(sampling);
        let (mut plain_rng, mut oracle_rng) = (Counting::new(3), Counting::new(3));
        let mut model = HashModel::new(6, 9);
        let plain = generate(&mut model, Plain, &prompt, &config, &mut plain_rng).unwrap();
        let oracle = Oracle {
            continuation: continuation.clone(),
            depth: 30,
        };
        let out = generate(&mut model, oracle, &prompt, &config, &mut oracle_rng).unwrap();
        assert_eq!(out.tokens, plain.tokens);
        assert_eq!(oracle_rng.draws, plain_rng.draws);
        assert_eq!(oracle_rng.draws, plain.tokens.len());
        assert!(out.stats.forward_passes() <= plain.stats.forward_passes());
        sped_up |= out.stats.forward_passes() < plain.stats.forward_passes();
    }
    assert!(sped_up, "the oracle's chunks were accepted");
}

/// A model whose `commit` keeps nothing: its cache never grows.
struct ForgetfulCommit(HashModel);

impl LogitsModel for ForgetfulCommit {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn committed_len(&self) -> usize {
        self.0.committed_len()
    }
    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.0.forward(tree, logits)
    }
    fn commit(&mut self, _path: &[NodeId]) -> Result<(), ModelError> {
        self.0.commit(&[])
    }
    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.0.truncate(len)
    }
    fn reset(&mut self) -> Result<(), ModelError> {
        Ok(()) // and a reset that does nothing
    }
}

/// Issue 16, item 2: neither `generate` nor the decoder checked `committed_len`, so a model
/// whose commit does nothing, or a cache that was not empty, decoded wrong tokens silently.
#[test]
fn issue16_committed_length_is_checked() {
    let config = DecodeConfig::new(8);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut model = ForgetfulCommit(HashModel::new(8, 2));
    let err = generate(&mut model, Plain, &[1, 2, 3], &config, &mut rng).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::CommittedLength {
                expected: 3,
                actual: 0
            }
        ),
        "{err}"
    );
    // A cache holding tokens at the start (its reset does nothing).
    let mut inner = HashModel::new(8, 2);
    generate(&mut inner, Plain, &[1, 2, 3], &config, &mut rng).unwrap();
    let mut stale = ForgetfulCommit(inner);
    let err = generate(&mut stale, Plain, &[1, 2, 3], &config, &mut rng).unwrap_err();
    assert!(
        matches!(err, DecodeError::CommittedLength { expected: 0, .. }),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Issue 18: composites of any sources (prunable or not, scored or not) equal plain
    /// greedy on chains-only models.
    #[test]
    fn composites_on_chains_only_models_equal_plain_greedy(
        seed in any::<u64>(), vocab in 2usize..12, max_new in 1usize..30,
        sources in prop::collection::vec((any::<u64>(), 1usize..10, any::<bool>(), any::<bool>()), 1..4),
        budget in 1usize..20, prompt in prop::collection::vec(0u32..12, 1..8),
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let config = DecodeConfig::new(max_new).with_max_nodes(budget);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let plain = generate(&mut HashModel::new(vocab, seed), Plain, &prompt, &config, &mut rng)
            .unwrap();
        let drafts: Vec<Box<dyn Strategy>> = sources
            .iter()
            .map(|&(s, nodes, prunable, scored)| {
                let mut source = RandomDrafts::new(s, nodes);
                source.prunable = prunable;
                source.scored = scored;
                Box::new(source) as Box<dyn Strategy>
            })
            .collect();
        let composite = Composite::new(drafts, NodeBudget::Fixed).unwrap();
        let mut model = ChainsOnlyModel(HashModel::new(vocab, seed));
        let out = generate(&mut model, composite, &prompt, &config, &mut rng).unwrap();
        prop_assert_eq!(out.tokens, plain.tokens);
    }
}
