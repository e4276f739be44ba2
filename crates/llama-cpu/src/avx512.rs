//! The AVX-512 tiles of the products (`gemm.rs`), used when the CPU has AVX-512F.
//!
//! Why: a forward over `k` tree nodes reads every weight once and does `k` multiply-adds
//! with it. From about 8 nodes on, the multiply-adds, not the memory, are the limit
//! (the roofline table in the crate docs), and AVX-512 does twice as many per instruction as
//! the AVX2 of the portable tiles: on the Xeon this was written on, 171 against 81 f32
//! GFLOP/s on one core.
//!
//! How, without `unsafe` (the workspace forbids it): the [`pulp`] crate (the SIMD layer of
//! the `faer` linear algebra library) detects the CPU features once and hands out a `V4`
//! token only when AVX-512F/BW/CD/DQ/VL are there; [`V4::vectorize`] then runs a closure
//! compiled with those features, and the token's methods are the intrinsics as safe
//! functions, so each tile is written instruction by instruction (512-bit FMAs with
//! broadcast operands, `VCVTPH2PS` for f16 rows) instead of left to the autovectoriser, and
//! the token is a value the tests pass to run both kernels side by side. The alternatives:
//! `std::arch` runtime dispatch needs `unsafe` for the call into code compiled for features
//! the build does not assume; building for x86-64-v4 would leave out every CPU without
//! AVX-512; the `multiversion` crate dispatches safely too, but clones autovectorised
//! functions, whose vector width and f16 conversions are LLVM's choice.

//! The tiles: `R` rows of `X` against `NP` panels of 16 columns (one 512-bit register
//! each): `R x NP` accumulators advance by one fused multiply-add per `kk`, the row values
//! broadcast from memory, the panel rows loaded (f16 ones widened by `VCVTPH2PS`) once per
//! `kk` for all `R` rows. Rows are split into near-equal tiles of at most [`MAX_ROWS`];
//! each tile reads [`panels_for`] panels side by side (8 for one row, so that a single row,
//! limited by memory, keeps 8 streams of weights in flight). Panels go group by group, and
//! within a group tile by tile, so that the weights of a group come from memory once (for
//! the first tile; the others find them in cache), while each tile prefetches the next
//! group's ([`prefetch_distance`]).
//!
//! Every element is still `acc = +0; acc = fma(x[kk], w[kk], acc)` in increasing `kk`: the
//! same chain, hence the same bits, as the portable tiles and as any other tile here.

use std::ops::Range;

use pulp::x86::V4;
use pulp::{cast, f32x16};

use crate::gemm::{PANEL, Panel, Store};

/// The AVX-512 token, when this CPU has AVX-512 and the build computes `mul_add` fused
/// (the portable path's chains are then the same fused multiply-adds as these).
pub(crate) fn available() -> Option<V4> {
    if cfg!(target_feature = "fma") {
        V4::try_new()
    } else {
        None
    }
}

/// Rows of the tallest tile: 8 rows x 2 panels is 16 accumulators, plus the broadcast row
/// values and 2 panel rows that LLVM keeps in registers at once (of 32), and 8 row pointers
/// fit in the general registers. Taller tiles of two panels spill accumulators; taller
/// tiles of one panel (16 x 1 over f16 panels, one `VCVTPH2PS` per 16 FMAs instead of 2)
/// reload row pointers from the stack every `kk`, and even with their rows interleaved
/// behind one pointer they measured 3-7% slower than two 8 x 2 tiles at k = 16 and 32.
pub(crate) const MAX_ROWS: usize = 8;

/// Rows ahead of `kk` that a tile reading `np` panels of `depth` rows side by side asks the
/// memory system for, in each panel.
///
/// Panels stored [in sequence](Panel::IN_SEQUENCE) (the f16 weights): tiles of up to four
/// panels prefetch exactly one group ahead (`np x depth` rows, which is row `kk` of the
/// panels the next group's tiles read), so every request is for data used one group's time
/// later, long after it arrives, and two groups stay in cache (at most 4 x 1024 x 32 bytes
/// each, in L2). Eight panels (the single-row tile, limited by memory) prefetch
/// [`WIDE_AHEAD`] rows ahead in each of their eight streams: a group ahead there would keep
/// 256 KB in flight. Other panels (the cache's keys and values, f32 weights) prefetch
/// [`OWN_AHEAD`] rows ahead in their own panel. The hardware prefetchers alone left the
/// tiles waiting on loads: the crate docs' roofline, before and after.
fn prefetch_distance(in_sequence: bool, np: usize, depth: usize) -> usize {
    match (in_sequence, np) {
        (true, 0..=4) => np * depth,
        (true, _) => WIDE_AHEAD,
        (false, _) => OWN_AHEAD,
    }
}

/// Rows ahead in each panel of an eight-panel tile (see [`prefetch_distance`]).
const WIDE_AHEAD: usize = 64;

/// Rows ahead in panels not stored in sequence (see [`prefetch_distance`]).
const OWN_AHEAD: usize = 16;

/// Panels a tile of `rows` rows reads side by side: at most 16 accumulators, and a power of
/// two so that any number of panels splits into groups the tiles exist for. A single row
/// reads 8, to keep 8 streams of weights coming from memory.
pub(crate) fn panels_for(rows: usize) -> usize {
    match rows {
        0 | 1 => 8,
        2..=4 => 4,
        5..=8 => 2,
        _ => 1,
    }
}

