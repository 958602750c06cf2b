//! f16 storage for kernels written in f32: a naga IR pass run when a pipeline
//! is built. The chosen storage bindings change type from `array<f32>`,
//! `array<vec2<f32>>` or `array<vec4<f32>>` to the f16 equivalent; every load
//! through them is widened to f32 right after it and every store rounds its
//! value to f16 right before it. The kernel's arithmetic (and every other
//! binding) is untouched, so a kernel computes in f32 whatever its tensors
//! are stored as, and one WGSL source serves both.
//!
//! A binding the pass cannot convert (another element type, `arrayLength`, an
//! atomic, a pointer passed to a function) is an error naming the binding: the
//! tensor bound there must stay f32.

use naga::{
    AddressSpace, Arena, ArraySize, Block, Expression, GatherMode, Handle, Module, Range, Scalar, ScalarKind, Span,
    Statement, Type, TypeInner, VectorSize,
};

/// The adapter features a kernel with f16 storage at `f16` needs beyond its own.
pub fn features(f16: &[u32]) -> wgpu::Features {
    if f16.is_empty() {
        wgpu::Features::empty()
    } else {
        wgpu::Features::SHADER_F16
    }
}

/// What a pipeline cache key adds for f16 storage at `f16` (nothing without).
pub fn key_suffix(f16: &[u32]) -> String {
    if f16.is_empty() {
        String::new()
    } else {
        format!(" f16{f16:?}")
    }
}

/// The f16 element type (and its lanes) of an `array<f32>` /
/// `array<vec2<f32>>` / `array<vec4<f32>>` type; None for any other type.
fn f16_element(module: &Module, ty: Handle<Type>) -> Option<(TypeInner, u32)> {
    let TypeInner::Array {
        base,
        size: ArraySize::Dynamic,
        ..
    } = module.types[ty].inner
    else {
        return None;
    };
    match module.types[base].inner {
        TypeInner::Scalar(Scalar::F32) => Some((TypeInner::Scalar(Scalar::F16), 1)),
        TypeInner::Vector {
            size: size @ (VectorSize::Bi | VectorSize::Quad),
            scalar: Scalar::F32,
        } => Some((
            TypeInner::Vector {
                size,
                scalar: Scalar::F16,
            },
            size as u32,
        )),
        _ => None,
    }
}

/// The f16 array type that replaces `ty`, added to the module.
fn f16_array(module: &mut Module, ty: Handle<Type>) -> Option<Handle<Type>> {
    let (inner, lanes) = f16_element(module, ty)?;
    let base = module.types.insert(Type { name: None, inner }, Span::UNDEFINED);
    let array = TypeInner::Array {
        base,
        size: ArraySize::Dynamic,
        stride: 2 * lanes,
    };
    Some(module.types.insert(
        Type {
            name: None,
            inner: array,
        },
        Span::UNDEFINED,
    ))
}

/// The group-0 storage bindings of `module` whose type the pass converts
/// (whether their uses convert too, [`store_as_f16`] tells).
pub fn convertible_bindings(module: &Module) -> Vec<u32> {
    let mut out: Vec<u32> = module
        .global_variables
        .iter()
        .filter_map(|(_, var)| {
            let rb = var.binding.as_ref().filter(|rb| rb.group == 0)?;
            let storage = matches!(var.space, AddressSpace::Storage { .. });
            (storage && f16_element(module, var.ty).is_some()).then_some(rb.binding)
        })
        .collect();
    out.sort_unstable();
    out
}

