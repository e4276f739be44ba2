//! The main demo: every technique decodes the same prompts as plain greedy decoding, and the
//! table shows what each gains and that each produces exactly the greedy output.
//!
//! ```text
//! cargo run --release --example demo                             # embedded toy model
//! cargo run --release --example demo -- --model assets/pycoder-16m   # a real checkpoint
//! ```
//!
//! The toy model needs no files: a word-level 5-gram model of a small embedded Python file
//! (`examples/demo/corpus.py`), with four engine-computed Medusa-style heads of 90, 80, 70 and
//! 60% top-1 accuracy, and a simulated forward cost of a large model on a GPU: a fixed
//! `--fixed-us` per forward pass plus `--per-node-us` per tree node, so that a tree of 64
//! nodes costs about 1.6 plain steps. With `--model DIR` the same techniques run on a real
//! LLaMA checkpoint on this CPU (where a tree costs much more; see `cargo run --release
//! --example eval -- --cost-curve`), over the first cases of `--cases`.
//!
//! Columns: tau = generated tokens per forward pass; nodes/step = tree nodes per forward pass;
//! overhead = time outside the model per forward pass; speedup = greedy wall-clock time over
//! the technique's, measured in this run; identical = outputs equal to greedy's.

#[path = "common/eval_data.rs"]
mod eval_data;
#[path = "common/exit.rs"]
mod exit;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use decoding_core::{CostCurve, DecodeConfig, DecodeStats, LogitsModel, Token, generate};
use decoding_testkit::toy::{NgramTable, RecomputeModel, WindowLogits, WithCost, WithRolloutHeads};
use parallel_decoding::spec::{self, CaseInputs, SpecEnv};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

#[derive(Parser, Debug)]
#[command(about = "Decode with every technique and compare with plain greedy decoding")]
struct Args {
    /// A real model directory (config.json, model.safetensors, medusa_heads.safetensors)
    /// instead of the embedded toy model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// With --model: the eval cases to take prompts and references from.
    #[arg(long, default_value = "assets/eval/dev_eval.json")]
    cases: PathBuf,
    /// With --model: how many cases of each task to decode.
    #[arg(long, default_value_t = 2)]
    per_task: usize,
    /// With --model: threads per forward pass.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Tokens to generate per prompt (toy model; real cases bring their own).
    #[arg(long, default_value_t = 200)]
    max_new_tokens: usize,
    /// Toy model: fixed cost of a forward pass, in microseconds.
    #[arg(long, default_value_t = 2000)]
    fixed_us: u64,
    /// Toy model: cost per tree node, in microseconds.
    #[arg(long, default_value_t = 20)]
    per_node_us: u64,
}

/// One prompt: its tokens and the documents it may copy from.
struct Prompt {
    tokens: Vec<Token>,
    references: Vec<Vec<Token>>,
    max_new_tokens: usize,
}

/// The techniques, by strategy specification (see `parallel_decoding::spec`).
fn techniques(engine_heads: bool) -> Vec<(&'static str, String)> {
    let medusa = if engine_heads {
        "medusa:heads=engine:4"
    } else {
        "medusa"
    };
    // Lookahead's window cannot be cut, so in a composite every step would pay for all of it.
    let composite_sources = format!("reference+{medusa}");
    vec![
        ("greedy", "greedy".to_string()),
        ("jacobi", "jacobi:k=8".to_string()),
        ("lookahead", "lookahead:w=7,n=4,g=7".to_string()),
        ("reference", "reference".to_string()),
        ("medusa", medusa.to_string()),
        (
            "composite",
            format!("composite:sources={composite_sources},budget=fixed"),
        ),
        (
            "composite, cost-aware",
            format!("composite:sources={composite_sources},budget=cost,cost=auto"),
        ),
    ]
}

/// What one technique did over all prompts.
struct Run {
    stats: DecodeStats,
    wall: Duration,
    identical: usize,
}

