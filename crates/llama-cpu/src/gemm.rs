//! The products `X W` of the forward pass, written so that every output element is one
//! fixed chain of float operations that depends only on its own inputs:
//!
//! ```text
//! acc = +0; for kk in 0..depth { acc = mul_add(X[i][kk], W[kk][j], acc) }
//! ```
//!
//! in increasing `kk`, whatever kernel and tile computes it (see `math.rs` for why that makes
//! the model batch invariant). A tile only decides which elements advance side by side (one
//! SIMD lane each, so the weights loaded for a step are shared by several rows of `X`, and
//! no horizontal reduction is ever needed), and threads (`team.rs`) only decide who computes
//! which columns.
//!
//! Two families of tiles compute the chains, chosen once per process ([`kernels`]):
//!
//! * **portable** (this file): plain Rust written for LLVM's autovectoriser; with the
//!   workspace's x86-64-v3 target (`.cargo/config.toml`) they become 256-bit fused
//!   multiply-adds, f16 weights widened by F16C.
//! * **avx512** (`avx512.rs`): 512-bit tiles, used when the CPU has AVX-512F (detected at
//!   run time) and the build targets FMA. Twice the multiply-adds per instruction: what a
//!   tree of 8 or more nodes is limited by (the roofline in the crate docs).
//!
//! Both evaluate every element as the same chain of fused multiply-adds (one rounding
//! each, so the vector width does not matter) from the same f32 values (f16 weights widen
//! exactly), so they give the same bits, which the tests below check against the chain
//! written out.

use half::f16;
use half::slice::HalfFloatSliceExt;
use ndarray::ArrayView2;

use crate::math::mul_add;

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
pub(crate) trait Panel: Copy {
    fn row(&self, kk: usize) -> [f32; PANEL];

    /// The panel cut to its first `depth` rows, so that the compiler sees the reads of a
    /// loop over them stay inside.
    fn first_rows(self, depth: usize) -> Self;

    /// Whether the panels a product reads lie one after the other in memory, so that row
    /// `kk + np x depth` of a panel is row `kk` of the panel `np` further on (the packed
    /// f16 weights). The AVX-512 tiles prefetch the next group's rows in such panels, and
    /// rows a little ahead in their own panel in the others.
    const IN_SEQUENCE: bool = false;

    /// Asks the memory system for row `kk` (a hint: rows past the end, in or past the
    /// panel's storage, are harmless: a prefetch never faults).
    #[cfg(target_arch = "x86_64")]
    fn prefetch_avx512(&self, simd: pulp::x86::V4, kk: usize);

    /// Row `kk` in one AVX-512 register (the same values as [`row`](Self::row)).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn row_avx512(&self, simd: pulp::x86::V4, kk: usize) -> pulp::f32x16 {
        let _ = simd;
        pulp::cast(self.row(kk))
    }
}

/// A panel of a [`Packed`] matrix: `depth` rows of `PANEL` contiguous floats (rows as
/// arrays, so that a loop over `kk < depth` reads them with no bounds check).
#[derive(Clone, Copy)]
pub(crate) struct Contiguous<'a>(&'a [[f32; PANEL]]);

impl<'a> Contiguous<'a> {
    /// The panel held by `data` (`depth x PANEL` floats).
    pub(crate) fn new(data: &'a [f32]) -> Self {
        let (rows, rest) = data.as_chunks();
        debug_assert!(rest.is_empty(), "a panel holds whole rows");
        Self(rows)
    }
}

impl Panel for Contiguous<'_> {
    #[inline(always)]
    fn row(&self, kk: usize) -> [f32; PANEL] {
        self.0[kk]
    }

    #[inline(always)]
    fn first_rows(self, depth: usize) -> Self {
        Self(&self.0[..depth])
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn prefetch_avx512(&self, simd: pulp::x86::V4, kk: usize) {
        prefetch(simd, self.0.as_ptr().wrapping_add(kk));
    }
}

/// `PREFETCHT0` of the cache line at `at`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch<T>(simd: pulp::x86::V4, at: *const T) {
    simd.sse
        ._mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
}