/// Converts the group-0 storage bindings `bindings` (indices) of `module` to
/// f16 storage, as the module doc says. Does nothing when `bindings` is empty.
pub fn store_as_f16(module: &mut Module, bindings: &[u32]) -> Result<(), String> {
    let mut converted = Vec::with_capacity(bindings.len());
    for &b in bindings {
        let (handle, var) = module
            .global_variables
            .iter()
            .find(|(_, v)| v.binding.as_ref().is_some_and(|rb| rb.group == 0 && rb.binding == b))
            .ok_or_else(|| format!("f16 storage: the module has no @group(0) @binding({b})"))?;
        let name = var.name.clone().unwrap_or_default();
        let (ty, space) = (var.ty, var.space);
        let new_ty = match space {
            AddressSpace::Storage { .. } => f16_array(module, ty),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "f16 storage of binding {b} `{name}`: only storage arrays of f32, vec2<f32> or vec4<f32> convert, not {:?}",
                module.types[ty].inner
            )
        })?;
        converted.push((handle, new_ty, b, name));
    }
    for &(handle, ty, ..) in &converted {
        module.global_variables[handle].ty = ty;
    }
    let roots: Vec<Handle<naga::GlobalVariable>> = converted.iter().map(|c| c.0).collect();
    let describe = |e: String| {
        let names: Vec<String> = converted.iter().map(|(_, _, b, n)| format!("{b} `{n}`")).collect();
        format!("f16 storage of bindings {}: {e}", names.join(", "))
    };
    for (_, f) in module.functions.iter_mut() {
        let name = f.name.clone().unwrap_or_default();
        convert_function(f, &roots).map_err(|e| describe(format!("function `{name}`: {e}")))?;
    }
    for ep in module.entry_points.iter_mut() {
        let name = ep.name.clone();
        convert_function(&mut ep.function, &roots).map_err(|e| describe(format!("entry point `{name}`: {e}")))?;
    }
    Ok(())
}

/// The rebuilt expression arena of one function, and how old handles map into it.
struct Rebuilt {
    expressions: Arena<Expression>,
    /// Old expression index → its copy in the new arena.
    first: Vec<Handle<Expression>>,
    /// Old expression index → what uses of it refer to now (a load's widening).
    last: Vec<Handle<Expression>>,
    /// Old expression index → whether it points into a converted binding.
    rooted: Vec<bool>,
}

fn convert_function(f: &mut naga::Function, roots: &[Handle<naga::GlobalVariable>]) -> Result<(), String> {
    let n = f.expressions.len();
    let mut rooted = vec![false; n];
    let mut widen = vec![false; n];
    for (h, e) in f.expressions.iter() {
        let i = h.index();
        match *e {
            Expression::GlobalVariable(g) => rooted[i] = roots.contains(&g),
            Expression::Access { base, .. } | Expression::AccessIndex { base, .. } => rooted[i] = rooted[base.index()],
            Expression::Load { pointer } => widen[i] = rooted[pointer.index()],
            _ => {}
        }
        // Any other use of a pointer into a converted binding would see f16.
        let pointer_use = match *e {
            Expression::Access { base, .. } | Expression::AccessIndex { base, .. } => Some(base),
            Expression::Load { pointer } => Some(pointer),
            _ => None,
        };
        let mut bad = false;
        visit_expression(&mut e.clone(), &mut |o| {
            bad |= rooted[o.index()] && Some(*o) != pointer_use;
        })?;
        if bad {
            return Err(format!("{} of it is not supported", expression_kind(e)));
        }
    }
    if !rooted.contains(&true) {
        return Ok(());
    }
    let mut r = Rebuilt {
        expressions: Arena::new(),
        first: Vec::with_capacity(n),
        last: Vec::with_capacity(n),
        rooted,
    };
    for (h, mut e, span) in std::mem::take(&mut f.expressions).drain() {
        visit_expression(&mut e, &mut |o| *o = r.last[o.index()])?;
        let copy = r.expressions.append(e, span);
        r.first.push(copy);
        if widen[h.index()] {
            let wide = Expression::As {
                expr: copy,
                kind: ScalarKind::Float,
                convert: Some(4),
            };
            r.last.push(r.expressions.append(wide, span));
        } else {
            r.last.push(copy);
        }
    }
    for (h, name) in std::mem::take(&mut f.named_expressions) {
        f.named_expressions.insert(r.last[h.index()], name);
    }
    for (_, local) in f.local_variables.iter_mut() {
        if let Some(init) = local.init.as_mut() {
            *init = r.last[init.index()];
        }
    }
    f.body = convert_block(std::mem::take(&mut f.body), &mut r)?;
    f.expressions = r.expressions;
    Ok(())
}

