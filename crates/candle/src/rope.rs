//! Rotary position embeddings from per-node positions.
//!
//! The stock candle LLaMA narrows its cos/sin tables to the contiguous range
//! `index_pos .. index_pos + seq_len`, which is right for a chain only. In a token tree,
//! node `n` sits at position `committed + depth(n)`, so two siblings share a position and a
//! node's position is not its index. Here the tables are *gathered* by position
//! (`index_select` with one position per row), and candle's `rope` kernel applies them
//! row by row, whatever the positions are.

use candle_core::{DType, Device, Result, Tensor};
use llama_cpu::LlamaConfig;

/// The cos and sin tables, `[max_position_embeddings, head_width / 2]` each.
#[derive(Clone, Debug)]
pub(crate) struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    /// The tables of HF's default RoPE in float32: `inv_freq[i] = theta^(-2i / head)` and
    /// angle `position * inv_freq[i]` in f32, whose cos and sin are taken in f64 and rounded.
    pub(crate) fn new(config: &LlamaConfig, device: &Device) -> Result<Self> {
        let head = config.head_width();
        let half = head / 2;
        let theta = config.rope_theta as f32;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / head as f32))
            .collect();
        let positions = config.max_position_embeddings;
        let (mut cos, mut sin) = (
            Vec::with_capacity(positions * half),
            Vec::with_capacity(positions * half),
        );
        for p in 0..positions {
            for &f in &inv_freq {
                let angle = f64::from(p as f32 * f);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (positions, half), device)?,
            sin: Tensor::from_vec(sin, (positions, half), device)?,
        })
    }

    /// The rows of the tables for `positions` (one per node, `u32`): `[rows, head / 2]`.
    pub(crate) fn gather(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        debug_assert_eq!(positions.dtype(), DType::U32);
        Ok((
            self.cos.index_select(positions, 0)?,
            self.sin.index_select(positions, 0)?,
        ))
    }
}

/// Splits the projection `x` (`[rows, heads * head]`) into heads, `[1, heads, rows, head]`,
/// and rotates row `r` to the position whose table rows are `cos[r]`, `sin[r]`
/// (non-interleaved halves, HF `rotate_half`).
pub(crate) fn rotate(x: &Tensor, heads: usize, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (rows, width) = x.dims2()?;
    let x = x
        .reshape((1, rows, heads, width / heads))?
        .transpose(1, 2)?
        .contiguous()?;
    candle_nn::rotary_emb::rope(&x, cos, sin)
}
