//! Safetensors files of named f32 tensors in the official PyTorch layouts, so
//! official VDVAE checkpoints load here and ours load in PyTorch. Written
//! atomically (temporary file, then rename). The official `torch.save` files
//! (`.th`, `.pt`, `.pth`) are read too ([`torch`]).

mod torch;

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

/// Reads every tensor of a checkpoint file (returned as f32): safetensors (F32,
/// F16 or BF16), or a PyTorch file of a `state_dict` (see [`load_weights`]).
pub fn load(path: &str) -> Result<NamedTensors> {
    read(path, None)
}

/// Reads a model's weights and refuses them when a tensor holds NaN or inf:
/// such weights turn every output into NaN (black pictures, NaN tensors)
/// without any other sign, so every command that reads a checkpoint reads it
/// here.
///
/// The file is safetensors or a PyTorch file (`torch.save`, zip or legacy
/// container, as the official VDVAE publishes its models), told apart by its
/// first bytes, else by its extension (`.th`, `.pt`, `.pth`). A PyTorch file
/// holds a dict of tensors, or `key` names the entry of its top-level dict
/// that does (`model_state_dict`); DDP's `module.` prefix is dropped.
pub fn load_weights(path: &str, key: Option<&str>) -> Result<NamedTensors> {
    let weights = read(path, key)?;
    check_finite(&weights).map_err(|e| Error::Input(format!("{path}: {e}")))?;
    Ok(weights)
}

/// Which reader a file goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Safetensors,
    Torch,
}

/// Its first bytes decide; a file that looks like neither (truncated, or not a
/// checkpoint) goes by its extension, so its error comes from the reader the
/// user meant.
fn format_of(path: &str) -> Result<Format> {
    use std::io::Read;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
    // A safetensors file opens with its JSON header's length, whose low byte
    // can equal a pickle's first one, so the '{' after it is checked first.
    Ok(if head.get(8) == Some(&b'{') {
        Format::Safetensors
    } else if torch::looks_like_torch(&head) || torch::has_torch_extension(path) {
        Format::Torch
    } else {
        Format::Safetensors
    })
}

fn read(path: &str, key: Option<&str>) -> Result<NamedTensors> {
    match (format_of(path)?, key) {
        (Format::Torch, key) => torch::load(path, key),
        (Format::Safetensors, None) => load_safetensors(path),
        (Format::Safetensors, Some(_)) => Err(Error::Input(format!(
            "{path}: --checkpoint-key picks an entry of a PyTorch file (.th, .pt, .pth); \
             this is a safetensors file, whose tensors are all weights"
        ))),
    }
}

/// Reads every tensor of a safetensors file (F32, F16 or BF16; returned as f32).
fn load_safetensors(path: &str) -> Result<NamedTensors> {
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

/// An error naming the first tensor (in name order) that holds NaN or inf.
pub fn check_finite(tensors: &NamedTensors) -> Result<()> {
    for (name, t) in tensors {
        let Some(first) = t.data.iter().position(|v| !v.is_finite()) else {
            continue;
        };
        let count = t.data.iter().filter(|v| !v.is_finite()).count();
        return Err(Error::Input(format!(
            "tensor {name} holds {} at element {first} ({count} of its {} values are NaN or infinite), \
             which would make every output NaN: use a checkpoint written before the training diverged \
             (then train with a lower lr or grad_clip)",
            t.data[first],
            t.data.len()
        )));
    }
    Ok(())
}

/// String metadata of a safetensors file, sorted by key.
pub type Metadata = BTreeMap<String, String>;

/// The string metadata of a safetensors file (empty when it has none).
pub fn load_metadata(path: &str) -> Result<Metadata> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::Input(format!("{path}: not a valid safetensors file ({e})")))?;
    Ok(meta.metadata().clone().unwrap_or_default().into_iter().collect())
}

/// The tensors as an F32 safetensors file, byte for byte the same for the same
/// tensors and metadata.
pub fn to_safetensors(tensors: &NamedTensors, metadata: Option<&Metadata>) -> Result<Vec<u8>> {
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
    let metadata: Option<HashMap<String, String>> = metadata.map(|m| m.clone().into_iter().collect());
    let bytes = safetensors::tensor::serialize(views, metadata)
        .map_err(|e| Error::Input(format!("could not serialise safetensors: {e}")))?;
    Ok(with_sorted_header(bytes))
}

/// safetensors serialises the metadata from a `HashMap`, whose order changes
/// from run to run; this rewrites the JSON header with every key sorted, so
/// equal checkpoints are equal files.
fn with_sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let entries: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(entries.into_iter().collect())
            }
            other => other,
        }
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 length bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote valid JSON");
    // A `serde_json::Map` keeps insertion order when some crate enables
    // serde_json's `preserve_order`, so the sorted order is spelled out here.
    let mut json = serde_json::to_vec(&sorted(header)).expect("JSON serialises");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// Writes the tensors as F32 safetensors: to a temporary file beside `path`
/// ([`tmp_path`]), then renamed over it.
pub fn save(path: &str, tensors: &NamedTensors, metadata: Option<&Metadata>) -> Result<()> {
    let bytes = to_safetensors(tensors, metadata).map_err(|e| Error::Input(format!("{path}: {e}")))?;
    stage(path, &bytes)?.commit()
}

/// Writes `bytes` to `path` so a crash leaves either the old file or the new one.
pub fn write_atomically(path: &str, bytes: &[u8]) -> Result<()> {
    stage(path, bytes)?.commit()
}

