//! Medusa heads run by the library: residual blocks and an output projection per head.
//!
//! Head `k` (0-based) reads the base model's final hidden state `h` (after the last norm) at
//! position `t` and predicts the token at `t + k + 2`:
//!
//! ```text
//! u_0 = h,   u_{l+1} = u_l + SiLU(W_{k,l} u_l + b_{k,l})   (l = 0 .. L-1, the ResBlocks)
//! logits_k = W_out_k u_L                                   (no bias; or the base lm_head)
//! ```

use std::path::Path;

use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1, ArrayViewMut2};

use crate::error::MedusaError;

/// One residual block of a head: `u + SiLU(W u + b)`, `W` square (out x in).
#[derive(Clone, Debug, PartialEq)]
pub struct ResBlock {
    weight: Array2<f32>,
    bias: Array1<f32>,
}

impl ResBlock {
    /// A block from its weight (`d x d`, output rows by input columns) and bias (`d`).
    pub fn new(weight: Array2<f32>, bias: Array1<f32>) -> Result<Self, MedusaError> {
        let d = bias.len();
        if weight.dim() != (d, d) {
            return Err(MedusaError::Shape {
                name: "resblock weight".to_string(),
                actual: weight.shape().to_vec(),
                expected: vec![d, d],
            });
        }
        Ok(Self { weight, bias })
    }

    /// Width of the block.
    pub fn size(&self) -> usize {
        self.bias.len()
    }

    /// `x <- x + SiLU(W x + b)`, using `tmp` (resized to the width) as scratch.
    fn apply(&self, x: &mut Array1<f32>, tmp: &mut Array1<f32>) {
        general_matvec(&self.weight, x.view(), tmp.view_mut());
        for ((t, &b), xi) in tmp.iter_mut().zip(&self.bias).zip(x.iter_mut()) {
            let u = *t + b;
            *xi += u / (1.0 + (-u).exp());
        }
    }
}

/// The weights of one head: its residual blocks and, unless it shares the base model's
/// lm_head, its own output projection (`vocab x d`).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadWeights {
    blocks: Vec<ResBlock>,
    output: Option<Array2<f32>>,
}

impl HeadWeights {
    /// A head from its blocks (applied in order) and its output projection (`None`: share
    /// the lm_head given to [`MedusaHeads::new`]).
    pub fn new(blocks: Vec<ResBlock>, output: Option<Array2<f32>>) -> Self {
        Self { blocks, output }
    }
}

/// A set of Medusa heads over a base model with hidden size `d` and vocabulary `V`,
/// evaluated by the library from the hidden state the model exposes.
///
/// Load them from a Medusa-format safetensors file with [`load`](Self::load) (f16, bf16 or
/// f32 weights, computed in f32), or build them from arrays with [`new`](Self::new). Share
/// one set between sequences with an `Arc`: evaluation takes `&self`.
#[derive(Clone, Debug, PartialEq)]
pub struct MedusaHeads {
    blocks: Vec<Vec<ResBlock>>,
    outputs: Vec<Option<Projection>>,
    lm_head: Option<Projection>,
    hidden_size: usize,
    vocab_size: usize,
}

impl MedusaHeads {
    /// Heads from their weights. Heads without an output projection use `lm_head` (`V x d`),
    /// which must then be given; every head must agree on `d` and `V`.
    pub fn new(heads: Vec<HeadWeights>, lm_head: Option<Array2<f32>>) -> Result<Self, MedusaError> {
        let first = heads.first().ok_or(MedusaError::NoHeads)?;
        let out_shape = first
            .output
            .as_ref()
            .or(lm_head.as_ref())
            .map(|w| w.dim())
            .ok_or(MedusaError::MissingOutput(0))?;
        let (vocab_size, hidden_size) = out_shape;
        if vocab_size == 0 || hidden_size == 0 {
            return Err(MedusaError::Mismatch(
                "heads need a non-empty vocabulary and hidden state".to_string(),
            ));
        }
        let shape_error = |name: String, actual: &[usize], expected: Vec<usize>| {
            Err(MedusaError::Shape {
                name,
                actual: actual.to_vec(),
                expected,
            })
        };
        if let Some(w) = &lm_head
            && w.dim() != out_shape
        {
            return shape_error(
                "lm_head".to_string(),
                w.shape(),
                vec![vocab_size, hidden_size],
            );
        }
        for (k, head) in heads.iter().enumerate() {
            for (l, block) in head.blocks.iter().enumerate() {
                if block.size() != hidden_size {
                    return shape_error(
                        format!("medusa_head.{k}.{l}.linear.bias"),
                        &[block.size()],
                        vec![hidden_size],
                    );
                }
            }
            match &head.output {
                Some(w) if w.dim() != out_shape => {
                    let name = format!("medusa_head.{k}.{}.weight", head.blocks.len());
                    return shape_error(name, w.shape(), vec![vocab_size, hidden_size]);
                }
                None if lm_head.is_none() => return Err(MedusaError::MissingOutput(k)),
                _ => {}
            }
        }
        let (blocks, outputs) = heads
            .into_iter()
            .map(|h| (h.blocks, h.output.map(Projection::new)))
            .unzip();
        Ok(Self {
            blocks,
            outputs,
            lm_head: lm_head.map(Projection::new),
            hidden_size,
            vocab_size,
        })
    }