fn convert_block(block: Block, r: &mut Rebuilt) -> Result<Block, String> {
    let mut out = Block::with_capacity(block.len());
    for (mut s, span) in block.span_into_iter() {
        match s {
            Statement::Emit(range) => {
                // A widening sits right after its load, so it joins the load's range.
                let range = match range.first_and_last() {
                    Some((a, b)) => Range::new_from_bounds(r.first[a.index()], r.last[b.index()]),
                    None => range,
                };
                out.push(Statement::Emit(range), span);
                continue;
            }
            Statement::Store { pointer, value } if r.rooted[pointer.index()] => {
                let narrow = Expression::As {
                    expr: r.last[value.index()],
                    kind: ScalarKind::Float,
                    convert: Some(2),
                };
                let narrow = r.expressions.append(narrow, span);
                out.push(Statement::Emit(Range::new_from_bounds(narrow, narrow)), span);
                let pointer = r.last[pointer.index()];
                out.push(Statement::Store { pointer, value: narrow }, span);
                continue;
            }
            _ => {}
        }
        let mut bad = false;
        visit_statement(&mut s, &mut |h| bad |= r.rooted[h.index()])?;
        if bad {
            return Err(format!(
                "the statement {} uses it directly, which is not supported",
                statement_kind(&s)
            ));
        }
        visit_statement(&mut s, &mut |h| *h = r.last[h.index()])?;
        match &mut s {
            Statement::Block(b) => *b = convert_block(std::mem::take(b), r)?,
            Statement::If { accept, reject, .. } => {
                *accept = convert_block(std::mem::take(accept), r)?;
                *reject = convert_block(std::mem::take(reject), r)?;
            }
            Statement::Switch { cases, .. } => {
                for case in cases {
                    case.body = convert_block(std::mem::take(&mut case.body), r)?;
                }
            }
            Statement::Loop { body, continuing, .. } => {
                *body = convert_block(std::mem::take(body), r)?;
                *continuing = convert_block(std::mem::take(continuing), r)?;
            }
            _ => {}
        }
        out.push(s, span);
    }
    Ok(out)
}

/// Calls `f` on every expression handle an expression refers to.
fn visit_expression(e: &mut Expression, f: &mut impl FnMut(&mut Handle<Expression>)) -> Result<(), String> {
    use Expression as E;
    match e {
        E::Literal(_)
        | E::Constant(_)
        | E::Override(_)
        | E::ZeroValue(_)
        | E::FunctionArgument(_)
        | E::GlobalVariable(_)
        | E::LocalVariable(_)
        | E::CallResult(_)
        | E::AtomicResult { .. }
        | E::WorkGroupUniformLoadResult { .. }
        | E::RayQueryProceedResult
        | E::SubgroupBallotResult
        | E::SubgroupOperationResult { .. } => {}
        E::Compose { components, .. } => components.iter_mut().for_each(f),
        E::Access { base, index } => {
            f(base);
            f(index);
        }
        E::AccessIndex { base, .. } => f(base),
        E::Splat { value, .. } => f(value),
        E::Swizzle { vector, .. } => f(vector),
        E::Load { pointer } => f(pointer),
        E::Unary { expr, .. } => f(expr),
        E::Binary { left, right, .. } => {
            f(left);
            f(right);
        }
        E::Select {
            condition,
            accept,
            reject,
        } => {
            f(condition);
            f(accept);
            f(reject);
        }
        E::Derivative { expr, .. } => f(expr),
        E::Relational { argument, .. } => f(argument),
        E::Math {
            arg, arg1, arg2, arg3, ..
        } => {
            f(arg);
            arg1.iter_mut()
                .chain(arg2.iter_mut())
                .chain(arg3.iter_mut())
                .for_each(f);
        }
        E::As { expr, .. } => f(expr),
        E::ArrayLength(e) => f(e),
        other => return Err(format!("{} is not supported", expression_kind(other))),
    }
    Ok(())
}

/// Calls `f` on every expression handle a statement refers to directly (not
/// inside its nested blocks, nor in `Emit` ranges).
fn visit_statement(s: &mut Statement, f: &mut impl FnMut(&mut Handle<Expression>)) -> Result<(), String> {
    use Statement as S;
    match s {
        S::Emit(_) | S::Block(_) | S::Break | S::Continue | S::Kill | S::ControlBarrier(_) | S::MemoryBarrier(_) => {}
        S::If { condition, .. } => f(condition),
        S::Switch { selector, .. } => f(selector),
        S::Loop { break_if, .. } => break_if.iter_mut().for_each(f),
        S::Return { value } => value.iter_mut().for_each(f),
        S::Store { pointer, value } => {
            f(pointer);
            f(value);
        }
        S::Atomic {
            pointer,
            fun,
            value,
            result,
        } => {
            f(pointer);
            if let naga::AtomicFunction::Exchange { compare: Some(c) } = fun {
                f(c);
            }
            f(value);
            result.iter_mut().for_each(f);
        }
        S::WorkGroupUniformLoad { pointer, result } => {
            f(pointer);
            f(result);
        }
        S::Call { arguments, result, .. } => {
            arguments.iter_mut().for_each(&mut *f);
            result.iter_mut().for_each(f);
        }
        S::SubgroupBallot { result, predicate } => {
            f(result);
            predicate.iter_mut().for_each(f);
        }
        S::SubgroupGather { mode, argument, result } => {
            match mode {
                GatherMode::BroadcastFirst | GatherMode::QuadSwap(_) => {}
                GatherMode::Broadcast(h)
                | GatherMode::Shuffle(h)
                | GatherMode::ShuffleDown(h)
                | GatherMode::ShuffleUp(h)
                | GatherMode::ShuffleXor(h)
                | GatherMode::QuadBroadcast(h) => f(h),
            }
            f(argument);
            f(result);
        }
        S::SubgroupCollectiveOperation { argument, result, .. } => {
            f(argument);
            f(result);
        }
        other => return Err(format!("the statement {} is not supported", statement_kind(other))),
    }
    Ok(())
}

