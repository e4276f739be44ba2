//! A/B wall-clock comparison on the real model: for every case, plain greedy decoding and
//! each reference configuration run back to back in the same process (order rotated from
//! case to case), so that the speed ratios are measured under the same machine load.
//!
//! The prompt is prefilled once per case and kept in the model's cache (the model is
//! truncated back to it between runs); timings cover the decoding steps after the prefill:
//! model time plus overhead. tau counts the prefill pass, as the eval runner does.
//!
//! ```text
//! cargo run --release -p reference --example ab -- --model assets/pycoder-16m \
//!     --cases assets/eval/dev_eval.json --expected assets/eval/dev_greedy.json \
//!     mode=suffix mode=pld mode=llma
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Duration;

use decoding_core::{
    DecodeConfig, LogitsModel, ModelError, NodeId, Plain, Strategy, Token, TokenTree, TreeSupport,
    generate,
};
use llama_cpu::Llama;
use ndarray::ArrayViewMut2;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use reference::ReferenceStrategy;
use serde_json::Value;

#[path = "common/mod.rs"]
mod common;
use common::{ids, parse_config};

/// A model whose prompt prefix stays cached across runs: `reset` truncates back to it, and
/// the first forward after a reset skips the prefix nodes the decoder sends again.
struct PromptCache {
    inner: Llama,
    prefix: Vec<Token>,
    skip: usize,
    offset: usize,
}

impl PromptCache {
    fn prefill(&mut self, prefix: &[Token]) -> Result<(), Box<dyn Error>> {
        self.inner.reset()?;
        self.prefix = prefix.to_vec();
        let mut tree = TokenTree::from_chain(prefix)?;
        for node in 0..tree.len() {
            tree.set_needs_logits(node, false);
        }
        let mut none = ndarray::Array2::zeros((0, self.inner.vocab_size()));
        self.inner.forward(&tree, none.view_mut())?;
        self.inner.commit(&(0..prefix.len()).collect::<Vec<_>>())?;
        Ok(())
    }
}

impl LogitsModel for PromptCache {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn committed_len(&self) -> usize {
        self.inner.committed_len()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let skip = std::mem::take(&mut self.skip);
        self.offset = skip;
        if skip == 0 {
            return self.inner.forward(tree, logits);
        }
        if tree.tokens()[..skip] != self.prefix[..] || (0..skip).any(|n| tree.needs_logits(n)) {
            return Err(ModelError::msg(
                "the first tree does not start with the cached prompt",
            ));
        }
        let tokens = &tree.tokens()[skip..];
        let parents: Vec<Option<NodeId>> = (skip..tree.len())
            .map(|n| tree.parent(n).filter(|&p| p >= skip).map(|p| p - skip))
            .collect();
        let flags: Vec<bool> = (skip..tree.len()).map(|n| tree.needs_logits(n)).collect();
        let sub = TokenTree::from_parents(tokens, &parents, Some(&flags))?;
        self.inner.forward(&sub, logits)
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        let offset = std::mem::take(&mut self.offset);
        if offset == 0 {
            return self.inner.commit(path);
        }
        let path: Vec<NodeId> = path[offset.min(path.len())..]
            .iter()
            .map(|&n| n - offset)
            .collect();
        self.inner.commit(&path)
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.inner.truncate(len)
    }

    fn reset(&mut self) -> Result<(), ModelError> {
        self.inner.truncate(self.prefix.len())?;
        self.skip = self.prefix.len();
        Ok(())
    }

    fn tree_support(&self) -> TreeSupport {
        self.inner.tree_support()
    }

    fn max_context(&self) -> Option<usize> {
        self.inner.max_context()
    }
}