fn main() -> std::process::ExitCode {
    exit::exit_code(run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    match &args.model {
        None => {
            let (mut model, prompts) = toy_model(args)?;
            println!(
                "toy model: word-level 5-gram of examples/demo/corpus.py, vocabulary {}, 4 \
                 engine heads; simulated cost {} us + {} us per node per forward pass",
                model.vocab_size(),
                args.fixed_us,
                args.per_node_us
            );
            compare(&mut model, &prompts, None, true)
        }
        Some(dir) => {
            let mut model = llama_cpu::Llama::load(dir)?.with_threads(args.threads);
            let set = eval_data::load_cases(&args.cases)?;
            let mut prompts = Vec::new();
            for task in ["completion", "edit"] {
                let cases = set.cases.iter().filter(|c| c.task == task);
                for case in cases.take(args.per_task) {
                    prompts.push(Prompt {
                        tokens: case.prompt_ids.clone(),
                        references: case.references.clone(),
                        max_new_tokens: case.max_new_tokens,
                    });
                }
            }
            println!(
                "model: {} ({} threads), {} cases of {}",
                dir.display(),
                args.threads,
                prompts.len(),
                args.cases.display()
            );
            compare(&mut model, &prompts, Some(dir), false)
        }
    }
}

/// Decodes every prompt with every technique and prints the table.
fn compare(
    model: &mut dyn LogitsModel,
    prompts: &[Prompt],
    model_dir: Option<&std::path::Path>,
    engine_heads: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let context: Vec<Token> = prompts[0]
        .tokens
        .iter()
        .copied()
        .cycle()
        .take(256)
        .collect();
    let curve = CostCurve::measure(model, &context, &[1, 2, 4, 8, 16, 32, 64], 15)?;
    println!(
        "measured cost of a forward pass by tree size (nodes:cost relative to 1 node): {curve:.2}\n"
    );
    let mut env = SpecEnv::new(model.vocab_size()).with_cost_curve(&curve);
    if let Some(dir) = model_dir {
        env = env.with_model_dir(dir);
    }
    println!(
        "{:<22} {:>6} {:>10} {:>12} {:>10} {:>8}  identical to greedy",
        "technique", "tau", "nodes/step", "overhead us", "wall ms", "speedup"
    );
    let mut greedy: Option<(Vec<Vec<Token>>, Duration)> = None;
    for (label, spec) in techniques(engine_heads) {
        let factory = spec::parse(&spec, &env)?;
        let mut run = Run {
            stats: DecodeStats::default(),
            wall: Duration::ZERO,
            identical: 0,
        };
        let mut outputs = Vec::new();
        for (i, prompt) in prompts.iter().enumerate() {
            let strategy = factory.build(&CaseInputs {
                prompt: &prompt.tokens,
                references: &prompt.references,
            })?;
            let config = DecodeConfig::new(prompt.max_new_tokens).with_eos([0]);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(i as u64);
            let started = Instant::now();
            let out = generate(model, strategy, &prompt.tokens, &config, &mut rng)?;
            run.wall += started.elapsed();
            run.stats.merge(&out.stats);
            if greedy.as_ref().is_none_or(|(g, _)| g[i] == out.tokens) {
                run.identical += 1;
            }
            outputs.push(out.tokens);
        }
        let baseline = greedy.get_or_insert((outputs, run.wall)).1;
        println!(
            "{label:<22} {:>6.2} {:>10.1} {:>12.1} {:>10.1} {:>7.2}x  {}/{}",
            run.stats.tau(),
            run.stats.draft_nodes_per_step(),
            run.stats.overhead_per_step().as_secs_f64() * 1e6,
            run.wall.as_secs_f64() * 1e3,
            baseline.as_secs_f64() / run.wall.as_secs_f64(),
            run.identical,
            prompts.len()
        );
    }
    Ok(())
}

/// The embedded toy model and its prompts.
fn toy_model(
    args: &Args,
) -> Result<(WithCost<impl LogitsModel>, Vec<Prompt>), Box<dyn std::error::Error>> {
    let corpus = include_str!("demo/corpus.py");
    let mut vocab = Vocabulary::default();
    let text = vocab.encode(corpus);
    // Prompts: openings of functions, two with the corpus as a reference document.
    let openings = [
        ("def fibonacci(n):\n", false),
        ("def count_lines(lines):\n    counts = ", false),
        ("class Store:\n    def __init__(self, name):\n", true),
        ("def merge_all(parts):\n    result = []\n", true),
    ];
    let prompts = openings
        .iter()
        .map(|&(opening, with_reference)| Prompt {
            tokens: vocab.encode(opening),
            references: if with_reference {
                vec![text.clone()]
            } else {
                Vec::new()
            },
            max_new_tokens: args.max_new_tokens,
        })
        .collect();
    let table = NgramTable::from_text(vocab.len(), 5, &text)?;
    let order = table.order();
    let logits = move |context: &[Token], out: &mut [f32]| {
        table.logits(&context[context.len().saturating_sub(order)..], out);
    };
    let base = RecomputeModel::new(vocab.len(), logits);
    let with_heads = WithRolloutHeads::new(base, vec![0.9, 0.8, 0.7, 0.6], 7)?;
    let model = WithCost::new(
        with_heads,
        Duration::from_micros(args.fixed_us),
        Duration::from_micros(args.per_node_us),
    );
    Ok((model, prompts))
}

/// Word-level tokens: runs of letters, digits and `_`, runs of spaces, and single other
/// characters. Token 0 is reserved (end of sequence).
#[derive(Default)]
struct Vocabulary {
    ids: std::collections::HashMap<String, Token>,
}

impl Vocabulary {
    fn len(&self) -> usize {
        self.ids.len() + 1
    }

    fn encode(&mut self, text: &str) -> Vec<Token> {
        let class = |c: char| {
            if c.is_alphanumeric() || c == '_' {
                0
            } else if c == ' ' {
                1
            } else {
                2
            }
        };
        let mut tokens = Vec::new();
        let mut word = String::new();
        for c in text.chars() {
            let same = word
                .chars()
                .last()
                .is_some_and(|p| class(p) == class(c) && class(c) != 2);
            if !same && !word.is_empty() {
                tokens.push(self.id(&word));
                word.clear();
            }
            word.push(c);
        }
        if !word.is_empty() {
            tokens.push(self.id(&word));
        }
        tokens
    }

    fn id(&mut self, word: &str) -> Token {
        let next = self.ids.len() as Token + 1;
        *self.ids.entry(word.to_string()).or_insert(next)
    }
}
