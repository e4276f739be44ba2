//! The arithmetic, written so that every output element is computed by one fixed sequence of
//! float operations that depends only on its own inputs.
//!
//! That is what makes the model *batch invariant*: a node's logits are the same bits whether
//! it is evaluated alone, inside a large tree, or as part of a prefill. Optimised GEMMs
//! usually break this (the reduction order of an element changes with the matrix shape, the
//! blocking, or the thread count). Here every element of a product `X W` is the chain
//!
//! ```text
//! acc = 0; for kk in 0..depth { acc = mul_add(X[i][kk], W[kk][j], acc) }
//! ```
//!
//! in increasing `kk`, whatever kernel tile computes it (`gemm.rs`, and `avx512.rs` where
//! the CPU has AVX-512), and threads (`team.rs`) only decide who computes which columns.
//! The other reductions here ([`dot`], [`Sum`]) fix their order the same way. [`mul_add`]
//! is one fused multiply-add when the build targets FMA and a multiply then an add
//! otherwise: a fixed function for a given build either way.

/// `a * b + c`: fused (one rounding) when the build targets FMA (x86-64-v3, see
/// `.cargo/config.toml`), a multiply then an add otherwise. One fixed function per build.
#[inline(always)]
pub(crate) fn mul_add(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Partial sums of [`dot`] (two AVX registers).
const LANES: usize = 16;

/// The dot product of two equally long slices: element `i` goes into partial sum
/// `i % LANES` in increasing `i`, then the partial sums are halved pairwise (lane `l` with
/// lane `l + width / 2`) until one is left. Used where one vector meets itself (RMSNorm).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (a_full, b_full) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_full.remainder(), b_full.remainder());
    for (a, b) in a_full.zip(b_full) {
        for l in 0..LANES {
            acc[l] = mul_add(a[l], b[l], acc[l]);
        }
    }
    for (l, (&a, &b)) in a_rest.iter().zip(b_rest).enumerate() {
        acc[l] = mul_add(a, b, acc[l]);
    }
    reduce(acc)
}

/// A sum in the order of [`dot`]: the `i`-th value added goes into partial sum
/// `i % LANES`, then the partial sums are halved pairwise. The result depends only on the
/// sequence of values added, not on how they were handed over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sum {
    acc: [f32; LANES],
    count: usize,
}

impl Sum {
    pub(crate) fn new() -> Self {
        Self {
            acc: [0.0; LANES],
            count: 0,
        }
    }

    /// Adds the values of `x` in order.
    pub(crate) fn add_all(&mut self, x: &[f32]) {
        let skip = (LANES - self.count % LANES) % LANES;
        let (head, x) = x.split_at(skip.min(x.len()));
        for &v in head {
            self.add(v);
        }
        let full = x.chunks_exact(LANES);
        let rest = full.remainder();
        for chunk in full {
            for (a, &v) in self.acc.iter_mut().zip(chunk) {
                *a += v;
            }
        }
        self.count += x.len() - rest.len();
        for &v in rest {
            self.add(v);
        }
    }

    /// Adds one value.
    pub(crate) fn add(&mut self, v: f32) {
        self.acc[self.count % LANES] += v;
        self.count += 1;
    }

    pub(crate) fn total(self) -> f32 {
        reduce(self.acc)
    }
}

/// Halves the partial sums pairwise (lane `l` with lane `l + width / 2`) until one is left.
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}
/// RMSNorm of `x` into `out`: `weight * (x / sqrt(mean(x^2) + eps))`.
pub(crate) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = 1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt();
    for ((o, &x), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = w * (x * scale);
    }
}

/// `e^x`, to about 1 ulp for `x` in `[-87, 88]` (inputs outside are clamped to it; NaN
/// stays NaN), in plain float operations so that loops over it vectorise: `x = n ln 2 + r`
/// with `|r| <= ln 2 / 2`, then `2^n` times a degree-7 polynomial in `r` (Cephes `expf`).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to the nearest integer n (ties to even) and leaves n in the
    // low bits of the sum, from which 2^n is built with integer operations (an `as`
    // conversion would not vectorise).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = mul_add(n, -0.693_359_4, x);
    let r = mul_add(n, 2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = mul_add(p, r, c);
    }
    let p = mul_add(p, r * r, r) + 1.0;
    let exponent = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(exponent << 23)
}

/// SiLU (`x * sigmoid(x)`).
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// Rotary position embedding tables: `cos[p][i]`, `sin[p][i]` for position `p` and frequency
/// `i < head / 2`, as HF computes them (f32 frequencies `theta^(-2i/head)`, f32 angles).
#[derive(Clone, Debug)]
pub(crate) struct Rope {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    pub(crate) fn new(head: usize, theta: f64, positions: usize) -> Self {
        let half = head / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head as f32))
            .collect();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for &f in &inv_freq {
                let angle = f64::from(p as f32 * f);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { half, cos, sin }
    }

    /// Rotates one head vector to `position` (non-interleaved halves, HF `rotate_half`).
    pub(crate) fn apply(&self, x: &mut [f32], position: usize) {
        let (a, b) = x.split_at_mut(self.half);
        let table = position * self.half..(position + 1) * self.half;
        for (((a, b), &c), &s) in a
            .iter_mut()
            .zip(b)
            .zip(&self.cos[table.clone()])
            .zip(&self.sin[table])
        {
            let (x1, x2) = (*a, *b);
            *a = x1 * c - x2 * s;
            *b = x2 * c + x1 * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(i: usize) -> f32 {
        ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0
    }

    #[test]
    fn sums_depend_only_on_the_sequence() {
        let x: Vec<f32> = (0..45).map(pseudo).collect();
        let mut all = Sum::new();
        all.add_all(&x);
        let mut pieces = Sum::new();
        pieces.add_all(&x[..3]);
        pieces.add(x[3]);
        pieces.add_all(&x[4..37]);
        for &v in &x[37..] {
            pieces.add(v);
        }
        assert_eq!(all.total().to_bits(), pieces.total().to_bits());
        let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
        assert!((f64::from(all.total()) - exact).abs() < 1e-5);
        let ones = vec![1.0; x.len()];
        assert_eq!(all.total(), dot(&x, &ones));
    }

    #[test]
    fn exp_is_close_to_the_exact_value() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.0435;
            let (ours, exact) = (f64::from(exp(x)), f64::from(x).exp());
            assert!(
                (ours - exact).abs() <= 3e-7 * exact,
                "exp({x}) = {ours}, not {exact}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(1000.0) > 1e38);
        assert!((silu(-200.0)).abs() < 1e-30 && silu(200.0) == 200.0);
    }

    #[test]
    fn rope_rotates_pairs_of_halves() {
        let rope = Rope::new(4, 10_000.0, 3);
        let mut x = [1.0, 2.0, 3.0, 4.0];
        rope.apply(&mut x, 0);
        assert_eq!(x, [1.0, 2.0, 3.0, 4.0]);
        rope.apply(&mut x, 1);
        let (c, s) = (1f64.cos() as f32, 1f64.sin() as f32);
        assert_eq!(x[0], 1.0 * c - 3.0 * s);
        assert_eq!(x[2], 3.0 * c + 1.0 * s);
    }
}