#[derive(Default)]
struct Totals {
    cases: usize,
    identical: usize,
    generated: usize,
    passes: usize,
    nodes: usize,
    time: Duration,
    overhead: Duration,
    plain_time: Duration,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (mut model_dir, mut cases_path, mut expected_path) = (
        "assets/pycoder-16m".to_string(),
        "assets/eval/dev_eval.json".to_string(),
        "assets/eval/dev_greedy.json".to_string(),
    );
    let (mut threads, mut stride, mut specs) = (None, 1usize, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => model_dir = args.next().ok_or("--model DIR")?,
            "--cases" => cases_path = args.next().ok_or("--cases FILE")?,
            "--expected" => expected_path = args.next().ok_or("--expected FILE")?,
            "--threads" => threads = Some(args.next().ok_or("--threads N")?.parse()?),
            "--stride" => stride = args.next().ok_or("--stride N")?.parse()?,
            spec => specs.push(spec.to_string()),
        }
    }
    let configs = specs
        .iter()
        .map(|s| parse_config(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut llama = Llama::load(&model_dir)?;
    if let Some(t) = threads {
        llama = llama.with_threads(t);
    }
    let mut model = PromptCache {
        inner: llama,
        prefix: Vec::new(),
        skip: 0,
        offset: 0,
    };
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(&cases_path)?)?;
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&expected_path)?)?;
    let cases = cases["cases"].as_array().ok_or("no cases")?;
    // totals[(task, strategy index)]; index 0 is plain greedy.
    let mut totals: BTreeMap<(String, usize), Totals> = BTreeMap::new();
    for (index, case) in cases.iter().enumerate().step_by(stride) {
        let id = case["id"].as_str().ok_or("case id")?;
        let task = case["task"].as_str().unwrap_or("?").to_string();
        let prompt = ids(&case["prompt_ids"]);
        let refs: Vec<Vec<Token>> = case["references"]
            .as_array()
            .map(|a| a.iter().map(ids).collect())
            .unwrap_or_default();
        let want = ids(&expected[id]);
        let decode = DecodeConfig::new(case["max_new_tokens"].as_u64().unwrap_or(128) as usize)
            .with_eos([0]);
        model.prefill(&prompt[..prompt.len() - 1])?;
        let n = configs.len() + 1;
        let mut plain_time = Duration::ZERO;
        let mut results = vec![None; n];
        for turn in 0..n {
            let which = (turn + index) % n;
            let strategy: Box<dyn Strategy> = match which {
                0 => Box::new(Plain),
                i => Box::new(ReferenceStrategy::with_documents(
                    configs[i - 1].clone(),
                    &refs,
                )?),
            };
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
            let out = generate(&mut model, strategy, &prompt, &decode, &mut rng)?;
            let steps = &out.stats.steps[1..];
            let time: Duration = steps.iter().map(|s| s.model_time + s.overhead_time).sum();
            let overhead: Duration = steps.iter().map(|s| s.overhead_time).sum();
            if which == 0 {
                plain_time = time;
            }
            results[which] = Some((out, time, overhead));
        }
        let mut line = format!("{id:<20}");
        for (which, result) in results.into_iter().enumerate() {
            let (out, time, overhead) = result.ok_or("missing run")?;
            let t = totals.entry((task.clone(), which)).or_default();
            t.cases += 1;
            t.identical += usize::from(out.tokens == want);
            t.generated += out.stats.generated();
            t.passes += out.stats.forward_passes();
            t.nodes += out.stats.steps.iter().map(|s| s.draft_nodes).sum::<usize>();
            t.time += time;
            t.overhead += overhead;
            t.plain_time += plain_time;
            line += &format!(
                "  tau {:.2} x{:.2}{}",
                out.stats.tau(),
                plain_time.as_secs_f64() / time.as_secs_f64(),
                if out.tokens == want { "" } else { " DIFFERS" }
            );
        }
        eprintln!("{line}");
    }
    let name = |which: usize| {
        if which == 0 {
            "greedy".to_string()
        } else {
            specs[which - 1].clone()
        }
    };
    println!(
        "{:<10} {:<40} {:>5} {:>9} {:>6} {:>9} {:>12} {:>8}",
        "task", "strategy", "cases", "identical", "tau", "nodes/st", "overhead us", "speedup"
    );
    for ((task, which), t) in &totals {
        println!(
            "{task:<10} {:<40} {:>5} {:>9} {:>6.3} {:>9.2} {:>12.1} {:>8.3}",
            name(*which),
            t.cases,
            t.identical,
            t.generated as f64 / t.passes as f64,
            t.nodes as f64 / t.passes as f64,
            t.overhead.as_secs_f64() * 1e6 / (t.passes - t.cases).max(1) as f64,
            t.plain_time.as_secs_f64() / t.time.as_secs_f64(),
        );
    }
    Ok(())
}
