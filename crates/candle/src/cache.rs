//! The key/value cache: per layer, one tensor of keys and one of values,
//! `[slots, kv_heads, capacity, head]`, one slot per sequence.
//!
//! A sequence's slot holds its committed rows `0 .. committed`, then, after a forward, one
//! row per node of that forward's tree in node order. [`commit`](KvCache::commit) gathers
//! the rows of the accepted path (`index_select`) and writes them right behind the committed
//! ones (`slice_set`); truncating is just a shorter committed length, since rows past it are
//! never read unmasked. Writes go into the preallocated tensors in place, so a step copies
//! only its new rows, not the whole context (the stock candle LLaMA concatenates its cache
//! with the new keys on every step).

use candle_core::{DType, Device, Result, Tensor};

/// Rows of capacity added at a time, so that growing is rare.
const GROW: usize = 256;

/// Keys and values of every layer and every slot (RoPE applied to the keys). Not `Clone`:
/// the tensors are written in place, and a clone sharing their storage would see the
/// writes.
#[derive(Debug)]
pub(crate) struct KvCache {
    /// `(keys, values)` per layer; empty until the first [`reserve`](Self::reserve).
    layers: Vec<(Tensor, Tensor)>,
    num_layers: usize,
    slots: usize,
    capacity: usize,
    kv_heads: usize,
    head: usize,
    device: Device,
}

impl KvCache {
    pub(crate) fn new(num_layers: usize, kv_heads: usize, head: usize, device: &Device) -> Self {
        Self {
            layers: Vec::new(),
            num_layers,
            slots: 0,
            capacity: 0,
            kv_heads,
            head,
            device: device.clone(),
        }
    }

    /// Makes room for slots `0 .. slots` with `rows` rows each, keeping the contents.
    pub(crate) fn reserve(&mut self, slots: usize, rows: usize) -> Result<()> {
        if slots <= self.slots && rows <= self.capacity {
            return Ok(());
        }
        let slots = slots.max(self.slots);
        let capacity = rows.max(self.capacity).div_ceil(GROW) * GROW;
        let shape = (slots, self.kv_heads, capacity, self.head);
        let mut layers = Vec::with_capacity(self.num_layers);
        for layer in 0..self.num_layers {
            let grown = (
                Tensor::zeros(shape, DType::F32, &self.device)?,
                Tensor::zeros(shape, DType::F32, &self.device)?,
            );
            if let Some((keys, values)) = self.layers.get(layer) {
                for slot in 0..self.slots {
                    grown
                        .0
                        .narrow(0, slot, 1)?
                        .slice_set(&keys.narrow(0, slot, 1)?, 2, 0)?;
                    grown
                        .1
                        .narrow(0, slot, 1)?
                        .slice_set(&values.narrow(0, slot, 1)?, 2, 0)?;
                }
            }
            layers.push(grown);
        }
        self.layers = layers;
        (self.slots, self.capacity) = (slots, capacity);
        Ok(())
    }

    /// Writes `k` and `v` (`[1, kv_heads, n, head]`, contiguous) into `slot` of `layer` at
    /// rows `start .. start + n`.
    pub(crate) fn write(
        &self,
        layer: usize,
        slot: usize,
        start: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<()> {
        let (keys, values) = &self.layers[layer];
        keys.narrow(0, slot, 1)?.slice_set(k, 2, start)?;
        values.narrow(0, slot, 1)?.slice_set(v, 2, start)?;
        Ok(())
    }

    /// The first `rows` rows of `slots` in `layer`, `[slots.len(), kv_heads, rows, head]`:
    /// a view when `slots` are `0 .. slots.len()`, else a gathered copy.
    pub(crate) fn read(
        &self,
        layer: usize,
        slots: &[usize],
        leading: bool,
        rows: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (keys, values) = &self.layers[layer];
        let read = |t: &Tensor| -> Result<Tensor> {
            if leading {
                t.narrow(0, 0, slots.len())?.narrow(2, 0, rows)
            } else {
                let parts = slots
                    .iter()
                    .map(|&s| t.narrow(0, s, 1)?.narrow(2, 0, rows))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&parts, 0)
            }
        };
        Ok((read(keys)?, read(values)?))
    }

    /// Keeps, in every layer, the rows `committed + path[i]` of `slot` at rows
    /// `committed + i`. `path` is increasing (a root-to-node path), so a chain's prefix is
    /// already in place and costs nothing.
    pub(crate) fn commit(&self, slot: usize, committed: usize, path: &[usize]) -> Result<()> {
        if path.iter().enumerate().all(|(i, &node)| node == i) {
            return Ok(());
        }
        let rows: Vec<u32> = path.iter().map(|&n| (committed + n) as u32).collect();
        let rows = Tensor::new(rows, &self.device)?;
        for (keys, values) in &self.layers {
            for t in [keys, values] {
                let slot = t.narrow(0, slot, 1)?;
                let kept = slot.index_select(&rows, 2)?;
                slot.slice_set(&kept, 2, committed)?;
            }
        }
        Ok(())
    }
}
