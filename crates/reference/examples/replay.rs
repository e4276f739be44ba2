//! Replays an eval set against its known greedy outputs: tau and tree sizes of a reference
//! drafter without running the real model.
//!
//! Under greedy decoding the accepted path depends only on the greedy continuation, so a
//! model that predicts the recorded greedy token on the recorded path (and anything elsewhere)
//! gives exactly the tau, nodes per step and acceptance of the real model, provided the real
//! model reproduces those outputs (the eval runner checks that). Wall-clock is estimated from
//! a cost per forward pass by tree size (the PyTorch measurements of the eval README).
//!
//! ```text
//! cargo run --release -p reference --example replay -- \
//!     ../shared/eval/dev_eval.json ../shared/eval/dev_greedy.json mode=suffix,max_nodes=16
//! ```

use std::collections::BTreeMap;
use std::error::Error;

use decoding_core::{DecodeConfig, Plain, Strategy, Token, generate};
use decoding_testkit::toy::RecomputeModel;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use reference::ReferenceStrategy;
use serde_json::Value;

#[path = "common/mod.rs"]
mod common;
use common::{curve, ids, parse_config};

#[derive(Default)]
struct Totals {
    cases: usize,
    identical: usize,
    generated: usize,
    passes: usize,
    nodes: usize,
    cost: f64,
    plain_cost: f64,
    lookup_us: f64,
}

impl Totals {
    fn line(&self, name: &str) -> String {
        format!(
            "{name:<12} cases {:>2} identical {:>2} tau {:.3} nodes/step {:.2} est.speedup {:.3} lookup {:.2}us/step",
            self.cases,
            self.identical,
            self.generated as f64 / self.passes as f64,
            self.nodes as f64 / self.passes as f64,
            self.plain_cost / self.cost,
            self.lookup_us / self.passes as f64,
        )
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cases_path, greedy_path, rest @ ..] = args.as_slice() else {
        return Err("usage: replay CASES.json GREEDY.json [key=value,...] [--verbose]".into());
    };
    let spec = rest.iter().find(|a| !a.starts_with("--")).map_or("", |s| s);
    let verbose = rest.iter().any(|a| a == "--verbose");
    let eval_curve = curve(
        rest.iter()
            .find_map(|a| a.strip_prefix("--curve="))
            .unwrap_or("llama"),
    )?;
    let cost = |nodes: usize| eval_curve.relative(nodes);
    let diag = rest.iter().any(|a| a == "--diag");
    let mut diagnosis = BTreeMap::new();
    let config = parse_config(spec)?;
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(cases_path)?)?;
    let greedy: Value = serde_json::from_str(&std::fs::read_to_string(greedy_path)?)?;
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    let cases = cases["cases"].as_array().ok_or("no cases")?;
    for case in cases {
        let id = case["id"].as_str().ok_or("case id")?;
        let prompt = ids(&case["prompt_ids"]);
        let refs: Vec<Vec<Token>> = case["references"]
            .as_array()
            .map(|a| a.iter().map(ids).collect())
            .unwrap_or_default();
        let expected = ids(&greedy[id]);
        let max_new = case["max_new_tokens"].as_u64().ok_or("max_new_tokens")? as usize;
        let full: Vec<Token> = prompt.iter().chain(&expected).copied().collect();
        let replay = |context: &[Token], out: &mut [f32]| {
            out.fill(0.0);
            let next = if context.len() < full.len() && full[..context.len()] == *context {
                full[context.len()]
            } else {
                1
            };
            out[next as usize] = 1.0;
        };
        let mut model = RecomputeModel::new(8192, replay);
        let decode = DecodeConfig::new(max_new).with_eos([0]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let strategy = ReferenceStrategy::with_documents(config.clone(), &refs)?;
        let out = generate(&mut model, strategy, &prompt, &decode, &mut rng)?;
        let plain_steps = expected.len();
        let _ = Plain.name();
        let looping = expected.len() >= 64 && {
            let tail = &expected[expected.len() - 32..];
            expected[..expected.len() - 32]
                .windows(32)
                .any(|w| w == tail)
        };
        let task = case["task"].as_str().unwrap_or("?").to_string();
        let lookup = out
            .metrics
            .iter()
            .find(|m| m.name == "lookup_us")
            .map_or(0.0, |m| m.value);
        for key in [
            task.clone(),
            format!("{task}/{}", if looping { "loop" } else { "noloop" }),
            "all".to_string(),
        ] {
            let t = totals.entry(key).or_default();
            t.cases += 1;
            t.identical += usize::from(out.tokens == expected);
            t.generated += out.stats.generated();
            t.passes += out.stats.forward_passes();
            t.nodes += out.stats.steps.iter().map(|s| s.draft_nodes).sum::<usize>();
            t.cost += out.stats.steps[1..]
                .iter()
                .map(|s| cost(s.draft_nodes))
                .sum::<f64>();
            t.plain_cost += plain_steps.saturating_sub(1) as f64;
            t.lookup_us += lookup * out.stats.forward_passes() as f64;
        }
        if diag {
            diagnose(&refs, &prompt, &expected, &out.stats, &mut diagnosis);
        }
        if verbose {
            println!(
                "{id:<20} tau {:.2} identical {} loop {looping}",
                out.stats.tau(),
                out.tokens == expected
            );
        }
    }
    println!("{config:?}");
    for ((what, bucket), (steps, sum)) in &diagnosis {
        println!("diag {what:<28} {bucket:>3}: steps {steps:>5} tokens {sum:>6}");
    }
    for (name, t) in &totals {
        println!("{}", t.line(name));
    }
    Ok(())
}

