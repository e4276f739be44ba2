//! End-to-end decoding throughput (tokens per second, criterion's `Throughput::Elements`) of
//! each technique on a toy model whose forward pass costs what pycoder-16m's does on this
//! 2-core CPU, scaled down.
//!
//! The model is decoding-core's induction toy (it continues text the way the text continued
//! before, like a small code model's induction heads), vocabulary 8192, with engine-computed
//! Medusa-style heads of pycoder-16m's held-out top-1 accuracies (0.32, 0.21, 0.16, 0.13),
//! wrapped so that a forward over `n` tree nodes takes `unit * cost(n)`, `cost` being pycoder-16m's measured CPU curve (1 node: 1, 2: 1.49, 4: 2.19,
//! 8: 3.47, 16: 6.41, 32: 11.79, 64: 22.34, extrapolated linearly beyond). pycoder-16m's unit
//! is about 1.4 ms; here it is 50 us (set `E2E_UNIT_US` to change it), so the strategies'
//! own per-step overhead weighs about 28 times more than it would on the real model. The
//! heads' rollout time counts as model time (an engine computes heads with the forward).
//! By default the model's time beyond the toy's own computation is added to the measured
//! time rather than spun, so that a busy machine preempting the spin does not inflate it;
//! `E2E_SPIN=1` spins it for real. Either way, a strategy's own time (drafting, tree
//! building, verification, bookkeeping) is measured wall-clock time.
//!
//! Workload: 4 code-like prompts of 256 tokens (Zipf-distributed tokens, spans copied from
//! earlier in the text), 128 new tokens each, greedy; the reference strategy also gets the
//! 1024 tokens of text before each prompt as its reference document. Every technique's
//! output is checked to equal plain greedy decoding before it is timed. Before the timed
//! runs the bench prints tau, nodes per step, overhead per step and the wall-clock speedup
//! over greedy of one pass, all from the same run.
//!
//! ```text
//! cargo bench --bench end_to_end
//! E2E_UNIT_US=1400 cargo bench --bench end_to_end   # pycoder-16m's real unit
//! E2E_SPIN=1 cargo bench --bench end_to_end          # spin through the model's cost
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use decoding_testkit::toy::{ContextLogits, InductionLogits, RecomputeModel, WithRolloutHeads};
use ndarray::ArrayViewMut2;
use parallel_decoding::decoding_core::{
    CostCurve, DecodeConfig, DecodeStats, HeadLogits, LogitsModel, ModelError, NodeId, Strategy,
    Token, TokenTree, TreeSupport, generate,
};
use parallel_decoding::medusa::{
    ContextPrior, DynamicTree, HeadSource, Medusa, MedusaConfig, TreePolicy,
};
use parallel_decoding::spec::{CaseInputs, SpecEnv, parse};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const VOCAB: usize = 2048;
const PROMPT_TOKENS: usize = 256;
const REFERENCE_TOKENS: usize = 1024;
const NEW_TOKENS: usize = 128;
const CASES: usize = 4;
/// pycoder-16m's held-out top-1 accuracy of its four Medusa heads.
const HEAD_ACCURACY: [f32; 4] = [0.32, 0.21, 0.16, 0.13];
/// pycoder-16m's forward cost on this CPU by tree size, relative to one node.
const PYCODER_CPU_CURVE: [(usize, f64); 7] = [
    (1, 1.0),
    (2, 1.49),
    (4, 2.19),
    (8, 3.47),
    (16, 6.41),
    (32, 11.79),
    (64, 22.34),
];
/// The same curve as a strategy `cost=` option.
const CURVE_OPTION: &str = "1:1/2:1.49/4:2.19/8:3.47/16:6.41/32:11.79/64:22.34";

/// A model whose forward over `n` nodes takes `unit * curve.cost(n)`: the toy model's own
/// time, then the rest either spun (real wall-clock time) or, by default, only *owed*: added
/// to the measured time afterwards ([`CurveCost::take_owed`]), so that a loaded machine
/// preempting a spin does not inflate the model's cost.
///
/// Time spent computing engine head logits (between forwards) is credited against the next
/// forward: the heads come with the forward on a real engine.
struct CurveCost<M> {
    inner: M,
    curve: CostCurve,
    unit: Duration,
    spin: bool,
    num_heads: usize,
    credit: Duration,
    owed: Duration,
}

impl<M: LogitsModel> CurveCost<M> {
    fn new(mut inner: M, curve: CostCurve, unit: Duration, spin: bool) -> Self {
        let num_heads = inner.head_logits().map_or(0, |h| h.num_heads());
        Self {
            inner,
            curve,
            unit,
            spin,
            num_heads,
            credit: Duration::ZERO,
            owed: Duration::ZERO,
        }
    }

    /// Model time not spun since the last call.
    fn take_owed(&mut self) -> Duration {
        std::mem::take(&mut self.owed)
    }

