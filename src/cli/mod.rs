//! The command-line interface's pieces beside `main.rs`.

pub mod args;
pub mod diagnostics;
pub mod logging;
pub mod train;
