//! Per-step overhead of lookahead decoding (and Jacobi, and plain decoding for scale),
//! excluding the model: drafting (window fill, candidate lookup and extension, tree build),
//! then verification and learning (argmax of the window's top level, pool updates).
//!
//! The model is a toy n-gram model over a vocabulary of 8192 tokens (pycoder-16m's size),
//! trained on a synthetic text with repeats so the pool gets hits; its forward passes and
//! commits run outside the timed regions. One iteration is one decoding step:
//!
//! * `propose`: `Decoder::propose` (the strategy's `draft` and the decoder's checks);
//! * `advance`: `Decoder::advance` (verification, emission, the strategy's `observe`);
//! * `step`: both.
//!
//! ```text
//! cargo bench --bench lookahead_overhead
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use decoding_testkit::toy::NgramModel;
use ndarray::Array2;
use parallel_decoding::decoding_core::{
    DecodeConfig, Decoder, LogitsModel, NoExtras, Plain, Strategy, Token, TreeSupport,
};
use parallel_decoding::jacobi::{Jacobi, JacobiConfig};
use parallel_decoding::lookahead::{Lookahead, LookaheadConfig};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

const VOCAB: usize = 8192;

/// A pseudo-random text of 4000 tokens with repeated phrases, as source code has.
fn text() -> Vec<Token> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let phrases: Vec<Vec<Token>> = (0..40)
        .map(|_| {
            let len = 3 + (next() % 12) as usize;
            (0..len).map(|_| (next() % VOCAB as u64) as Token).collect()
        })
        .collect();
    let mut text = Vec::new();
    while text.len() < 4000 {
        if next() % 3 == 0 {
            text.push((next() % VOCAB as u64) as Token);
        } else {
            text.extend_from_slice(&phrases[(next() % phrases.len() as u64) as usize]);
        }
    }
    text
}

/// Which part of a step is timed.
#[derive(Clone, Copy)]
enum Part {
    Propose,
    Advance,
    Step,
}

/// Runs `iters` decoding steps (restarting sequences as they finish) and returns the time
/// spent in `part`, the model excluded.
fn run<S: Strategy>(
    model: &mut NgramModel,
    prompts: &[Vec<Token>],
    make: &dyn Fn() -> S,
    config: &DecodeConfig,
    part: Part,
    iters: u64,
) -> Duration {
    let mut timed = Duration::ZERO;
    let mut draw = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut done = 0;
    let mut case = 0;
    let mut buffer = Vec::new();
    while done < iters {
        let mut decoder = Decoder::new(make(), config.clone());
        model.reset().unwrap();
        let prompt = &prompts[case % prompts.len()];
        case += 1;
        decoder
            .start(prompt, VOCAB, TreeSupport::Trees, None)
            .unwrap();
        while !decoder.is_finished() && done < iters {
            let started = Instant::now();
            let tree = decoder.propose().unwrap();
            let proposed = started.elapsed();
            let rows = tree.logits_rows();
            buffer.resize(rows * VOCAB, 0.0);
            let mut logits =
                Array2::from_shape_vec((rows, VOCAB), std::mem::take(&mut buffer)).unwrap();
            model.forward(tree, logits.view_mut()).unwrap();
            let started = Instant::now();
            let outcome = decoder
                .advance(logits.view(), &mut NoExtras, &mut draw)
                .unwrap();
            let advanced = started.elapsed();
            let path = black_box(outcome.commit_path.to_vec());
            model.commit(&path).unwrap();
            buffer = logits.into_raw_vec_and_offset().0;
            timed += match part {
                Part::Propose => proposed,
                Part::Advance => advanced,
                Part::Step => proposed + advanced,
            };
            done += 1;
        }
    }
    timed
}

fn bench_strategy<S: Strategy>(
    c: &mut Criterion,
    name: &str,
    make: &dyn Fn() -> S,
    max_nodes: usize,
) {
    let text = text();
    let mut model = NgramModel::from_text(VOCAB, 4, &text).unwrap();
    let prompts: Vec<Vec<Token>> = (0..8)
        .map(|i| text[i * 400..i * 400 + 300].to_vec())
        .collect();
    let config = DecodeConfig::new(128).with_max_nodes(max_nodes);
    let mut group = c.benchmark_group(name);
    for (label, part) in [
        ("propose", Part::Propose),
        ("advance", Part::Advance),
        ("step", Part::Step),
    ] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| run(&mut model, &prompts, make, &config, part, iters))
        });
    }
    group.finish();
}

fn overhead(c: &mut Criterion) {
    bench_strategy(c, "plain", &|| Plain, 1);
    bench_strategy(
        c,
        "jacobi-k8",
        &|| Jacobi::new(JacobiConfig::new(8)).unwrap(),
        9,
    );
    for (w, n, g) in [(15, 5, 15), (7, 5, 7), (5, 3, 5)] {
        let config = LookaheadConfig::new(w, n, g);
        for prompt_pool in [false, true] {
            let config = config.with_prompt_pool(prompt_pool);
            let name = format!(
                "lookahead-{w}-{n}-{g}{}",
                if prompt_pool { "-prompt" } else { "" }
            );
            bench_strategy(
                c,
                &name,
                &|| Lookahead::new(config).unwrap(),
                config.max_nodes(),
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = overhead
}
criterion_main!(benches);
