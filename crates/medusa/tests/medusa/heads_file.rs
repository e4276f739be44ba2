//! Reading Medusa heads from safetensors: every supported dtype round-trips, and malformed
//! files give precise errors, never panics.

use half::{bf16, f16};
use medusa::{HeadScratch, MedusaError, MedusaHeads};
use ndarray::{Array1, Array2};
use safetensors::{Dtype, tensor::TensorView};

use crate::common::rng;
use rand::RngExt;

/// A tensor to write: name, dtype, shape, values (converted to the dtype on write).
struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn encode(dtype: Dtype, values: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::I32 => values
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    }
}

fn file(tensors: &[Tensor]) -> Vec<u8> {
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.dtype,
                t.shape.clone(),
                encode(t.dtype, &t.values),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// The tensors of `heads` heads with `blocks` blocks each (d = 3, V = 5), in `dtype`;
/// `output` says whether heads carry their own output projection.
fn layout(heads: usize, blocks: usize, dtype: Dtype, output: bool) -> Vec<Tensor> {
    let mut rng = rng(9);
    let mut values = |n: usize| {
        (0..n)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    for k in 0..heads {
        for l in 0..blocks {
            let name = format!("medusa_head.{k}.{l}.linear.weight");
            out.push(Tensor {
                name,
                dtype,
                shape: vec![3, 3],
                values: values(9),
            });
            let name = format!("medusa_head.{k}.{l}.linear.bias");
            out.push(Tensor {
                name,
                dtype,
                shape: vec![3],
                values: values(3),
            });
        }
        if output {
            let name = format!("medusa_head.{k}.{blocks}.weight");
            out.push(Tensor {
                name,
                dtype,
                shape: vec![5, 3],
                values: values(15),
            });
        }
    }
    out
}

fn logits(heads: &MedusaHeads) -> Array2<f32> {
    let mut out = Array2::zeros((heads.num_heads(), heads.vocab_size()));
    let h = Array1::from_vec(vec![0.5, -1.0, 2.0]);
    heads
        .logits(h.view(), out.view_mut(), &mut HeadScratch::default())
        .unwrap();
    out
}

#[test]
fn every_dtype_loads_and_agrees() {
    let reference =
        MedusaHeads::from_safetensors(&file(&layout(3, 2, Dtype::F32, true)), None).unwrap();
    assert_eq!((reference.num_heads(), reference.num_blocks(0)), (3, 2));
    assert_eq!((reference.hidden_size(), reference.vocab_size()), (3, 5));
    for (dtype, tolerance) in [(Dtype::F16, 0.02), (Dtype::BF16, 0.1)] {
        let heads = MedusaHeads::from_safetensors(&file(&layout(3, 2, dtype, true)), None).unwrap();
        let diff = (&logits(&heads) - &logits(&reference))
            .mapv(f32::abs)
            .fold(0.0f32, |a, &b| a.max(b));
        assert!(diff < tolerance, "{dtype:?}: {diff}");
    }
}

#[test]
fn the_shipped_heads_load_if_present() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/pycoder-16m/medusa_heads.safetensors"
    );
    if !std::path::Path::new(path).exists() {
        return;
    }
    let heads = MedusaHeads::load(path).unwrap();
    assert_eq!(
        (heads.num_heads(), heads.hidden_size(), heads.vocab_size()),
        (4, 384, 8192)
    );
    assert_eq!(heads.num_blocks(3), 1);
}

#[test]
fn shared_lm_head_fills_missing_outputs() {
    let bytes = file(&layout(2, 1, Dtype::F32, false));
    assert!(matches!(
        MedusaHeads::from_safetensors(&bytes, None),
        Err(MedusaError::MissingOutput(0))
    ));
    let heads = MedusaHeads::from_safetensors(&bytes, Some(Array2::ones((5, 3)))).unwrap();
    let l = logits(&heads);
    assert!(
        l.row(0).iter().all(|&x| x == l[[0, 0]]),
        "an all-ones lm_head gives equal logits"
    );
    assert!(MedusaHeads::from_safetensors(&bytes, Some(Array2::ones((5, 4)))).is_err());
}

#[test]
fn malformed_files_are_errors() {
    let base = || layout(2, 1, Dtype::F32, true);
    let load = |tensors: Vec<Tensor>| MedusaHeads::from_safetensors(&file(&tensors), None);

    assert!(matches!(
        MedusaHeads::from_safetensors(b"not a safetensors file", None),
        Err(MedusaError::Safetensors(_))
    ));
    assert!(matches!(
        MedusaHeads::from_safetensors(&[], None),
        Err(MedusaError::Safetensors(_))
    ));
    let other = vec![Tensor {
        name: "model.norm.weight".into(),
        dtype: Dtype::F32,
        shape: vec![3],
        values: vec![1.0; 3],
    }];
    assert!(matches!(load(other), Err(MedusaError::NoHeads)));

    let mut t = base();
    t.retain(|t| t.name != "medusa_head.1.0.linear.bias");
    assert!(
        matches!(load(t), Err(MedusaError::MissingTensor(n)) if n == "medusa_head.1.0.linear.bias")
    );

    let mut t = base();
    for x in t
        .iter_mut()
        .filter(|t| t.name.starts_with("medusa_head.1."))
    {
        x.name = x.name.replace("medusa_head.1.", "medusa_head.2.");
    }
    assert!(
        matches!(load(t), Err(MedusaError::UnexpectedTensor(_))),
        "a gap in the numbering"
    );

    let mut t = base();
    t[0].shape = vec![9];
    assert!(matches!(load(t), Err(MedusaError::Shape { .. })));

    let mut t = base();
    let out = t
        .iter_mut()
        .find(|t| t.name == "medusa_head.1.1.weight")
        .unwrap();
    out.shape = vec![3, 5];
    assert!(
        matches!(load(t), Err(MedusaError::Shape { .. })),
        "output transposed"
    );

    let mut t = base();
    let out = t
        .iter_mut()
        .find(|t| t.name == "medusa_head.1.1.weight")
        .unwrap();
    (out.shape, out.values) = (vec![6, 3], vec![0.0; 18]);
    assert!(
        matches!(load(t), Err(MedusaError::Shape { .. })),
        "vocabularies differ"
    );

    let mut t = base();
    t[1].dtype = Dtype::I32;
    assert!(matches!(load(t), Err(MedusaError::Dtype { .. })));

    let mut t = base();
    t[0].values[4] = f32::NAN;
    assert!(matches!(load(t), Err(MedusaError::NonFinite(_))));

    let mut t = base();
    t.push(Tensor {
        name: "medusa_head.0.extra".into(),
        dtype: Dtype::F32,
        shape: vec![1],
        values: vec![0.0],
    });
    assert!(matches!(load(t), Err(MedusaError::UnexpectedTensor(_))));

    let missing = MedusaHeads::load("/nonexistent/medusa_heads.safetensors");
    assert!(matches!(missing, Err(MedusaError::Io { .. })));
}