/// Per step: what was accepted against what the best single occurrence (with a matching
/// suffix) or any position of the sources would have given.
fn diagnose(
    refs: &[Vec<Token>],
    prompt: &[Token],
    expected: &[Token],
    stats: &decoding_core::DecodeStats,
    out: &mut BTreeMap<(String, usize), (usize, usize)>,
) {
    use reference::{Matcher, OccurrenceQuery, ReferenceIndex, Source};
    let index = std::sync::Arc::new(ReferenceIndex::new(refs));
    let full: Vec<Token> = prompt.iter().chain(expected).copied().collect();
    let mut done = 0; // tokens generated before this step
    let mut add = |what: &str, bucket: usize, tokens: usize| {
        let e = out.entry((what.to_string(), bucket)).or_insert((0, 0));
        e.0 += 1;
        e.1 += tokens;
    };
    for step in &stats.steps {
        if done == 0 {
            done += step.emitted;
            continue;
        }
        // Context: prompt and generated[..done]; the pending token is the last one.
        let ctx = &full[..prompt.len() + done];
        let future = &expected[done..];
        let mut m = Matcher::new(index.clone());
        m.extend(ctx);
        let mut occs = Vec::new();
        m.occurrences(
            &OccurrenceQuery {
                references: true,
                context: true,
                min_len: 1,
                max_occurrences: usize::MAX,
            },
            &mut occs,
        );
        let agree = |o: &reference::Occurrence| {
            (0..future.len())
                .take_while(|&d| m.continuation(o, d, true) == Some(future[d]))
                .count()
        };
        let best = occs
            .iter()
            .map(|o| (agree(o), o.match_len))
            .max()
            .unwrap_or((0, 0));
        let longest = m.longest_match();
        // Best among occurrences of the longest match only.
        let best_longest = occs
            .iter()
            .filter(|o| o.match_len == longest)
            .map(agree)
            .max()
            .unwrap_or(0);
        let any = {
            // Longest prefix of the future that occurs anywhere in refs or the context.
            let mut len = 0;
            while len < future.len() {
                let pat = &future[..=len];
                let found = refs
                    .iter()
                    .chain(std::iter::once(&ctx.to_vec()))
                    .any(|d| d.windows(pat.len()).any(|w| w == pat));
                if !found {
                    break;
                }
                len += 1;
            }
            len
        };
        let _ = Source::Context;
        let a = step.accepted;
        let cap = |x: usize| x.min(32);
        add("accepted", 0, a);
        add("best occurrence", 0, cap(best.0));
        add("best of longest match", 0, cap(best_longest));
        add("anywhere", 0, cap(any));
        let bucket = longest.min(8);
        add("accepted by longest", bucket, a);
        add("best-occ by longest", bucket, cap(best.0));
        if cap(best.0) > a {
            add("lost: best occ match len", best.1.min(8), cap(best.0) - a);
        }
        done += step.emitted;
    }
}