/// A panel of a [`Packed`] matrix stored in f16, widened row by row as it is read.
#[derive(Clone, Copy)]
pub(crate) struct Half<'a>(&'a [[f16; PANEL]]);

impl<'a> Half<'a> {
    /// The panel held by `data` (`depth x PANEL` halves).
    fn new(data: &'a [f16]) -> Self {
        let (rows, rest) = data.as_chunks();
        debug_assert!(rest.is_empty(), "a panel holds whole rows");
        Self(rows)
    }
}

impl Panel for Half<'_> {
    const IN_SEQUENCE: bool = true;

    #[inline(always)]
    fn row(&self, kk: usize) -> [f32; PANEL] {
        let mut row = [0.0; PANEL];
        self.0[kk].convert_to_f32_slice(&mut row);
        row
    }

    #[inline(always)]
    fn first_rows(self, depth: usize) -> Self {
        Self(&self.0[..depth])
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn prefetch_avx512(&self, simd: pulp::x86::V4, kk: usize) {
        prefetch(simd, self.0.as_ptr().wrapping_add(kk));
    }

    /// `VCVTPH2PS`: the 16 halves widened in one instruction.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn row_avx512(&self, simd: pulp::x86::V4, kk: usize) -> pulp::f32x16 {
        let bits: [u16; PANEL] = self.0[kk]
            .reinterpret_cast()
            .try_into()
            .expect("PANEL halves");
        pulp::cast(simd.avx512f._mm512_cvtph_ps(pulp::cast(bits)))
    }
}

/// A panel of a matrix whose rows are `stride` blocks of `PANEL` floats apart: row `kk` of
/// the panel is `blocks[kk * stride + offset]`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a> {
    blocks: &'a [[f32; PANEL]],
    stride: usize,
    offset: usize,
}

impl Panel for Strided<'_> {
    #[inline(always)]
    fn row(&self, kk: usize) -> [f32; PANEL] {
        self.blocks[kk * self.stride + self.offset]
    }

    #[inline(always)]
    fn first_rows(self, depth: usize) -> Self {
        let end = depth
            .checked_sub(1)
            .map_or(0, |last| last * self.stride + self.offset + 1);
        Self {
            blocks: &self.blocks[..end],
            ..self
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn prefetch_avx512(&self, simd: pulp::x86::V4, kk: usize) {
        let at = kk.wrapping_mul(self.stride).wrapping_add(self.offset);
        prefetch(simd, self.blocks.as_ptr().wrapping_add(at));
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
        return run(
            Kernel::detected(),
            x,
            &vec![Contiguous(&[]); panels.len()],
            0,
            store,
        );
    }
    match &w.data {
        Storage::F32(data) => {
            let all: Vec<Contiguous<'_>> = data[panels.start * size..panels.end * size]
                .chunks_exact(size)
                .map(Contiguous::new)
                .collect();
            run(Kernel::detected(), x, &all, w.depth, store);
        }
        Storage::F16(data) => {
            // Every tile widens the weights it reads (the first of a group from memory, the
            // others from cache): cheaper than widening each group once into a buffer by
            // llvm-mca's estimate for up to four tiles a group, made when f16 tiles had 16
            // rows (64 nodes); with 8-row tiles that is 32 nodes, not measured since.
            let all: Vec<Half<'_>> = data[panels.start * size..panels.end * size]
                .chunks_exact(size)
                .map(Half::new)
                .collect();
            run(Kernel::detected(), x, &all, w.depth, store);
        }
    }
}

/// `X W` for `W` given as its panels: `panels[p]` holds columns `PANEL p .. PANEL (p + 1)`,
/// `depth` rows of `PANEL` contiguous floats (the layout of [`Packed`]). Like [`gemm`].
pub(crate) fn gemm_panels(x: &[&[f32]], panels: &[&[f32]], depth: usize, store: &mut impl Store) {
    let panels: Vec<Contiguous<'_>> = panels
        .iter()
        .map(|p| Contiguous::new(&p[..depth * PANEL]))
        .collect();
    run(Kernel::detected(), x, &panels, depth, store);
}

/// `X W` where row `kk` of `W` (`depth x cols`) is `w[kk * stride..][..cols]` (the rows
/// `x` are `depth` long or longer): like [`gemm`], reading `w` in place when its rows are
/// whole blocks of `PANEL` floats apart and every panel can be read `PANEL` wide, and from
/// a packed copy otherwise.
pub(crate) fn gemm_strided(
    x: &[&[f32]],
    w: &[f32],
    stride: usize,
    depth: usize,
    cols: usize,
    store: &mut impl Store,
) {
    let panels = cols.div_ceil(PANEL);
    let (blocks, _) = w.as_chunks::<PANEL>();
    let in_place = stride.is_multiple_of(PANEL)
        && depth
            .checked_sub(1)
            .is_none_or(|last| last * (stride / PANEL) + panels <= blocks.len());
    if in_place {
        let panels: Vec<Strided<'_>> = (0..panels)
            .map(|p| Strided {
                blocks,
                stride: stride / PANEL,
                offset: p,
            })
            .collect();
        run(Kernel::detected(), x, &panels, depth, store);
    } else {
        let rows: Vec<&[f32]> = (0..depth)
            .map(|kk| &w[kk * stride..kk * stride + cols])
            .collect();
        let packed = Packed::from_rows(&rows, cols);
        gemm(x, &packed, 0..panels, store);
    }
}

/// The kernels the products run on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kernel {
    /// The tiles of this file, compiled for the build's target features.
    Portable,
    /// The 512-bit tiles of `avx512.rs`.
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
}

