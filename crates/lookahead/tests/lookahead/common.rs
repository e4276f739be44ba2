//! Shared helpers: random toy models, configurations, seeded generators.

use decoding_core::{LogitsModel, Token};
use decoding_testkit::toy::{HashModel, InductionModel, NgramModel, RecomputeModel};
use jacobi::Init;
use lookahead::{Fill, LookaheadConfig, WindowLogits};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

pub(crate) fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Which toy model a case runs on.
#[derive(Clone, Debug)]
pub(crate) enum ToyKind {
    Hash {
        seed: u64,
        order: usize,
    },
    Ngram {
        text: Vec<Token>,
    },
    Induction {
        seed: u64,
    },
    /// Predicts (last token + 1) mod vocabulary: long exact n-grams to find.
    Counting,
}

impl ToyKind {
    pub(crate) fn build(&self, vocab: usize) -> Box<dyn LogitsModel> {
        match self {
            Self::Hash { seed, order } => {
                Box::new(HashModel::with_order(vocab, *seed, *order, 6.0).unwrap())
            }
            Self::Ngram { text } => {
                let text: Vec<Token> = text.iter().map(|t| t % vocab as Token).collect();
                Box::new(NgramModel::from_text(vocab, 3, &text).unwrap())
            }
            Self::Induction { seed } => Box::new(InductionModel::induction(vocab, *seed)),
            Self::Counting => Box::new(counting(vocab)),
        }
    }
}

/// A model that predicts (last + 1) mod `vocab`.
pub(crate) fn counting(vocab: usize) -> RecomputeModel<impl FnMut(&[Token], &mut [f32]) + Clone> {
    RecomputeModel::new(vocab, move |ctx: &[Token], out: &mut [f32]| {
        out.fill(0.0);
        out[(ctx[ctx.len() - 1] as usize + 1) % vocab] = 1.0;
    })
}

pub(crate) fn toy_kind() -> impl Strategy<Value = ToyKind> {
    prop_oneof![
        3 => (any::<u64>(), 1usize..4).prop_map(|(seed, order)| ToyKind::Hash { seed, order }),
        2 => prop::collection::vec(0u32..64, 4..60).prop_map(|text| ToyKind::Ngram { text }),
        3 => any::<u64>().prop_map(|seed| ToyKind::Induction { seed }),
        1 => Just(ToyKind::Counting),
    ]
}

fn init_policy() -> impl Strategy<Value = Init> {
    prop_oneof![
        any::<u64>().prop_map(|seed| Init::Prompt { seed }),
        Just(Init::RepeatLast),
        (0u32..2).prop_map(Init::Pad),
        Just(Init::Ngram),
    ]
}

/// Random valid configurations, small enough for toy runs.
pub(crate) fn config() -> impl Strategy<Value = LookaheadConfig> {
    (
        (1usize..8, 2usize..6, 0usize..8),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        init_policy(),
    )
        .prop_map(|((w, n, g), (prompt, output, all, fill), init)| {
            LookaheadConfig::new(w, n, g)
                .with_prompt_pool(prompt)
                .with_output_pool(output)
                .with_window_logits(if all {
                    WindowLogits::All
                } else {
                    WindowLogits::Top
                })
                .with_fill(if fill { Fill::Pool } else { Fill::Init })
                .with_init(init)
        })
}

pub(crate) fn prompt(vocab: u32) -> impl Strategy<Value = Vec<Token>> {
    prop::collection::vec(0..vocab, 1..16)
}
