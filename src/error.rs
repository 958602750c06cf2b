//! One error type for the library: every variant says what was wrong and, where
//! there is one, what to do about it.

/// What the library reports when something fails.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable GPU adapter (or the requested one is not there).
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused a device, a buffer could not be read back, and so on.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A WGSL kernel failed to compile or validate.
    #[error("WGSL kernel `{kernel}` failed to compile:\n{message}")]
    Shader { kernel: String, message: String },
    /// A kernel's Rust side (bindings, params layout, workgroup size) disagrees
    /// with its WGSL as naga reads it.
    #[error("kernel `{kernel}`: the Rust side disagrees with its WGSL:{}", bullets(.mismatches))]
    Contract { kernel: String, mismatches: Vec<String> },
    /// Tensor shapes or buffer sizes that do not fit an op.
    #[error("shape error: {0}")]
    Shape(String),
    /// Invalid user input (bad flag value, bad file contents).
    #[error("{0}")]
    Input(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A data-parallel collective failed: another rank failed, panicked or ended
    /// early, or the ranks disagree on a length. The message names the rank.
    #[error("{0}")]
    Parallel(String),
}

/// Each mismatch on a line of its own.
fn bullets(items: &[String]) -> String {
    items.iter().map(|m| format!("\n  - {m}")).collect()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for returning a shape error from op validation.
pub fn shape_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Shape(msg.into()))
}
