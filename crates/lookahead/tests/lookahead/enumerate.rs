//! Exact enumeration: under sampling, lookahead's output distribution is the target
//! distribution, computed token by token from the model, with no statistical slack.

use std::collections::BTreeMap;

use crate::common::{config, prompt, toy_kind};
use decoding_core::{
    DecodeConfig, Draw, LogitsModel, Plain, Sampling, Strategy, Token, TokenTree, generate,
};
use lookahead::Lookahead;
use ndarray::Array2;
use proptest::prelude::*;

/// A [`Draw`] that follows a script of choices and then always takes the first possible
/// index, recording every choice with its alternatives: running a generation once per
/// script, backtracking like a depth-first search, visits every outcome exactly once.
struct Enumerator {
    script: Vec<usize>,
    record: Vec<(usize, Vec<usize>)>,
    probability: f64,
}

impl Draw for Enumerator {
    fn uniform(&mut self) -> f64 {
        panic!("the verifier draws through categorical only")
    }

    fn categorical(&mut self, weights: &[f64]) -> usize {
        let positive: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
        let total: f64 = weights.iter().sum();
        let choice = self
            .script
            .get(self.record.len())
            .copied()
            .unwrap_or(positive[0]);
        self.probability *= weights[choice] / total;
        self.record.push((choice, positive));
        choice
    }
}

/// The probability of every output of `run`, summed over all draw outcomes.
fn enumerate(mut run: impl FnMut(&mut dyn Draw) -> Vec<Token>) -> BTreeMap<Vec<Token>, f64> {
    let mut outcomes = BTreeMap::new();
    let mut script = Vec::new();
    loop {
        let mut draw = Enumerator {
            script: script.clone(),
            record: Vec::new(),
            probability: 1.0,
        };
        let out = run(&mut draw);
        *outcomes.entry(out).or_insert(0.0) += draw.probability;
        let next = (0..draw.record.len()).rev().find_map(|i| {
            let (choice, options) = &draw.record[i];
            let k = options.iter().position(|o| o == choice)?;
            options.get(k + 1).map(|&c| (i, c))
        });
        let Some((i, choice)) = next else { break };
        script = draw.record[..i].iter().map(|(c, _)| *c).collect();
        script.push(choice);
    }
    outcomes
}

/// The target probability of `output` after `prompt`: the product of the sampling
/// distribution's probabilities, each from a fresh forward of the whole context.
fn target_probability(
    model: &mut dyn LogitsModel,
    prompt: &[Token],
    output: &[Token],
    sampling: &Sampling,
) -> f64 {
    let vocab = model.vocab_size();
    let mut probability = 1.0;
    let mut probs = Vec::new();
    for i in 0..output.len() {
        let context: Vec<Token> = prompt.iter().chain(&output[..i]).copied().collect();
        model.reset().unwrap();
        let tree = TokenTree::from_chain(&context).unwrap();
        let mut logits = Array2::zeros((tree.logits_rows(), vocab));
        model.forward(&tree, logits.view_mut()).unwrap();
        let last = logits.row(context.len() - 1).to_vec();
        sampling.distribution(&last, &mut probs).unwrap();
        probability *= probs[output[i] as usize];
    }
    probability
}

fn check<S: Strategy>(
    model: &mut dyn LogitsModel,
    prompt: &[Token],
    config: &DecodeConfig,
    mut strategy: impl FnMut() -> S,
) -> Result<(), TestCaseError> {
    let outcomes = enumerate(|draw| {
        generate(&mut *model, strategy(), prompt, config, draw)
            .unwrap()
            .tokens
    });
    let total: f64 = outcomes.values().sum();
    prop_assert!((total - 1.0).abs() < 1e-9, "total mass {}", total);
    for (output, p) in &outcomes {
        let want = target_probability(model, prompt, output, config.sampling());
        prop_assert!((p - want).abs() < 1e-12, "{:?}: {} vs {}", output, p, want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sampling_keeps_the_target_distribution(
        kind in toy_kind(), vocab in 2usize..4, prompt in prompt(4), la in config(),
        max_new in 1usize..5, temperature in 0.3f32..2.0,
        top_k in prop::option::of(1usize..4), top_p in prop::option::of(0.3f32..1.0),
        eos in prop::option::of(0u32..4),
    ) {
        let mut model = kind.build(vocab);
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let sampling = Sampling::new(temperature, top_k, top_p).unwrap();
        let mut config = DecodeConfig::new(max_new)
            .with_sampling(sampling)
            .with_max_nodes(la.max_nodes().max(1));
        if let Some(eos) = eos {
            config = config.with_eos([eos % vocab as Token]);
        }
        check(&mut *model, &prompt, &config, || Plain)?;
        check(&mut *model, &prompt, &config, || Lookahead::new(la))?;
    }
}