    /// Loads heads in the Medusa layout (`medusa_head.{k}.{l}.linear.{weight,bias}` for the
    /// residual blocks, `medusa_head.{k}.{L}.weight` for each head's own output projection).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, MedusaError> {
        Self::from_safetensors(&read(path.as_ref())?, None)
    }

    /// Like [`load`](Self::load), with the base model's lm_head (`V x d`) for heads that
    /// have no output projection of their own.
    pub fn load_with_lm_head(
        path: impl AsRef<Path>,
        lm_head: Array2<f32>,
    ) -> Result<Self, MedusaError> {
        Self::from_safetensors(&read(path.as_ref())?, Some(lm_head))
    }

    /// Parses heads from the bytes of a safetensors file; see [`load`](Self::load).
    pub fn from_safetensors(
        bytes: &[u8],
        lm_head: Option<Array2<f32>>,
    ) -> Result<Self, MedusaError> {
        Self::new(crate::load::parse_heads(bytes)?, lm_head)
    }

    /// Stores the output projections (`V x d`, most of the heads' weights) in bfloat16:
    /// half the memory traffic, so about twice as fast on hardware where the heads are
    /// memory-bound, for logits within about 1% of float32. Drafts may differ in rare near
    /// ties; the decoded output cannot (verification uses the base model only).
    pub fn with_bf16_outputs(mut self) -> Self {
        for output in self.outputs.iter_mut().flatten() {
            *output = output.to_bf16();
        }
        if let Some(w) = &mut self.lm_head {
            *w = w.to_bf16();
        }
        self
    }

    /// Whether the output projections are stored in bfloat16.
    pub fn bf16_outputs(&self) -> bool {
        matches!(
            self.outputs.iter().flatten().chain(&self.lm_head).next(),
            Some(Projection::Bf16 { .. })
        )
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.blocks.len()
    }

    /// Width of the hidden state the heads read.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Vocabulary size of the head logits.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Residual blocks per head (the Medusa config's `medusa_num_layers`), for head `k`.
    pub fn num_blocks(&self, k: usize) -> usize {
        self.blocks.get(k).map_or(0, Vec::len)
    }

    /// Writes the logits of the first `out.nrows()` heads for hidden state `hidden` into
    /// `out` (`heads x V`). `scratch` is reused between calls.
    pub fn logits(
        &self,
        hidden: ArrayView1<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
        scratch: &mut HeadScratch,
    ) -> Result<(), MedusaError> {
        if hidden.len() != self.hidden_size {
            return Err(MedusaError::Mismatch(format!(
                "hidden state has {} values, the heads read {}",
                hidden.len(),
                self.hidden_size
            )));
        }
        if out.nrows() > self.num_heads() || out.ncols() != self.vocab_size {
            return Err(MedusaError::Mismatch(format!(
                "head logits buffer is {:?}, expected at most {} rows of {}",
                out.dim(),
                self.num_heads(),
                self.vocab_size
            )));
        }
        for (k, row) in out.rows_mut().into_iter().enumerate() {
            self.run_head(k, hidden, row, scratch)?;
        }
        Ok(())
    }

    /// Writes head `k`'s logits for `hidden` into `out` (`V` long).
    pub fn head_logits(
        &self,
        k: usize,
        hidden: ArrayView1<'_, f32>,
        out: ArrayViewMut1<'_, f32>,
        scratch: &mut HeadScratch,
    ) -> Result<(), MedusaError> {
        if k >= self.num_heads() || hidden.len() != self.hidden_size || out.len() != self.vocab_size
        {
            return Err(MedusaError::Mismatch(format!(
                "head {k} of {}: hidden state of {} values (expected {}), output of {} (expected {})",
                self.num_heads(),
                hidden.len(),
                self.hidden_size,
                out.len(),
                self.vocab_size
            )));
        }
        self.run_head(k, hidden, out, scratch)
    }

    fn run_head(
        &self,
        k: usize,
        hidden: ArrayView1<'_, f32>,
        out: ArrayViewMut1<'_, f32>,
        scratch: &mut HeadScratch,
    ) -> Result<(), MedusaError> {
        if scratch.x.len() != self.hidden_size {
            scratch.x = Array1::zeros(self.hidden_size);
            scratch.tmp = Array1::zeros(self.hidden_size);
        }
        scratch.x.assign(&hidden);
        for block in &self.blocks[k] {
            block.apply(&mut scratch.x, &mut scratch.tmp);
        }
        let w = match (&self.outputs[k], &self.lm_head) {
            (Some(w), _) | (None, Some(w)) => w,
            (None, None) => return Err(MedusaError::MissingOutput(k)),
        };
        w.matvec(scratch.x.view(), out);
        Ok(())
    }
}

