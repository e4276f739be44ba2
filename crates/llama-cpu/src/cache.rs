//! The key/value cache of one layer of one sequence: one row per committed token, then one
//! row per node of the last forward (in node order) until `commit` compacts the kept path
//! behind the committed rows. [`LayerCache`] keeps the keys twice: row by row with the
//! values ([`KvCache`]), and as panels of `K^T` ([`KeyPanels`]) for the score product.

use crate::gemm::PANEL;

/// Keys and values of one layer, `width = kv_heads * head` floats per row, RoPE applied to
/// the keys.
#[derive(Clone, Debug)]
pub(crate) struct KvCache {
    width: usize,
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl KvCache {
    pub(crate) fn new(width: usize) -> Self {
        Self {
            width,
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Keeps the first `rows` rows.
    pub(crate) fn truncate(&mut self, rows: usize) {
        self.keys.truncate(rows * self.width);
        self.values.truncate(rows * self.width);
    }

    /// Appends one row.
    pub(crate) fn push(&mut self, key: &[f32], value: &[f32]) {
        self.keys.extend_from_slice(key);
        self.values.extend_from_slice(value);
    }

    /// The key of row `row`, head `head` of width `len`.
    pub(crate) fn key(&self, row: usize, head: usize, len: usize) -> &[f32] {
        let start = row * self.width + head * len;
        &self.keys[start..start + len]
    }

    /// The values of head `head` (of width `len`) of every row, and their stride: row `r`
    /// starts at `r * stride` of the slice.
    pub(crate) fn values(&self, head: usize, len: usize) -> (&[f32], usize) {
        (
            &self.values[(head * len).min(self.values.len())..],
            self.width,
        )
    }

    /// Moves the rows `start + kept[i]` to `start + i` and drops every row after them.
    /// `kept` must be increasing (a root-to-node path of a tree is), so no row is
    /// overwritten before it is moved.
    pub(crate) fn compact(&mut self, start: usize, kept: &[usize]) {
        let w = self.width;
        for (i, &node) in kept.iter().enumerate() {
            let (from, to) = ((start + node) * w, (start + i) * w);
            if from != to {
                self.keys.copy_within(from..from + w, to);
                self.values.copy_within(from..from + w, to);
            }
        }
        self.truncate(start + kept.len());
    }
}

/// The cache of one layer: keys and values row by row ([`KvCache`]), and the keys again as
/// panels of `K^T` ([`KeyPanels`]), the layout the score product reads.
#[derive(Clone, Debug)]
pub(crate) struct LayerCache {
    pub(crate) rows: KvCache,
    pub(crate) keys: KeyPanels,
}

impl LayerCache {
    pub(crate) fn new(width: usize) -> Self {
        Self {
            rows: KvCache::new(width),
            keys: KeyPanels {
                width,
                rows: 0,
                data: Vec::new(),
            },
        }
    }

    /// Keeps the first `rows` rows.
    pub(crate) fn truncate(&mut self, rows: usize) {
        self.rows.truncate(rows);
        self.keys.truncate(rows);
    }

    /// Appends one row.
    pub(crate) fn push(&mut self, key: &[f32], value: &[f32]) {
        self.rows.push(key, value);
        self.keys.push(key);
    }

    /// Moves the rows `start + kept[i]` to `start + i` (`kept` increasing) and drops every
    /// row after them.
    pub(crate) fn compact(&mut self, start: usize, kept: &[usize]) {
        self.rows.compact(start, kept);
        self.keys.compact(start, kept);
        debug_assert!((0..self.keys.rows).all(|r| {
            let key = self.rows.key(r, 0, self.keys.width);
            (0..key.len()).all(|i| self.keys.data[self.keys.at(r, i)] == key[i])
        }));
    }
}

/// Keys in blocks of [`PANEL`] rows: block `b` holds rows `PANEL b .. PANEL (b + 1)` as
/// `width` rows of `PANEL` floats (element `i` of key `r` at `PANEL (width b + i) + r %
/// PANEL`), so the elements of head `h` in block `b` are a panel of `K^T` for
/// [`gemm_panels`](crate::gemm::gemm_panels). Lanes past the last row hold stale or zero keys, whose scores are
/// computed and never read.
#[derive(Clone, Debug)]
pub(crate) struct KeyPanels {
    width: usize,
    rows: usize,
    data: Vec<f32>,
}

impl KeyPanels {
    fn at(&self, row: usize, i: usize) -> usize {
        (row / PANEL * self.width + i) * PANEL + row % PANEL
    }

    fn truncate(&mut self, rows: usize) {
        self.rows = self.rows.min(rows);
        self.data
            .truncate(self.rows.div_ceil(PANEL) * PANEL * self.width);
    }

    fn push(&mut self, key: &[f32]) {
        let row = self.rows;
        if row.is_multiple_of(PANEL) {
            self.data
                .resize((row / PANEL + 1) * PANEL * self.width, 0.0);
        }
        for (i, &k) in key.iter().enumerate() {
            let at = self.at(row, i);
            self.data[at] = k;
        }
        self.rows += 1;
    }

    fn compact(&mut self, start: usize, kept: &[usize]) {
        for (i, &node) in kept.iter().enumerate() {
            let (from, to) = (start + node, start + i);
            if from != to {
                for e in 0..self.width {
                    let (a, b) = (self.at(from, e), self.at(to, e));
                    self.data[b] = self.data[a];
                }
            }
        }
        self.truncate(start + kept.len());
    }

    /// The panels of `K^T` for head `kv` (of width `head`) over the rows `0 .. rows`
    /// (rounded up to whole blocks).
    pub(crate) fn panels(&self, kv: usize, head: usize, rows: usize) -> Vec<&[f32]> {
        (0..rows.div_ceil(PANEL))
            .map(|b| {
                let start = (b * self.width + kv * head) * PANEL;
                &self.data[start..start + head * PANEL]
            })
            .collect()
    }
}