    fn cost(&self, nodes: usize) -> Duration {
        self.unit.mul_f64(self.curve.cost(nodes))
    }
}

impl<M: LogitsModel> LogitsModel for CurveCost<M> {
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
        let started = Instant::now();
        self.inner.forward(tree, logits)?;
        let target = self
            .cost(tree.len())
            .saturating_sub(std::mem::take(&mut self.credit));
        if self.spin {
            while started.elapsed() < target {
                std::hint::spin_loop();
            }
        } else {
            self.owed += target.saturating_sub(started.elapsed());
        }
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.inner.commit(path)
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.inner.truncate(len)
    }

    fn reset(&mut self) -> Result<(), ModelError> {
        self.credit = Duration::ZERO;
        self.inner.reset()
    }

    fn tree_support(&self) -> TreeSupport {
        self.inner.tree_support()
    }

    fn max_context(&self) -> Option<usize> {
        self.inner.max_context()
    }

    fn head_logits(&mut self) -> Option<&mut dyn HeadLogits> {
        if self.num_heads == 0 {
            None
        } else {
            Some(self)
        }
    }
}

impl<M: LogitsModel> HeadLogits for CurveCost<M> {
    fn num_heads(&self) -> usize {
        self.num_heads
    }

    fn head_logits(&mut self, node: NodeId, out: ArrayViewMut2<'_, f32>) -> Result<(), ModelError> {
        let started = Instant::now();
        let heads = self
            .inner
            .head_logits()
            .ok_or_else(|| ModelError::msg("the wrapped model has no heads"))?;
        heads.head_logits(node, out)?;
        self.credit += started.elapsed();
        Ok(())
    }
}

/// The toy model's logits: the induction toy's (continue the way the longest recent match
/// of the context's suffix continued), except that at about one position in `JUMP` (a
/// pseudo-random function of the position) a token from a pseudo-random earlier place of
/// the context wins. Copies then run a few tokens at a time from ever new places, as a code
/// model's do, instead of settling into one loop.
#[derive(Clone, Debug)]
struct CodeLike {
    base: InductionLogits,
}

const JUMP: u64 = 8;

impl ContextLogits for CodeLike {
    fn logits(&mut self, context: &[Token], out: &mut [f32]) {
        self.base.logits(context, out);
        let h = mix(context.len() as u64 ^ 0x5EED);
        if h.is_multiple_of(JUMP) {
            let from = context[((h >> 16) % context.len() as u64) as usize];
            out[from as usize] += 40.0;
        }
    }
}

/// SplitMix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

type Model = CurveCost<WithRolloutHeads<CodeLike>>;

/// Spin through the model's cost instead of adding it to the measured time.
fn spin() -> bool {
    std::env::var_os("E2E_SPIN").is_some_and(|v| v != "0")
}

fn unit() -> Duration {
    let us = std::env::var("E2E_UNIT_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(50);
    Duration::from_micros(us)
}

fn toy_model() -> WithRolloutHeads<CodeLike> {
    let base = RecomputeModel::new(
        VOCAB,
        CodeLike {
            base: InductionLogits::new(VOCAB, 11),
        },
    );
    WithRolloutHeads::new(base, HEAD_ACCURACY.to_vec(), 5).unwrap()
}

/// A Zipf-like token: small ids are common.
fn zipf(rng: &mut Xoshiro256PlusPlus) -> Token {
    let u: f64 = rng.random_range(0.0..1.0);
    ((VOCAB as f64).powf(u) - 1.0) as Token
}

/// Code-like text: fresh tokens, and spans copied from earlier in the text.
fn code_like(rng: &mut Xoshiro256PlusPlus, len: usize) -> Vec<Token> {
    let mut text: Vec<Token> = Vec::with_capacity(len);
    while text.len() < len {
        if text.len() > 64 && rng.random_bool(0.3) {
            let span = rng.random_range(4..32);
            let start = rng.random_range(0..text.len() - span.min(text.len() - 1));
            let end = (start + span).min(text.len());
            text.extend_from_within(start..end);
        } else {
            text.push(zipf(rng));
        }
    }
    text.truncate(len);
    text
}

/// One decoding case: a prompt and the reference document before it.
struct Case {
    prompt: Vec<Token>,
    references: Vec<Vec<Token>>,
}

fn cases() -> Vec<Case> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2024);
    (0..CASES)
        .map(|_| {
            let text = code_like(&mut rng, REFERENCE_TOKENS + PROMPT_TOKENS);
            Case {
                prompt: text[REFERENCE_TOKENS..].to_vec(),
                references: vec![text[..REFERENCE_TOKENS].to_vec()],
            }
        })
        .collect()
}

/// How to build a technique's strategy for one case.
type Make = Box<dyn Fn(&Case) -> Box<dyn Strategy>>;

