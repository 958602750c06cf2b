//! The crate's modules form layers and every `crate::` path points down (or
//! within its own module): no module imports one above it, so there are no
//! circles such as check ↔ kernels or checkpoint ↔ model. Reads the sources; needs
//! no adapter.

use std::path::Path;

/// Bottom first. A module may use modules of its own layer or below.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["gpu", "data", "checkpoint", "parallel"],
    &["check", "bench"],
    &["kernels"],
    &["graph"],
    &["model"],
    &["diagnose"],
    &["train"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::NAME` in the code (not the comments) of `source`, with its line number.
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let mut rest = line.split("//").next().unwrap_or("");
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.push((i + 1, name));
        }
    }
    found
}

/// The violations in the crate's `src/`: (file, line, used module).
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = layer(&top) else { continue };
        let source = std::fs::read_to_string(&file).unwrap();
        for (line, used) in crate_paths(&source) {
            if layer(&used).is_some_and(|l| l > own) {
                bad.push(format!("{}:{line} ({top}) uses crate::{used}", rel.display()));
            }
        }
    }
    bad
}

#[test]
fn every_module_is_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ").and_then(|l| l.strip_suffix(';')) {
            assert!(layer(name).is_some(), "module {name} is missing from LAYERS");
        }
    }
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(bad.is_empty(), "imports that point up a layer:\n{}", bad.join("\n"));
}

#[test]
fn an_upward_import_is_reported() {
    let dir = std::env::temp_dir().join(format!("vdvae-layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("kernels")).unwrap();
    std::fs::write(
        dir.join("kernels/mod.rs"),
        "use crate::gpu::Dispatch;\nuse crate::model::HParams;\n// crate::train in a comment\n",
    )
    .unwrap();
    let bad = violations(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(bad, vec!["kernels/mod.rs:2 (kernels) uses crate::model".to_string()]);
}
