//! What of the library's `log` records reaches stderr. The library logs its
//! notes and progress lines at `info`; by default the binary shows vdvae's
//! `info` and above, and nothing of other crates (wgpu's own logging is for
//! debugging it). `VDVAE_LOG` takes env_logger's filter syntax to change that,
//! e.g. `VDVAE_LOG=debug` or `VDVAE_LOG=vdvae=info,wgpu_hal=warn`.

use std::io::Write;

use log::Level;

/// Installs the logger. A plain message for `info`, `warning: …` and
/// `error: …` for the levels users must notice, the level and module for
/// `debug` and `trace`.
pub fn init() {
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Off)
        .filter_module("vdvae", log::LevelFilter::Info)
        .parse_env(env_logger::Env::new().filter("VDVAE_LOG"))
        .format(|out, r| match r.level() {
            Level::Info => writeln!(out, "{}", r.args()),
            Level::Warn => writeln!(out, "warning: {}", r.args()),
            Level::Error => writeln!(out, "error: {}", r.args()),
            level => writeln!(out, "{level} {}: {}", r.target(), r.args()),
        })
        .init();
}
