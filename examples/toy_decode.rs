//! Decodes with the plain strategy and with a small drafting strategy on a toy model, and
//! shows the statistics every run reports.
//!
//! ```text
//! cargo run --release --example toy_decode
//! ```
//!
//! The drafting strategy here is deliberately tiny (it guesses that the text repeats the
//! tokens that followed the previous occurrence of the pending token), to show the whole
//! contract in one screen: draft a tree, let the decoder verify it, learn nothing.

#[path = "common/exit.rs"]
mod exit;

use decoding_core::{
    DecodeConfig, DecodeError, DraftContext, Generation, Plain, SourceSet, StepFeedback, Strategy,
    Token, TokenTree, generate,
};
use decoding_testkit::toy::InductionModel;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

/// Drafts the `k` tokens that followed the last earlier occurrence of the pending token.
struct RepeatLastOccurrence {
    k: usize,
}

impl Strategy for RepeatLastOccurrence {
    fn name(&self) -> &str {
        "repeat-last-occurrence"
    }

    fn begin(&mut self, _prompt: &[Token], _vocab_size: usize) -> Result<(), DecodeError> {
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let tokens = ctx.tokens;
        let pending = ctx.pending();
        let before = &tokens[..tokens.len() - 1];
        if let Some(at) = before.iter().rposition(|&t| t == pending) {
            let k = self.k.min(ctx.max_depth).min(ctx.max_nodes - 1);
            let end = (at + 1 + k).min(before.len());
            tree.extend_chain(0, &tokens[at + 1..end], true, SourceSet::EMPTY)?;
        }
        Ok(())
    }

    fn observe(&mut self, _feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}

fn report(name: &str, run: &Generation, plain: &Generation) {
    let stats = &run.stats;
    println!(
        "{name:<24} tokens {:>3}  forward passes {:>3}  tau {:.2}  nodes/step {:>5.2}  overhead/step {:>6.1?}  identical to plain: {}",
        run.tokens.len(),
        stats.forward_passes(),
        stats.tau(),
        stats.draft_nodes_per_step(),
        stats.overhead_per_step(),
        run.tokens == plain.tokens,
    );
}

fn main() -> std::process::ExitCode {
    exit::exit_code(run())
}

fn run() -> Result<(), DecodeError> {
    let mut model = InductionModel::induction(64, 7);
    let prompt: Vec<Token> = (0..24).map(|i| (i * 7 % 13 + 1) as Token).collect();
    let config = DecodeConfig::new(96).with_eos([0]);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let plain = generate(&mut model, Plain, &prompt, &config, &mut rng)?;
    let drafted = generate(
        &mut model,
        RepeatLastOccurrence { k: 8 },
        &prompt,
        &config,
        &mut rng,
    )?;
    println!("prompt: {prompt:?}");
    println!("output: {:?} (stopped: {:?})\n", plain.tokens, plain.stop);
    report("plain", &plain, &plain);
    report("repeat-last-occurrence", &drafted, &plain);
    println!(
        "\nacceptance by depth (fraction of steps accepting at least d drafts): {:?}",
        drafted
            .stats
            .acceptance_by_depth()
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
    );
    Ok(())
}
