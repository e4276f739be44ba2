//! Decodes a prompt with the real model and a strategy, streaming the text as it is verified.
//!
//! ```text
//! cargo run --release --features text --example generate -- "def fibonacci(n):"
//! cargo run --release --features text --example generate -- --strategy greedy --max-new-tokens 200 \
//!     --temperature 0.8 --top-p 0.95 --seed 7 "import numpy as np"
//! ```
//!
//! `--model DIR` holds `config.json`, `model.safetensors` and `tokenizer.json` (HF tokenizers
//! format). Statistics (tau, nodes per step, speed) go to stderr.

#[path = "common/exit.rs"]
mod exit;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use decoding_core::{DecodeConfig, LogitsModel, Sampling, generate_streaming};
use llama_cpu::Llama;
use parallel_decoding::spec::{self, CaseInputs, SpecEnv};
use rand::SeedableRng;
use tokenizers::Tokenizer;

#[derive(Parser, Debug)]
#[command(about = "Decode a prompt with a strategy and stream the text")]
struct Args {
    /// The prompt text.
    prompt: String,
    /// Model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long, default_value = "assets/pycoder-16m")]
    model: PathBuf,
    /// Strategy specification, such as `greedy`.
    #[arg(long, default_value = "greedy")]
    strategy: String,
    /// Tokens to generate at most (decoding also stops at EOS id 0).
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long)]
    top_p: Option<f32>,
    /// Top-k sampling.
    #[arg(long)]
    top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads per forward pass (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::process::ExitCode {
    exit::exit_code(run(&Args::parse()).map_err(|e| e as Box<dyn std::error::Error>))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut model = Llama::load(&args.model)?.with_threads(threads);
    let tokenizer = Tokenizer::from_file(args.model.join("tokenizer.json"))?;
    let prompt: Vec<u32> = tokenizer
        .encode(args.prompt.as_str(), false)?
        .get_ids()
        .to_vec();

    let env = SpecEnv::new(model.vocab_size())
        .with_model_dir(&args.model)
        .with_model(&model);
    let factory = spec::parse(&args.strategy, &env)?;
    let strategy = factory.build(&CaseInputs {
        prompt: &prompt,
        references: &[],
    })?;
    let config = DecodeConfig::new(args.max_new_tokens)
        .with_eos([0])
        .with_sampling(Sampling::new(args.temperature, args.top_k, args.top_p)?);
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(args.seed);

    print!("{}", args.prompt);
    std::io::stdout().flush()?;
    // Decode the whole output each time and print what is new, holding back a trailing
    // partial UTF-8 character (byte-level BPE splits characters across tokens).
    let mut generated: Vec<u32> = Vec::new();
    let mut printed = 0;
    let started = Instant::now();
    let out = generate_streaming(
        &mut model,
        strategy,
        &prompt,
        &config,
        &mut rng,
        &mut |tokens| {
            generated.extend(tokens.iter().filter(|&&t| t != 0));
            if let Ok(text) = tokenizer.decode(&generated, false) {
                let text = text.trim_end_matches('\u{FFFD}');
                if text.len() > printed && text.is_char_boundary(printed) {
                    print!("{}", &text[printed..]);
                    let _ = std::io::stdout().flush();
                    printed = text.len();
                }
            }
        },
    )?;
    let wall = started.elapsed().as_secs_f64();
    println!();
    eprintln!(
        "[{}: {} tokens, {} forward passes, tau {:.3}, {:.2} nodes/step, {:.1} tokens/s, stop: {:?}]",
        factory.describe(),
        out.tokens.len(),
        out.stats.forward_passes(),
        out.stats.tau(),
        out.stats.draft_nodes_per_step(),
        out.tokens.len() as f64 / wall,
        out.stop
    );
    Ok(())
}
