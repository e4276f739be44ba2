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
//! in increasing `kk`, whatever kernel tile computes it ([`gemm`]): a tile only decides
//! which elements advance side by side (one SIMD lane each, so the weights loaded for a
//! step are shared by several rows of `X`, and no horizontal reduction is ever needed), and
//! threads (`team.rs`) only decide who computes which columns. [`mul_add`] is one fused
//! multiply-add when the build targets FMA and a multiply then an add otherwise: a fixed
//! function for a given build either way.

use half::f16;
use half::slice::HalfFloatSliceExt;
use ndarray::ArrayView2;

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

/// Columns of `W` a kernel tile advances together: two AVX registers.
pub(crate) const PANEL: usize = 16;

/// A matrix `W` (`depth x cols`) stored for [`gemm`]: columns in panels of [`PANEL`], each
/// panel `depth` rows of `PANEL` contiguous floats, the last one padded with zeros. Stored
/// in f16 when every element is an f16 value (weights from an f16 checkpoint): converting
/// back to f32 is exact, so the products are the same bits, and reading half the bytes
/// from memory is what a small batch is limited by.
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    data: Storage,
    depth: usize,
    cols: usize,
}

#[derive(Clone, Debug)]
enum Storage {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Packed {
    /// `W = w^T` for weights `w` in the HF `[out, in]` layout (`cols = out`, `depth = in`):
    /// column `j` of `W` is row `j` of `w`. Stored in f16 when that is exact.
    pub(crate) fn from_out_in(w: ArrayView2<'_, f32>) -> Self {
        let (cols, depth) = w.dim();
        let mut data = vec![0.0; cols.div_ceil(PANEL) * depth * PANEL];
        for (j, row) in w.rows().into_iter().enumerate() {
            let (p, lane) = (j / PANEL, j % PANEL);
            let panel = &mut data[p * depth * PANEL..(p + 1) * depth * PANEL];
            for (slot, &v) in panel[lane..].iter_mut().step_by(PANEL).zip(row) {
                *slot = v;
            }
        }
        let exact = data
            .iter()
            .all(|&v| f16::from_f32(v).to_f32().to_bits() == v.to_bits());
        let data = if exact {
            Storage::F16(data.iter().map(|&v| f16::from_f32(v)).collect())
        } else {
            Storage::F32(data)
        };
        Self { data, depth, cols }
    }

    /// `W` whose row `kk` is `rows[kk][..cols]`, in f32.
    pub(crate) fn from_rows(rows: &[&[f32]], cols: usize) -> Self {
        let depth = rows.len();
        let mut data = vec![0.0; cols.div_ceil(PANEL) * depth * PANEL];
        for (kk, row) in rows.iter().enumerate() {
            for (p, chunk) in row[..cols].chunks(PANEL).enumerate() {
                let start = (p * depth + kk) * PANEL;
                data[start..start + chunk.len()].copy_from_slice(chunk);
            }
        }
        Self {
            data: Storage::F32(data),
            depth,
            cols,
        }
    }

    /// Rows of `W` (the length of the dot products).
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// Columns of `W`.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Whether the elements are stored in f16.
    #[cfg(test)]
    fn is_f16(&self) -> bool {
        matches!(self.data, Storage::F16(_))
    }
}

/// Rows of one panel: row `kk` holds columns `16 p .. 16 p + 16` of row `kk` of `W`.
trait Panel: Copy {
    fn row(&self, kk: usize) -> [f32; PANEL];
}

/// A panel of a [`Packed`] matrix: `depth x PANEL` contiguous floats.
#[derive(Clone, Copy)]
struct Contiguous<'a>(&'a [f32]);

impl Panel for Contiguous<'_> {
    #[inline(always)]
    fn row(&self, kk: usize) -> [f32; PANEL] {
        self.0[kk * PANEL..(kk + 1) * PANEL]
            .try_into()
            .expect("PANEL floats")
    }
}

/// A panel of a [`Packed`] matrix stored in f16, widened row by row as it is read.
#[derive(Clone, Copy)]
struct Half<'a>(&'a [f16]);

impl Panel for Half<'_> {
    #[inline(always)]
    fn row(&self, kk: usize) -> [f32; PANEL] {
        let mut row = [0.0; PANEL];
        self.0[kk * PANEL..(kk + 1) * PANEL].convert_to_f32_slice(&mut row);
        row
    }
}

/// A panel of a matrix given row by row: `rows[kk][offset .. offset + PANEL]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    rows: &'a [&'a [f32]],
    offset: usize,
}

impl Panel for Strided<'_> {
    #[inline(always)]
    fn row(&self, kk: usize) -> [f32; PANEL] {
        self.rows[kk][self.offset..self.offset + PANEL]
            .try_into()
            .expect("PANEL floats")
    }
}