/// Scratch space for [`MedusaHeads::logits`].
#[derive(Clone, Debug, Default)]
pub struct HeadScratch {
    x: Array1<f32>,
    tmp: Array1<f32>,
}

/// An output projection (`V x d`, row-major): in float16 when every weight is an f16 value
/// (heads from an f16 checkpoint; exact, half the memory traffic of f32), in bfloat16 on
/// request (lossy), otherwise in float32.
#[derive(Clone, Debug, PartialEq)]
enum Projection {
    F32(Array2<f32>),
    F16 { cols: usize, data: Vec<half::f16> },
    Bf16 { cols: usize, data: Vec<u16> },
}

impl Projection {
    fn new(w: Array2<f32>) -> Self {
        let exact = w
            .iter()
            .all(|&x| half::f16::from_f32(x).to_f32().to_bits() == x.to_bits());
        if exact {
            Self::F16 {
                cols: w.ncols(),
                data: w.iter().map(|&x| half::f16::from_f32(x)).collect(),
            }
        } else {
            Self::F32(w)
        }
    }

    fn to_bf16(&self) -> Self {
        let bf16 = |x: f32| half::bf16::from_f32(x).to_bits();
        match self {
            Self::F32(w) => Self::Bf16 {
                cols: w.ncols(),
                data: w.iter().map(|&x| bf16(x)).collect(),
            },
            Self::F16 { cols, data } => Self::Bf16 {
                cols: *cols,
                data: data.iter().map(|x| bf16(x.to_f32())).collect(),
            },
            other => other.clone(),
        }
    }

    /// `out = w x`.
    fn matvec(&self, x: ArrayView1<'_, f32>, mut out: ArrayViewMut1<'_, f32>) {
        match (self, x.as_slice()) {
            (Self::F32(w), _) => general_matvec(w, x, out),
            (Self::F16 { cols, data }, Some(x)) => {
                for (o, row) in out.iter_mut().zip(data.chunks_exact(*cols)) {
                    *o = dot_f16(row, x);
                }
            }
            (Self::Bf16 { cols, data }, Some(x)) => {
                for (o, row) in out.iter_mut().zip(data.chunks_exact(*cols)) {
                    *o = dot_bf16(row, x);
                }
            }
            (Self::F16 { .. } | Self::Bf16 { .. }, None) => {
                let x = x.to_vec();
                self.matvec(ndarray::aview1(&x), out.view_mut())
            }
        }
    }
}

/// `out = w x`, one dot product per output row (row-major `w`).
fn general_matvec(w: &Array2<f32>, x: ArrayView1<'_, f32>, mut out: ArrayViewMut1<'_, f32>) {
    match (w.as_slice(), x.as_slice()) {
        (Some(w), Some(x)) => {
            let d = x.len();
            for (o, row) in out.iter_mut().zip(w.chunks_exact(d)) {
                *o = dot(row, x);
            }
        }
        _ => out.assign(&w.dot(&x)),
    }
}

/// A dot product with sixteen independent accumulators (vectorises without fast-math).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, ra) = a.as_chunks::<16>();
    let (cb, rb) = b.as_chunks::<16>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// [`dot`] with `a` in float16, widened sixteen at a time (F16C where the target has it):