impl Kernel {
    /// The best kernel this CPU and build allow, unless `LLAMA_CPU_KERNELS=portable` asks
    /// for the portable one; chosen once per process.
    pub(crate) fn detected() -> Self {
        static CHOICE: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| {
            let forced = std::env::var_os("LLAMA_CPU_KERNELS").is_some_and(|v| v == "portable");
            #[cfg(target_arch = "x86_64")]
            if !forced && let Some(simd) = crate::avx512::available() {
                return Kernel::Avx512(simd);
            }
            let _ = forced;
            Kernel::Portable
        })
    }
}

/// The kernels this process computes the products with: `"avx512"` (512-bit tiles, when
/// the CPU has AVX-512F and the build targets FMA, as the workspace's x86-64-v3 does) or
/// `"portable"` (tiles compiled for the build's target features: 256-bit AVX2 + FMA on
/// x86-64-v3). Setting `LLAMA_CPU_KERNELS=portable` before the first forward forces the
/// portable ones, to compare them. Both compute every output element as the same chain of
/// multiply-adds, so the logits are the same bits either way.
pub fn kernels() -> &'static str {
    match Kernel::detected() {
        Kernel::Portable => "portable",
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512(_) => "avx512",
    }
}

/// `X W` for `W` given as its panels, with `kernel`: hands every row's `PANEL` columns of
/// each panel to `store` (panels numbered from 0).
pub(crate) fn run<P: Panel>(
    kernel: Kernel,
    x: &[&[f32]],
    panels: &[P],
    depth: usize,
    store: &mut impl Store,
) {
    match kernel {
        Kernel::Portable => run_portable(x, panels, depth, store),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512(simd) => crate::avx512::run(simd, x, panels, depth, store),
    }
}

/// Rows of the tallest tile (`6 x 1` panel: 12 accumulator registers).
const TALL: usize = 6;

/// Panels read side by side by a one-row tile (`1 x 4` panels: 8 accumulator registers).
const WIDE: usize = 4;

