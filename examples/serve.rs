//! The serving example: decodes an eval set with C sequences in flight on the batched CPU
//! model ([`decode_batch`] over [`llama_cpu::BatchLlama`]), checks the outputs, and compares
//! throughput with C = 1 measured in the same run.
//!
//! ```text
//! cargo run --release --example serve -- --strategy greedy --concurrency 8 --threads 1 \
//!     --expected assets/eval/dev_greedy.json --out /tmp/serve.json
//! ```
//!
//! Every sequence has its own strategy (built by the `--strategy` specification, as in the
//! eval runner), its own KV cache and its own stop conditions; sequences join as slots free
//! up and leave when they finish, and each forward pass evaluates the trees of all the
//! sequences in flight at once, so the weights are read once per step for all of them.
//! The output of every sequence is what decoding it alone gives, bit for bit.
//!
//! A round decodes all cases once per concurrency level: with one sequence in flight, then
//! with each C asked for (the same loop and model; only how many sequences share a forward
//! pass differs). `--rounds R` runs R
//! rounds, which evens out the load of a shared machine. Throughput is generated tokens per
//! second of wall-clock time and per second of process CPU time (all threads), over all
//! rounds. `--threads 1` gives the cleanest ratio on a small machine.
//!
//! `--concurrency 1,4,8` runs several levels; `--against SPEC` runs a second strategy at every
//! level of every round too (interleaved), so that two node budgets compare in one run: a
//! cost-aware strategy (`reference:cost=auto`, `composite` with `--measure-cost`) sizes each
//! sequence's tree on the per-sequence cost curve of a batch of B sequences
//! ([`decoding_core::CostCurve::per_sequence`]), so its share shrinks as the batch grows;
//! a fixed budget drafts the same tree whatever the batch. `--max-total-nodes N` caps the
//! nodes of one batched forward (each sequence in flight gets an equal share) and
//! `--speculate-up-to B` turns speculation off while more than B sequences are in flight
//! ([`decoding_core::BatchOptions`]). The sampling, penalty and logprobs options are the
//! eval runner's.
//!
//! `--batch-curve` instead prints what one batched forward costs by the number of sequences
//! in it (plain decoding, one node per sequence): the most a server can gain by batching on
//! this machine, before prefill and drafting.
//!
//! `--out FILE` receives the per-case results of the last run with C in flight, in the eval
//! runner's format (`common/eval_data.rs`). For a sequence in a batch, `model_ms` is the
//! time of the forward passes it took part in (shared with the sequences beside it),
//! `wall_ms` is that plus its own overhead (its time in flight, the other sequences'
//! drafting left out), and the CPU times are absent (the process's CPU time cannot be split
//! between sequences). The per-task table printed from them reads the same way: `decode ms`
//! and `prefill ms` are times of whole batched passes (other sequences' prefills included),
//! and `wall tok/s` is the speed of one sequence; the server's throughput follows it.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use decoding_core::{
    BatchLogitsModel, BatchOptions, BatchRequest, BatchStats, Requirements, TokenTree,
    decode_batch_with,
};
use ndarray::Array2;
use parallel_decoding::spec::{self, CaseInputs, SpecEnv, StrategyFactory};

use common::engine;
use common::eval_data::{Case, CaseResult, CpuTimes};
use common::run_args::RunArgs;
use common::{cost, cpu, exit, report};

#[derive(Parser, Debug)]
#[command(
    about = "Decode an eval set with C sequences in flight and compare throughput with C = 1"
)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Sequences in flight: one level or several (`1,4,8`); C = 1 always runs too, as the
    /// baseline.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    concurrency: Vec<usize>,
    /// A second strategy specification, run at every level of every round beside
    /// `--strategy` (interleaved), to compare two budgets in one run: for instance
    /// `reference:cost=auto` (trees sized on the per-sequence cost curve of the batch) against
    /// `reference` (a fixed budget).
    #[arg(long)]
    against: Option<String>,
    /// At most this many tree nodes per batched forward pass over all sequences (each of the
    /// B sequences in flight gets an equal share).
    #[arg(long)]
    max_total_nodes: Option<usize>,
    /// Speculate only while at most this many sequences are in flight.
    #[arg(long)]
    speculate_up_to: Option<usize>,
    /// Rounds of (C = 1, C = concurrency) runs.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Instead of decoding, print the cost of one forward over B = 1, 2, 4, 8, 16 sequences
    /// of one node each, every sequence on a 512-token cache.
    #[arg(long)]
    batch_curve: bool,
}

