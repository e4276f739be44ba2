//! A minimal writer of GGUF files (version 3), the model format llama.cpp reads: a header,
//! typed metadata key-value pairs, tensor descriptions and the aligned tensor data.
//!
//! Only what the converter needs is here: scalar `u32`, `f32` and `bool` values, strings,
//! arrays of strings and of `i32`, and `f32` / `f16` tensors. Multi-byte values are
//! little-endian, as the format requires.

/// The alignment of the tensor data (GGUF's default, `general.alignment`).
const ALIGNMENT: usize = 32;

/// GGUF metadata value types (`gguf_type`).
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

/// The element type of a tensor (`ggml_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TensorType {
    F32,
    F16,
}

impl TensorType {
    fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
        }
    }
}

struct Tensor {
    name: String,
    /// Dimensions innermost first (`ne[0]` is the length of a row).
    dims: Vec<u64>,
    kind: TensorType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then lays out the file with [`finish`](Self::finish).
#[derive(Default)]
pub(crate) struct GgufWriter {
    metadata: Vec<u8>,
    entries: u64,
    tensors: Vec<Tensor>,
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl GgufWriter {
    fn key(&mut self, key: &str, kind: u32) {
        put_string(&mut self.metadata, key);
        self.metadata.extend_from_slice(&kind.to_le_bytes());
        self.entries += 1;
    }

    pub(crate) fn u32(&mut self, key: &str, value: u32) {
        self.key(key, TYPE_U32);
        self.metadata.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn f32(&mut self, key: &str, value: f32) {
        self.key(key, TYPE_F32);
        self.metadata.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        self.key(key, TYPE_BOOL);
        self.metadata.push(u8::from(value));
    }

    pub(crate) fn string(&mut self, key: &str, value: &str) {
        self.key(key, TYPE_STRING);
        put_string(&mut self.metadata, value);
    }

    pub(crate) fn strings<'a>(
        &mut self,
        key: &str,
        values: impl ExactSizeIterator<Item = &'a str>,
    ) {
        self.key(key, TYPE_ARRAY);
        self.metadata.extend_from_slice(&TYPE_STRING.to_le_bytes());
        self.metadata
            .extend_from_slice(&(values.len() as u64).to_le_bytes());
        for value in values {
            put_string(&mut self.metadata, value);
        }
    }

    pub(crate) fn i32s(&mut self, key: &str, values: &[i32]) {
        self.key(key, TYPE_ARRAY);
        self.metadata.extend_from_slice(&TYPE_I32.to_le_bytes());
        self.metadata
            .extend_from_slice(&(values.len() as u64).to_le_bytes());
        for value in values {
            self.metadata.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// Adds a tensor of `rows x cols` values (row-major; `cols` is GGUF's `ne[0]`), or a
    /// vector when `rows` is `None`, stored as `kind`.
    pub(crate) fn tensor(
        &mut self,
        name: &str,
        rows: Option<usize>,
        cols: usize,
        kind: TensorType,
        values: &[f32],
    ) {
        let mut dims = vec![cols as u64];
        dims.extend(rows.map(|r| r as u64));
        let data = match kind {
            TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorType::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        };
        self.tensors.push(Tensor {
            name: name.to_string(),
            dims,
            kind,
            data,
        });
    }

    /// The bytes of the whole file.
    pub(crate) fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&self.metadata);
        let mut offset = 0usize;
        for tensor in &self.tensors {
            put_string(&mut out, &tensor.name);
            out.extend_from_slice(&(tensor.dims.len() as u32).to_le_bytes());
            for dim in &tensor.dims {
                out.extend_from_slice(&dim.to_le_bytes());
            }
            out.extend_from_slice(&tensor.kind.code().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + tensor.data.len()).next_multiple_of(ALIGNMENT);
        }
        for tensor in &self.tensors {
            out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
            out.extend_from_slice(&tensor.data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_header_metadata_and_aligned_tensors() {
        let mut w = GgufWriter::default();
        w.u32("a.u", 7);
        w.strings("a.s", ["x", "yz"].into_iter());
        w.tensor("t0", None, 3, TensorType::F32, &[1.0, 2.0, 3.0]);
        w.tensor("t1", Some(2), 1, TensorType::F16, &[1.0, -2.0]);
        let bytes = w.finish();
        assert_eq!(&bytes[..4], b"GGUF");
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!((u64_at(8), u64_at(16)), (2, 2)); // tensors, metadata entries
        // The data section starts aligned; t0 (12 bytes) is padded to 32 before t1.
        let data_len = 32 + 4;
        let start = bytes.len() - data_len;
        assert_eq!(start % ALIGNMENT, 0);
        assert_eq!(&bytes[start..start + 4], &1.0f32.to_le_bytes());
        assert_eq!(
            &bytes[start + 32..],
            &[
                half::f16::from_f32(1.0).to_le_bytes(),
                half::f16::from_f32(-2.0).to_le_bytes()
            ]
            .concat()[..]
        );
    }
}
