//! Exact output distributions, for testing that a strategy is lossless under sampling.
//!
//! [`enumerate_draws`] runs a sampled computation once per outcome of its random draws and
//! returns the exact probability of every result, with no statistical slack;
//! [`target_probability`] gives the probability plain sampling assigns to an output. A
//! strategy is lossless when the two agree for every output it can produce.

use std::collections::BTreeMap;

use ndarray::Array2;

use crate::decoder::DecodeConfig;
use crate::error::DecodeError;
use crate::model::LogitsModel;
use crate::process::History;
use crate::sampling::{Draw, Sampling};
use crate::tree::{Token, TokenTree};
use crate::verify::target_row;

/// A [`Draw`] that follows a script of choices, then takes the first possible index,
/// recording every choice with its alternatives: running once per script, backtracking like
/// a depth-first search, visits every outcome exactly once.
struct Enumerator {
    script: Vec<usize>,
    record: Vec<(usize, Vec<usize>)>,
    probability: f64,
    misuse: Option<&'static str>,
}

impl Draw for Enumerator {
    fn uniform(&mut self) -> f64 {
        self.misuse = Some("an enumerated computation drew a uniform number");
        0.5
    }

    fn categorical(&mut self, weights: &[f64]) -> usize {
        let options: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
        let Some(&first) = options.first() else {
            self.misuse = Some("an enumerated computation drew from no positive weight");
            return 0;
        };
        let choice = self.script.get(self.record.len()).copied().unwrap_or(first);
        self.probability *= weights[choice] / weights.iter().sum::<f64>();
        self.record.push((choice, options));
        choice
    }
}

/// The exact probability of every result of `run` over all outcomes of its draws, which must
/// all go through [`Draw::categorical`] (as verification and sampling do). `run` is called
/// once per outcome, so keep the number of draws small.
pub fn enumerate_draws<T: Ord>(
    mut run: impl FnMut(&mut dyn Draw) -> T,
) -> Result<BTreeMap<T, f64>, DecodeError> {
    let mut outcomes = BTreeMap::new();
    let mut script = Vec::new();
    loop {
        let mut draw = Enumerator {
            script,
            record: Vec::new(),
            probability: 1.0,
            misuse: None,
        };
        let result = run(&mut draw);
        if let Some(misuse) = draw.misuse {
            return Err(DecodeError::Contract(misuse));
        }
        *outcomes.entry(result).or_insert(0.0) += draw.probability;
        // Backtrack: the deepest choice with an untried alternative.
        let next = (0..draw.record.len()).rev().find_map(|i| {
            let (choice, options) = &draw.record[i];
            let k = options.iter().position(|o| o == choice)?;
            options.get(k + 1).map(|&c| (i, c))
        });
        let Some((i, choice)) = next else {
            return Ok(outcomes);
        };
        script = draw.record[..i].iter().map(|(c, _)| *c).collect();
        script.push(choice);
    }
}

/// The probability that plain sampling produces `output` after `prompt`: the product of the
/// target distribution's probabilities, each from a fresh forward of the whole context
/// (the model is reset first). [`target_probability_with`] for a whole configuration.
pub fn target_probability(
    model: &mut dyn LogitsModel,
    prompt: &[Token],
    output: &[Token],
    sampling: &Sampling,
) -> Result<f64, DecodeError> {
    let config = DecodeConfig::new(output.len()).with_sampling(*sampling);
    target_probability_with(model, prompt, output, &config)
}

/// Like [`target_probability`], with `config`'s whole target: its logits processors (each
/// row processed with its own history), its constraint's mask and its sampling rule. Stop
/// conditions are not applied.
pub fn target_probability_with(
    model: &mut dyn LogitsModel,
    prompt: &[Token],
    output: &[Token],
    config: &DecodeConfig,
) -> Result<f64, DecodeError> {
    let vocab = model.vocab_size();
    config.validate(vocab)?;
    let mut state = match config.constraint() {
        Some(c) => Some(c.start(prompt, vocab)?),
        None => None,
    };
    let mut probability = 1.0;
    let (mut probs, mut buf) = (Vec::new(), Vec::new());
    for (i, &token) in output.iter().enumerate() {
        let context: Vec<Token> = prompt.iter().chain(&output[..i]).copied().collect();
        model.reset()?;
        let mut tree = TokenTree::from_chain(&context)?;
        for node in 0..tree.len() - 1 {
            tree.set_needs_logits(node, false);
        }
        let mut logits = Array2::zeros((1, vocab));
        model.forward(&tree, logits.view_mut())?;
        let history = History::new(&context, &[], prompt.len());
        let row = target_row(
            config,
            &history,
            state.as_deref_mut(),
            logits.view(),
            0,
            &mut buf,
        )?;
        config
            .sampling()
            .distribution(row, &mut probs)
            .map_err(|e| e.at_row(0))?;
        probability *= probs.get(token as usize).copied().unwrap_or(0.0);
        if probability == 0.0 {
            break;
        }
        if let Some(state) = &mut state {
            state.advance(token)?;
        }
    }
    model.reset()?;
    Ok(probability)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_draws_are_enumerated_with_their_probabilities() {
        let out = enumerate_draws(|draw| {
            let a = draw.categorical(&[1.0, 3.0]);
            let b = draw.categorical(&[0.0, 1.0, 1.0]);
            (a, b)
        })
        .unwrap();
        let expected = [
            ((0, 1), 0.125),
            ((0, 2), 0.125),
            ((1, 1), 0.375),
            ((1, 2), 0.375),
        ];
        assert_eq!(out.len(), expected.len());
        for (key, p) in expected {
            assert!((out[&key] - p).abs() < 1e-12, "{key:?}");
        }
    }

    #[test]
    fn uniform_draws_and_empty_weights_are_errors() {
        assert!(enumerate_draws(|draw| draw.uniform() < 0.5).is_err());
        assert!(enumerate_draws(|draw| draw.categorical(&[0.0, 0.0])).is_err());
    }
}
