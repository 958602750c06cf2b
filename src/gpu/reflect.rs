//! What a kernel's WGSL declares, read by naga (the same version wgpu compiles
//! with): the entry point's workgroup size and every buffer of bind group 0,
//! with its address space, access and byte layout. The pipeline builder and the
//! contract test compare this with what the Rust side states.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, ArraySize, Module, StorageAccess, TypeInner};

use super::kernel::Access;

/// One member of a WGSL struct: name, byte offset, byte size, and the members
/// of its own struct type when it is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberLayout {
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub members: Vec<MemberLayout>,
}

/// A WGSL struct's name, size (its span: the uniform buffer needs this many
/// bytes) and members in declaration order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructLayout {
    pub name: String,
    pub size: u32,
    pub members: Vec<MemberLayout>,
}

/// One `@group(0) @binding(i)` buffer of the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShaderBinding {
    pub index: u32,
    /// The WGSL variable name.
    pub name: String,
    pub access: Access,
    /// Whether the reflected entry point reads or writes it (a module may
    /// declare buffers that only its other entry points use).
    pub used: bool,
    /// Bytes a bound buffer must have at least: a struct's size, one element
    /// of a runtime-sized array, or the whole fixed-size type.
    pub min_size: u32,
    /// Element stride of a runtime-sized array.
    pub stride: Option<u32>,
    /// The layout when the type is a struct (the params uniform, the optimizer state).
    pub layout: Option<StructLayout>,
}

/// The reflection of one compute entry point.
#[derive(Clone, Debug)]
pub struct Reflection {
    pub entry: String,
    pub workgroup_size: [u32; 3],
    /// Every group-0 buffer of the module, by binding index.
    pub bindings: Vec<ShaderBinding>,
    /// Module-scope integer `const`s (e.g. `CHUNK`), for sizes the Rust side relies on.
    pub constants: Vec<(String, i64)>,
}

impl Reflection {
    pub fn binding(&self, index: u32) -> Option<&ShaderBinding> {
        self.bindings.iter().find(|b| b.index == index)
    }

    pub fn constant(&self, name: &str) -> Option<i64> {
        self.constants.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Invocations per workgroup.
    pub fn invocations_per_workgroup(&self) -> u32 {
        self.workgroup_size.iter().product()
    }
}

/// The naga capabilities wgpu grants a device with `features`: a kernel is
/// validated with exactly what it declares it requires (subgroups, f16).
pub fn capabilities(features: wgpu::Features) -> Capabilities {
    wgpu_naga_bridge::features_to_naga_capabilities(features, wgpu::DownlevelFlags::empty())
}

/// Parses `source` as wgpu would on an adapter with `features`; errors are
/// naga's messages with the offending source line.
pub fn parse(source: &str, features: wgpu::Features) -> Result<Module, String> {
    let mut options = naga::front::wgsl::Options::new();
    options.capabilities = capabilities(features);
    naga::front::wgsl::Frontend::new_with_options(options)
        .parse(source)
        .map_err(|e| e.emit_to_string(source))
}

/// Parses and validates `source` as wgpu would on an adapter with `features`,
/// then reflects compute entry point `entry`.
pub fn reflect(source: &str, entry: &str, features: wgpu::Features) -> Result<Reflection, String> {
    reflect_module(&parse(source, features)?, source, entry, features)
}

/// [`reflect`] of a module already parsed from `source`.
pub fn reflect_module(
    module: &Module,
    source: &str,
    entry: &str,
    features: wgpu::Features,
) -> Result<Reflection, String> {
    let info = Validator::new(ValidationFlags::all(), capabilities(features))
        .validate(module)
        .map_err(|e| e.emit_to_string(source))?;
    let (index, ep) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, ep)| ep.name == entry)
        .ok_or_else(|| {
            let names: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
            format!("no entry point `{entry}`; the module has {names:?}")
        })?;
    if ep.stage != naga::ShaderStage::Compute {
        return Err(format!("entry point `{entry}` is not a compute shader"));
    }
    if ep.workgroup_size_overrides.is_some() {
        // The grid is computed from the workgroup size before any override is known.
        return Err(format!(
            "entry point `{entry}`: a workgroup size set by an override is not supported"
        ));
    }
    let uses = info.get_entry_point(index);
    let mut bindings = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(rb) = var.binding.filter(|rb| rb.group == 0) else {
            continue;
        };
        let name = var.name.clone().unwrap_or_default();
        let access = match var.space {
            AddressSpace::Uniform => Access::Uniform,
            AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => Access::ReadWrite,
            AddressSpace::Storage { .. } => Access::Read,
            other => return Err(format!("binding {} `{name}`: {other:?} is not a buffer", rb.binding)),
        };
        let inner = &module.types[var.ty].inner;
        bindings.push(ShaderBinding {
            index: rb.binding,
            name,
            access,
            used: !uses[handle].is_empty(),
            min_size: inner.size(module.to_ctx()),
            stride: match *inner {
                TypeInner::Array {
                    size: ArraySize::Dynamic,
                    stride,
                    ..
                } => Some(stride),
                _ => None,
            },
            layout: struct_layout(module, var.ty),
        });
    }
    bindings.sort_by_key(|b| b.index);
    Ok(Reflection {
        entry: entry.to_string(),
        workgroup_size: ep.workgroup_size,
        bindings,
        constants: integer_constants(module),
    })
}

