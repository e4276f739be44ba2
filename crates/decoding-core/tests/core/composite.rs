//! Composition: output equals plain decoding, the budget holds, every source sees a faithful
//! view of the step through its own tree.

use std::cell::RefCell;
use std::rc::Rc;

use crate::common::{Oracle, RandomDrafts};
use decoding_core::{
    Composite, CostCurve, DecodeConfig, DecodeError, DraftContext, NodeBudget, Plain, StepFeedback,
    Strategy, Token, TokenTree, generate,
};
use decoding_testkit::toy::{HashModel, WithCost};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

fn rng() -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(0)
}

/// Wraps a source and checks, at every step, what the composite tells it: each logits row is
/// either NaN (the node was cut) or exactly the model's logits for the node's path, and the
/// accepted path is a run of emitted tokens in its own tree.
struct Checked {
    inner: RandomDrafts,
    model: HashModel,
    failures: Rc<RefCell<Vec<String>>>,
    tokens_before: Vec<Token>,
}

impl Strategy for Checked {
    fn name(&self) -> &str {
        "checked"
    }
    fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.inner.begin(prompt, vocab_size)
    }
    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        self.tokens_before = ctx.tokens[..ctx.tokens.len() - 1].to_vec();
        self.inner.draft(ctx, tree)
    }
    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        let tree = feedback.tree;
        let vocab = feedback.logits.ncols();
        for node in tree.logits_nodes() {
            let row = feedback.logits.row(tree.logits_row(node).unwrap());
            if row.iter().all(|x| x.is_nan()) {
                continue;
            }
            let mut context = self.tokens_before.clone();
            context.extend(tree.path_tokens(node));
            let mut expected = vec![0.0; vocab];
            self.model.logits_of_context(&context, &mut expected);
            if row.to_vec() != expected {
                self.failures
                    .borrow_mut()
                    .push(format!("wrong logits at node {node}"));
            }
        }
        let path = &feedback.verification.path;
        let accepted: Vec<Token> = path[1..].iter().map(|&n| tree.token(n)).collect();
        let mut expected_tail = accepted.clone();
        expected_tail.push(feedback.verification.bonus);
        let after = &feedback.tokens[self.tokens_before.len() + 1..];
        if !after.starts_with(&expected_tail[..expected_tail.len().min(after.len())]) {
            self.failures
                .borrow_mut()
                .push("path does not match emitted tokens".into());
        }
        self.inner.observe(feedback)
    }
    fn prunable(&self) -> bool {
        self.inner.prunable
    }
    fn draft_scores(&self) -> Option<&[f32]> {
        self.inner.draft_scores()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn composite_equals_plain_and_respects_the_budget(
        seed in any::<u64>(), seeds in prop::collection::vec((any::<u64>(), any::<bool>()), 1..4),
        prompt in prop::collection::vec(0u32..3, 1..6), max_new in 1usize..30,
        nodes in 1usize..20, cost_aware in any::<bool>(),
    ) {
        let vocab = 3;
        let failures = Rc::new(RefCell::new(Vec::new()));
        let model = HashModel::new(vocab, seed);
        let sources: Vec<Box<dyn Strategy>> = seeds
            .iter()
            .map(|&(s, prunable)| {
                let mut inner = RandomDrafts::new(s, 12);
                inner.prunable = prunable;
                inner.scored = s % 2 == 0;
                Box::new(Checked {
                    inner,
                    model: model.clone(),
                    failures: failures.clone(),
                    tokens_before: Vec::new(),
                }) as Box<dyn Strategy>
            })
            .collect();
        let budget = if cost_aware {
            NodeBudget::CostAware(CostCurve::linear(1.0, 0.2).unwrap())
        } else {
            NodeBudget::Fixed
        };
        let composite = Composite::new(sources, budget).unwrap();
        let config = DecodeConfig::new(max_new).with_eos([0]).with_max_nodes(nodes);
        let mut m = model.clone();
        let plain = generate(&mut m, Plain, &prompt, &config, &mut rng()).unwrap();
        let out = generate(&mut m, composite, &prompt, &config, &mut rng()).unwrap();
        prop_assert_eq!(out.tokens, plain.tokens);
        prop_assert!(out.stats.steps.iter().all(|s| s.draft_nodes <= nodes));
        let failures = failures.borrow();
        prop_assert!(failures.is_empty(), "{:?}", failures);
    }
}

