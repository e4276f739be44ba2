//! Per-step cost of reference drafting, outside any model: bringing the matcher up to date
//! with the accepted tokens, finding the longest match and drafting the tree, on a
//! 100k-token reference (vocabulary 8192, code-like: Zipf-distributed tokens with repeated
//! spans).
//!
//! Each measured step is one `Strategy::draft` call of a simulated decode: the output copies
//! spans of the reference with edits in between, each step accepts the drafted tokens that
//! agree with it plus one, and sequences restart every 200 tokens (the restart is not timed).
//!
//! ```text
//! cargo bench --bench reference_lookup
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use decoding_core::{CostCurve, DraftContext, Strategy, Token, TokenTree};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use reference::{Matcher, ReferenceConfig, ReferenceIndex, ReferenceStrategy};

const VOCAB: usize = 8192;
const REFERENCE_TOKENS: usize = 100_000;
const PROMPT_TOKENS: usize = 256;
const OUTPUT_TOKENS: usize = 200;

/// A Zipf-like token: small ids are common.
fn zipf(rng: &mut Xoshiro256PlusPlus) -> Token {
    let u: f64 = rng.random_range(0.0..1.0);
    ((VOCAB as f64).powf(u) - 1.0) as Token
}

/// Code-like text: fresh tokens, and spans copied from earlier in the text.
fn code_like(rng: &mut Xoshiro256PlusPlus, len: usize) -> Vec<Token> {
    let mut text: Vec<Token> = Vec::with_capacity(len);
    while text.len() < len {
        if text.len() > 64 && rng.random_bool(0.3) {
            let span = rng.random_range(4..32);
            let start = rng.random_range(0..text.len() - span);
            for i in 0..span {
                text.push(text[start + i]);
            }
        } else {
            for _ in 0..rng.random_range(1..8) {
                text.push(zipf(rng));
            }
        }
    }
    text.truncate(len);
    text
}

/// One sequence: a prompt taken from the reference, and an output that copies spans of the
/// reference with edits between them.
fn sequence(rng: &mut Xoshiro256PlusPlus, reference: &[Token]) -> (Vec<Token>, Vec<Token>) {
    let start = rng.random_range(0..reference.len() - PROMPT_TOKENS - 4 * OUTPUT_TOKENS);
    let prompt = reference[start..start + PROMPT_TOKENS].to_vec();
    let mut output = Vec::with_capacity(OUTPUT_TOKENS);
    let mut at = start + PROMPT_TOKENS;
    while output.len() < OUTPUT_TOKENS {
        let span = rng.random_range(8..40);
        output.extend_from_slice(&reference[at..at + span]);
        at += span + rng.random_range(0..3);
        for _ in 0..rng.random_range(0..4) {
            output.push(zipf(rng));
        }
    }
    output.truncate(OUTPUT_TOKENS);
    (prompt, output)
}

/// Runs `steps` drafting steps of simulated decodes and returns the time spent in `draft`.
fn run_steps(
    strategy: &mut ReferenceStrategy,
    sequences: &[(Vec<Token>, Vec<Token>)],
    steps: u64,
) -> Duration {
    let mut tree = TokenTree::new(0);
    let mut timed = Duration::ZERO;
    let mut done = 0;
    let mut which = 0;
    while done < steps {
        let (prompt, output) = &sequences[which % sequences.len()];
        which += 1;
        strategy.begin(prompt, VOCAB).unwrap();
        let mut tokens = prompt.clone();
        tokens.push(output[0]);
        let mut emitted = 1;
        while emitted < output.len() && done < steps {
            let ctx = DraftContext::new(&tokens, prompt.len(), 64, output.len() - emitted, VOCAB);
            tree.reset(ctx.pending());
            let started = Instant::now();
            strategy.draft(&ctx, &mut tree).unwrap();
            timed += started.elapsed();
            done += 1;
            // Accept the drafted tokens that agree with the output, then one more.
            let mut node = 0;
            while let Some(child) = output
                .get(emitted)
                .and_then(|&t| tree.child_with_token(node, t))
            {
                node = child;
                tokens.push(output[emitted]);
                emitted += 1;
            }
            if emitted < output.len() {
                tokens.push(output[emitted]);
                emitted += 1;
            }
            black_box(tree.len());
        }
    }
    timed
}

fn drafting(c: &mut Criterion) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let reference = code_like(&mut rng, REFERENCE_TOKENS);
    let index = Arc::new(ReferenceIndex::new([&reference]));
    let sequences: Vec<_> = (0..16).map(|_| sequence(&mut rng, &reference)).collect();
    let mut group = c.benchmark_group("reference_draft_step_100k");
    let mut pld = ReferenceConfig::prompt_lookup();
    pld.references = true;
    for (name, config) in [
        ("suffix", ReferenceConfig::suffix()),
        ("suffix_chain", {
            let mut c = ReferenceConfig::suffix();
            c.tree = false;
            c
        }),
        ("suffix_cost_aware", {
            let mut c = ReferenceConfig::suffix();
            c.cost = Some(
                CostCurve::new(vec![(1, 1.0), (2, 1.25), (4, 1.7), (8, 2.64), (16, 7.48)]).unwrap(),
            );
            c
        }),
        ("llma", ReferenceConfig::llma()),
        ("pld_with_refs", pld),
    ] {
        let mut strategy = ReferenceStrategy::new(config, index.clone()).unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|steps| run_steps(&mut strategy, &sequences, steps))
        });
    }
    group.finish();
}

fn matching(c: &mut Criterion) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
    let reference = code_like(&mut rng, REFERENCE_TOKENS);
    let index = Arc::new(ReferenceIndex::new([&reference]));
    let (prompt, output) = sequence(&mut rng, &reference);
    let text: Vec<Token> = prompt.iter().chain(&output).copied().collect();
    let mut matcher = Matcher::new(index);
    c.bench_function("reference_matcher_push_100k", |b| {
        b.iter_custom(|pushes| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < pushes {
                matcher.reset();
                let take = (pushes - done).min(text.len() as u64) as usize;
                let started = Instant::now();
                for &t in &text[..take] {
                    matcher.push(t);
                }
                black_box(matcher.longest_match());
                timed += started.elapsed();
                done += take as u64;
            }
            timed
        })
    });
    c.bench_function("reference_index_build_100k", |b| {
        b.iter(|| black_box(ReferenceIndex::new([&reference]).automaton().states()))
    });
}

criterion_group!(benches, drafting, matching);
criterion_main!(benches);
