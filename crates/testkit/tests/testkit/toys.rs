//! The toy models of decoding-core keep the contract, alone, wrapped and batched, for random
//! configurations too.

use std::time::Duration;

use decoding_core::{LogitsModel, PerSequence, Token, TreeSupport};
use decoding_testkit::toy::{
    ChainsOnlyModel, HashModel, InductionModel, NgramModel, RecomputeModel, WithCost,
    WithRolloutHeads,
};
use decoding_testkit::{CheckConfig, CheckReport, check_batch_model, check_model};
use proptest::prelude::*;

fn passes(model: &mut dyn LogitsModel, config: &CheckConfig) -> CheckReport {
    let report = check_model(model, config).unwrap();
    assert!(report.is_bit_exact(), "{report}");
    assert!(
        report.logits.rows > 0 && report.misuse_checks > 0,
        "{report}"
    );
    report
}

const TEXT: [Token; 24] = [
    1, 2, 3, 1, 2, 4, 5, 1, 2, 3, 6, 7, 1, 2, 3, 1, 2, 4, 5, 0, 8, 9, 1, 2,
];

#[test]
fn caching_toy_models_pass() {
    let config = CheckConfig::default();
    let report = passes(&mut HashModel::new(32, 7).with_hidden_size(6), &config);
    assert!(report.hidden_states.rows > 0, "{report}");
    passes(&mut NgramModel::from_text(10, 3, &TEXT).unwrap(), &config);
    passes(&mut HashModel::with_order(5, 3, 4, 2.0).unwrap(), &config);
}

#[test]
fn recompute_models_pass() {
    let config = CheckConfig::default();
    passes(&mut InductionModel::induction(12, 3), &config);
    let mut modular = RecomputeModel::new(7, |ctx: &[Token], out: &mut [f32]| {
        let sum: u32 = ctx.iter().zip(1..).map(|(&t, i)| t * i).sum();
        for (v, x) in out.iter_mut().enumerate() {
            *x = ((sum as usize + v * ctx.len()) % 7) as f32;
        }
    })
    .with_max_context(20);
    let report = passes(&mut modular, &config);
    assert_eq!(report.max_context, 20);
}

#[test]
fn wrappers_pass() {
    let config = CheckConfig::default();
    let heads = WithRolloutHeads::new(InductionModel::induction(10, 5), vec![0.9, 0.5], 3).unwrap();
    let report = passes(&mut { heads }, &config);
    assert!(report.head_logits.rows > 0, "{report}");
    let mut costly = WithCost::new(HashModel::new(16, 2), Duration::ZERO, Duration::ZERO);
    passes(&mut costly, &config);
    let mut chains = ChainsOnlyModel(HashModel::new(16, 4).with_hidden_size(3));
    let report = passes(&mut chains, &config);
    assert_eq!(report.tree_support, TreeSupport::ChainsOnly);
}

#[test]
fn batched_toy_models_pass() {
    let config = CheckConfig::default();
    let mut hash = PerSequence::new(|| HashModel::new(24, 9).with_hidden_size(4));
    let report = check_batch_model(&mut hash, &config).unwrap();
    assert!(report.is_bit_exact(), "{report}");
    assert!(report.multi_sequence_passes > 10, "{report}");
    assert!(report.hidden_states.rows > 0, "{report}");
    let mut heads = PerSequence::new(|| {
        WithRolloutHeads::new(InductionModel::induction(10, 5), vec![0.7], 1).unwrap()
    });
    let report = check_batch_model(&mut heads, &config.clone().with_sequences(4)).unwrap();
    assert!(report.head_logits.rows > 0, "{report}");
    let mut chains =
        PerSequence::new(|| ChainsOnlyModel(NgramModel::from_text(10, 2, &TEXT).unwrap()));
    check_batch_model(&mut chains, &config).unwrap();
}