fn techniques(curve: &CostCurve) -> Vec<(&'static str, Make, usize)> {
    let env = SpecEnv::new(VOCAB);
    let from_spec = |spec: &str| -> Make {
        let factory = parse(spec, &env).unwrap();
        Box::new(move |case: &Case| {
            factory
                .build(&CaseInputs {
                    prompt: &case.prompt,
                    references: &case.references,
                })
                .unwrap()
        })
    };
    let medusa = |cost: Option<CostCurve>| -> Make {
        Box::new(move |_case: &Case| {
            let mut tree = DynamicTree::new().with_context_prior(ContextPrior::default());
            if let Some(cost) = &cost {
                tree = tree.with_cost(cost.clone());
            }
            Box::new(
                Medusa::new(
                    HeadSource::Engine { num_heads: 4 },
                    MedusaConfig::new(TreePolicy::Dynamic(tree)),
                )
                .unwrap(),
            )
        })
    };
    vec![
        ("greedy", from_spec("greedy"), 1),
        ("jacobi-k4", from_spec("jacobi:k=4"), 5),
        ("lookahead-5-3-5", from_spec("lookahead:w=5,n=3,g=5"), 64),
        ("reference-suffix", from_spec("reference"), 64),
        (
            "reference-suffix-cost",
            from_spec(&format!("reference:cost={CURVE_OPTION}")),
            64,
        ),
        ("medusa-engine-dynamic-16", medusa(None), 16),
        (
            "medusa-engine-dynamic-cost",
            medusa(Some(curve.clone())),
            64,
        ),
    ]
}

/// Decodes every case; returns the outputs and the merged statistics.
fn decode_all(
    model: &mut Model,
    cases: &[Case],
    make: &Make,
    max_nodes: usize,
) -> (Vec<Vec<Token>>, DecodeStats) {
    let config = DecodeConfig::new(NEW_TOKENS).with_max_nodes(max_nodes);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut stats = DecodeStats::default();
    let mut outputs = Vec::new();
    for case in cases {
        let out = generate(&mut *model, make(case), &case.prompt, &config, &mut rng).unwrap();
        stats.merge(&out.stats);
        outputs.push(out.tokens);
    }
    (outputs, stats)
}

fn end_to_end(c: &mut Criterion) {
    let curve = CostCurve::new(PYCODER_CPU_CURVE.to_vec()).unwrap();
    let mut model = CurveCost::new(toy_model(), curve.clone(), unit(), spin());
    let cases = cases();
    let techniques = techniques(&curve);
    let tokens = (CASES * NEW_TOKENS) as u64;

    // How much of the budget the toy model itself uses (it must stay well under it).
    for nodes in [1, 8, 32] {
        let mut inner = toy_model();
        let prompt = &cases[0].prompt;
        let prefill = TokenTree::from_chain(prompt).unwrap();
        let mut logits = ndarray::Array2::zeros((prompt.len(), VOCAB));
        inner.forward(&prefill, logits.view_mut()).unwrap();
        inner
            .commit(&(0..prompt.len()).collect::<Vec<_>>())
            .unwrap();
        let tree = TokenTree::from_chain(&prompt[..nodes]).unwrap();
        let mut logits = ndarray::Array2::zeros((nodes, VOCAB));
        let started = Instant::now();
        for _ in 0..20 {
            inner.forward(&tree, logits.view_mut()).unwrap();
        }
        eprintln!(
            "  toy model forward over {nodes:>2} nodes: {:?} of a {:?} budget",
            started.elapsed() / 20,
            model.cost(nodes)
        );
    }

    // One checked pass of each, same run: identity with greedy, tau, nodes, overhead, speedup.
    eprintln!(
        "end_to_end: {CASES} cases x {NEW_TOKENS} tokens, unit {:?}, model time {}",
        unit(),
        if spin() { "spun" } else { "added" }
    );
    let mut greedy: Option<(Vec<Vec<Token>>, Duration)> = None;
    for (name, make, max_nodes) in &techniques {
        model.take_owed();
        let started = Instant::now();
        let (outputs, stats) = decode_all(&mut model, &cases, make, *max_nodes);
        let wall = started.elapsed() + model.take_owed();
        let (reference, greedy_wall) = greedy.get_or_insert_with(|| (outputs.clone(), wall));
        assert_eq!(&outputs, reference, "{name} differs from greedy decoding");
        eprintln!(
            "  {name:<28} tau {:.2}  nodes/step {:5.1}  overhead/step {:6.1} us  speedup {:.2}x",
            stats.tau(),
            stats.draft_nodes_per_step(),
            stats.overhead_per_step().as_secs_f64() * 1e6,
            greedy_wall.as_secs_f64() / wall.as_secs_f64(),
        );
    }

    let mut group = c.benchmark_group("end_to_end");
    group.throughput(Throughput::Elements(tokens));
    for (name, make, max_nodes) in &techniques {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                model.take_owed();
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(
                        decode_all(&mut model, &cases, make, *max_nodes)
                            .1
                            .generated(),
                    );
                }
                started.elapsed() + model.take_owed()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = end_to_end
}
criterion_main!(benches);
