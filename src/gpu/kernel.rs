//! A kernel as the Rust side states it: its WGSL, entry point, the bindings it
//! expects, its params type and the sizes its grid math relies on. The pipeline
//! builder checks every statement against the shader (see `contract.rs`).

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use super::params::{GpuParams, ParamsLayout};

/// How a kernel uses one binding of bind group 0, in binding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
    /// `var<uniform>`: the op's parameters (shapes, flags), a small struct.
    Uniform,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "storage, read",
            Access::ReadWrite => "storage, read_write",
            Access::Uniform => "uniform",
        })
    }
}

/// The WGSL every kernel's module starts with (`shaders/prelude.wgsl`): the
/// workgroup sizes `WG` and `WG_SMALL`, and `flat_index` / `flat_workgroup`,
/// the flat index over the folded 2-D grids of [`Grid`](super::Grid).
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// A kernel's own WGSL; its module is [`PRELUDE`] followed by it.
#[derive(Clone, Debug)]
pub enum Source {
    /// Hand-written files concatenated in order, so shared code (the RNG,
    /// GELU) is listed before the family's own file.
    Files(&'static [&'static str]),
    /// Shared files followed by WGSL generated at run time (the tiled kernels).
    Generated(&'static [&'static str], Arc<str>),
}

impl Source {
    /// The complete module text: the prelude, then the kernel's own WGSL.
    pub fn text(&self) -> String {
        PRELUDE.to_owned() + &self.own_text()
    }

    /// The kernel's own WGSL, without the prelude.
    pub fn own_text(&self) -> String {
        match self {
            Source::Files(files) => files.concat(),
            Source::Generated(files, generated) => files.concat() + generated,
        }
    }
}

/// Everything about a kernel except its params type: what the pipeline
/// builder needs and what the contract test enumerates.
#[derive(Clone, Debug)]
pub struct KernelSpec {
    pub name: &'static str,
    pub source: Source,
    pub entry: &'static str,
    pub bindings: &'static [Access],
    /// Adapter feature the kernel needs (`wgpu::Features::empty()` for portable ones).
    pub requires: wgpu::Features,
    /// Compile without naga's per-access bounds checks. Only for kernels whose
    /// every index is proven in range by the host-side shape checks of their op.
    pub unchecked: bool,
    /// Layout of the uniform params struct (`None` without a uniform).
    pub params: Option<ParamsLayout>,
    /// The workgroup size the Rust side relies on beyond the grid (scratch
    /// sizes, tiles, lanes), when it does; checked against the shader.
    pub workgroup_size: Option<[u32; 3]>,
    /// Module-scope WGSL integer constants the Rust side relies on (e.g. `CHUNK`).
    pub constants: &'static [(&'static str, i64)],
}

/// A WGSL entry point whose uniform is a `P` (`NoParams` without one): a
/// dispatch of it only accepts a `P`.
pub struct Kernel<P> {
    spec: KernelSpec,
    params: PhantomData<fn(&P)>,
}

impl<P> Clone for Kernel<P> {
    fn clone(&self) -> Self {
        Kernel {
            spec: self.spec.clone(),
            params: PhantomData,
        }
    }
}

impl<P> Deref for Kernel<P> {
    type Target = KernelSpec;
    fn deref(&self) -> &KernelSpec {
        &self.spec
    }
}

impl<P: GpuParams> Kernel<P> {
    /// A hand-written kernel any adapter runs.
    pub const fn portable(
        name: &'static str,
        sources: &'static [&'static str],
        entry: &'static str,
        bindings: &'static [Access],
    ) -> Kernel<P> {
        Kernel::new(name, Source::Files(sources), entry, bindings)
    }

    /// A kernel whose WGSL (after the shared `files`) was generated at run time;
    /// `name` must tell its variants apart (it keys the pipeline cache).
    pub fn generated(
        name: String,
        files: &'static [&'static str],
        wgsl: String,
        entry: &'static str,
        bindings: &'static [Access],
    ) -> Kernel<P> {
        Kernel::new(intern(name), Source::Generated(files, wgsl.into()), entry, bindings)
    }

    const fn new(name: &'static str, source: Source, entry: &'static str, bindings: &'static [Access]) -> Kernel<P> {
        Kernel {
            spec: KernelSpec {
                name,
                source,
                entry,
                bindings,
                requires: wgpu::Features::empty(),
                unchecked: false,
                params: P::LAYOUT,
                workgroup_size: None,
                constants: &[],
            },
            params: PhantomData,
        }
    }

    /// The same kernel compiled without bounds checks (see [`KernelSpec::unchecked`]).
    pub const fn without_bounds_checks(mut self) -> Kernel<P> {
        self.spec.unchecked = true;
        self
    }

    /// The same kernel, usable only on adapters with `feature` (e.g. SHADER_F16, SUBGROUP).
    pub const fn requiring(mut self, feature: wgpu::Features) -> Kernel<P> {
        self.spec.requires = feature;
        self
    }

    /// States the workgroup size the Rust side relies on beyond the grid.
    pub const fn with_workgroup_size(mut self, size: [u32; 3]) -> Kernel<P> {
        self.spec.workgroup_size = Some(size);
        self
    }

    /// States WGSL constants the Rust side relies on.
    pub const fn with_constants(mut self, constants: &'static [(&'static str, i64)]) -> Kernel<P> {
        self.spec.constants = constants;
        self
    }

    /// The kernel without its params type (for listing and checking).
    pub fn spec(&self) -> KernelSpec {
        self.spec.clone()
    }
}

/// A `&'static` copy of a generated kernel's name, made once per distinct name
/// (dispatches and profiles carry kernel names as `&'static str`).
fn intern(name: String) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap();
    let names = names.get_or_insert_with(HashSet::new);
    match names.get(name.as_str()) {
        Some(&n) => n,
        None => {
            let n: &'static str = Box::leak(name.into_boxed_str());
            names.insert(n);
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::NoParams;

    #[test]
    fn generated_kernels_share_one_interned_name_per_variant() {
        let a = Kernel::<NoParams>::generated("variant_a".into(), &["// shared\n"], "// a\n".into(), "main", &[]);
        let b = Kernel::<NoParams>::generated("variant_a".into(), &[], String::new(), "main", &[]);
        assert!(std::ptr::eq(a.name, b.name));
        assert_eq!(a.source.own_text(), "// shared\n// a\n");
        assert_eq!(a.source.text(), format!("{PRELUDE}// shared\n// a\n"));
    }
}
