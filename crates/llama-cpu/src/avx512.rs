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
//! functions. The alternatives: `std::arch` needs `unsafe` for the call into code compiled
//! for features the build does not assume; building for x86-64-v4 would leave out every
//! CPU without AVX-512; `multiversion` expands to `unsafe` in the calling crate.
//!
//! The tiles: `R` rows of `X` (at most [`MAX_ROWS`]) against `NP` panels of 16 columns
//! (one 512-bit register each): `R x NP` accumulators advance by one fused multiply-add per
//! `kk`, the row values broadcast from memory, the panel rows loaded (f16 ones widened by
//! `VCVTPH2PS`) once per `kk` for all `R` rows. Rows are split into near-equal tiles of at
//! most [`MAX_ROWS`]; each tile reads [`panels_for`] panels side by side (8 for one row, so
//! that a single row, limited by memory, keeps 8 streams of weights in flight). Panels go
//! group by group, and within a group tile by tile, so that the weights of a group come from
//! memory once. A `VCVTPH2PS` takes the two ports the FMAs use, so an f16 group read by
//! several tiles is widened once: the first tile writes the f32 rows it converts to a
//! buffer, which the other tiles read.
//!
//! Every element is still `acc = +0; acc = fma(x[kk], w[kk], acc)` in increasing `kk`: the
//! same chain, hence the same bits, as the portable tiles and as any other tile here.

use std::ops::Range;

use pulp::x86::V4;
use pulp::{cast, f32x16};

use crate::gemm::{Contiguous, PANEL, Panel, Store};

/// The AVX-512 token, when this CPU has AVX-512 and the build computes `mul_add` fused
/// (the portable path's chains are then the same fused multiply-adds as these).
pub(crate) fn available() -> Option<V4> {
    if cfg!(target_feature = "fma") {
        V4::try_new()
    } else {
        None
    }
}

/// Rows of the tallest tile: 8 rows x 2 panels is 16 accumulators, plus the 8 broadcast
/// row values and 2 panel rows that LLVM keeps in registers at once (of 32). Taller tiles
/// compile to loops that spill accumulators.
pub(crate) const MAX_ROWS: usize = 8;

/// Panels a tile of `rows` rows reads side by side (at most 16 accumulators, and a power
/// of two so that any number of panels splits into groups the tiles exist for).
pub(crate) fn panels_for(rows: usize) -> usize {
    match rows {
        0 | 1 => 8,
        2..=4 => 4,
        _ => 2,
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
    let tiles = row_tiles(x.len());
    let Some((tallest, others)) = tiles.split_first() else {
        return;
    };
    let width = panels_for(tallest.len());
    // Converted rows read by several tiles: the first tile widens them into a buffer as it
    // goes (its loads from memory overlapping its multiply-adds), the others read that.
    let widen = P::CONVERTS && !others.is_empty();
    let mut widened = vec![0.0; if widen { width * depth * PANEL } else { 0 }];
    let mut first = 0;
    while first < panels.len() {
        // Whole groups of `width` panels, then the rest in halving groups.
        let mut group = width;
        while group > panels.len() - first {
            group /= 2;
        }
        let panels = &panels[first..first + group];
        if widen {
            let buffer = &mut widened[..group * depth * PANEL];
            tile_any(simd, x, tallest, panels, first, depth, Some(buffer), store);
            let wide: Vec<Contiguous<'_>> =
                buffer.chunks_exact(depth * PANEL).map(Contiguous).collect();
            for rows in others {
                tile_any(simd, x, rows, &wide, first, depth, None, store);
            }
        } else {
            for rows in &tiles {
                tile_any(simd, x, rows, panels, first, depth, None, store);
            }
        }
        first += group;
    }
}

/// `0..n` split into the fewest tiles of at most [`MAX_ROWS`] rows, as equal as can be
/// (the taller ones first).
fn row_tiles(n: usize) -> Vec<Range<usize>> {
    let count = n.div_ceil(MAX_ROWS);
    let mut start = 0;
    (0..count)
        .map(|t| {
            let len = n / count + usize::from(t < n % count);
            start += len;
            start - len..start
        })
        .collect()
}

/// The tile for `rows` of `x` against `group` (panels numbered from `first`), writing the
/// panel rows it reads into `widen` (`group.len()` panels of `depth x PANEL` floats) when
/// given one.
#[allow(clippy::too_many_arguments)] // the tile's coordinates, as `tile` takes them
fn tile_any<P: Panel>(
    simd: V4,
    x: &[&[f32]],
    rows: &Range<usize>,
    group: &[P],
    first: usize,
    depth: usize,
    widen: Option<&mut [f32]>,
    store: &mut impl Store,
) {
    macro_rules! tiles {
        ($($r:literal x $np:literal),* $(,)?) => {
            match (rows.len(), group.len()) {
                $(($r, $np) => {
                    let panels: [P; $np] =
                        group.try_into().expect("as many panels as the tile reads");
                    match widen {
                        Some(buffer) if P::CONVERTS => tile::<$r, $np, P, true>(
                            simd, x, rows.start, panels, first, depth, buffer, store,
                        ),
                        _ => tile::<$r, $np, P, false>(
                            simd, x, rows.start, panels, first, depth, &mut [], store,
                        ),
                    }
                })*
                (r, np) => unreachable!("no {r} x {np} tile: panels_for and MAX_ROWS disagree"),
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
/// per `kk`; with `WIDEN`, the panel rows read are also written to `widened` (`NP` panels
/// of `depth x PANEL` floats). Not inlined, so that its code does not depend on the
/// caller's (each shape compiles to a loop of `NP` panel-row loads, `R` broadcasts and
/// `R x NP` FMAs with no spill: check the disassembly after any change).
#[inline(never)]
#[allow(clippy::too_many_arguments)] // the tile's coordinates
#[allow(clippy::needless_range_loop)] // indexed on purpose: this form keeps `acc` in registers
fn tile<const R: usize, const NP: usize, P: Panel, const WIDEN: bool>(
    simd: V4,
    x: &[&[f32]],
    first_row: usize,
    panels: [P; NP],
    first_panel: usize,
    depth: usize,
    widened: &mut [f32],
    store: &mut impl Store,
) {
    simd.vectorize(
        #[inline(always)]
        || {
            let rows: [&[f32]; R] = std::array::from_fn(|r| &x[first_row + r][..depth]);
            let mut acc = [[simd.splat_f32x16(0.0); NP]; R];
            for kk in 0..depth {
                let w: [f32x16; NP] = std::array::from_fn(|p| panels[p].row_avx512(simd, kk));
                if WIDEN {
                    for (p, &w) in w.iter().enumerate() {
                        let at = (p * depth + kk) * PANEL;
                        widened[at..at + PANEL].copy_from_slice(&cast::<f32x16, [f32; PANEL]>(w));
                    }
                }
                for r in 0..R {
                    let a = simd.splat_f32x16(rows[r][kk]);
                    for p in 0..NP {
                        acc[r][p] = simd.mul_add_f32x16(a, w[p], acc[r][p]);
                    }
                }
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
        for n in 0..100 {
            let tiles = row_tiles(n);
            assert_eq!(tiles.len(), n.div_ceil(MAX_ROWS));
            let mut next = 0;
            for t in &tiles {
                assert_eq!(t.start, next);
                assert!(t.len() <= MAX_ROWS && t.len() + 1 >= tiles[0].len());
                assert!(t.len() <= tiles[0].len());
                next = t.end;
            }
            assert_eq!(next, n);
        }
    }
}
