//! Shared helpers: random toy models, seeded generators.

use decoding_core::{LogitsModel, Token};
use decoding_testkit::toy::{HashModel, InductionModel, NgramModel};
use jacobi::Init;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

pub(crate) fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Which toy model a case runs on.
#[derive(Clone, Debug)]
pub(crate) enum ToyKind {
    Hash { seed: u64, order: usize },
    Ngram { text: Vec<Token> },
    Induction { seed: u64 },
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
        }
    }
}

pub(crate) fn toy_kind() -> impl Strategy<Value = ToyKind> {
    prop_oneof![
        (any::<u64>(), 1usize..4).prop_map(|(seed, order)| ToyKind::Hash { seed, order }),
        prop::collection::vec(0u32..64, 4..60).prop_map(|text| ToyKind::Ngram { text }),
        any::<u64>().prop_map(|seed| ToyKind::Induction { seed }),
    ]
}

pub(crate) fn init_policy() -> impl Strategy<Value = Init> {
    prop_oneof![
        any::<u64>().prop_map(|seed| Init::Prompt { seed }),
        Just(Init::RepeatLast),
        (0u32..2).prop_map(Init::Pad),
        Just(Init::Ngram),
    ]
}

pub(crate) fn prompt(vocab: u32) -> impl Strategy<Value = Vec<Token>> {
    prop::collection::vec(0..vocab, 1..16)
}