/// Receives `(row, first column, values)`: row `row` of the product, columns `first ..
/// first + PANEL` (those past the matrix's last column are to be ignored).
pub(crate) trait Store: FnMut(usize, usize, &[f32; PANEL]) {}

impl<F: FnMut(usize, usize, &[f32; PANEL])> Store for F {}

/// `X W` for the rows `x` (each at least `w.depth()` long) and the panels `panels` of `w`:
/// hands every row's `PANEL` columns of each panel to `store` (columns numbered from the
/// first of `panels`). Every element is the chain of [`mul_add`] described in the module
/// docs, so it does not depend on the other rows or panels computed with it.
pub(crate) fn gemm(
    x: &[&[f32]],
    w: &Packed,
    panels: std::ops::Range<usize>,
    store: &mut impl Store,
) {
    let size = w.depth * PANEL;
    if x.is_empty() {
        return;
    }
    if size == 0 {
        return run(x, &vec![Contiguous(&[]); panels.len()], 0, store);
    }
    match &w.data {
        Storage::F32(data) => {
            let all: Vec<Contiguous<'_>> = data[panels.start * size..panels.end * size]
                .chunks_exact(size)
                .map(Contiguous)
                .collect();
            run(x, &all, w.depth, store);
        }
        Storage::F16(data) => {
            // Every tile widens the weights it reads (the first from memory, the others
            // from cache): cheaper than widening each group once into a buffer.
            let all: Vec<Half<'_>> = data[panels.start * size..panels.end * size]
                .chunks_exact(size)
                .map(Half)
                .collect();
            run(x, &all, w.depth, store);
        }
    }
}

/// `X W` for `W` given as its panels: `panels[p]` holds columns `PANEL p .. PANEL (p + 1)`,
/// `depth` rows of `PANEL` contiguous floats (the layout of [`Packed`]). Like [`gemm`].
pub(crate) fn gemm_panels(x: &[&[f32]], panels: &[&[f32]], depth: usize, store: &mut impl Store) {
    let panels: Vec<Contiguous<'_>> = panels
        .iter()
        .map(|p| Contiguous(&p[..depth * PANEL]))
        .collect();
    run(x, &panels, depth, store);
}

/// `X W` where row `kk` of `W` is `w_rows[kk][..cols]` (the rows `x` are `w_rows.len()`
/// long or longer): like [`gemm`], reading the rows in place when every panel can be read
/// `PANEL` wide, and from a packed copy otherwise.
pub(crate) fn gemm_rows(x: &[&[f32]], w_rows: &[&[f32]], cols: usize, store: &mut impl Store) {
    let width = cols.div_ceil(PANEL) * PANEL;
    if w_rows.iter().all(|row| row.len() >= width) {
        let panels: Vec<Strided<'_>> = (0..cols.div_ceil(PANEL))
            .map(|p| Strided {
                rows: w_rows,
                offset: p * PANEL,
            })
            .collect();
        run(x, &panels, w_rows.len(), store);
    } else {
        let packed = Packed::from_rows(w_rows, cols);
        gemm(x, &packed, 0..cols.div_ceil(PANEL), store);
    }
}

/// Rows of the tallest tile (`6 x 1` panel: 12 accumulator registers).
const TALL: usize = 6;

/// Panels read side by side by a one-row tile (`1 x 4` panels: 8 accumulator registers).
const WIDE: usize = 4;

/// The tiles. Panels go [`WIDE`] at a time: row 0 first meets the four together, so that
/// four streams of weights come from memory at once (one stream alone leaves most of the
/// memory bandwidth unused); the other rows then find them in cache, and go [`TALL`] at a
/// time against one panel, the last few (fewer than `TALL`) against one panel, or for 1 or
/// 2 rows against 4 or 2 panels at once so that they still keep 8 independent
/// accumulators. (A `3 x 2` tile compiled to scalar code.)
fn run<P: Panel>(x: &[&[f32]], panels: &[P], depth: usize, store: &mut impl Store) {
    for (g, group) in panels.chunks(WIDE).enumerate() {
        run_group(x, group, g * WIDE, depth, store);
    }
}

/// One group of at most [`WIDE`] panels (numbered from `first`), as [`run`] describes.
fn run_group<P: Panel>(
    x: &[&[f32]],
    group: &[P],
    first: usize,
    depth: usize,
    store: &mut impl Store,
) {
    if x.is_empty() {
        return;
    }
    match <[P; WIDE]>::try_from(group) {
        Ok(wide) => {
            tile::<1, WIDE, P>(x, 0, wide, first, depth, store);
            run_rows(x, 1, group, first, depth, store);
        }
        Err(_) => run_rows(x, 0, group, first, depth, store),
    }
}

