//! PyTorch files (`torch.save`): how the official VDVAE publishes its models
//! (`*-model.th`, `*-model-ema.th`, a `state_dict`), read without PyTorch.
//!
//! The `pytorch-reader` crate parses the pickle: it interprets only the opcodes
//! and classes `torch.save` writes (it executes nothing the file names), reads
//! both the zip container (PyTorch 1.6 and later) and the legacy one, and
//! gathers strided and offset views into row-major data. This file decides
//! what a checkpoint is here: a dict of floating-point tensors, optionally
//! under a key, with DDP's `module.` prefix dropped.

use pytorch_reader::{DType, PickleValue, PytorchError, PytorchReader};

use super::{NamedTensors, Tensor};
use crate::error::{Error, Result};

/// What `torch.save` files start with: a zip archive (PyTorch 1.6 and later),
/// or a pickle (`PROTO` opcode, protocol 2 or more: the legacy container,
/// which opens with a pickled magic number).
pub(super) fn looks_like_torch(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || matches!(head, [0x80, 2..=5, ..])
}

/// Extensions the official code and PyTorch users give `torch.save` files.
pub(super) fn has_torch_extension(path: &str) -> bool {
    let ext = std::path::Path::new(path).extension().and_then(|e| e.to_str());
    matches!(ext.map(str::to_ascii_lowercase).as_deref(), Some("th" | "pt" | "pth"))
}

/// The DDP wrapper's prefix on every name of a `state_dict` saved from the
/// wrapped model; the official `restore_params` drops it too.
const DDP_PREFIX: &str = "module.";

/// The tensors of a PyTorch file's top-level dict (or of the dict under `key`),
/// as f32 with `module.` dropped from their names.
pub(super) fn load(path: &str, key: Option<&str>) -> Result<NamedTensors> {
    let unreadable = |e: PytorchError| match e {
        PytorchError::KeyNotFound(msg) => Error::Input(format!("{path}: --checkpoint-key {msg}")),
        e => Error::Input(format!("{path}: not a readable PyTorch file ({e})")),
    };
    // The pickle alone (no tensor data) says what the file holds, so a file of
    // something else is refused with what it is before anything is read.
    let top = PytorchReader::read_pickle_data(path, key).map_err(unreadable)?;
    holds_tensors(&top).map_err(|found| {
        let at = key.map_or_else(String::new, |k| format!(" under --checkpoint-key {k}"));
        Error::Input(format!("{path} holds{at} {found}"))
    })?;
    let reader = match key {
        Some(k) => PytorchReader::with_top_level_key(path, k),
        None => PytorchReader::new(path),
    }
    .map_err(unreadable)?;
    let mut out = NamedTensors::new();
    for (name, t) in reader.into_tensors() {
        let data = to_f32(&t).map_err(|e| Error::Input(format!("{path}: {e}")))?;
        let shape = t.shape().to_vec();
        let ours = name.strip_prefix(DDP_PREFIX).unwrap_or(&name).to_string();
        if out.insert(ours.clone(), Tensor { shape, data }).is_some() {
            return Err(Error::Input(format!(
                "{path} holds both {ours} and {DDP_PREFIX}{ours}, which name the same weight"
            )));
        }
    }
    Ok(out)
}

/// The tensor's values as f32. Floating-point types only: integer tensors are
/// no weights of this model.
fn to_f32(t: &pytorch_reader::Tensor) -> Result<Vec<f32>> {
    let bytes = t
        .read()
        .map_err(|e| Error::Input(format!("could not read tensor data ({e})")))?;
    // The reader hands back native-endian bytes, whatever the file's order.
    Ok(match t.dtype() {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_ne_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        other => {
            return Err(Error::Input(format!(
                "tensor {} has dtype {other:?}; expected F32, F16, BF16 or F64",
                t.name
            )))
        }
    })
}

/// How many keys an error lists before it says how many more there are.
const KEYS_SHOWN: usize = 12;

/// `Ok` when `value` is a dict with a tensor among its values; otherwise what
/// it is instead, and which key to pass when one of its values is such a dict
/// (a training checkpoint's `model_state_dict`).
fn holds_tensors(value: &PickleValue) -> std::result::Result<(), String> {
    let PickleValue::Dict(dict) = value else {
        let found = type_name(value);
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        return Err(format!("{article} {found}, not a dict of tensors"));
    };
    if dict.values().any(is_tensor) {
        return Ok(());
    }
    let mut keys: Vec<&str> = dict.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut listed = keys.iter().take(KEYS_SHOWN).copied().collect::<Vec<_>>().join(", ");
    if keys.len() > KEYS_SHOWN {
        listed.push_str(&format!(", ... {} more", keys.len() - KEYS_SHOWN));
    }
    let nested: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| matches!(&dict[*k], PickleValue::Dict(d) if d.values().any(is_tensor)))
        .collect();
    let advice = match nested.as_slice() {
        [] => ", nor a dict of tensors under any key: no model weights (an optimizer's state_dict?)".to_string(),
        [one] => format!(": pass --checkpoint-key {one}"),
        many => format!(": pass --checkpoint-key with one of {}", many.join(", ")),
    };
    Err(format!(
        "a dict with keys [{listed}] and no tensors at top level{advice}"
    ))
}

fn is_tensor(value: &PickleValue) -> bool {
    matches!(value, PickleValue::Unsupported(t) if t == "torch.Tensor")
}

/// The Python name of a value's type, for errors.
fn type_name(value: &PickleValue) -> &str {
    match value {
        PickleValue::None => "None",
        PickleValue::Bool(_) => "bool",
        PickleValue::Int(_) => "int",
        PickleValue::Float(_) => "float",
        PickleValue::String(_) => "str",
        PickleValue::List(_) => "list",
        PickleValue::Dict(_) => "dict",
        PickleValue::Bytes(_) => "bytes",
        PickleValue::Unsupported(t) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_files_are_told_from_safetensors_by_their_first_bytes() {
        assert!(looks_like_torch(b"PK\x03\x04rest"));
        assert!(looks_like_torch(b"\x80\x02\x8a\x0a"));
        assert!(!looks_like_torch(b"\x80\x00\x00\x00\x00\x00\x00\x00{"));
        assert!(!looks_like_torch(b"random"));
        assert!(has_torch_extension("a/cifar10-model-ema.th"));
        assert!(has_torch_extension("x.PT") && has_torch_extension("x.pth"));
        assert!(!has_torch_extension("x.safetensors") && !has_torch_extension("th"));
    }
}