/// The portable tiles. Panels go [`WIDE`] at a time: row 0 first meets the four together, so that
/// four streams of weights come from memory at once (one stream alone leaves most of the
/// memory bandwidth unused); the other rows then find them in cache, and go [`TALL`] at a
/// time against one panel, the last few (fewer than `TALL`) against one panel, or for 1 or
/// 2 rows against 4 or 2 panels at once so that they still keep 8 independent
/// accumulators. (A `3 x 2` tile compiled to scalar code.)
fn run_portable<P: Panel>(x: &[&[f32]], panels: &[P], depth: usize, store: &mut impl Store) {
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
            // The same matrix as rows `stride` apart (in place when every panel can be read
            // whole, else packed).
            let wt = w.t().as_standard_layout().to_owned();
            for stride in [n, n.next_multiple_of(PANEL), n.next_multiple_of(PANEL) + 5] {
                let mut strided = vec![f32::NAN; k * stride];
                for (kk, row) in wt.rows().into_iter().enumerate() {
                    strided[kk * stride..kk * stride + n].copy_from_slice(row.as_slice().unwrap());
                }
                let mut by_rows = Array2::from_elem((m, n), f32::NAN);
                gemm_strided(
                    &rows,
                    &strided,
                    stride,
                    k,
                    n,
                    &mut |i, j, v: &[f32; PANEL]| {
                        for (c, &v) in v.iter().enumerate().take(n.saturating_sub(j)) {
                            by_rows[[i, j + c]] = v;
                        }
                    },
                );
                assert_eq!(by_rows, full);
            }
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

    fn product_of<P: Panel>(
        kernel: Kernel,
        x: &[&[f32]],
        panels: &[P],
        depth: usize,
        cols: usize,
    ) -> Array2<f32> {
        let mut out = Array2::from_elem((x.len(), cols), f32::NAN);
        run(kernel, x, panels, depth, &mut |i, j, v: &[f32; PANEL]| {
            for (c, &v) in v.iter().enumerate() {
                out[[i, j + c]] = v;
            }
        });
        out
    }

    /// Every kernel this CPU has, for every tile shape (1 to 40 rows: one tile, several,
    /// widened f16 groups), every kind of panel and panel counts that leave remainders,
    /// gives each element as the chain written out.
    #[test]
    fn every_kernel_gives_the_chain_for_every_shape() {
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        kernels.extend(crate::avx512::available().map(Kernel::Avx512));
        if kernels.len() == 1 {
            eprintln!("no AVX-512 on this CPU: only the portable kernel is checked");
        }
        for (depth, panels) in [(37, 1), (20, 3), (64, 5), (9, 11), (48, 19)] {
            let cols = panels * PANEL;
            // f16 values, so that the same matrix exists as f32 and f16 panels.
            let w = Array2::from_shape_fn((cols, depth), |(j, kk)| {
                f16::from_f32(pseudo(11 + j * depth + kk * 5)).to_f32()
            });
            let packed = Packed::from_out_in(w.view());
            let Storage::F16(halves) = &packed.data else {
                panic!("f16 values are stored in f16")
            };
            let singles: Vec<f32> = halves.iter().map(|v| v.to_f32()).collect();
            let wt = w.t().as_standard_layout().to_owned();
            let size = depth * PANEL;
            let half: Vec<Half<'_>> = halves.chunks_exact(size).map(Half::new).collect();
            let single: Vec<Contiguous<'_>> =
                singles.chunks_exact(size).map(Contiguous::new).collect();
            let strided: Vec<Strided<'_>> = (0..panels)
                .map(|p| Strided {
                    blocks: wt.as_slice().unwrap().as_chunks().0,
                    stride: panels,
                    offset: p,
                })
                .collect();
            for m in (1..=26).chain([31, 40]) {
                let x = Array2::from_shape_fn((m, depth + 3), |(i, kk)| pseudo(i * 97 + kk));
                let rows: Vec<&[f32]> = x
                    .rows()
                    .into_iter()
                    .map(|r| r.to_slice().unwrap())
                    .collect();
                let expected = Array2::from_shape_fn((m, cols), |(i, j)| {
                    chain(&rows[i][..depth], w.row(j).iter().copied())
                });
                for &kernel in &kernels {
                    for (name, product) in [
                        ("f16", product_of(kernel, &rows, &half, depth, cols)),
                        ("f32", product_of(kernel, &rows, &single, depth, cols)),
                        ("rows", product_of(kernel, &rows, &strided, depth, cols)),
                    ] {
                        assert_eq!(
                            product, expected,
                            "{kernel:?} {name}, {m} x {depth} x {cols}"
                        );
                    }
                }
            }
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
}
