//! The eval runner: decodes every case of an eval file with one strategy on a real model and
//! reports tau, nodes per step, overhead per step and wall-clock speed per task.
//!
//! ```text
//! cargo run --release --example eval -- --strategy greedy \
//!     --expected assets/eval/dev_greedy.json --out /tmp/greedy.json
//! cargo run --release --example eval -- --cost-curve
//! ```
//!
//! `--model DIR` holds `config.json`, `model.safetensors` (and optionally the Medusa heads a
//! strategy may load); `--cases FILE` is an eval file as described in
//! `assets/eval/README.md`. Decoding stops at the case's `max_new_tokens` or at EOS id 0.
//! `--out FILE` receives one JSON record per case (see `common/eval_data.rs`). With
//! `--expected FILE` every output is compared with the expected one, and for a greedy run
//! each difference is explained by the logit gap at the first differing token. `--expected`
//! also takes the `--out` file of an earlier run: a sampled run (`--temperature`, `--top-k`,
//! `--top-p`, `--min-p`, the penalties `--repetition-penalty`, `--frequency-penalty`,
//! `--presence-penalty`, `--seed`) is then checked against plain sampling with the same
//! seed, which every strategy must reproduce token for token. `--logprobs N` records each
//! generated token's logprob and its N most likely alternatives in the `--out` file
//! (`--logprobs-mode processed|sampled`: before or after temperature and truncation).
//!
//! ```text
//! cargo run --release --example eval -- --strategy greedy --temperature 0.7 --seed 7 \
//!     --logprobs 3 --out /tmp/plain.json
//! cargo run --release --example eval -- --strategy reference --temperature 0.7 --seed 7 \
//!     --logprobs 3 --expected /tmp/plain.json --out /tmp/reference.json
//! ```
//!
//! A bad option, file or case ends the run with a message naming it (exit code 1).
//!
//! The table splits every task into *looping* and *non-looping* cases: an output loops when
//! its last 32 generated tokens already occur, verbatim, earlier in the generated output
//! (ending before they start; see `common/eval_data.rs`). On the dev set's reference outputs
//! that marks the 26 of 70 cases `assets/eval/README.md` mentions. Columns: tau = generated
//! tokens / forward passes (prefill included); nodes/st = drafted tree nodes (root included)
//! per forward pass; overhead us = time outside the model per forward pass; decode ms = model
//! time per forward pass after the prefill; prefill ms = model time of the first pass;
//! wall tok/s = generated tokens per wall-clock second, prefill included.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use decoding_core::{LogitsModel, Requirements, TokenTree, generate_streaming};
use ndarray::Array2;
use parallel_decoding::spec::{self, CaseInputs, SpecEnv, StrategyFactory};

use common::engine::{self, EngineModel};
use common::eval_data::{self, CaseResult, CpuTimes};
use common::run_args::RunArgs;
use common::{cost, cpu, exit, report};

#[derive(Parser, Debug)]
#[command(about = "Decode an eval set with one strategy and report tau, overhead and speed")]
struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Instead of decoding, print the cost of one forward over k = 1, 2, 4, ..., 128 nodes
    /// on top of a 512-token cache, as a ratio to k = 1.
    #[arg(long)]
    cost_curve: bool,
}

