//! How often early exits of the model agree with it, along its own greedy outputs on an eval
//! set: what the `draft` strategy's acceptance rests on, and whether Leviathan's p/q rule
//! (drafts sampled from the drafter) would accept more than exact verification of the
//! drafter's top tokens.
//!
//! ```text
//! cargo run --release --example draft_agreement -- --limit 20
//! ```
//!
//! For every generated position, with `p` the model's next-token distribution and `q` an
//! early exit's (temperature 1): `greedy` = the share where argmax q = argmax p (a greedy
//! draft's acceptance); `top-1` = mean p(argmax q) (a deterministic draft's acceptance under
//! sampling); `top-4` = mean of p over q's 4 likeliest tokens (a 4-child node of a
//! deterministic tree); `p/q` = mean sum_x min(p(x), q(x)) (a draft sampled from q, verified
//! by the p/q rule).

#[path = "common/eval_data.rs"]
mod eval_data;
#[path = "common/exit.rs"]
mod exit;

use clap::Parser;
use decoding_core::{LogitsModel, TokenTree};
use llama_cpu::Llama;
use ndarray::Array2;

#[derive(Parser, Debug)]
#[command(about = "Agreement of the model's early exits with the model along its greedy outputs")]
struct Args {
    /// Model directory.
    #[arg(long, default_value = "assets/pycoder-16m")]
    model: std::path::PathBuf,
    /// Eval cases.
    #[arg(long, default_value = "assets/eval/dev_eval.json")]
    cases: std::path::PathBuf,
    /// The model's greedy outputs on them.
    #[arg(long, default_value = "assets/eval/dev_greedy.json")]
    expected: std::path::PathBuf,
    /// Use only the first N cases.
    #[arg(long)]
    limit: Option<usize>,
}

/// Softmax of a logits row, in f64.
fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let e: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|x| x / total).collect()
}

/// Logits of every generated position of `prompt + generated` (the last one excluded).
fn logits(
    model: &mut Llama,
    prompt: &[u32],
    generated: &[u32],
) -> Result<Array2<f32>, Box<dyn std::error::Error>> {
    let mut context = prompt.to_vec();
    context.extend(&generated[..generated.len() - 1]);
    let mut tree = TokenTree::from_chain(&context)?;
    for node in 0..prompt.len() - 1 {
        tree.set_needs_logits(node, false);
    }
    model.reset()?;
    let mut out = Array2::zeros((tree.logits_rows(), model.vocab_size()));
    model.forward(&tree, out.view_mut())?;
    model.commit(&[])?;
    Ok(out)
}

fn main() -> std::process::ExitCode {
    exit::exit_code(run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut model = Llama::load(&args.model)?;
    let mut cases = eval_data::load_cases(&args.cases)?.cases;
    cases.truncate(args.limit.unwrap_or(usize::MAX));
    let expected = eval_data::load_expected(&args.expected)?;
    let layers = model.layers();
    // Per early exit: positions, greedy agreements, sums of top-1, top-4 and p/q acceptance.
    let mut totals = vec![(0usize, 0usize, 0.0f64, 0.0f64, 0.0f64); layers];
    for case in &cases {
        let generated = expected.get(&case.id).ok_or_else(|| {
            format!(
                "{}: no expected output for case {}",
                args.expected.display(),
                case.id
            )
        })?;
        if generated.len() < 2 {
            continue;
        }
        let full = logits(&mut model, &case.prompt_ids, generated)?;
        for (l, total) in totals.iter_mut().enumerate() {
            let mut exit = model.early_exit(l + 1)?;
            let drafted = logits(&mut exit, &case.prompt_ids, generated)?;
            for (p_row, q_row) in full.rows().into_iter().zip(drafted.rows()) {
                let (p, q) = (
                    softmax(p_row.as_slice().expect("contiguous")),
                    softmax(q_row.as_slice().expect("contiguous")),
                );
                let argmax = |v: &[f64]| {
                    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
                };
                let mut order: Vec<usize> = (0..q.len()).collect();
                order.sort_by(|&a, &b| q[b].total_cmp(&q[a]).then(a.cmp(&b)));
                total.0 += 1;
                total.1 += usize::from(argmax(&p) == order[0]);
                total.2 += p[order[0]];
                total.3 += order[..4].iter().map(|&t| p[t]).sum::<f64>();
                total.4 += p.iter().zip(&q).map(|(a, b)| a.min(*b)).sum::<f64>();
            }
        }
        eprintln!("{} done", case.id);
    }
    println!("layers | positions | greedy | top-1 | top-4 |   p/q");
    for (l, &(n, agree, top1, top4, pq)) in totals.iter().enumerate() {
        let n_f = n.max(1) as f64;
        println!(
            "{:>6} | {n:>9} | {:.3}  | {:.3} | {:.3} | {:.3}",
            l + 1,
            agree as f64 / n_f,
            top1 / n_f,
            top4 / n_f,
            pq / n_f
        );
    }
    Ok(())
}