/// the same operations on the same values, so the same bits as [`dot`] on the widened row.
fn dot_f16(a: &[half::f16], b: &[f32]) -> f32 {
    use half::slice::HalfFloatSliceExt;
    let mut acc = [0.0f32; 16];
    let (ca, ra) = a.as_chunks::<16>();
    let (cb, rb) = b.as_chunks::<16>();
    let mut wide = [0.0f32; 16];
    for (x, y) in ca.iter().zip(cb) {
        x.convert_to_f32_slice(&mut wide);
        for i in 0..16 {
            acc[i] += wide[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x.to_f32() * y;
    }
    sum
}

/// [`dot`] with `a` in bfloat16 (the upper half of an f32's bits).
fn dot_bf16(a: &[u16], b: &[f32]) -> f32 {
    let widen = |h: u16| f32::from_bits(u32::from(h) << 16);
    let mut acc = [0.0f32; 16];
    let (ca, ra) = a.as_chunks::<16>();
    let (cb, rb) = b.as_chunks::<16>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..16 {
            acc[i] += widen(x[i]) * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += widen(*x) * y;
    }
    sum
}

fn read(path: &Path) -> Result<Vec<u8>, MedusaError> {
    std::fs::read(path).map_err(|source| MedusaError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_follow_the_formula() {
        // d = 2, V = 3, one block.
        let block = ResBlock::new(
            ndarray::arr2(&[[1.0, 0.0], [0.0, -1.0]]),
            ndarray::arr1(&[0.0, 0.5]),
        )
        .unwrap();
        let out = ndarray::arr2(&[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]);
        let heads = MedusaHeads::new(vec![HeadWeights::new(vec![block], Some(out))], None).unwrap();
        let h = ndarray::arr1(&[2.0f32, 1.0]);
        let mut logits = Array2::zeros((1, 3));
        heads
            .logits(h.view(), logits.view_mut(), &mut HeadScratch::default())
            .unwrap();
        let silu = |u: f32| u / (1.0 + (-u).exp());
        let u = [2.0 + silu(2.0), 1.0 + silu(-0.5)];
        let expected = [u[0], u[1], u[0] + u[1]];
        for (a, b) in logits.row(0).iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn f16_weights_are_kept_in_f16_with_the_same_logits() {
        let d = 37; // not a multiple of the vector width
        let f16 = |x: f32| half::f16::from_f32(x).to_f32();
        let out = Array2::from_shape_fn((11, d), |(i, j)| f16(((i * 31 + j * 7) as f32).sin()));
        let projection = Projection::new(out.clone());
        assert!(matches!(projection, Projection::F16 { .. }));
        let mut inexact = out.clone();
        inexact[[3, 5]] += 1e-4;
        assert!(matches!(Projection::new(inexact), Projection::F32(_)));
        let h = Array1::from_shape_fn(d, |i| (i as f32 * 0.3).cos());
        let (mut a, mut b) = (Array1::zeros(11), Array1::zeros(11));
        Projection::F32(out).matvec(h.view(), a.view_mut());
        projection.matvec(h.view(), b.view_mut());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.to_bits(), y.to_bits());
        }
    }

    #[test]
    fn bf16_outputs_stay_close() {
        let d = 37; // not a multiple of the vector width
        let out = Array2::from_shape_fn((11, d), |(i, j)| ((i * 31 + j * 7) as f32).sin());
        let block = ResBlock::new(Array2::eye(d) * 0.1, Array1::zeros(d)).unwrap();
        let heads = MedusaHeads::new(vec![HeadWeights::new(vec![block], Some(out))], None).unwrap();
        let packed = heads.clone().with_bf16_outputs();
        assert!(packed.bf16_outputs() && !heads.bf16_outputs());
        let h = Array1::from_shape_fn(d, |i| (i as f32 * 0.3).cos());
        let (mut a, mut b) = (Array2::zeros((1, 11)), Array2::zeros((1, 11)));
        let mut scratch = HeadScratch::default();
        heads.logits(h.view(), a.view_mut(), &mut scratch).unwrap();
        packed.logits(h.view(), b.view_mut(), &mut scratch).unwrap();
        let scale = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 0.02 * scale, "{x} vs {y}");
        }
    }

    #[test]
    fn shared_lm_head_and_shape_checks() {
        let block = || ResBlock::new(Array2::zeros((2, 2)), Array1::zeros(2)).unwrap();
        let head = || HeadWeights::new(vec![block()], None);
        assert!(matches!(
            MedusaHeads::new(vec![head()], None),
            Err(MedusaError::MissingOutput(0))
        ));
        let heads = MedusaHeads::new(vec![head(), head()], Some(Array2::ones((5, 2)))).unwrap();
        assert_eq!(
            (heads.num_heads(), heads.vocab_size(), heads.hidden_size()),
            (2, 5, 2)
        );
        assert!(MedusaHeads::new(vec![head()], Some(Array2::ones((5, 3)))).is_err());
        assert!(ResBlock::new(Array2::zeros((2, 3)), Array1::zeros(2)).is_err());
        assert!(matches!(
            MedusaHeads::new(vec![], None),
            Err(MedusaError::NoHeads)
        ));
        let mut out = Array2::zeros((3, 5));
        let err = heads.logits(
            Array1::zeros(2).view(),
            out.view_mut(),
            &mut HeadScratch::default(),
        );
        assert!(err.is_err(), "three rows for two heads");
    }
}
