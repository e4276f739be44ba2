//! Typical acceptance (Medusa paper, section 2.3.1): a LOSSY verification rule.
//!
//! At a node with target distribution `p` (the decode config's sampling rule: temperature,
//! top-k, top-p) a child `x` is accepted when
//!
//! ```text
//! p(x) > min(epsilon, delta * exp(-H(p)))      H(p) = -sum p ln p
//! ```
//!
//! The accepted path is the longest one whose every node passes (ties: the higher
//! likelihood `sum ln p`, then the lower node id), and the bonus token is drawn from `p` at
//! its end. Under greedy decoding `p` is one-hot, so only the argmax passes and the rule is
//! exactly greedy verification; under sampling the output is NOT distributed as the model's:
//! it accepts plausible tokens that plain sampling might not have drawn. Use it only when
//! speed matters more than fidelity to the model's distribution.

use decoding_core::{DecodeError, NodeId, Verifier};

use crate::error::MedusaError;

/// The parameters of typical acceptance (lossy). The paper's defaults are `epsilon = 0.09`
/// (the hard threshold) and `delta = 0.3` (the entropy-scaled threshold).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TypicalAcceptance {
    epsilon: f64,
    delta: f64,
}

impl Default for TypicalAcceptance {
    fn default() -> Self {
        Self {
            epsilon: 0.09,
            delta: 0.3,
        }
    }
}

impl TypicalAcceptance {
    /// Thresholds `epsilon` in (0, 1] and `delta` >= 0 (both finite).
    pub fn new(epsilon: f64, delta: f64) -> Result<Self, MedusaError> {
        if !(epsilon > 0.0 && epsilon <= 1.0) {
            return Err(MedusaError::config(format!(
                "typical acceptance epsilon must be in (0, 1], got {epsilon}"
            )));
        }
        if !(delta.is_finite() && delta >= 0.0) {
            return Err(MedusaError::config(format!(
                "typical acceptance delta must be finite and >= 0, got {delta}"
            )));
        }
        Ok(Self { epsilon, delta })
    }

    /// The hard threshold.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// The entropy-scaled threshold.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// The acceptance threshold for distribution `p`.
    pub fn threshold(&self, p: &[f64]) -> f64 {
        let entropy: f64 = p.iter().filter(|&&q| q > 0.0).map(|&q| -q * q.ln()).sum();
        self.epsilon.min(self.delta * (-entropy).exp())
    }

    /// Verifies the step's tree by typical acceptance and emits the accepted path; see the
    /// module docs. `stack` and `path` are reused between calls.
    pub(crate) fn verify(
        &self,
        verifier: &mut Verifier<'_>,
        stack: &mut Vec<(NodeId, f64)>,
        path: &mut Vec<NodeId>,
    ) -> Result<(), DecodeError> {
        let tree = verifier.tree();
        // (depth, likelihood, node) of the best end so far.
        let mut best = (0usize, 0.0f64, 0usize);
        stack.clear();
        stack.push((0, 0.0));
        while let Some((node, likelihood)) = stack.pop() {
            let depth = tree.depth(node);
            let better = depth > best.0
                || (depth == best.0
                    && (likelihood > best.1 || (likelihood == best.1 && node < best.2)));
            if better {
                best = (depth, likelihood, node);
            }
            if tree.children(node).all(|c| !tree.needs_logits(c)) {
                continue;
            }
            let p = verifier.distribution(node)?;
            let threshold = self.threshold(p);
            for child in tree.children(node).filter(|&c| tree.needs_logits(c)) {
                let pc = p[tree.token(child) as usize];
                if pc > threshold {
                    stack.push((child, likelihood + pc.ln()));
                }
            }
        }
        tree.path_to(best.2, path);
        verifier.accept(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decoding_core::{
        DecodeConfig, DraftContext, Sampling, StepFeedback, Strategy, Token, TokenTree,
        Verification, verify_step,
    };
    use ndarray::Array2;

    /// Typical acceptance as a strategy's verifier, for `verify_step`.
    struct Typical;

    impl Strategy for Typical {
        fn name(&self) -> &str {
            "typical"
        }
        fn begin(&mut self, _: &[Token], _: usize) -> Result<(), DecodeError> {
            Ok(())
        }
        fn draft(&mut self, _: &DraftContext<'_>, _: &mut TokenTree) -> Result<(), DecodeError> {
            Ok(())
        }
        fn observe(&mut self, _: &StepFeedback<'_>) -> Result<(), DecodeError> {
            Ok(())
        }
        fn verify(&mut self, verifier: &mut Verifier<'_>) -> Result<(), DecodeError> {
            TypicalAcceptance::default().verify(verifier, &mut Vec::new(), &mut Vec::new())
        }
    }

    fn verify(tree: &TokenTree, logits: &Array2<f32>, sampling: Sampling) -> Verification {
        let mut rng = <rand::rngs::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(3);
        let config = DecodeConfig::new(16).with_sampling(sampling);
        let root = [tree.root_token()];
        verify_step(
            &mut Typical,
            tree,
            logits.view(),
            &config,
            &root,
            1,
            &mut rng,
        )
        .unwrap()
        .verification
    }

    #[test]
    fn thresholds_follow_the_formula() {
        let t = TypicalAcceptance::default();
        assert!((t.threshold(&[1.0, 0.0]) - 0.09).abs() < 1e-12);
        let uniform = [0.25; 4];
        assert!((t.threshold(&uniform) - 0.3 * 0.25).abs() < 1e-12);
        assert!(TypicalAcceptance::new(0.0, 0.3).is_err());
        assert!(TypicalAcceptance::new(0.1, -1.0).is_err());
        assert!(TypicalAcceptance::new(0.1, f64::NAN).is_err());
    }

    #[test]
    fn greedy_typical_is_greedy_and_sampling_accepts_plausible_tokens() {
        // root 0 -> {1, 2}; 1 -> {3}. Root logits favour 2 slightly over 1.
        let tree = TokenTree::from_parents(&[0, 1, 2, 3], &[None, Some(0), Some(0), Some(1)], None)
            .unwrap();
        let mut logits = Array2::from_elem((4, 4), -10.0f32);
        logits[[0, 1]] = 1.0;
        logits[[0, 2]] = 1.1;
        logits[[1, 3]] = 5.0;
        logits[[2, 0]] = 5.0;
        logits[[3, 0]] = 5.0;
        let greedy = verify(&tree, &logits, Sampling::greedy());
        assert_eq!((greedy.path, greedy.bonus), (vec![0, 2], 0));
        // At T = 1 both 1 and 2 pass (p ~ 0.475, 0.525); the deeper path through 1 wins.
        let sampled = verify(&tree, &logits, Sampling::new(1.0, None, None).unwrap());
        assert_eq!(sampled.path, vec![0, 1, 3]);
    }
}