/// What every request of a run shares.
struct Settings<'a> {
    run: &'a RunArgs,
    options: BatchOptions,
    expected: Option<&'a BTreeMap<String, Vec<u32>>>,
}

/// One run over all cases at one concurrency.
struct Run {
    results: Vec<CaseResult>,
    stats: BatchStats,
    wall: Duration,
    cpu: Option<Duration>,
}

/// Totals of the runs at one concurrency.
#[derive(Default)]
struct Totals {
    runs: usize,
    tokens: usize,
    /// Forward passes of the batched model.
    forwards: usize,
    /// Forward passes summed over sequences (a batched pass counts once per sequence in it).
    sequence_forwards: usize,
    wall: Duration,
    cpu: Option<Duration>,
    identical: Option<(usize, usize)>,
}

impl Totals {
    fn add(&mut self, run: &Run) {
        self.runs += 1;
        self.tokens += run.stats.tokens;
        self.forwards += run.stats.forward_passes;
        self.sequence_forwards += run.results.iter().map(|r| r.forward_passes).sum::<usize>();
        self.wall += run.wall;
        self.cpu = match (self.runs, self.cpu, run.cpu) {
            (1, _, cpu) => cpu,
            (_, Some(total), Some(cpu)) => Some(total + cpu),
            _ => None,
        };
        for r in &run.results {
            if let Some(same) = r.identical {
                let (n, of) = self.identical.get_or_insert((0, 0));
                *n += usize::from(same);
                *of += 1;
            }
        }
    }

    fn per_wall_second(&self) -> f64 {
        self.tokens as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn per_cpu_second(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| self.tokens as f64 / cpu.as_secs_f64().max(1e-9))
    }
}