/// The rows from `start` on against the panels `group` (numbered from `first`): [`TALL`]
/// at a time, then the last few.
fn run_rows<P: Panel>(
    x: &[&[f32]],
    start: usize,
    group: &[P],
    first: usize,
    depth: usize,
    store: &mut impl Store,
) {
    let full = start + (x.len().max(start) - start) / TALL * TALL;
    for (p, &panel) in group.iter().enumerate() {
        for i in (start..full).step_by(TALL) {
            tile::<TALL, 1, P>(x, i, [panel], first + p, depth, store);
        }
    }
    match (x.len().max(full) - full, <[P; WIDE]>::try_from(group)) {
        (0, _) => {}
        (1, Ok(wide)) => tile::<1, WIDE, P>(x, full, wide, first, depth, store),
        (2, Ok([a, b, c, d])) => {
            tile::<2, 2, P>(x, full, [a, b], first, depth, store);
            tile::<2, 2, P>(x, full, [c, d], first + 2, depth, store);
        }
        (rest, _) => {
            for (p, &panel) in group.iter().enumerate() {
                let p = first + p;
                match rest {
                    1 => tile::<1, 1, P>(x, full, [panel], p, depth, store),
                    2 => tile::<2, 1, P>(x, full, [panel], p, depth, store),
                    3 => tile::<3, 1, P>(x, full, [panel], p, depth, store),
                    4 => tile::<4, 1, P>(x, full, [panel], p, depth, store),
                    _ => tile::<5, 1, P>(x, full, [panel], p, depth, store),
                }
            }
        }
    }
}

