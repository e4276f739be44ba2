//! The roofline of llama-cpu's forward on this machine, one thread: the measured f32 FMA
//! peak of one core and its read bandwidth from L2, L3 and DRAM, then one forward over a
//! chain of k = 1 .. 64 nodes on top of a 512-token cache, as a fraction of the bound that
//! applies to it (the weights' bandwidth for small k, the multiply-adds for large k).
//!
//! ```text
//! cargo run --release -p llama-cpu --example roofline [-- ROUNDS]
//! LLAMA_CPU_KERNELS=portable cargo run --release -p llama-cpu --example roofline
//! ```
//!
//! Work of a forward (useful work only, as the model's shapes give it): every node goes
//! through the projections (`2 x` their weights in flops) and the output projection, and
//! attends to the `512 + depth + 1` rows it sees (`4 x heads x head width` flops a row);
//! the bytes are the weights (the checkpoint's size: each is read once per forward however
//! many nodes share it) and the cache's keys and values. The bound is the larger of
//! `flops / peak` and `bytes / bandwidth`, the bandwidth being that of a buffer the size of
//! the weights. Times are the fastest wall-clock forward of `ROUNDS` (default 10) rounds
//! of [`CALLS`] forwards per k, over every k in turn, so that a busy machine's noise hits
//! every k alike: measure on a quiet machine.

use std::time::Instant;

use decoding_core::{LogitsModel, TokenTree};
use llama_cpu::Llama;
use ndarray::Array2;

const CACHE: usize = 512;

/// Consecutive forwards per k and round. pycoder-16m's weights (31.5 MB) nearly fit in the
/// L3 of the Zen 5 this was tuned on (32 MB), and how much of them stays there depends on
/// what ran before: right after a forward over 64 nodes (2 MB of logits) a single-node
/// forward took 1.4 times as long as after seven more. Consecutive decode steps
/// run similar trees, so each k is timed once settled.
const CALLS: usize = 10;
const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(10), |r| r.parse())?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let Some(machine) =
        machine::measure(std::fs::metadata(format!("{MODEL}/model.safetensors"))?.len() as usize)
    else {
        println!("the roofline example measures x86-64 machines only");
        return Ok(());
    };
    println!(
        "one core: f32 FMA peak {:.1} GFLOP/s with AVX-512, {:.1} with AVX2; read {:.1} GB/s \
         from L2 (1 MB), {:.1} from a weight-sized buffer ({:.1} MB), {:.1} from DRAM (1 GB)",
        machine.peak_avx512,
        machine.peak_avx2,
        machine.read_l2,
        machine.read_weights,
        machine.weight_bytes as f64 / 1e6,
        machine.read_dram
    );
    let kernels = llama_cpu::kernels();
    let peak = if kernels == "avx512" {
        machine.peak_avx512
    } else {
        machine.peak_avx2
    };
    println!("llama-cpu kernels: {kernels} (peak used: {peak:.1} GFLOP/s)\n");

    let mut model = Llama::load(MODEL)?.with_threads(1);
    let context: Vec<u32> = (0..CACHE as u32).map(|i| 1 + (i * 7919) % 8000).collect();
    let mut prefill = TokenTree::from_chain(&context)?;
    for node in 0..CACHE {
        prefill.set_needs_logits(node, false);
    }
    let mut none = Array2::zeros((0, model.vocab_size()));
    model.forward(&prefill, none.view_mut())?;
    model.commit(&(0..CACHE).collect::<Vec<_>>())?;

    let ks = [1usize, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64];
    let trees: Vec<TokenTree> = ks
        .iter()
        .map(|&k| TokenTree::from_chain(&context[..k]))
        .collect::<Result<_, _>>()?;
    let mut best = vec![f64::INFINITY; ks.len()];
    for _ in 0..rounds {
        for (tree, best) in trees.iter().zip(&mut best) {
            let mut logits = Array2::zeros((tree.logits_rows(), model.vocab_size()));
            *best = best.min(fastest(CALLS, || model.forward(tree, logits.view_mut()))?);
        }
    }

    let work = Work::of(model.config(), machine.weight_bytes);
    println!(
        "{:>3} | {:>7} {:>5} | {:>7} {:>6} | {:>8} {:>8} | {:>7} {:>9}",
        "k", "ms", "ratio", "GFLOP/s", "GB/s", "flops ms", "bytes ms", "bound", "of bound"
    );
    for (&k, &seconds) in ks.iter().zip(&best) {
        let (flops, bytes) = (work.flops(k), work.bytes(k));
        let compute = flops / (peak * 1e9);
        let memory = bytes / (machine.read_weights * 1e9);
        let (bound, name) = if compute > memory {
            (compute, "compute")
        } else {
            (memory, "memory")
        };
        println!(
            "{k:>3} | {:>7.3} {:>5.2} | {:>7.1} {:>6.1} | {:>8.3} {:>8.3} | {name:>7} {:>8.0}%",
            seconds * 1e3,
            seconds / best[0],
            flops / seconds / 1e9,
            bytes / seconds / 1e9,
            compute * 1e3,
            memory * 1e3,
            100.0 * bound / seconds
        );
    }
    Ok(())
}

