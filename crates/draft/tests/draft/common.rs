//! Random toy targets, drafters that agree with them more or less, and a model wrapper that
//! counts and can fail.

use decoding_core::{LogitsModel, ModelError, NodeId, Token, TokenTree, TreeSupport};
use decoding_testkit::toy::{
    ContextLogits, HashLogits, HashModel, InductionLogits, InductionModel, NgramModel, NgramTable,
    RecomputeModel, WindowLogits,
};
use draft::{DraftConfig, Mode};
use ndarray::ArrayViewMut2;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

pub(crate) fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Which toy model a target is.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Hash { seed: u64, order: usize },
    Induction { seed: u64 },
    Ngram { text: Vec<Token> },
}

type Logits = Box<dyn FnMut(&[Token], &mut [f32])>;

impl Target {
    /// The target as a caching model.
    pub(crate) fn model(&self, vocab: usize) -> Box<dyn LogitsModel> {
        match self {
            Self::Hash { seed, order } => {
                Box::new(HashModel::with_order(vocab, *seed, *order, 6.0).unwrap())
            }
            Self::Induction { seed } => Box::new(InductionModel::induction(vocab, *seed)),
            Self::Ngram { text } => {
                Box::new(NgramModel::from_text(vocab, 3, &wrap(text, vocab)).unwrap())
            }
        }
    }

    /// The target's logits as a function of the context.
    fn logits(&self, vocab: usize) -> Logits {
        fn window<L: WindowLogits + 'static>(l: L) -> Logits {
            Box::new(move |ctx: &[Token], out: &mut [f32]| {
                let start = ctx.len().saturating_sub(l.order());
                l.logits(&ctx[start..], out);
            })
        }
        match self {
            Self::Hash { seed, order } => window(HashLogits::new(vocab, *seed, *order, 6.0)),
            Self::Induction { seed } => {
                let mut l = InductionLogits::new(vocab, *seed);
                Box::new(move |ctx: &[Token], out: &mut [f32]| l.logits(ctx, out))
            }
            Self::Ngram { text } => {
                window(NgramTable::from_text(vocab, 3, &wrap(text, vocab)).unwrap())
            }
        }
    }
}

fn wrap(text: &[Token], vocab: usize) -> Vec<Token> {
    text.iter().map(|t| t % vocab as Token).collect()
}

pub(crate) fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (any::<u64>(), 1usize..4).prop_map(|(seed, order)| Target::Hash { seed, order }),
        any::<u64>().prop_map(|seed| Target::Induction { seed }),
        prop::collection::vec(0u32..64, 4..60).prop_map(|text| Target::Ngram { text }),
    ]
}

/// A drafter: the target's logits plus `noise` times unrelated pseudo-random logits (the
/// target itself when `noise` is 0, a stranger when it is large), or a caching hash model of
/// its own.
#[derive(Clone, Debug)]
pub(crate) enum Drafter {
    Noisy { noise: f32, seed: u64 },
    Stranger { seed: u64 },
}

impl Drafter {
    pub(crate) fn model(&self, target: &Target, vocab: usize) -> Box<dyn LogitsModel> {
        match *self {
            Self::Noisy { noise, seed } => {
                let mut base = target.logits(vocab);
                let other = HashLogits::new(vocab, seed, 2, 6.0);
                let mut extra = vec![0.0; vocab];
                Box::new(RecomputeModel::new(
                    vocab,
                    move |ctx: &[Token], out: &mut [f32]| {
                        base(ctx, out);
                        let start = ctx.len().saturating_sub(2);
                        other.logits(&ctx[start..], &mut extra);
                        for (o, e) in out.iter_mut().zip(&extra) {
                            *o += noise * e;
                        }
                    },
                ))
            }
            Self::Stranger { seed } => Box::new(HashModel::new(vocab, seed)),
        }
    }
}

pub(crate) fn drafter() -> impl Strategy<Value = Drafter> {
    prop_oneof![
        1 => Just(Drafter::Noisy { noise: 0.0, seed: 0 }),
        4 => (0.1f32..3.0, any::<u64>()).prop_map(|(noise, seed)| Drafter::Noisy { noise, seed }),
        1 => any::<u64>().prop_map(|seed| Drafter::Stranger { seed }),
    ]
}

/// Random valid configurations, with and without a cost curve.
pub(crate) fn config() -> impl Strategy<Value = DraftConfig> {
    (
        any::<bool>(),
        1usize..8,
        1usize..5,
        2usize..40,
        prop_oneof![Just(0.0f32), 0.0f32..0.9],
        prop::option::of((1.0f64..3.0, 0.0f64..0.6)),
    )
        .prop_map(|(tree, k, width, nodes, min_prob, cost)| {
            let mut c = if tree {
                DraftConfig::tree()
            } else {
                DraftConfig::chain()
            };
            c.k = k;
            if c.mode == Mode::Tree {
                c.width = width;
            }
            c.max_nodes = nodes;
            c.min_prob = min_prob;
            if let Some((slope, drafter_cost)) = cost {
                let curve = decoding_core::CostCurve::new(vec![
                    (1, 1.0),
                    (2, 1.0 + 0.2 * slope),
                    (8, 1.0 + slope),
                ])
                .unwrap();
                c = c.with_cost(curve, drafter_cost);
            }
            c
        })
}

pub(crate) fn prompt(vocab: u32) -> impl Strategy<Value = Vec<Token>> {
    prop::collection::vec(0..vocab, 1..16)
}

/// A model that counts the nodes it evaluates, keeps the tokens of its committed context,
/// can report chains-only support, and fails its `fail_at`-th call (forward, commit or
/// truncate), leaving its state as it was.
#[derive(Debug)]
pub(crate) struct Probe<M> {
    pub(crate) inner: M,
    pub(crate) committed: Vec<Token>,
    last: Option<TokenTree>,
    pub(crate) nodes: usize,
    pub(crate) forwards: usize,
    pub(crate) calls: usize,
    pub(crate) fail_at: Option<usize>,
    pub(crate) chains_only: bool,
}

impl<M> Probe<M> {
    pub(crate) fn new(inner: M) -> Self {
        Self {
            inner,
            committed: Vec::new(),
            last: None,
            nodes: 0,
            forwards: 0,
            calls: 0,
            fail_at: None,
            chains_only: false,
        }
    }

    fn call(&mut self) -> Result<(), ModelError> {
        self.calls += 1;
        if self.fail_at == Some(self.calls) {
            return Err(ModelError::msg("the probe fails here"));
        }
        Ok(())
    }
}

impl<M: LogitsModel> LogitsModel for Probe<M> {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn committed_len(&self) -> usize {
        self.inner.committed_len()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.call()?;
        if self.chains_only {
            tree.check_chain()?;
        }
        self.inner.forward(tree, logits)?;
        self.last = Some(tree.clone());
        self.nodes += tree.len();
        self.forwards += 1;
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.call()?;
        self.inner.commit(path)?;
        let tree = self
            .last
            .take()
            .expect("the inner model checked the forward");
        self.committed.extend(path.iter().map(|&n| tree.token(n)));
        Ok(())
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.call()?;
        self.inner.truncate(len)?;
        self.committed.truncate(len);
        self.last = None;
        Ok(())
    }

    fn tree_support(&self) -> TreeSupport {
        if self.chains_only {
            TreeSupport::ChainsOnly
        } else {
            self.inner.tree_support()
        }
    }

    fn max_context(&self) -> Option<usize> {
        self.inner.max_context()
    }
}