/// Rows `first_row .. first_row + R` of `x` against `NP` panels (numbered from
/// `first_panel`): `R x NP x 2` accumulator registers, each advanced by [`mul_add`] once per
/// `kk`. Not inlined, so that its
/// code does not depend on the caller's (the shapes used here compile to a loop of
/// `R x NP x 2` 256-bit FMAs and no spill, which is fragile: check the disassembly after
/// any change).
#[inline(never)]
#[allow(clippy::needless_range_loop)] // indexed on purpose: this form vectorises well
fn tile<const R: usize, const NP: usize, P: Panel>(
    x: &[&[f32]],
    first_row: usize,
    panels: [P; NP],
    first_panel: usize,
    depth: usize,
    store: &mut impl Store,
) {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &x[first_row + r][..depth]);
    // Each panel row as two halves of 8 (one AVX register each): written this way, LLVM
    // keeps every accumulator in a register for every tile shape used here.
    let mut acc = [[[[0.0f32; 8]; 2]; NP]; R];
    for kk in 0..depth {
        let xs: [f32; R] = std::array::from_fn(|r| rows[r][kk]);
        for p in 0..NP {
            let row = panels[p].row(kk);
            let (low, high) = row.split_at(8);
            let halves: [&[f32; 8]; 2] = [
                low.try_into().expect("8 floats"),
                high.try_into().expect("8 floats"),
            ];
            for r in 0..R {
                for h in 0..2 {
                    multiply_add(&mut acc[r][p][h], xs[r], halves[h]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (p, [low, high]) in row.iter().enumerate() {
            let mut values = [0.0f32; PANEL];
            values[..8].copy_from_slice(low);
            values[8..].copy_from_slice(high);
            store(first_row + r, (first_panel + p) * PANEL, &values);
        }
    }
}

/// `acc[j] = mul_add(a, w[j], acc[j])` for the 8 lanes of one register.
#[inline(always)]
fn multiply_add(acc: &mut [f32; 8], a: f32, w: &[f32; 8]) {
    for j in 0..8 {
        acc[j] = mul_add(a, w[j], acc[j]);
    }
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
    use ndarray::Array2;

    use super::*;

    fn pseudo(i: usize) -> f32 {
        ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0
    }

    /// The chain every element of a product must be, written out.
    fn chain(x: &[f32], column: impl Iterator<Item = f32>) -> f32 {
        x.iter()
            .zip(column)
            .fold(0.0, |acc, (&a, b)| mul_add(a, b, acc))
    }

    fn product(x: &[&[f32]], w: &Packed, cols: usize) -> Array2<f32> {
        let mut out = Array2::from_elem((x.len(), cols), f32::NAN);
        gemm(
            x,
            w,
            0..cols.div_ceil(PANEL),
            &mut |i, j, v: &[f32; PANEL]| {
                for (c, &v) in v.iter().enumerate().take(cols.saturating_sub(j)) {
                    out[[i, j + c]] = v;
                }
            },
        );
        out
    }

    #[test]
    fn every_element_is_the_same_chain_whatever_the_tile() {
        for (m, k, n) in [
            (1, 13, 7),
            (5, 64, 9),
            (7, 37, 32),
            (3, 384, 1030),
            (13, 20, 70),
        ] {
            let x = Array2::from_shape_fn((m, k), |(i, j)| pseudo(i * k + j));
            let w = Array2::from_shape_fn((n, k), |(i, j)| pseudo(7 + i * k + j * 3));
            let packed = Packed::from_out_in(w.view());
            assert_eq!((packed.depth(), packed.cols()), (k, n));
            let rows: Vec<&[f32]> = x
                .rows()
                .into_iter()
                .map(|r| r.to_slice().unwrap())
                .collect();
            let full = product(&rows, &packed, n);
            for i in 0..m {
                // Any subset of rows, in any tile, gives the same bits.
                for start in [0, i.saturating_sub(2)] {
                    let some = product(&rows[start..=i], &packed, n);
                    assert_eq!(some.row(i - start), full.row(i));
                }
                for o in 0..n {
                    let exact: f64 = (0..k)
                        .map(|j| f64::from(x[[i, j]]) * f64::from(w[[o, j]]))
                        .sum();
                    assert!((f64::from(full[[i, o]]) - exact).abs() < 1e-4 * k as f64);
                    assert_eq!(full[[i, o]], chain(rows[i], w.row(o).iter().copied()));
                }
            }
            // The same matrix given row by row (in place when wide enough, else packed).
            let wt = w.t().as_standard_layout().to_owned();
            let w_rows: Vec<&[f32]> = wt
                .rows()
                .into_iter()
                .map(|r| r.to_slice().unwrap())
                .collect();
            let mut by_rows = Array2::from_elem((m, n), f32::NAN);
            gemm_rows(&rows, &w_rows, n, &mut |i, j, v: &[f32; PANEL]| {
                for (c, &v) in v.iter().enumerate().take(n.saturating_sub(j)) {
                    by_rows[[i, j + c]] = v;
                }
            });
            assert_eq!(by_rows, full);
            // The same panels handed over one by one.
            let Storage::F32(data) = &packed.data else {
                panic!("these weights are not f16 values")
            };
            let panels: Vec<&[f32]> = data.chunks_exact(k * PANEL).collect();
            let mut by_panels = Array2::from_elem((m, n), f32::NAN);
            gemm_panels(&rows, &panels, k, &mut |i, j, v: &[f32; PANEL]| {
                for (c, &v) in v.iter().enumerate().take(n.saturating_sub(j)) {
                    by_panels[[i, j + c]] = v;
                }
            });
            assert_eq!(by_panels, full);
        }
    }

    #[test]
    fn f16_weights_give_the_same_bits_as_f32_ones() {
        for (m, k, n) in [(1, 40, 70), (7, 384, 100), (13, 20, 16)] {
            let x = Array2::from_shape_fn((m, k), |(i, j)| pseudo(i * k + j));
            let w = Array2::from_shape_fn((n, k), |(i, j)| {
                half::f16::from_f32(pseudo(3 + i * k + j * 7) * 1.7).to_f32()
            });
            let half = Packed::from_out_in(w.view());
            assert!(half.is_f16());
            let Storage::F16(data) = &half.data else {
                unreachable!()
            };
            let single = Packed {
                data: Storage::F32(data.iter().map(|v| v.to_f32()).collect()),
                depth: k,
                cols: n,
            };
            let rows: Vec<&[f32]> = x
                .rows()
                .into_iter()
                .map(|r| r.to_slice().unwrap())
                .collect();
            for panels in [0..n.div_ceil(PANEL), 1..n.div_ceil(PANEL)] {
                let cols = (panels.len() * PANEL).min(n - panels.start * PANEL);
                let mut results = [0, 1].map(|_| Array2::from_elem((m, cols), f32::NAN));
                for (packed, out) in [&half, &single].into_iter().zip(&mut results) {
                    gemm(
                        &rows,
                        packed,
                        panels.clone(),
                        &mut |i, j, v: &[f32; PANEL]| {
                            for (c, &v) in v.iter().enumerate().take(cols.saturating_sub(j)) {
                                out[[i, j + c]] = v;
                            }
                        },
                    );
                }
                assert_eq!(results[0], results[1]);
                assert!(results[0].iter().all(|v| v.is_finite()));
            }
        }
        let w = Array2::from_shape_fn((3, 5), |(i, j)| pseudo(i * 5 + j));
        assert!(!Packed::from_out_in(w.view()).is_f16());
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