/// Lets a composite cut a source's tree.
struct Prunable<S>(S);

impl<S: Strategy> Strategy for Prunable<S> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.0.begin(prompt, vocab_size)
    }
    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        self.0.draft(ctx, tree)
    }
    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        self.0.observe(feedback)
    }
    fn prunable(&self) -> bool {
        true
    }
    fn draft_scores(&self) -> Option<&[f32]> {
        self.0.draft_scores()
    }
}

#[test]
fn cost_aware_budget_keeps_only_nodes_that_pay() {
    let model = HashModel::new(5, 3);
    let prompt = [1, 2];
    let config = DecodeConfig::new(120).with_max_nodes(24);
    let free = generate(&mut model.clone(), Plain, &prompt, &config, &mut rng()).unwrap();
    let run = |budget: NodeBudget| {
        let oracle = Oracle {
            continuation: free.tokens.clone(),
            depth: 12,
        };
        let sources: Vec<Box<dyn Strategy>> = vec![
            Box::new(Prunable(oracle)),
            Box::new(Prunable(RandomDrafts::new(5, 24))),
        ];
        let composite = Composite::new(sources, budget).unwrap();
        generate(&mut model.clone(), composite, &prompt, &config, &mut rng()).unwrap()
    };
    let fixed = run(NodeBudget::Fixed);
    let curve = CostCurve::linear(1.0, 0.1).unwrap();
    let steep = run(NodeBudget::CostAware(curve.clone()));
    for out in [&fixed, &steep] {
        assert_eq!(out.tokens, free.tokens);
        assert!(out.stats.tau() > 6.0, "tau {}", out.stats.tau());
    }
    // Noise nodes do not pay for themselves when each costs a tenth of a step: the
    // cost-aware tree is smaller and yields more tokens per unit of cost.
    let throughput = |out: &decoding_core::Generation| {
        let cost: f64 = out
            .stats
            .steps
            .iter()
            .map(|s| curve.cost(s.draft_nodes))
            .sum();
        out.tokens.len() as f64 / cost
    };
    let (a, b) = (
        fixed.stats.draft_nodes_per_step(),
        steep.stats.draft_nodes_per_step(),
    );
    assert!(b < a, "cost-aware {b} nodes/step, fixed {a}");
    assert!(
        throughput(&steep) > 1.1 * throughput(&fixed),
        "tokens per cost: cost-aware {} fixed {}",
        throughput(&steep),
        throughput(&fixed)
    );
    // Accepted tokens are credited to the oracle (source 0), not to the noise.
    assert!(steep.stats.accepted_by_source[0] >= steep.stats.accepted());
}

/// Counts a source's drafts with room for more than the root, each taking at least the
/// given time (an expensive drafter, such as Medusa heads on a CPU).
struct Counted<S>(S, Rc<RefCell<usize>>, std::time::Duration);

impl<S: Strategy> Strategy for Counted<S> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.0.begin(prompt, vocab_size)
    }
    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        if ctx.max_nodes > 1 {
            *self.1.borrow_mut() += 1;
            let started = std::time::Instant::now();
            while started.elapsed() < self.2 {
                std::hint::spin_loop();
            }
        }
        self.0.draft(ctx, tree)
    }
    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        self.0.observe(feedback)
    }
    fn prunable(&self) -> bool {
        self.0.prunable()
    }
    fn draft_scores(&self) -> Option<&[f32]> {
        self.0.draft_scores()
    }
}