fn struct_layout(module: &Module, ty: naga::Handle<naga::Type>) -> Option<StructLayout> {
    let t = &module.types[ty];
    match &t.inner {
        TypeInner::Struct { span, .. } => Some(StructLayout {
            name: t.name.clone().unwrap_or_default(),
            size: *span,
            members: members(module, ty),
        }),
        _ => None,
    }
}

fn members(module: &Module, ty: naga::Handle<naga::Type>) -> Vec<MemberLayout> {
    let TypeInner::Struct { members, .. } = &module.types[ty].inner else {
        return Vec::new();
    };
    members
        .iter()
        .map(|m| MemberLayout {
            name: m.name.clone().unwrap_or_default(),
            offset: m.offset,
            size: module.types[m.ty].inner.size(module.to_ctx()),
            members: self::members(module, m.ty),
        })
        .collect()
}

fn integer_constants(module: &Module) -> Vec<(String, i64)> {
    module
        .constants
        .iter()
        .filter_map(|(_, c)| {
            let value = match module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => v as i64,
                naga::Expression::Literal(naga::Literal::I32(v)) => v as i64,
                naga::Expression::Literal(naga::Literal::AbstractInt(v)) => v,
                _ => return None,
            };
            Some((c.name.clone()?, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "
        const CHUNK: u32 = 16384u;
        struct Params { n: u32, scale: f32, pad0: u32, pad1: u32, key: Inner }
        struct Inner { a: u32, b: u32 }
        @group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
        @group(0) @binding(1) var<storage, read_write> y: array<f32>;
        @group(0) @binding(2) var<uniform> p: Params;
        @group(0) @binding(3) var<storage, read> unused: array<f32>;
        @compute @workgroup_size(64, 2)
        fn main(@builtin(global_invocation_id) g: vec3<u32>) {
            if (g.x < p.n) { y[g.x] = x[g.x].x * p.scale + f32(CHUNK); }
        }";

    #[test]
    fn reflects_workgroup_size_bindings_layouts_and_constants() {
        let r = reflect(SOURCE, "main", wgpu::Features::empty()).unwrap();
        assert_eq!(r.workgroup_size, [64, 2, 1]);
        assert_eq!(r.invocations_per_workgroup(), 128);
        assert_eq!(r.constant("CHUNK"), Some(16384));
        let access: Vec<_> = r.bindings.iter().map(|b| (b.index, b.access, b.used)).collect();
        assert_eq!(
            access,
            [
                (0, Access::Read, true),
                (1, Access::ReadWrite, true),
                (2, Access::Uniform, true),
                (3, Access::Read, false)
            ]
        );
        assert_eq!(r.bindings[0].stride, Some(16));
        assert_eq!(r.bindings[0].min_size, 16);
        let params = r.bindings[2].layout.as_ref().unwrap();
        assert_eq!(
            (params.name.as_str(), params.size, r.bindings[2].min_size),
            ("Params", 24, 24)
        );
        let members: Vec<_> = params
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.offset, m.size))
            .collect();
        assert_eq!(
            members,
            [
                ("n", 0, 4),
                ("scale", 4, 4),
                ("pad0", 8, 4),
                ("pad1", 12, 4),
                ("key", 16, 8)
            ]
        );
        assert_eq!(params.members[4].members[1].name, "b");
        assert_eq!(params.members[4].members[1].offset, 4);
    }

    #[test]
    fn errors_name_the_problem() {
        let err = reflect(SOURCE, "nope", wgpu::Features::empty()).unwrap_err();
        assert!(err.contains("nope") && err.contains("main"), "{err}");
        let err = reflect("fn f() { let x: f32 = undefined_thing; }", "f", wgpu::Features::empty()).unwrap_err();
        assert!(err.contains("undefined_thing"), "{err}");
    }

    #[test]
    fn subgroup_builtins_need_the_subgroup_feature() {
        let src = "@group(0) @binding(0) var<storage, read_write> o: array<f32>;
            @compute @workgroup_size(8)
            fn main(@builtin(subgroup_invocation_id) lane: u32) { o[lane] = subgroupBroadcast(1.0, 0u); }";
        assert!(reflect(src, "main", wgpu::Features::empty()).is_err());
        let r = reflect(src, "main", wgpu::Features::SUBGROUP).unwrap();
        assert_eq!(r.workgroup_size, [8, 1, 1]);
    }
}
