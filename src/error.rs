//! One error type for the library: every variant says what was wrong and, where
//! there is one, what to do about it.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// No usable GPU adapter (or the requested one is not there).
    NoAdapter(String),
    /// The adapter refused a device, a buffer could not be read back, and so on.
    Gpu(String),
    /// A WGSL kernel failed to compile or validate.
    Shader {
        kernel: String,
        message: String,
    },
    /// A kernel's Rust side (bindings, params layout, workgroup size) disagrees
    /// with its WGSL as naga reads it.
    Contract {
        kernel: String,
        mismatches: Vec<String>,
    },
    /// Tensor shapes or buffer sizes that do not fit an op.
    Shape(String),
    /// Invalid user input (bad flag value, bad file contents).
    Input(String),
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A data-parallel collective failed: another rank failed, panicked or ended
    /// early, or the ranks disagree on a length. The message names the rank.
    Parallel(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(msg) => write!(f, "no GPU adapter: {msg}"),
            Error::Gpu(msg) => write!(f, "GPU error: {msg}"),
            Error::Shader { kernel, message } => {
                write!(f, "WGSL kernel `{kernel}` failed to compile:\n{message}")
            }
            Error::Contract { kernel, mismatches } => {
                write!(f, "kernel `{kernel}`: the Rust side disagrees with its WGSL:")?;
                for m in mismatches {
                    write!(f, "\n  - {m}")?;
                }
                Ok(())
            }
            Error::Shape(msg) => write!(f, "shape error: {msg}"),
            Error::Input(msg) => write!(f, "{msg}"),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Parallel(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for returning a shape error from op validation.
pub fn shape_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Shape(msg.into()))
}