/// The temporary file `path` is written to before it is renamed into place:
/// `PATH.<pid>.tmp`, so two processes writing the same file never write into
/// each other's.
pub fn tmp_path(path: &str) -> String {
    format!("{path}.{}.tmp", std::process::id())
}

/// A complete file at [`tmp_path`], flushed to disk, waiting to be renamed over
/// `PATH`. Dropped without a commit (a later file of a checkpoint failed), it
/// deletes its temporary file: on a full disk, leftovers would hold the space
/// the next save needs.
#[must_use = "a staged file replaces nothing until it is committed"]
pub struct Staged {
    /// Empty once committed: nothing left to delete.
    tmp: String,
    path: String,
}

/// Writes `bytes` to [`tmp_path`] and flushes it; `path` is untouched until
/// [`Staged::commit`]. Staging several files first and then committing them
/// together keeps the window in which only some are new to a few renames.
/// On failure (a full disk) the temporary file is deleted.
pub fn stage(path: &str, bytes: &[u8]) -> Result<Staged> {
    use std::io::Write;
    let staged = Staged {
        tmp: tmp_path(path),
        path: path.into(),
    };
    let io = |e| Error::Io {
        path: staged.tmp.clone(),
        source: e,
    };
    // An early return drops `staged`, which deletes what was written.
    let mut f = std::fs::File::create(&staged.tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(staged)
}

impl Staged {
    /// Renames the staged file over its destination (atomic on one file system).
    pub fn commit(mut self) -> Result<()> {
        let tmp = std::mem::take(&mut self.tmp);
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                path: self.path.clone(),
                source: e,
            }
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
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
    fn weights_with_nan_or_inf_are_refused_naming_the_first_bad_tensor() {
        let tensor = |data: Vec<f32>| Tensor {
            shape: vec![data.len()],
            data,
        };
        let mut t = NamedTensors::new();
        t.insert("a.ok".into(), tensor(vec![1.0, 2.0]));
        t.insert("b.bias".into(), tensor(vec![0.0, f32::NAN, f32::INFINITY]));
        t.insert("c.weight".into(), tensor(vec![f32::NEG_INFINITY]));
        let path = tmp("nan.safetensors");
        save(&path, &t, None).unwrap();
        let err = load_weights(&path, None).unwrap_err().to_string();
        assert!(err.contains(&path), "{err}");
        assert!(
            err.contains("tensor b.bias holds NaN at element 1 (2 of its 3 values"),
            "{err}"
        );
        assert!(!err.contains("c.weight"), "{err}");
        t.remove("b.bias");
        assert!(check_finite(&t)
            .unwrap_err()
            .to_string()
            .contains("c.weight holds -inf"));
        t.remove("c.weight");
        save(&path, &t, None).unwrap();
        assert_eq!(load_weights(&path, None).unwrap(), t);
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
        assert!(!std::path::Path::new(&tmp_path(&path)).exists());
    }

    #[test]
    fn equal_tensors_and_metadata_give_equal_bytes() {
        let mut t = NamedTensors::new();
        for name in ["b.weight", "a.bias", "c"] {
            t.insert(
                name.into(),
                Tensor {
                    shape: vec![2],
                    data: vec![1.0, -1.0],
                },
            );
        }
        let meta: Metadata = (0..20).map(|i| (format!("key{i}"), i.to_string())).collect();
        let (p1, p2) = (tmp("same1.safetensors"), tmp("same2.safetensors"));
        save(&p1, &t, Some(&meta)).unwrap();
        save(&p2, &t, Some(&meta)).unwrap();
        let bytes = std::fs::read(&p1).unwrap();
        assert_eq!(bytes, std::fs::read(&p2).unwrap());
        assert_eq!(load_metadata(&p1).unwrap(), meta);
        assert_eq!(load(&p1).unwrap(), t);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        assert!(
            header.find("key0").unwrap() < header.find("key1").unwrap(),
            "metadata keys are sorted: {header}"
        );
    }

    #[test]
    fn a_staged_file_replaces_nothing_until_committed() {
        let path = tmp("staged.bin");
        write_atomically(&path, b"old").unwrap();
        let staged = stage(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        staged.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!std::path::Path::new(&tmp_path(&path)).exists());
    }

    #[test]
    fn the_first_bytes_pick_the_reader_before_the_extension() {
        let cases: [(&str, &[u8], Format); 5] = [
            // A safetensors header 0x280 bytes long opens like a pickle.
            ("st.th", b"\x80\x02\0\0\0\0\0\0{\"a\":1}", Format::Safetensors),
            ("zip.safetensors", b"PK\x03\x04....", Format::Torch),
            ("legacy.bin", b"\x80\x02\x8a\x0alegacy", Format::Torch),
            ("junk.pt", b"junk", Format::Torch),
            ("junk.safetensors", b"junk", Format::Safetensors),
        ];
        for (name, bytes, format) in cases {
            let path = tmp(name);
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(format_of(&path).unwrap(), format, "{name}");
        }
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

    #[test]
    fn a_staged_file_dropped_uncommitted_leaves_nothing() {
        let path = tmp("dropped.bin");
        write_atomically(&path, b"old").unwrap();
        let staged = stage(&path, b"new").unwrap();
        assert!(std::path::Path::new(&tmp_path(&path)).exists());
        drop(staged);
        assert!(!std::path::Path::new(&tmp_path(&path)).exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