fn main() -> ExitCode {
    exit::exit_code(run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let engine = args.run.load_engine()?;
    let mut model = engine.model(Requirements::NONE)?;
    let cases = args.run.cases()?;
    if args.cost_curve {
        return cost_curve(&mut *model, &cases[0].prompt_ids);
    }
    args.run.check_decoding(engine.vocab_size())?;
    let expected = args.run.expected()?;
    let measured = args.run.measure_cost(&mut model, &cases[0].prompt_ids)?;
    let mut env = SpecEnv::new(engine.vocab_size()).with_model_dir(&args.run.model);
    if let Some(llama) = engine.llama() {
        env = env.with_model(llama);
    }
    if let Some(curve) = &measured {
        env = env.with_cost_curve(curve);
    }
    let factory = spec::parse(&args.run.strategy, &env)
        .map_err(|e| format!("--strategy {}: {e}", args.run.strategy))?;
    let needs = engine::needs(factory.as_ref(), &cases[0])?;
    if needs != Requirements::NONE {
        model = engine.model(needs)?;
    }
    println!("strategy: {}", factory.describe());

    let mut results = Vec::with_capacity(cases.len());
    for (index, case) in cases.iter().enumerate() {
        let result = decode_case(
            &mut model,
            factory.as_ref(),
            args,
            index,
            case,
            expected.as_ref(),
        )
        .map_err(|e| format!("case {}: {e}", case.id))?;
        results.push(result);
    }

    println!();
    report::print_table(&results);
    let metrics = report::mean_metrics(&results);
    if !metrics.is_empty() {
        println!("\nstrategy metrics (mean over cases):");
        for (name, value) in metrics {
            println!("  {name:<32} {value:.4}");
        }
    }
    if let Some(path) = &args.run.out {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Decodes case number `index`, prints a line about it, and explains a greedy difference
/// from the expected output.
fn decode_case(
    model: &mut Box<dyn EngineModel + '_>,
    factory: &dyn StrategyFactory,
    args: &Args,
    index: usize,
    case: &eval_data::Case,
    expected: Option<&BTreeMap<String, Vec<u32>>>,
) -> Result<CaseResult, Box<dyn std::error::Error>> {
    let strategy = factory.build(&CaseInputs {
        prompt: &case.prompt_ids,
        references: &case.references,
    })?;
    let config = args.run.decode_config(case.max_new_tokens);
    let mut rng = args.run.case_rng(index);
    let started = Instant::now();
    let cpu_start = cpu::process_cpu_time();
    let mut cpu_after_prefill = None;
    let out = generate_streaming(
        model,
        strategy,
        &case.prompt_ids,
        &config,
        &mut rng,
        &mut |_| {
            if cpu_after_prefill.is_none() {
                cpu_after_prefill = cpu::process_cpu_time();
            }
        },
    )?;
    let wall = started.elapsed();
    let cpu_end = cpu::process_cpu_time();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let reference = expected.and_then(|e| e.get(&case.id));
    if expected.is_some() && reference.is_none() {
        eprintln!("warning: no expected output for {}", case.id);
    }
    let cpu = CpuTimes {
        total_ms: cpu_start.zip(cpu_end).map(|(a, b)| ms(b - a)),
        decode_ms: cpu_after_prefill.zip(cpu_end).map(|(a, b)| ms(b - a)),
    };
    let result = CaseResult::new(case, out, Some(ms(wall)), cpu, reference.map(Vec::as_slice));
    eprintln!(
        "{:<20} {:>4} tokens  tau {:.3}  {:>8.1} ms{}",
        result.id,
        result.generated.len(),
        result.generated.len() as f64 / result.forward_passes.max(1) as f64,
        result.wall_ms,
        match result.identical {
            Some(true) => "  identical",
            Some(false) => "  DIFFERS",
            None => "",
        }
    );
    if let Some(reference) = reference
        && result.identical == Some(false)
        && args.run.is_plain_greedy()
    {
        explain_difference(&mut **model, case, &result.generated, reference)?;
    }
    Ok(result)
}

/// Prints where a greedy output first departs from the expected one, and by how much the
/// model's logit of the expected token trails its argmax there.
fn explain_difference(
    model: &mut dyn LogitsModel,
    case: &eval_data::Case,
    generated: &[u32],
    expected: &[u32],
) -> Result<(), Box<dyn std::error::Error>> {
    let at = generated
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(generated.len().min(expected.len()));
    let (Some(&ours), Some(&theirs)) = (generated.get(at), expected.get(at)) else {
        eprintln!(
            "  {}: one output is a prefix of the other (at {at})",
            case.id
        );
        return Ok(());
    };
    let mut context = case.prompt_ids.clone();
    context.extend(&generated[..at]);
    let mut tree = TokenTree::from_chain(&context)?;
    for node in 0..tree.len() - 1 {
        tree.set_needs_logits(node, false);
    }
    model.reset()?;
    let mut logits = Array2::zeros((1, model.vocab_size()));
    model.forward(&tree, logits.view_mut())?;
    let row = logits.row(0);
    eprintln!(
        "  {}: first difference at token {at}: generated {ours} (logit {:.6}), expected {theirs} \
         (logit {:.6}), gap {:.3e}",
        case.id,
        row[ours as usize],
        row[theirs as usize],
        row[ours as usize] - row[theirs as usize]
    );
    Ok(())
}

/// Times one forward over trees of k = 1, 2, 4, ..., 128 nodes on top of a 512-token cache:
/// a chain, and a bushy tree (every node has up to 4 children, filled breadth first).
fn cost_curve(
    model: &mut dyn EngineModel,
    prompt: &[u32],
) -> Result<(), Box<dyn std::error::Error>> {
    const CACHE: usize = 512;
    let context: Vec<u32> = prompt.iter().copied().cycle().take(CACHE).collect();
    model.reset()?;
    let mut prefill = TokenTree::from_chain(&context)?;
    for node in 0..prefill.len() {
        prefill.set_needs_logits(node, false);
    }
    let mut none = Array2::zeros((0, model.vocab_size()));
    model.forward(&prefill, none.view_mut())?;
    model.commit(&(0..CACHE).collect::<Vec<_>>())?;

    let ks = [1usize, 2, 4, 8, 16, 32, 64, 128];
    // Per k and shape: the best wall-clock time of one forward, and the mean CPU time (all
    // threads) per forward over at least a second of repetitions.
    let mut table: BTreeMap<usize, [(f64, f64); 2]> = BTreeMap::new();
    for (shape, name) in [(0, "chain"), (1, "bushy")] {
        for &k in &ks {
            let tree = if shape == 0 {
                TokenTree::from_chain(&context[..k])?
            } else {
                bushy_tree(&context, k, 4)?
            };
            let mut logits = Array2::zeros((tree.logits_rows(), model.vocab_size()));
            // A tree the engine refuses (llama.cpp: more branches than its sequence ids) is
            // reported and left out; the contract leaves the cache as it was.
            let (best, cpu) = match cost::time_calls(|| model.forward(&tree, logits.view_mut())) {
                Ok(times) => times,
                Err(error) => {
                    eprintln!("{name} k={k}: not measured: {error}");
                    (f64::NAN, f64::NAN)
                }
            };
            model.truncate(CACHE)?;
            table.entry(k).or_default()[shape] = (best, cpu);
            if best.is_finite() {
                eprintln!("{name} k={k}: best {best:.3} ms, cpu {cpu:.3} ms per forward");
            }
        }
    }
    println!(
        "forward over a {CACHE}-token cache, {} threads: best wall-clock ms of one forward, and \
         mean CPU ms (all threads) per forward",
        model.threads()
    );
    println!(
        "{:>4} | {:>9} {:>6} {:>9} {:>6} | {:>9} {:>6} {:>9} {:>6}",
        "k", "chain ms", "ratio", "bushy ms", "ratio", "chain cpu", "ratio", "bushy cpu", "ratio"
    );
    let [(chain1, chain1_cpu), (bushy1, bushy1_cpu)] = table[&1];
    // "-" for a tree that was not measured.
    let cell = |v: f64, width: usize, digits: usize| {
        if v.is_finite() {
            format!("{v:>width$.digits$}")
        } else {
            format!("{:>width$}", "-")
        }
    };
    for (k, [(chain, chain_cpu), (bushy, bushy_cpu)]) in &table {
        println!(
            "{k:>4} | {} {} {} {} | {} {} {} {}",
            cell(*chain, 9, 3),
            cell(chain / chain1, 6, 2),
            cell(*bushy, 9, 3),
            cell(bushy / bushy1, 6, 2),
            cell(*chain_cpu, 9, 3),
            cell(chain_cpu / chain1_cpu, 6, 2),
            cell(*bushy_cpu, 9, 3),
            cell(bushy_cpu / bushy1_cpu, 6, 2),
        );
    }
    Ok(())
}

/// A tree of `k` nodes where each node gets up to `fanout` children, breadth first, with
/// tokens taken from `pool` (distinct among siblings).
fn bushy_tree(
    pool: &[u32],
    k: usize,
    fanout: usize,
) -> Result<TokenTree, Box<dyn std::error::Error>> {
    let mut tree = TokenTree::new(pool[0]);
    let mut parent = 0;
    while tree.len() < k {
        for child in 0..fanout {
            if tree.len() == k {
                break;
            }
            tree.push(parent, 1 + (parent * fanout + child) as u32)?;
        }
        parent += 1;
    }
    Ok(tree)
}