#[test]
fn expensive_sources_that_do_not_pay_rest() {
    let model = HashModel::new(64, 3);
    let prompt = [1, 2];
    let config = DecodeConfig::new(800).with_max_nodes(24);
    let free = generate(&mut model.clone(), Plain, &prompt, &config, &mut rng()).unwrap();
    let oracle_drafts = Rc::new(RefCell::new(0));
    let noise_drafts = Rc::new(RefCell::new(0));
    let oracle = Oracle {
        continuation: free.tokens.clone(),
        depth: 4,
    };
    // The model takes the time the curve below says (unit: 200 us); the noise source takes
    // two units to draft random tokens out of 64 (hardly ever accepted), the oracle no time.
    let unit = std::time::Duration::from_micros(200);
    let sources: Vec<Box<dyn Strategy>> = vec![
        Box::new(Counted(
            Prunable(oracle),
            oracle_drafts.clone(),
            std::time::Duration::ZERO,
        )),
        Box::new(Counted(
            Prunable(RandomDrafts::new(5, 24)),
            noise_drafts.clone(),
            2 * unit,
        )),
    ];
    // Each node costs half a step: the oracle's four certain nodes pay, noise does not.
    let budget = NodeBudget::CostAware(CostCurve::linear(1.0, 0.5).unwrap());
    let composite = Composite::new(sources, budget).unwrap();
    let mut timed = WithCost::new(model.clone(), unit, unit / 2);
    let out = generate(&mut timed, composite, &prompt, &config, &mut rng()).unwrap();
    assert_eq!(out.tokens, free.tokens);
    // One draft per forward pass, the prefill's included.
    let steps = out.stats.forward_passes();
    let (oracle, noise) = (*oracle_drafts.borrow(), *noise_drafts.borrow());
    assert_eq!(oracle, steps);
    // Idle after its first steps, it only drafts in full after 16, 32, 64, ... steps.
    assert!(
        noise < steps / 4,
        "noise drafted {noise} times in {steps} steps"
    );
    let idle = out
        .metrics
        .iter()
        .find(|m| m.name == "idle_sources_per_step")
        .unwrap();
    assert!(idle.value > 0.5, "{}", idle.value);
}

#[test]
fn composite_config_errors() {
    assert!(Composite::new(Vec::new(), NodeBudget::Fixed).is_err());
    let many: Vec<Box<dyn Strategy>> = (0..33)
        .map(|_| Box::new(Plain) as Box<dyn Strategy>)
        .collect();
    assert!(Composite::new(many, NodeBudget::Fixed).is_err());
}

/// Issue 16: a composite read the system clock inside its decisions, so a seeded run's
/// forward count depended on the machine. With an injected clock it is reproducible.
#[test]
fn issue16_composites_with_a_fixed_clock_are_reproducible() {
    let run = |clock: decoding_core::ManualClock| {
        let sources: Vec<Box<dyn Strategy>> = (0..3)
            .map(|i| {
                let mut source = RandomDrafts::new(40 + i, 12);
                source.prunable = true;
                source.scored = i % 2 == 0;
                Box::new(source) as Box<dyn Strategy>
            })
            .collect();
        let curve = CostCurve::linear(1.0, 0.4).unwrap();
        let composite = Composite::new(sources, NodeBudget::CostAware(curve))
            .unwrap()
            .with_clock(clock);
        let config = DecodeConfig::new(120).with_max_nodes(24);
        let mut model = HashModel::new(5, 3);
        generate(&mut model, composite, &[1, 2, 3], &config, &mut rng()).unwrap()
    };
    for clock in [decoding_core::ManualClock::new, || {
        decoding_core::ManualClock::ticking(std::time::Duration::from_micros(300))
    }] {
        let (a, b) = (run(clock()), run(clock()));
        assert_eq!(a.tokens, b.tokens);
        assert_eq!(a.stats.forward_passes(), b.stats.forward_passes());
        let nodes = |g: &decoding_core::Generation| -> Vec<usize> {
            g.stats.steps.iter().map(|s| s.draft_nodes).collect()
        };
        assert_eq!(nodes(&a), nodes(&b));
    }
}
