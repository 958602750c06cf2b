//! Safetensors files of named f32 tensors in the official PyTorch layouts, so
//! official VDVAE checkpoints load here and ours load in PyTorch. Written
//! atomically (temporary file, then rename).

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};

/// One named tensor: shape and row-major f32 data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Tensors by name, sorted.
pub type NamedTensors = BTreeMap<String, Tensor>;

fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::Input(format!(
                "tensor {name} has dtype {other:?}; expected F32, F16 or BF16"
            )));
        }
    })
}

/// Reads every tensor of a safetensors file (F32, F16 or BF16; returned as f32).
pub fn load(path: &str) -> Result<NamedTensors> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Input(format!("{path}: not a valid safetensors file ({e})")))?;
    let mut out = NamedTensors::new();
    for (name, view) in st.tensors() {
        let data = to_f32(&name, &view).map_err(|e| Error::Input(format!("{path}: {e}")))?;
        out.insert(
            name,
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// The string metadata of a safetensors file (empty when it has none).
pub fn load_metadata(path: &str) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::Input(format!("{path}: not a valid safetensors file ({e})")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Writes the tensors as F32 safetensors: to `PATH.tmp`, then renamed over `path`.
pub fn save(path: &str, tensors: &NamedTensors, metadata: Option<HashMap<String, String>>) -> Result<()> {
    let bytes_of: Vec<(&String, Vec<u8>, &Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| (n, bytemuck::cast_slice::<f32, u8>(&t.data).to_vec(), &t.shape))
        .collect();
    let views = bytes_of
        .iter()
        .map(|(n, b, shape)| {
            TensorView::new(Dtype::F32, shape.to_vec(), b)
                .map(|v| (n.as_str(), v))
                .map_err(|e| Error::Input(format!("tensor {n}: shape {shape:?} does not match its data ({e})")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, metadata)
        .map_err(|e| Error::Input(format!("could not serialise {path}: {e}")))?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` so a crash leaves either the old file or the new one.
pub fn write_atomically(path: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = format!("{path}.tmp");
    let io = |e| Error::Io {
        path: tmp.clone(),
        source: e,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("vdvae-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name).to_string_lossy().into_owned()
    }

    #[test]
    fn save_then_load_round_trips() {
        let mut t = NamedTensors::new();
        t.insert(
            "a.weight".into(),
            Tensor {
                shape: vec![2, 1, 1, 1],
                data: vec![1.5, -2.0],
            },
        );
        t.insert(
            "a.bias".into(),
            Tensor {
                shape: vec![2],
                data: vec![0.0, 3.0],
            },
        );
        let path = tmp("round.safetensors");
        save(&path, &t, None).unwrap();
        assert_eq!(load(&path).unwrap(), t);
        assert!(!std::path::Path::new(&format!("{path}.tmp")).exists());
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let path = tmp("corrupt.safetensors");
        std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
        assert!(load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a valid safetensors file"));
        assert!(load(&tmp("absent.safetensors"))
            .unwrap_err()
            .to_string()
            .contains("absent"));
    }
}
