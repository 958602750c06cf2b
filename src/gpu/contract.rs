//! The shader is the contract: what a [`KernelSpec`] states (bindings and their
//! access, the params layout, workgroup size, constants) compared with what
//! naga reads from its WGSL. Run when a pipeline is built and, for every kernel
//! the crate can build, by `tests/shader_contract.rs` without an adapter.

use super::f16_storage;
use super::kernel::{Access, KernelSpec};
use super::params::Member;
use super::reflect::{parse, reflect, reflect_module, Reflection, StructLayout};

/// Every way `spec` disagrees with `r`, one sentence each; empty when they agree.
pub fn mismatches(spec: &KernelSpec, r: &Reflection) -> Vec<String> {
    let mut out = Vec::new();
    for (i, &access) in spec.bindings.iter().enumerate() {
        match r.binding(i as u32) {
            None => out.push(format!(
                "binding {i}: Rust declares `{access}`, the WGSL has no @group(0) @binding({i})"
            )),
            Some(b) if b.access != access => out.push(format!(
                "binding {i} `{}`: Rust declares `{access}`, the WGSL `{}`",
                b.name, b.access
            )),
            Some(_) => {}
        }
    }
    for b in r
        .bindings
        .iter()
        .filter(|b| b.used && b.index as usize >= spec.bindings.len())
    {
        out.push(format!(
            "binding {} `{}` (`{}`) is used by `{}` but not declared in Rust",
            b.index, b.name, b.access, r.entry
        ));
    }
    let uniforms: Vec<usize> = (0..spec.bindings.len())
        .filter(|&i| spec.bindings[i] == Access::Uniform)
        .collect();
    match (uniforms.as_slice(), spec.params) {
        ([], None) => {}
        ([], Some(p)) => out.push(format!(
            "Rust gives params `{}` but declares no uniform binding",
            p.type_name
        )),
        ([_], None) => out.push("the kernel has a uniform binding but its Rust params type has no layout".into()),
        (&[i], Some(p)) => {
            if let Some(wgsl) = r.binding(i as u32).and_then(|b| b.layout.as_ref()) {
                out.extend(
                    struct_mismatches(p.members, p.size, wgsl)
                        .into_iter()
                        .map(|m| format!("params `{}`: {m}", p.type_name)),
                );
            } else if r.binding(i as u32).is_some_and(|b| b.access == Access::Uniform) {
                out.push(format!("the uniform at binding {i} is not a struct"));
            }
        }
        _ => out.push(format!("{} uniform bindings; a kernel has at most one", uniforms.len())),
    }
    if let Some(ws) = spec.workgroup_size.filter(|ws| *ws != r.workgroup_size) {
        out.push(format!(
            "Rust relies on workgroup size {ws:?}, the WGSL declares {:?}",
            r.workgroup_size
        ));
    }
    for &(name, value) in spec.constants {
        match r.constant(name) {
            Some(v) if v == value => {}
            Some(v) => out.push(format!("Rust relies on `{name}` = {value}, the WGSL says {v}")),
            None => out.push(format!(
                "Rust relies on `{name}` = {value}, the WGSL has no such integer constant"
            )),
        }
    }
    out
}

/// Member-by-member comparison (name, offset, size) of a Rust layout with a
/// WGSL struct, and of the total size.
pub fn struct_mismatches(rust: &[Member], rust_size: u32, wgsl: &StructLayout) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..rust.len().max(wgsl.members.len()) {
        match (rust.get(i), wgsl.members.get(i)) {
            (Some(r), Some(w)) if (r.name, r.offset, r.size) != (w.name.as_str(), w.offset, w.size) => {
                out.push(format!(
                    "member {i} is `{}` at byte {} ({} bytes) in Rust, `{}` at byte {} ({} bytes) in WGSL struct `{}`",
                    r.name, r.offset, r.size, w.name, w.offset, w.size, wgsl.name
                ))
            }
            (Some(r), None) => out.push(format!(
                "member {i} `{}` is missing from WGSL struct `{}`",
                r.name, wgsl.name
            )),
            (None, Some(w)) => out.push(format!(
                "member {i} `{}` of WGSL struct `{}` is missing in Rust",
                w.name, wgsl.name
            )),
            _ => {}
        }
    }
    if rust_size != wgsl.size {
        out.push(format!(
            "size is {rust_size} bytes in Rust, {} in WGSL struct `{}`",
            wgsl.size, wgsl.name
        ));
    }
    out
}