/// `X W` for `W` given as its panels (see `gemm::run`), on AVX-512.
pub(crate) fn run<P: Panel>(
    simd: V4,
    x: &[&[f32]],
    panels: &[P],
    depth: usize,
    store: &mut impl Store,
) {
    let tiles = row_tiles(x.len(), MAX_ROWS);
    let Some(tallest) = tiles.first() else {
        return;
    };
    let width = panels_for(tallest.len());
    let mut first = 0;
    while first < panels.len() {
        // Whole groups of `width` panels, then the rest in halving groups.
        let mut group = width;
        while group > panels.len() - first {
            group /= 2;
        }
        for rows in &tiles {
            tile_any(
                simd,
                x,
                rows,
                &panels[first..first + group],
                first,
                depth,
                store,
            );
        }
        first += group;
    }
}

/// `0..n` split into the fewest tiles of at most `max` rows, as equal as can be (the
/// taller ones first).
fn row_tiles(n: usize, max: usize) -> Vec<Range<usize>> {
    let count = n.div_ceil(max);
    let mut start = 0;
    (0..count)
        .map(|t| {
            let len = n / count + usize::from(t < n % count);
            start += len;
            start - len..start
        })
        .collect()
}

/// The tile for `rows` of `x` against `group` (panels numbered from `first`).
fn tile_any<P: Panel>(
    simd: V4,
    x: &[&[f32]],
    rows: &Range<usize>,
    group: &[P],
    first: usize,
    depth: usize,
    store: &mut impl Store,
) {
    macro_rules! tiles {
        ($($r:literal x $np:literal),* $(,)?) => {
            match (rows.len(), group.len()) {
                $(($r, $np) => tile::<$r, $np, P>(
                    simd,
                    x,
                    rows.start,
                    group.try_into().expect("as many panels as the tile reads"),
                    first,
                    depth,
                    store,
                ),)*
                (r, np) => unreachable!("no {r} x {np} tile: panels_for and the row limits disagree"),
            }
        };
    }
    tiles!(
        1 x 8, 1 x 4, 1 x 2, 1 x 1,
        2 x 4, 2 x 2, 2 x 1,
        3 x 4, 3 x 2, 3 x 1,
        4 x 4, 4 x 2, 4 x 1,
        5 x 2, 5 x 1,
        6 x 2, 6 x 1,
        7 x 2, 7 x 1,
        8 x 2, 8 x 1,
    );
}

/// Rows `first_row .. first_row + R` of `x` against `NP` panels (numbered from
/// `first_panel`): `R x NP` accumulator registers, each advanced by one fused multiply-add
/// per `kk`. Not inlined, so that its code does not depend on the caller's (each shape
/// compiles to a loop of `NP` panel-row loads, `R` broadcasts and `R x NP` FMAs with no
/// spilled accumulator: check the disassembly after any change).
#[inline(never)]
#[allow(clippy::needless_range_loop)] // indexed on purpose: this form keeps `acc` in registers
fn tile<const R: usize, const NP: usize, P: Panel>(
    simd: V4,
    x: &[&[f32]],
    first_row: usize,
    panels: [P; NP],
    first_panel: usize,
    depth: usize,
    store: &mut impl Store,
) {
    simd.vectorize(
        #[inline(always)]
        || {
            let rows: [&[f32]; R] = std::array::from_fn(|r| &x[first_row + r][..depth]);
            let panels = panels.map(|p| p.first_rows(depth));
            let ahead = prefetch_distance(P::IN_SEQUENCE, NP, depth);
            let mut acc = [[simd.splat_f32x16(0.0); NP]; R];
            // A loop entered only when it runs (no empty-loop path whose zeros would merge
            // with the accumulators after it): with that merge LLVM copies every
            // accumulator to a second register each iteration in the tallest tiles.
            let mut kk = 0;
            while kk < depth {
                let w: [f32x16; NP] = std::array::from_fn(|p| panels[p].row_avx512(simd, kk));
                for panel in &panels {
                    panel.prefetch_avx512(simd, kk + ahead);
                }
                for r in 0..R {
                    let a = simd.splat_f32x16(rows[r][kk]);
                    for p in 0..NP {
                        acc[r][p] = simd.mul_add_f32x16(a, w[p], acc[r][p]);
                    }
                }
                kk += 1;
            }
            for (r, row) in acc.iter().enumerate() {
                for (p, &values) in row.iter().enumerate() {
                    store(first_row + r, (first_panel + p) * PANEL, &cast(values));
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_tiles_are_near_equal_and_cover_every_row() {
        for max in [1, 3, MAX_ROWS] {
            for n in 0..100 {
                let tiles = row_tiles(n, max);
                assert_eq!(tiles.len(), n.div_ceil(max));
                let mut next = 0;
                for t in &tiles {
                    assert_eq!(t.start, next);
                    assert!(t.len() <= max && t.len() + 1 >= tiles[0].len());
                    assert!(t.len() <= tiles[0].len());
                    next = t.end;
                }
                assert_eq!(next, n);
            }
        }
    }
}
