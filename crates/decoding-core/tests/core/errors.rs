//! Caller mistakes give errors, never panics; model errors pass through.

use decoding_core::{
    DecodeConfig, DecodeError, Decoder, DraftContext, LogitsModel, ModelError, NoExtras, NodeId,
    Plain, Sampling, StepFeedback, StopReason, Strategy, Token, TokenTree, TreeError, TreeSupport,
    generate,
};
use decoding_testkit::toy::{HashModel, RecomputeModel};
use ndarray::{Array2, ArrayViewMut2};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

fn rng() -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(0)
}

fn run(config: DecodeConfig, prompt: &[Token]) -> Result<Vec<Token>, DecodeError> {
    let mut model = HashModel::new(8, 1);
    generate(&mut model, Plain, prompt, &config, &mut rng()).map(|g| g.tokens)
}

#[test]
fn bad_configs_and_prompts_are_errors() {
    assert!(matches!(
        run(DecodeConfig::new(5), &[]),
        Err(DecodeError::EmptyPrompt)
    ));
    assert!(matches!(
        run(DecodeConfig::new(5), &[1, 8]),
        Err(DecodeError::TokenOutOfVocab {
            token: 8,
            vocab_size: 8
        })
    ));
    assert!(matches!(
        run(DecodeConfig::new(5).with_eos([9]), &[1]),
        Err(DecodeError::TokenOutOfVocab { .. })
    ));
    assert!(matches!(
        run(DecodeConfig::new(5).with_max_nodes(0), &[1]),
        Err(DecodeError::Config(_))
    ));
    assert!(matches!(
        run(DecodeConfig::new(5).with_stop_sequence(Vec::new()), &[1]),
        Err(DecodeError::Config(_))
    ));
    assert_eq!(
        run(DecodeConfig::new(0), &[1]).unwrap(),
        Vec::<Token>::new()
    );
}

/// A strategy that misbehaves in a chosen way.
struct Misbehaving(u8);

impl Strategy for Misbehaving {
    fn name(&self) -> &str {
        "misbehaving"
    }
    fn begin(&mut self, _: &[Token], _: usize) -> Result<(), DecodeError> {
        Ok(())
    }
    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        match self.0 {
            0 => tree.reset(ctx.pending() + 1),
            1 => {
                tree.push(0, 99)?;
            }
            _ => {
                for t in 0..ctx.max_nodes as Token {
                    tree.push(0, t % 8)?;
                    tree.push(1, t % 8)?;
                }
            }
        }
        Ok(())
    }
    fn observe(&mut self, _: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}

#[test]
fn misbehaving_strategies_are_errors() {
    let config = DecodeConfig::new(5).with_max_nodes(4);
    let mut model = HashModel::new(8, 1);
    let mut err = |s| generate(&mut model, Misbehaving(s), &[1], &config, &mut rng()).unwrap_err();
    assert!(matches!(err(0), DecodeError::Contract(_)));
    assert!(matches!(
        err(1),
        DecodeError::Tree(TreeError::TokenOutOfVocab { .. })
    ));
    assert!(matches!(
        err(2),
        DecodeError::Tree(TreeError::OverBudget { .. })
    ));
}

#[test]
fn decoder_rejects_calls_out_of_order_and_bad_logits() {
    let mut decoder = Decoder::new(Plain, DecodeConfig::new(3));
    assert!(matches!(decoder.propose(), Err(DecodeError::State(_))));
    decoder.start(&[1, 2], 4, TreeSupport::Trees, None).unwrap();
    let logits = Array2::<f32>::zeros((1, 4));
    assert!(
        decoder
            .advance(logits.view(), &mut NoExtras, &mut rng())
            .is_err()
    );
    decoder.propose().unwrap();
    let wrong = Array2::<f32>::zeros((2, 4));
    assert!(matches!(
        decoder.advance(wrong.view(), &mut NoExtras, &mut rng()),
        Err(DecodeError::LogitsShape { .. })
    ));
    let nan = Array2::from_elem((1, 4), f32::NAN);
    assert!(matches!(
        decoder.advance(nan.view(), &mut NoExtras, &mut rng()),
        Err(DecodeError::InvalidLogits { row: 0, .. })
    ));
}

#[test]
fn context_limit_stops_decoding() {
    let mut model = RecomputeModel::new(4, |ctx: &[Token], out: &mut [f32]| {
        out.fill(0.0);
        out[ctx.len() % 4] = 1.0;
    })
    .with_max_context(6);
    let out = generate(
        &mut model,
        Plain,
        &[0, 1],
        &DecodeConfig::new(10),
        &mut rng(),
    )
    .unwrap();
    // Six positions: the prompt, then tokens until the pending one would not fit.
    assert_eq!(out.stop, StopReason::ContextFull);
    assert_eq!(out.tokens, vec![2, 3, 0, 1, 2]);
}

#[test]
fn sampling_config_is_validated() {
    assert!(Sampling::new(0.7, Some(0), None).is_err());
}

/// A model whose forward always fails.
struct Broken;

impl LogitsModel for Broken {
    fn vocab_size(&self) -> usize {
        4
    }
    fn committed_len(&self) -> usize {
        0
    }
    fn forward(&mut self, _: &TokenTree, _: ArrayViewMut2<'_, f32>) -> Result<(), ModelError> {
        Err(ModelError::msg("device lost"))
    }
    fn commit(&mut self, _: &[NodeId]) -> Result<(), ModelError> {
        Ok(())
    }
    fn truncate(&mut self, _: usize) -> Result<(), ModelError> {
        Ok(())
    }
}

#[test]
fn model_errors_pass_through() {
    let err = generate(&mut Broken, Plain, &[1], &DecodeConfig::new(2), &mut rng()).unwrap_err();
    assert!(matches!(err, DecodeError::Model(_)));
    assert_eq!(err.to_string(), "model error: device lost");
}