/// The fastest of `calls` calls of `run`, in wall-clock seconds: on a shared machine the
/// fastest call is the one the scheduler left alone.
fn fastest<E>(calls: usize, mut run: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    let mut best = f64::INFINITY;
    for _ in 0..calls {
        let started = Instant::now();
        run()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// What was measured of the machine (GFLOP/s, GB/s).
struct Machine {
    peak_avx512: f64,
    peak_avx2: f64,
    read_l2: f64,
    read_weights: f64,
    read_dram: f64,
    weight_bytes: usize,
}

/// The work of one forward over a chain of `k` nodes on top of the cache.
struct Work {
    /// Multiply-adds of one node through every projection (output included).
    projections: f64,
    /// Multiply-adds of one node per row of the cache it attends to (all layers, QK and EV).
    per_row: f64,
    /// Bytes of one cache row (keys and values of every layer, f32).
    cache_row: f64,
    weight_bytes: f64,
}

impl Work {
    fn of(c: &llama_cpu::LlamaConfig, weight_bytes: usize) -> Self {
        let (d, f, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let (q, kv) = (
            c.num_attention_heads * c.head_width(),
            c.kv_heads() * c.head_width(),
        );
        let layer = d * (q + 2 * kv) + q * d + d * 2 * f + f * d;
        Self {
            projections: (c.num_hidden_layers * layer + d * v) as f64,
            per_row: (c.num_hidden_layers * 2 * q) as f64,
            cache_row: (c.num_hidden_layers * 2 * kv * 4) as f64,
            weight_bytes: weight_bytes as f64,
        }
    }

    fn flops(&self, k: usize) -> f64 {
        let rows: usize = (0..k).map(|depth| CACHE + depth + 1).sum();
        2.0 * (k as f64 * self.projections + rows as f64 * self.per_row)
    }

    fn bytes(&self, k: usize) -> f64 {
        self.weight_bytes + (CACHE + k) as f64 * self.cache_row
    }
}

#[cfg(target_arch = "x86_64")]
mod machine {
    //! Peak and bandwidth loops written with pulp (as llama-cpu's kernels are).

    use std::hint::black_box;

    use pulp::{Simd, WithSimd};

    use super::{Machine, fastest};

    /// Measures the peaks and the read bandwidths (a buffer of `weight_bytes` for the
    /// weights' level of the hierarchy); `None` without AVX2.
    pub(crate) fn measure(weight_bytes: usize) -> Option<Machine> {
        let v3 = pulp::x86::V3::try_new()?;
        let v4 = pulp::x86::V4::try_new();
        // As many independent chains as registers allow (16 and 32 vector registers).
        let peak_avx2 = peak(|iters| Simd::vectorize(v3, Fmas::<12> { iters }), 12 * 8);
        let peak_avx512 = v4.map_or(0.0, |v4| {
            peak(|iters| Simd::vectorize(v4, Fmas::<24> { iters }), 24 * 16)
        });
        let read = |bytes: usize| match v4 {
            Some(v4) => bandwidth(bytes, |data| Simd::vectorize(v4, Read { data })),
            None => bandwidth(bytes, |data| Simd::vectorize(v3, Read { data })),
        };
        Some(Machine {
            peak_avx512,
            peak_avx2,
            read_l2: read(1 << 20),
            read_weights: read(weight_bytes),
            read_dram: read(1 << 30),
            weight_bytes,
        })
    }

    /// GFLOP/s of `run(iters)` (`iters` rounds of FMAs on `lanes` lanes in all, about a
    /// millisecond), the fastest of 200 runs.
    fn peak(run: impl Fn(usize) -> f32, lanes: usize) -> f64 {
        const ITERS: usize = 20_000;
        let best = fastest(200, || {
            black_box(run(ITERS));
            Ok::<_, ()>(())
        })
        .unwrap_or(f64::NAN);
        (2 * ITERS * lanes) as f64 / best / 1e9
    }

    /// GB/s of `read` over a buffer of `bytes`, the fastest of enough reads for 2 GB.
    fn bandwidth(bytes: usize, read: impl Fn(&[f32]) -> f32) -> f64 {
        let data: Vec<f32> = (0..bytes / 4).map(|i| (i % 7) as f32).collect();
        let calls = (2_000_000_000 / bytes).clamp(5, 1000);
        let best = fastest(calls, || {
            black_box(read(&data));
            Ok::<_, ()>(())
        })
        .unwrap_or(f64::NAN);
        bytes as f64 / best / 1e9
    }

    /// `iters` rounds of `N` independent FMA chains (enough to fill both FMA ports).
    struct Fmas<const N: usize> {
        iters: usize,
    }

    impl<const N: usize> WithSimd for Fmas<N> {
        type Output = f32;

        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> f32 {
            let mut acc = [s.splat_f32s(1.0); N];
            let (a, b) = (s.splat_f32s(0.999_999), s.splat_f32s(1e-7));
            for _ in 0..self.iters {
                for acc in &mut acc {
                    *acc = s.mul_add_f32s(*acc, a, b);
                }
            }
            let total = acc.iter().fold(s.splat_f32s(0.0), |t, &a| s.add_f32s(t, a));
            s.reduce_sum_f32s(total)
        }
    }

    /// The sum of `data`, in 8 independent vector sums.
    struct Read<'a> {
        data: &'a [f32],
    }

    impl WithSimd for Read<'_> {
        type Output = f32;

        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> f32 {
            let (vectors, _) = S::as_simd_f32s(self.data);
            let mut acc = [s.splat_f32s(0.0); 8];
            for chunk in vectors.chunks_exact(8) {
                for (acc, &v) in acc.iter_mut().zip(chunk) {
                    *acc = s.add_f32s(*acc, v);
                }
            }
            let total = acc.iter().fold(s.splat_f32s(0.0), |t, &a| s.add_f32s(t, a));
            s.reduce_sum_f32s(total)
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod machine {
    pub(crate) fn measure(_weight_bytes: usize) -> Option<super::Machine> {
        None
    }
}