fn expression_kind(e: &Expression) -> String {
    match e {
        Expression::ArrayLength(_) => "arrayLength".into(),
        other => {
            let debug = format!("{other:?}");
            debug.split([' ', '(', '{']).next().unwrap_or_default().to_string()
        }
    }
}

fn statement_kind(s: &Statement) -> String {
    let debug = format!("{s:?}");
    debug.split([' ', '(', '{']).next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::reflect::{parse, reflect_module};

    const SOURCE: &str = "
        @group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
        @group(0) @binding(1) var<storage, read> s: array<f32>;
        @group(0) @binding(2) var<storage, read_write> y: array<f32>;
        @group(0) @binding(3) var<storage, read_write> counts: array<u32>;
        fn load_s(i: u32) -> f32 { return s[i]; }
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) g: vec3<u32>) {
            let v = x[g.x];
            var acc = v.x + v.y * x[g.x].z + load_s(g.x);
            y[g.x] = acc;
            y[g.x] += 2.0 * y[g.x + 1u];
            if (acc > 0.0) { y[g.x] = select(1.0, y[0], acc > 1.0); }
            counts[g.x] = 1u;
        }";

    fn converted(bindings: &[u32]) -> Result<crate::gpu::reflect::Reflection, String> {
        let mut m = parse(SOURCE, wgpu::Features::empty())?;
        store_as_f16(&mut m, bindings)?;
        reflect_module(&m, SOURCE, "main", wgpu::Features::SHADER_F16)
    }

    #[test]
    fn converted_bindings_validate_with_f16_strides() {
        let r = converted(&[0, 1, 2]).unwrap();
        let strides: Vec<_> = r.bindings.iter().map(|b| (b.index, b.stride, b.min_size)).collect();
        assert_eq!(
            strides,
            [(0, Some(8), 8), (1, Some(2), 2), (2, Some(2), 2), (3, Some(4), 4)]
        );
        // Any subset converts; none leaves the module as it was.
        for set in [&[0u32][..], &[1], &[2], &[0, 2]] {
            converted(set).unwrap_or_else(|e| panic!("{set:?}: {e}"));
        }
        let r = converted(&[]).unwrap();
        assert_eq!(r.bindings[0].stride, Some(16));
    }

    #[test]
    fn f16_needs_the_capability() {
        let mut m = parse(SOURCE, wgpu::Features::empty()).unwrap();
        store_as_f16(&mut m, &[2]).unwrap();
        assert!(reflect_module(&m, SOURCE, "main", wgpu::Features::empty()).is_err());
    }

    #[test]
    fn what_cannot_convert_is_named() {
        let m = parse(SOURCE, wgpu::Features::empty()).unwrap();
        assert_eq!(convertible_bindings(&m), [0, 1, 2]);
        let err = converted(&[3]).unwrap_err();
        assert!(err.contains("binding 3 `counts`"), "{err}");
        let err = converted(&[7]).unwrap_err();
        assert!(err.contains("binding(7)"), "{err}");
        let len = "@group(0) @binding(0) var<storage, read_write> y: array<f32>;
            @compute @workgroup_size(1) fn main() { y[0] = f32(arrayLength(&y)); }";
        let mut m = parse(len, wgpu::Features::empty()).unwrap();
        let err = store_as_f16(&mut m, &[0]).unwrap_err();
        assert!(err.contains("arrayLength") && err.contains("0 `y`"), "{err}");
    }
}
