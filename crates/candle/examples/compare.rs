//! candle against llama-cpu on this CPU, interleaved in one process: plain greedy decoding
//! speed over the first cases of an eval set, and the forward cost by tree size (a chain of
//! k = 1 .. 64 nodes on a 512-token cache).
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p decoding-candle --example compare -- \
//!     [--model assets/pycoder-16m] [--cases assets/eval/dev_eval.json] [--limit 8] [--rounds 3]
//! ```
//!
//! Both models run on one thread (`RAYON_NUM_THREADS=1` keeps candle's matmuls from
//! splitting their work for a second thread that the pool does not have). Every
//! measurement alternates the two models and keeps the best of `--rounds` rounds, so the
//! ratios come from the same minutes of a shared machine.

use std::time::{Duration, Instant};

use decoding_candle::CandleLlama;
use decoding_core::{DecodeConfig, LogitsModel, Plain, TokenTree, generate};
use ndarray::Array2;
use rand::SeedableRng;

type Error = Box<dyn std::error::Error>;

/// A prompt and its token budget.
type Case = (Vec<u32>, usize);

struct Options {
    model: String,
    cases: String,
    limit: usize,
    rounds: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        model: "assets/pycoder-16m".into(),
        cases: "assets/eval/dev_eval.json".into(),
        limit: 8,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => options.model = value,
            "--cases" => options.cases = value,
            "--limit" => options.limit = value.parse().map_err(|e| format!("--limit: {e}"))?,
            "--rounds" => options.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

/// The prompts and token budgets of the first `limit` cases of an eval file.
fn cases(path: &str, limit: usize) -> Result<Vec<Case>, Error> {
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let cases = file["cases"].as_array().ok_or("no `cases` array")?;
    cases
        .iter()
        .take(limit)
        .map(|case| {
            let prompt = serde_json::from_value(case["prompt_ids"].clone())?;
            let budget = case["max_new_tokens"].as_u64().ok_or("no max_new_tokens")? as usize;
            Ok((prompt, budget))
        })
        .collect()
}

/// Decodes every case greedily; returns the wall-clock time and the outputs.
fn decode(model: &mut dyn LogitsModel, cases: &[Case]) -> Result<(Duration, Vec<Vec<u32>>), Error> {
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
    let started = Instant::now();
    let mut outputs = Vec::with_capacity(cases.len());
    for (prompt, budget) in cases {
        model.reset()?;
        let config = DecodeConfig::new(*budget).with_eos([0]);
        outputs.push(generate(&mut *model, Plain, prompt, &config, &mut rng)?.tokens);
    }
    Ok((started.elapsed(), outputs))
}

/// Best wall-clock milliseconds of one forward over a `k`-node chain on the committed
/// context (truncated back after each call), over `reps` calls.
fn forward_ms(
    model: &mut dyn LogitsModel,
    chain: &TokenTree,
    reps: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let committed = model.committed_len();
    let mut logits = Array2::zeros((chain.logits_rows(), model.vocab_size()));
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let started = Instant::now();
        model.forward(chain, logits.view_mut())?;
        best = best.min(started.elapsed().as_secs_f64() * 1e3);
        model.truncate(committed)?;
    }
    Ok(best)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let mut candle = CandleLlama::load(&options.model)?.with_threads(1)?;
    let mut cpu = llama_cpu::Llama::load(&options.model)?.with_threads(1);
    let cases = cases(&options.cases, options.limit)?;
    println!(
        "RAYON_NUM_THREADS={}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "(unset)".into())
    );

    // Plain greedy decoding, interleaved rounds, best of each.
    let (mut best_candle, mut best_cpu) = (Duration::MAX, Duration::MAX);
    let (mut tokens, mut same) = (0, 0);
    for round in 0..options.rounds {
        let (t_candle, out_candle) = decode(&mut candle, &cases)?;
        let (t_cpu, out_cpu) = decode(&mut cpu, &cases)?;
        eprintln!(
            "round {round}: candle {:.0} ms, llama-cpu {:.0} ms",
            t_candle.as_secs_f64() * 1e3,
            t_cpu.as_secs_f64() * 1e3
        );
        best_candle = best_candle.min(t_candle);
        best_cpu = best_cpu.min(t_cpu);
        tokens = out_candle.iter().map(Vec::len).sum();
        same = out_candle
            .iter()
            .zip(&out_cpu)
            .filter(|(a, b)| a == b)
            .count();
    }
    let per_token = |t: Duration| t.as_secs_f64() * 1e3 / tokens as f64;
    println!(
        "plain greedy decoding, {} cases, {tokens} tokens (prefill included), best of {} \
         rounds:",
        cases.len(),
        options.rounds
    );
    println!(
        "  candle    {:>8.3} ms/token  {:>7.1} tokens/s",
        per_token(best_candle),
        1e3 / per_token(best_candle)
    );
    println!(
        "  llama-cpu {:>8.3} ms/token  {:>7.1} tokens/s",
        per_token(best_cpu),
        1e3 / per_token(best_cpu)
    );
    println!(
        "  candle / llama-cpu time: {:.2}x; identical outputs: {same} of {}",
        best_candle.as_secs_f64() / best_cpu.as_secs_f64(),
        cases.len()
    );

    // The cost curve on a 512-token cache.
    const CACHE: usize = 512;
    let context: Vec<u32> = cases[0].0.iter().copied().cycle().take(CACHE).collect();
    let mut prefill = TokenTree::from_chain(&context)?;
    for node in 0..prefill.len() {
        prefill.set_needs_logits(node, false);
    }
    for model in [&mut candle as &mut dyn LogitsModel, &mut cpu] {
        model.reset()?;
        model.forward(&prefill, Array2::zeros((0, model.vocab_size())).view_mut())?;
        model.commit(&(0..CACHE).collect::<Vec<_>>())?;
    }
    let ks = [1usize, 2, 4, 8, 16, 32, 64];
    let mut table = Vec::new();
    for &k in &ks {
        let chain = TokenTree::from_chain(&context[..k])?;
        let reps = (64 / k).clamp(3, 20);
        let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..options.rounds {
            a = a.min(forward_ms(&mut candle, &chain, reps)?);
            b = b.min(forward_ms(&mut cpu, &chain, reps)?);
        }
        table.push((k, a, b));
    }
    println!("\nforward over a {CACHE}-token cache, chain of k nodes, best wall-clock ms:");
    println!(
        "{:>4} | {:>9} {:>6} | {:>9} {:>6} | {:>13}",
        "k", "candle", "ratio", "llama-cpu", "ratio", "candle/cpu"
    );
    let (_, a1, b1) = table[0];
    for (k, a, b) in table {
        println!(
            "{k:>4} | {a:>9.3} {:>6.2} | {b:>9.3} {:>6.2} | {:>13.2}",
            a / a1,
            b / b1,
            a / b
        );
    }
    Ok(())
}
