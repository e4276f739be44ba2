//! The key/value cache of one layer: one row per committed token, then one row per node of
//! the last forward (in node order) until `commit` compacts the kept path behind the
//! committed rows.

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

    /// The value of row `row`, head `head` of width `len`.
    pub(crate) fn value(&self, row: usize, head: usize, len: usize) -> &[f32] {
        let start = row * self.width + head * len;
        &self.values[start..start + len]
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