/// Parses, validates and reflects `spec`'s WGSL with the features it requires,
/// then compares: the whole check the contract test runs per kernel.
pub fn check_kernel(spec: &KernelSpec) -> Result<Reflection, Vec<String>> {
    let r = reflect(&spec.source.text(), spec.entry, spec.requires).map_err(|e| vec![e])?;
    let m = mismatches(spec, &r);
    if m.is_empty() {
        Ok(r)
    } else {
        Err(m)
    }
}

/// [`check_kernel`], then the same module with every storage binding the f16
/// pass converts stored as f16 (as `--precision f16` may bind it), validated
/// and compared again. Returns the f16 variant's reflection, whose converted
/// bindings have f16 strides.
pub fn check_kernel_with_f16(spec: &KernelSpec) -> Result<Reflection, Vec<String>> {
    let source = spec.source.text();
    let mut module = parse(&source, spec.requires).map_err(|e| vec![e])?;
    let r = reflect_module(&module, &source, spec.entry, spec.requires).map_err(|e| vec![e])?;
    let m = mismatches(spec, &r);
    if !m.is_empty() {
        return Err(m);
    }
    let f16 = f16_storage::convertible_bindings(&module);
    let in_f16 = |e: String| vec![format!("with f16 storage of bindings {f16:?}: {e}")];
    f16_storage::store_as_f16(&mut module, &f16).map_err(in_f16)?;
    let features = spec.requires | f16_storage::features(&f16);
    let r16 = reflect_module(&module, &source, spec.entry, features).map_err(in_f16)?;
    let m = mismatches(spec, &r16);
    if !m.is_empty() {
        return Err(m.into_iter().flat_map(in_f16).collect());
    }
    for (b, b16) in r.bindings.iter().zip(&r16.bindings) {
        let want = if f16.contains(&b.index) {
            b.stride.map(|s| s / 2)
        } else {
            b.stride
        };
        if b16.stride != want {
            return Err(in_f16(format!(
                "binding {} `{}` has stride {:?}, expected {want:?}",
                b.index, b.name, b16.stride
            )));
        }
    }
    Ok(r16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::Kernel;

    crate::gpu_params! {
        struct TinyParams { n: u32, scale: f32 }
    }

    const WGSL: &str = "
        struct Params { n: u32, scale: f32 }
        const CHUNK: u32 = 64u;
        @group(0) @binding(0) var<storage, read> x: array<f32>;
        @group(0) @binding(1) var<storage, read_write> y: array<f32>;
        @group(0) @binding(2) var<uniform> p: Params;
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) g: vec3<u32>) {
            if (g.x < p.n) { y[g.x] = x[g.x] * p.scale; }
        }";
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
    const TINY: Kernel<TinyParams> = Kernel::portable("tiny", &[WGSL], "main", BINDINGS)
        .with_workgroup_size([64, 1, 1])
        .with_constants(&[("CHUNK", 64)]);

    fn errors_of(spec: &KernelSpec) -> String {
        check_kernel(spec).unwrap_err().join("\n")
    }

    #[test]
    fn an_agreeing_kernel_passes() {
        let r = check_kernel(&TINY.spec()).unwrap();
        assert_eq!(r.workgroup_size, [64, 1, 1]);
    }

    #[test]
    fn each_kind_of_drift_is_named() {
        let with = |bindings: &'static [Access]| KernelSpec {
            bindings,
            ..TINY.spec()
        };
        let err = errors_of(&with(&[Access::Read, Access::Read, Access::Uniform]));
        assert!(err.contains("binding 1 `y`") && err.contains("read_write"), "{err}");
        let err = errors_of(&with(&[Access::Read, Access::ReadWrite]));
        assert!(
            err.contains("binding 2 `p`") && err.contains("not declared in Rust"),
            "{err}"
        );
        let err = errors_of(&KernelSpec {
            workgroup_size: Some([256, 1, 1]),
            ..TINY.spec()
        });
        assert!(err.contains("[256, 1, 1]") && err.contains("[64, 1, 1]"), "{err}");
        let err = errors_of(&KernelSpec {
            constants: &[("CHUNK", 32), ("TILE", 8)],
            ..TINY.spec()
        });
        assert!(err.contains("`CHUNK` = 32") && err.contains("`TILE`"), "{err}");
        let swapped = WGSL.replace("n: u32, scale: f32", "scale: f32, n: u32");
        let source = crate::gpu::Source::Generated(&[], swapped.into());
        let err = errors_of(&KernelSpec { source, ..TINY.spec() });
        assert!(
            err.contains("member 0 is `n`") && err.contains("`scale` at byte 0"),
            "{err}"
        );
    }
}
