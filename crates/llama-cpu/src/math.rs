//! The arithmetic, written so that every output element is computed by one fixed sequence of
//! float operations that depends only on its own inputs.
//!
//! That is what makes the model *batch invariant*: a node's logits are the same bits whether
//! it is evaluated alone, inside a large tree, or as part of a prefill. Optimised GEMMs
//! usually break this (the reduction order of an element changes with the matrix shape, the
//! blocking, or the thread count); here every dot product, whatever kernel tile computes it,
//! accumulates element `i` into partial sum `i % LANES` in increasing `i`, then adds the
//! partial sums in one fixed tree ([`dot`]). Tiles only decide how many dot products share
//! their loads (and threads, in `team.rs`, only who computes which output column).

use ndarray::{ArrayView2, ArrayViewMut2};

/// Partial sums per dot product (four SSE registers, two AVX ones): 16 took 1.5x less CPU
/// time than 8 on x86-64 without target features. Changing it changes the bits of every
/// result, and nothing else.
const LANES: usize = 16;

type Acc = [f32; LANES];

/// Adds the partial sums in a fixed order.
#[inline(always)]
fn reduce(acc: Acc) -> f32 {
    // Halve the partial sums pairwise (lane i with lane i + width / 2) until one is left.
    let mut acc = acc;
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}

/// `acc[l] += x[l] * w[l]` for every lane (written so that the compiler vectorises it).
#[inline(always)]
fn multiply_add(acc: &mut Acc, x: &Acc, w: &Acc) {
    for l in 0..LANES {
        acc[l] += x[l] * w[l];
    }
}

/// The dot products of `R` input rows with `C` weight rows (all of the same length), as
/// `out[r][c]`. Every product is accumulated exactly as [`dot`] does it: the tile shape only
/// decides which loads are shared.
#[inline(always)]
fn tile<const R: usize, const C: usize>(xs: [&[f32]; R], ws: [&[f32]; C]) -> [[f32; C]; R] {
    let len = xs[0].len();
    let full = len - len % LANES;
    let mut acc = [[[0.0f32; LANES]; C]; R];
    for start in (0..full).step_by(LANES) {
        let lanes = start..start + LANES;
        let x: [&Acc; R] = std::array::from_fn(|r| xs[r][lanes.clone()].try_into().unwrap());
        for c in 0..C {
            let w: &Acc = ws[c][lanes.clone()].try_into().unwrap();
            for r in 0..R {
                multiply_add(&mut acc[r][c], x[r], w);
            }
        }
    }
    for (l, i) in (full..len).enumerate() {
        for r in 0..R {
            for c in 0..C {
                acc[r][c][l] += xs[r][i] * ws[c][i];
            }
        }
    }
    // (An explicit loop here instead of `map` made the hot loop above spill and run 2x
    // slower: measure any change to this function.)
    acc.map(|row| row.map(reduce))
}

/// The dot product of two equally long slices, in the fixed order described in the module
/// docs.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    tile::<1, 1>([a], [b])[0][0]
}

/// Weight rows that share one pass over the input rows.
pub(crate) const COLS: usize = 4;

/// Input rows processed together, so that they stay in cache while the weights stream by.
const ROW_BLOCK: usize = 64;

/// `out[i][o] = dot(x[i], w[o])`: a projection of the rows of `x` (`m x k`, rows contiguous)
/// by the weights `w` (`n x k`, HF `[out, in]` layout, rows contiguous), with `out` of shape
/// `m x n`. Each input row meets [`COLS`] weight rows at a time (they share its loads); every
/// element is still exactly [`dot`] of its two rows.
pub(crate) fn matmul<'a>(
    x: ArrayView2<'a, f32>,
    w: ArrayView2<'a, f32>,
    mut out: ArrayViewMut2<'_, f32>,
) {
    let slices = |a: ArrayView2<'a, f32>| -> Vec<&'a [f32]> {
        let all = a.to_slice().expect("standard layout");
        all.chunks_exact(a.ncols().max(1)).collect()
    };
    let (rows, weights) = (slices(x), slices(w));
    let full = weights.len() - weights.len() % COLS;
    for first in (0..rows.len()).step_by(ROW_BLOCK) {
        let block = first..rows.len().min(first + ROW_BLOCK);
        for o in (0..full).step_by(COLS) {
            let ws: [&[f32]; COLS] = std::array::from_fn(|c| weights[o + c]);
            for i in block.clone() {
                let [y] = tile::<1, COLS>([rows[i]], ws);
                for (c, y) in y.into_iter().enumerate() {
                    out[[i, o + c]] = y;
                }
            }
        }
        for o in full..weights.len() {
            for i in block.clone() {
                out[[i, o]] = dot(rows[i], weights[o]);
            }
        }
    }
}

/// RMSNorm of `x` into `out`: `weight * (x / sqrt(mean(x^2) + eps))`.
pub(crate) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = 1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt();
    for ((o, &x), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = w * (x * scale);
    }
}

/// SiLU (`x * sigmoid(x)`).
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
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
    use ndarray::{Array2, Axis};

    use super::*;

    fn pseudo(i: usize) -> f32 {
        ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0
    }

    #[test]
    fn matmul_rows_do_not_depend_on_the_batch() {
        for (m, k, n) in [(1, 13, 7), (5, 64, 9), (7, 37, 32), (3, 384, 1030)] {
            let x = Array2::from_shape_fn((m, k), |(i, j)| pseudo(i * k + j));
            let w = Array2::from_shape_fn((n, k), |(i, j)| pseudo(7 + i * k + j * 3));
            let mut full = Array2::zeros((m, n));
            matmul(x.view(), w.view(), full.view_mut());
            for i in 0..m {
                let mut one = Array2::zeros((1, n));
                let row = x.slice_axis(Axis(0), (i..i + 1).into());
                matmul(row, w.view(), one.view_mut());
                assert_eq!(one.row(0), full.row(i));
                for o in 0..n {
                    let exact: f64 = (0..k)
                        .map(|j| f64::from(x[[i, j]]) * f64::from(w[[o, j]]))
                        .sum();
                    assert!((f64::from(full[[i, o]]) - exact).abs() < 1e-4 * k as f64);
                    assert_eq!(
                        full[[i, o]],
                        dot(x.row(i).to_slice().unwrap(), w.row(o).to_slice().unwrap())
                    );
                }
            }
        }
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
