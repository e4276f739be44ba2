//! Reading Medusa heads from safetensors (the layout of the FasterDecoding/Medusa checkpoints).

use std::collections::BTreeSet;

use half::{bf16, f16};
use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors};

use crate::error::MedusaError;
use crate::heads::{HeadWeights, ResBlock};

/// Parses every head: `medusa_head.{k}.{l}.linear.{weight,bias}` for `l = 0 .. L - 1`, then
/// an optional `medusa_head.{k}.{L}.weight`. Any other tensor is an error.
pub(crate) fn parse_heads(bytes: &[u8]) -> Result<Vec<HeadWeights>, MedusaError> {
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| MedusaError::Safetensors(e.to_string()))?;
    let mut unused: BTreeSet<String> = file.names().into_iter().map(str::to_string).collect();
    let mut heads = Vec::new();
    loop {
        let k = heads.len();
        if !unused.contains(&format!("medusa_head.{k}.0.linear.weight")) {
            break;
        }
        let mut blocks = Vec::new();
        loop {
            let l = blocks.len();
            let weight_name = format!("medusa_head.{k}.{l}.linear.weight");
            if !unused.remove(&weight_name) {
                break;
            }
            let bias_name = format!("medusa_head.{k}.{l}.linear.bias");
            if !unused.remove(&bias_name) {
                return Err(MedusaError::MissingTensor(bias_name));
            }
            let bias = vector(&file, &bias_name)?;
            let d = bias.len();
            let weight = matrix(&file, &weight_name, Some((d, d)))?;
            blocks.push(ResBlock::new(weight, bias)?);
        }
        let output_name = format!("medusa_head.{k}.{}.weight", blocks.len());
        let output = if unused.remove(&output_name) {
            Some(matrix(&file, &output_name, None)?)
        } else {
            None
        };
        heads.push(HeadWeights::new(blocks, output));
    }
    if let Some(name) = unused.into_iter().next() {
        return Err(if heads.is_empty() && !name.starts_with("medusa_head.") {
            MedusaError::NoHeads
        } else {
            MedusaError::UnexpectedTensor(name)
        });
    }
    if heads.is_empty() {
        return Err(MedusaError::NoHeads);
    }
    Ok(heads)
}

fn vector(file: &SafeTensors<'_>, name: &str) -> Result<Array1<f32>, MedusaError> {
    let (shape, values) = values(file, name)?;
    if shape.len() != 1 {
        return Err(MedusaError::Shape {
            name: name.to_string(),
            actual: shape,
            expected: vec![values.len()],
        });
    }
    Ok(Array1::from(values))
}

fn matrix(
    file: &SafeTensors<'_>,
    name: &str,
    expected: Option<(usize, usize)>,
) -> Result<Array2<f32>, MedusaError> {
    let (shape, values) = values(file, name)?;
    let dims = match shape[..] {
        [r, c] if expected.is_none_or(|e| e == (r, c)) => (r, c),
        _ => {
            let (r, c) = expected.unwrap_or((0, 0));
            return Err(MedusaError::Shape {
                name: name.to_string(),
                actual: shape,
                expected: if expected.is_some() {
                    vec![r, c]
                } else {
                    vec![]
                },
            });
        }
    };
    Array2::from_shape_vec(dims, values).map_err(|e| MedusaError::Safetensors(e.to_string()))
}

/// The tensor's shape and its values converted to f32.
fn values(file: &SafeTensors<'_>, name: &str) -> Result<(Vec<usize>, Vec<f32>), MedusaError> {
    let view = file
        .tensor(name)
        .map_err(|_| MedusaError::MissingTensor(name.to_string()))?;
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(MedusaError::Dtype {
                name: name.to_string(),
                dtype: other.to_string(),
            });
        }
    };
    if values.iter().any(|v| !v.is_finite()) {
        return Err(MedusaError::NonFinite(name.to_string()));
    }
    Ok((view.shape().to_vec(), values))
}