#[test]
fn tolerance_and_token_sets_pass() {
    let config = CheckConfig::default()
        .with_tolerance(1e-3)
        .with_relative_tolerance(1e-4)
        .with_tokens([3, 4, 5]);
    let report = passes(&mut HashModel::new(8, 1), &config);
    assert_eq!(report.near_tie_count, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any toy model, any check configuration: a correct model passes.
    #[test]
    fn random_toy_configurations_pass(
        seed in any::<u64>(),
        vocab in 1usize..12,
        order in 1usize..5,
        kind in 0usize..5,
        max_nodes in 1usize..14,
        max_context in 2usize..40,
        rounds in 1usize..24,
        chains in any::<bool>(),
        text in prop::collection::vec(0u32..12, 0..40),
    ) {
        let text: Vec<Token> = text.into_iter().map(|t| t % vocab as Token).collect();
        let mut model: Box<dyn LogitsModel> = match kind {
            0 => Box::new(HashModel::with_order(vocab, seed, order, 3.0).unwrap().with_hidden_size(2)),
            1 => Box::new(NgramModel::from_text(vocab, order, &text).unwrap()),
            2 => Box::new(InductionModel::induction(vocab, seed)),
            3 => Box::new(WithRolloutHeads::new(InductionModel::induction(vocab, seed), vec![0.5], seed).unwrap()),
            _ => Box::new(RecomputeModel::new(vocab, move |ctx: &[Token], out: &mut [f32]| {
                out.fill(0.0);
                out[(ctx.iter().sum::<Token>() as usize + ctx.len()) % out.len()] = 1.0;
            })),
        };
        if chains {
            model = Box::new(ChainsOnlyModel(model));
        }
        let config = CheckConfig::default()
            .with_seed(seed)
            .with_episodes(2)
            .with_rounds(rounds)
            .with_max_nodes(max_nodes)
            .with_max_context(max_context);
        let report = check_model(&mut model, &config);
        prop_assert!(report.is_ok(), "{}", report.unwrap_err());
        let mut batched = PerSequence::new(|| HashModel::with_order(vocab, seed, order, 3.0).unwrap());
        let report = check_batch_model(&mut batched, &config.with_rounds(rounds.min(8)));
        prop_assert!(report.is_ok(), "{}", report.unwrap_err());
    }
}

/// A model that is not batch invariant: each row gets noise of up to 4e-4 that depends on
/// the tree it is in, over logits whose top two are often within 1e-4 (near-ties).
struct Noisy<M>(M);

impl<M: LogitsModel> LogitsModel for Noisy<M> {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn committed_len(&self) -> usize {
        self.0.committed_len()
    }
    fn forward(
        &mut self,
        tree: &decoding_core::TokenTree,
        mut logits: ndarray::ArrayViewMut2<'_, f32>,
    ) -> Result<(), decoding_core::ModelError> {
        self.0.forward(tree, logits.view_mut())?;
        let salt = (tree.len() * 31 + tree.logits_rows()) as u64;
        for (r, mut row) in logits.rows_mut().into_iter().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                let h =
                    (salt ^ (r as u64) << 8 ^ (v as u64) << 20).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                *x += ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8e-4;
            }
        }
        Ok(())
    }
    fn commit(&mut self, path: &[decoding_core::NodeId]) -> Result<(), decoding_core::ModelError> {
        self.0.commit(path)
    }
    fn truncate(&mut self, len: usize) -> Result<(), decoding_core::ModelError> {
        self.0.truncate(len)
    }
}

fn near_ties() -> RecomputeModel<impl FnMut(&[Token], &mut [f32])> {
    RecomputeModel::new(6, |ctx: &[Token], out: &mut [f32]| {
        let last = *ctx.last().unwrap_or(&0) as usize;
        out.fill(0.0);
        out[last % 6] = 2.0;
        out[(last + 1) % 6] = 2.0 + 1e-4 * ((ctx.len() % 3) as f32 - 1.0);
    })
}

#[test]
fn a_tolerance_accepts_noise_and_reports_near_ties() {
    let exact = check_model(&mut Noisy(near_ties()), &CheckConfig::default());
    assert!(exact.is_err());
    let config = CheckConfig::default().with_tolerance(1e-3);
    let report = check_model(&mut Noisy(near_ties()), &config).unwrap();
    assert!(!report.is_bit_exact());
    assert!(report.near_tie_count > 0, "{report}");
    assert!(
        report.to_string().contains("near-tie at episode"),
        "{report}"
    );
    // Too tight a tolerance for the noise: a violation, classified as composition.
    let tight = CheckConfig::default().with_tolerance(1e-5);
    let error = check_model(&mut Noisy(near_ties()), &tight).unwrap_err();
    assert_eq!(
        error.kind(),
        Some(decoding_testkit::ViolationKind::TreeComposition),
        "{error}"
    );
}