fn main() -> ExitCode {
    exit::exit_code(run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.concurrency.contains(&0) || args.rounds == 0 {
        return Err("--concurrency and --rounds must be at least 1".into());
    }
    if args.max_total_nodes == Some(0) {
        return Err("--max-total-nodes must be at least 1".into());
    }
    let threads = args.run.threads();
    let engine = args.run.load_engine()?;
    let cases = args.run.cases()?;
    let measured = args
        .run
        .measure_cost(&mut engine.model(Requirements::NONE)?, &cases[0].prompt_ids)?;
    if args.batch_curve {
        let mut batched = engine.batch(Requirements::NONE, BATCH_CURVE_SIZES[4])?;
        return batch_curve(&mut *batched, &cases[0].prompt_ids);
    }
    args.run.check_decoding(engine.vocab_size())?;
    let expected = args.run.expected()?;
    let mut env = SpecEnv::new(engine.vocab_size()).with_model_dir(&args.run.model);
    if let Some(llama) = engine.llama() {
        env = env.with_model(llama);
    }
    if let Some(curve) = &measured {
        env = env.with_cost_curve(curve);
    }
    let mut factories = Vec::new();
    for (flag, text) in [
        ("--strategy", Some(&args.run.strategy)),
        ("--against", args.against.as_ref()),
    ] {
        if let Some(text) = text {
            let factory = spec::parse(text, &env).map_err(|e| format!("{flag} {text}: {e}"))?;
            println!("strategy {}: {}", factories.len() + 1, factory.describe());
            factories.push(factory);
        }
    }
    let mut needs = Requirements::NONE;
    for factory in &factories {
        needs = needs.union(engine::needs(factory.as_ref(), &cases[0])?);
    }
    let mut levels = args.concurrency.clone();
    levels.push(1);
    levels.sort_unstable();
    levels.dedup();
    let top = *levels.last().expect("1 is a level");
    let mut batched = engine.batch(needs, top)?;
    let settings = Settings {
        run: &args.run,
        options: BatchOptions::new(1)
            .with_max_total_nodes(args.max_total_nodes)
            .with_speculate_up_to(args.speculate_up_to),
        expected: expected.as_ref(),
    };

    let mut totals: BTreeMap<(usize, usize), Totals> = BTreeMap::new();
    let mut last = Vec::new();
    for round in 1..=args.rounds {
        for &concurrency in &levels {
            for (which, factory) in factories.iter().enumerate() {
                let run = serve(
                    &mut *batched,
                    &cases,
                    factory.as_ref(),
                    &settings,
                    concurrency,
                )?;
                let differ: Vec<&str> = run
                    .results
                    .iter()
                    .filter(|r| r.identical == Some(false))
                    .map(|r| r.id.as_str())
                    .collect();
                eprintln!(
                    "round {round}, strategy {}, C = {concurrency}: {} tokens in {:.2} s wall, \
                     {} CPU{}",
                    which + 1,
                    run.stats.tokens,
                    run.wall.as_secs_f64(),
                    run.cpu
                        .map_or("?".to_string(), |c| format!("{:.2} s", c.as_secs_f64())),
                    if differ.is_empty() {
                        String::new()
                    } else {
                        format!("; differ from expected: {}", differ.join(" "))
                    }
                );
                totals.entry((which, concurrency)).or_default().add(&run);
                if concurrency == top && which == 0 {
                    last = run.results;
                }
            }
        }
    }

    println!();
    report::print_table(&last);
    let metrics = report::mean_metrics(&last);
    if !metrics.is_empty() {
        println!("\nstrategy metrics (mean over cases):");
        for (name, value) in metrics {
            println!("  {name:<32} {value:.4}");
        }
    }
    print_throughput(&totals, threads, args.rounds);
    if let Some(path) = &args.run.out {
        std::fs::write(path, serde_json::to_string_pretty(&last)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Decodes every case with `concurrency` sequences in flight.
fn serve(
    model: &mut dyn BatchLogitsModel,
    cases: &[Case],
    factory: &dyn StrategyFactory,
    settings: &Settings<'_>,
    concurrency: usize,
) -> Result<Run, Box<dyn std::error::Error>> {
    let requests = cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let strategy = factory
                .build(&CaseInputs {
                    prompt: &case.prompt_ids,
                    references: &case.references,
                })
                .map_err(|e| format!("case {}: {e}", case.id))?;
            Ok(BatchRequest {
                prompt: case.prompt_ids.clone(),
                strategy,
                config: settings.run.decode_config(case.max_new_tokens),
                // The eval runner's per-case streams.
                draw: Box::new(settings.run.case_rng(index)),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let options = BatchOptions {
        concurrency,
        ..settings.options
    };
    let (cpu_start, started) = (cpu::process_cpu_time(), Instant::now());
    let (outputs, stats) = decode_batch_with(model, requests, &options)?;
    let wall = started.elapsed();
    let cpu = cpu_start.zip(cpu::process_cpu_time()).map(|(a, b)| b - a);
    let mut results = Vec::with_capacity(cases.len());
    for (case, out) in cases.iter().zip(outputs) {
        let out = out.map_err(|e| format!("case {}: {e}", case.id))?;
        let expected = settings.expected.and_then(|e| e.get(&case.id));
        let times = CpuTimes::default();
        results.push(CaseResult::new(
            case,
            out,
            None,
            times,
            expected.map(Vec::as_slice),
        ));
    }
    Ok(Run {
        results,
        stats,
        wall,
        cpu,
    })
}

/// Prints the throughput of each strategy at each concurrency, the ratio of each level to
/// C = 1, and (with `--against`) of the first strategy to the second at each level.
fn print_throughput(totals: &BTreeMap<(usize, usize), Totals>, threads: usize, rounds: usize) {
    println!(
        "\nthroughput ({rounds} round(s), {threads} thread(s) per forward; seqs/fwd = sequences \
         per batched forward pass; x C=1 = tokens per wall second against C = 1):"
    );
    println!(
        "{:>5} {:>4} {:>8} {:>8} {:>8} {:>6} {:>9} {:>12} {:>7} {:>9} {:>12} {:>10}",
        "strat",
        "C",
        "forwards",
        "seqs/fwd",
        "tokens",
        "tau",
        "wall s",
        "tok/s wall",
        "x C=1",
        "CPU s",
        "tok/s CPU",
        "identical"
    );
    for (&(which, c), t) in totals {
        let cpu = t
            .cpu
            .map_or("?".to_string(), |c| format!("{:.2}", c.as_secs_f64()));
        let per_cpu = t
            .per_cpu_second()
            .map_or("?".to_string(), |v| format!("{v:.1}"));
        let identical = t
            .identical
            .map_or("-".to_string(), |(n, of)| format!("{n}/{of}"));
        let one = totals
            .get(&(which, 1))
            .map_or(f64::NAN, Totals::per_wall_second);
        println!(
            "{:>5} {c:>4} {:>8} {:>8.2} {:>8} {:>6.3} {:>9.2} {:>12.1} {:>6.2}x {cpu:>9} \
             {per_cpu:>12} {identical:>10}",
            which + 1,
            t.forwards / t.runs,
            t.sequence_forwards as f64 / t.forwards.max(1) as f64,
            t.tokens / t.runs,
            t.tokens as f64 / t.sequence_forwards.max(1) as f64,
            t.wall.as_secs_f64(),
            t.per_wall_second(),
            t.per_wall_second() / one,
        );
    }
    for (&(_, c), first) in totals.range((0, 0)..(1, 0)) {
        if let Some(second) = totals.get(&(1, c)) {
            let cpu = first
                .per_cpu_second()
                .zip(second.per_cpu_second())
                .map_or("?".to_string(), |(a, b)| format!("{:.2}x", a / b));
            println!(
                "C = {c}: strategy 1 against strategy 2: {:.2}x tokens per wall second, {cpu} \
                 tokens per CPU second",
                first.per_wall_second() / second.per_wall_second()
            );
        }
    }
}

/// The batch sizes `--batch-curve` times.
const BATCH_CURVE_SIZES: [usize; 5] = [1, 2, 4, 8, 16];

/// Times one forward over B = 1, 2, 4, 8, 16 sequences of one node each (plain decoding),
/// every sequence on a 512-token cache: the best wall-clock time and the mean CPU time per
/// forward over at least a second of repetitions, and both per sequence.
fn batch_curve(
    model: &mut dyn BatchLogitsModel,
    prompt: &[u32],
) -> Result<(), Box<dyn std::error::Error>> {
    const CACHE: usize = 512;
    let context: Vec<u32> = prompt.iter().copied().cycle().take(CACHE).collect();
    let mut prefill = TokenTree::from_chain(&context)?;
    for node in 0..prefill.len() {
        prefill.set_needs_logits(node, false);
    }
    let sizes = BATCH_CURVE_SIZES;
    let mut sequences = Vec::new();
    for _ in 0..sizes[sizes.len() - 1] {
        let seq = model.add_sequence()?;
        model.forward_batch(
            &[(seq, &prefill)],
            Array2::zeros((0, model.vocab_size())).view_mut(),
        )?;
        model.commit(seq, &(0..CACHE).collect::<Vec<_>>())?;
        sequences.push(seq);
    }
    let next = TokenTree::new(context[0]);
    println!(
        "one forward over B sequences of one node each, {CACHE}-token cache each: best \
         wall-clock ms, mean CPU ms (all threads), and both per sequence"
    );
    println!(
        "{:>3} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "B", "wall ms", "CPU ms", "wall/seq", "CPU/seq", "speedup"
    );
    let mut single = None;
    for &b in &sizes {
        let items: Vec<_> = sequences[..b].iter().map(|&seq| (seq, &next)).collect();
        let mut logits = Array2::zeros((b, model.vocab_size()));
        let (best, cpu) = cost::time_calls(|| model.forward_batch(&items, logits.view_mut()))?;
        let per_sequence = cpu / b as f64;
        let base = *single.get_or_insert(per_sequence);
        println!(
            "{b:>3} {best:>9.3} {cpu:>9.3} {:>9.3} {per_sequence:>9.3} {:>8.2}x",
            best / b as f64,
            base / per_sequence
        );
        // Drop the uncommitted node (the cache stays at CACHE tokens).
        for &(seq, _) in &items {
            model.commit(seq, &[])?;
        }
    }
    Ok(())
}
