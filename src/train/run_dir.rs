//! The run directory a training run writes into. A new run never lands on
//! an old one by accident: a directory that holds a run is continued
//! (`resume`), replaced (`overwrite`), or refused, since the first save
//! would replace its checkpoints and the log would lose its lines.

use std::path::Path;

use crate::error::{Error, Result};

/// The files of a run: a directory holding any of them holds a run.
const RUN_FILES: [&str; 4] = ["model.safetensors", "model-ema.safetensors", "opt.safetensors", "log.jsonl"];

fn io(path: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_string(),
        source: e,
    }
}

/// Makes `dir` ready for a run: created for a new one; for a new run over an
/// old one (`overwrite`), the old run's files deleted; for a new run without
/// `overwrite` over an old one, an error that says what to pass.
pub fn prepare(dir: &str, resume: bool, overwrite: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if resume {
        return Ok(());
    }
    let found: Vec<&str> = RUN_FILES
        .into_iter()
        .filter(|f| Path::new(dir).join(f).exists())
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(Error::Input(format!(
            "{dir} holds a run ({}): pass --resume to continue it, --overwrite to replace it \
             (its checkpoints and log.jsonl are deleted), or choose another --out",
            found.join(", ")
        )));
    }
    for file in found {
        let path = format!("{dir}/{file}");
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("vdvae-rundir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.to_string_lossy().into_owned()
    }

    #[test]
    fn a_new_run_over_an_old_one_needs_resume_or_overwrite() {
        let d = dir("old");
        prepare(&d, false, false).unwrap();
        std::fs::write(format!("{d}/log.jsonl"), "{\"step\":0}\n").unwrap();
        std::fs::write(format!("{d}/opt.safetensors"), "x").unwrap();
        let err = prepare(&d, false, false).unwrap_err().to_string();
        assert!(
            err.contains("opt.safetensors, log.jsonl") && err.contains("--resume") && err.contains("--overwrite"),
            "{err}"
        );
        assert!(Path::new(&format!("{d}/log.jsonl")).exists(), "a refusal deletes nothing");
        prepare(&d, true, false).unwrap();
        assert!(Path::new(&format!("{d}/log.jsonl")).exists(), "a resume keeps the run");
        prepare(&d, false, true).unwrap();
        assert!(!Path::new(&format!("{d}/log.jsonl")).exists());
        assert!(!Path::new(&format!("{d}/opt.safetensors")).exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
