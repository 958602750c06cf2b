//! The shader is the contract: naga parses and validates the WGSL of every
//! kernel the crate can build (each generated variant included), and what the
//! Rust side states (bindings and their access, the params struct member by
//! member, workgroup sizes, constants) must match it; so must each kernel's
//! f16-storage variant (every f32 storage array as f16, see
//! `gpu::f16_storage`). Every module starts with shaders/prelude.wgsl, whose
//! names no kernel declares again. Needs no adapter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use vdvae::gpu::contract::{check_kernel, check_kernel_with_f16, struct_mismatches};
use vdvae::gpu::reflect::{parse, MemberLayout, StructLayout};
use vdvae::gpu::{Access, GpuParams, KernelSpec, Source, PRELUDE};
use vdvae::kernels::optimizer::OptState;
use vdvae::kernels::rng::RngKey;

/// (family, kernel) for every kernel, in registry order.
fn every_kernel() -> Vec<(&'static str, KernelSpec)> {
    vdvae::kernels::all_kernels()
        .into_iter()
        .flat_map(|(family, kernels)| kernels.into_iter().map(move |k| (family, k)))
        .collect()
}

fn find(name: &str) -> KernelSpec {
    every_kernel()
        .into_iter()
        .map(|(_, k)| k)
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no kernel `{name}`"))
}

/// `spec` with its own WGSL (after the prelude) edited.
fn with_source(spec: &KernelSpec, edit: impl Fn(String) -> String) -> KernelSpec {
    let text = spec.source.own_text();
    let edited = edit(text.clone());
    assert!(edited != text, "the edit changed nothing in `{}`", spec.name);
    KernelSpec {
        source: Source::Generated(&[], edited.into()),
        ..spec.clone()
    }
}

fn nested(m: &MemberLayout, name: &str) -> StructLayout {
    StructLayout {
        name: name.into(),
        size: m.size,
        members: m.members.clone(),
    }
}

/// The contract of one kernel and of its f16-storage variant, plus the noise
/// key of noisy ones: the GPU rewrites the step inside `key`, which must sit
/// first and be laid out as RngKey.
fn check(k: &KernelSpec) -> Vec<String> {
    let r = match check_kernel_with_f16(k) {
        Ok(r) => r,
        Err(mismatches) => return mismatches,
    };
    let params = r
        .bindings
        .iter()
        .find(|b| b.access == Access::Uniform)
        .and_then(|b| b.layout.as_ref());
    let Some(key) = params.and_then(|p| p.members.iter().find(|m| m.name == "key")) else {
        return Vec::new();
    };
    let rust = RngKey::LAYOUT.unwrap();
    let mut m = struct_mismatches(rust.members, rust.size, &nested(key, "RngKey"));
    if key.offset != 0 {
        m.push(format!("`key` is at byte {}, not first", key.offset));
    }
    m
}

#[test]
fn every_kernel_matches_its_wgsl() {
    let kernels = every_kernel();
    // The pipeline cache is keyed by name and entry point: one source per key.
    let mut seen: HashMap<(&str, &str), String> = HashMap::new();
    for (_, k) in &kernels {
        let text = k.source.text();
        if let Some(other) = seen.insert((k.name, k.entry), text.clone()) {
            assert_eq!(other, text, "`{}::{}` names two different kernels", k.name, k.entry);
        }
    }
    // Largest first from a shared queue: naga's parse time grows with the square of
    // a function's size, and a few generated tiles dominate.
    let mut order: Vec<usize> = (0..kernels.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(kernels[i].1.source.text().len()));
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut failures = Vec::new();
                    while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let (family, k) = &kernels[i];
                        failures.extend(check(k).into_iter().map(|m| format!("{family}/{}: {m}", k.name)));
                    }
                    failures
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let generated = kernels
        .iter()
        .filter(|(_, k)| matches!(k.source, Source::Generated(..)))
        .count();
    println!(
        "checked {} kernels ({} hand-written, {generated} generated variants)",
        kernels.len(),
        kernels.len() - generated
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_conv_kernels_over_a_cat_are_listed_for_the_contract() {
    // The posterior's first conv reads cat[x, a] from two tensors: its forward
    // tile (two channel loops), its dx tile (two outputs, either addend) and
    // the dw tile over two sources are among the kernels checked above.
    let names: Vec<&str> = vdvae::kernels::conv2d::all_kernels().iter().map(|k| k.name).collect();
    let count = |part: &str| names.iter().filter(|n| n.contains(part)).count();
    for part in [
        "sources: CatInput",
        "sources: CatOutput { add2: false }",
        "sources: CatOutput { add2: true }",
        "cat: true",
    ] {
        assert!(count(part) > 0, "no conv2d kernel variant with `{part}`");
    }
    let simple = vdvae::kernels::conv2d::all_kernels()
        .into_iter()
        .find(|k| k.name == "conv2d_backward_input")
        .unwrap();
    assert!(
        simple.source.text().contains("dx2"),
        "the simple dx writes a cat's second gradient"
    );
}

#[test]
fn the_optimizer_state_struct_matches_its_rust_words() {
    let r = check_kernel(&find("optimizer_decide")).unwrap();
    let state = r.bindings.iter().find(|b| b.name == "state").unwrap();
    let rust = OptState::LAYOUT.unwrap();
    let m = struct_mismatches(rust.members, rust.size, state.layout.as_ref().unwrap());
    assert!(m.is_empty(), "{m:#?}");
}

#[test]
fn reordered_params_members_are_named() {
    let spec = find("conv2d_forward");
    let swapped = with_source(&spec, |s| {
        s.replace("    n: u32,\n    h: u32,\n", "    h: u32,\n    n: u32,\n")
    });
    let errors = check_kernel(&swapped).unwrap_err().join("\n");
    assert!(
        errors.contains("member 0 is `n`") && errors.contains("`h` at byte 0"),
        "{errors}"
    );
    assert!(errors.contains("member 1 is `h`"), "{errors}");
}

#[test]
fn a_wrong_access_is_named() {
    let spec = find("conv2d_forward");
    let written = with_source(&spec, |s| {
        s.replace(
            "var<storage, read> wt: array<f32>",
            "var<storage, read_write> wt: array<f32>",
        )
    });
    let errors = check_kernel(&written).unwrap_err().join("\n");
    assert!(
        errors.contains("binding 1 `wt`")
            && errors.contains("`storage, read`")
            && errors.contains("`storage, read_write`"),
        "{errors}"
    );
}

#[test]
fn a_changed_workgroup_size_or_constant_is_named() {
    let spec = find("dmol_loss");
    let wider = with_source(&spec, |s| {
        s.replace("@workgroup_size(WG_SMALL)", "@workgroup_size(128)")
    });
    let errors = check_kernel(&wider).unwrap_err().join("\n");
    assert!(
        errors.contains("[64, 1, 1]") && errors.contains("[128, 1, 1]"),
        "{errors}"
    );
    let spec = find("sq_norm_partials");
    let chunk = with_source(&spec, |s| {
        s.replace("const CHUNK: u32 = 16384u;", "const CHUNK: u32 = 8192u;")
    });
    let errors = check_kernel(&chunk).unwrap_err().join("\n");
    assert!(
        errors.contains("`CHUNK` = 16384") && errors.contains("8192"),
        "{errors}"
    );
}

#[test]
fn f16_variants_halve_the_strides_of_f32_arrays() {
    let r = check_kernel_with_f16(&find("conv2d_forward")).unwrap();
    let strides: Vec<_> = r.bindings.iter().map(|b| (b.name.as_str(), b.stride)).collect();
    assert_eq!(
        strides,
        [
            ("x", Some(2)),
            ("wt", Some(2)),
            ("bias", Some(2)),
            ("residual", Some(2)),
            ("y", Some(2)),
            ("p", None),
            ("x2", Some(2))
        ]
    );
    // The flip table (u32) stays; the weights beside it convert.
    let spec = every_kernel()
        .into_iter()
        .map(|(_, k)| k)
        .find(|k| k.source.text().contains("var<storage, read> table: array<u32>"))
        .unwrap();
    let r = check_kernel_with_f16(&spec).unwrap();
    let table = r.bindings.iter().find(|b| b.name == "table").unwrap();
    assert_eq!(table.stride, Some(4));
}

/// The module-scope constants and functions shaders/prelude.wgsl declares.
fn prelude_names() -> Vec<String> {
    let module = parse(PRELUDE, wgpu::Features::empty()).expect("the prelude parses");
    let constants = module.constants.iter().filter_map(|(_, c)| c.name.clone());
    let functions = module.functions.iter().filter_map(|(_, f)| f.name.clone());
    constants.chain(functions).collect()
}

#[test]
fn every_kernel_starts_with_the_prelude_and_declares_none_of_its_names() {
    let names = prelude_names();
    for name in ["WG", "WG_SMALL", "flat_index", "flat_workgroup"] {
        assert!(names.iter().any(|n| n == name), "the prelude lost `{name}`: {names:?}");
    }
    let mut failures = Vec::new();
    for (family, k) in every_kernel() {
        let own = k.source.own_text();
        if !k.source.text().starts_with(PRELUDE) || own.contains(PRELUDE) {
            failures.push(format!(
                "{family}/{}: the prelude is not its module's start, once",
                k.name
            ));
        }
        for name in &names {
            let declarations = [
                format!("const {name}:"),
                format!("const {name} ="),
                format!("override {name}:"),
                format!("override {name} ="),
                format!("fn {name}("),
            ];
            if declarations.iter().any(|d| own.contains(d.as_str())) {
                failures.push(format!("{family}/{}: declares the prelude's `{name}` again", k.name));
            }
        }
        // The fold of 2-D grids is the prelude's: flat_index and flat_workgroup.
        if own.contains("nwg.x") {
            failures.push(format!(
                "{family}/{}: indexes the folded grid itself (`nwg.x`); use flat_index or flat_workgroup",
                k.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A constant's value where naga's IR holds it as one: a literal, or a
/// `const` or `override` whose initializer is one.
fn integer_value(module: &naga::Module, expr: &naga::Expression) -> Option<i64> {
    use naga::{Expression, Literal};
    match *expr {
        Expression::Literal(Literal::U32(v)) => Some(v as i64),
        Expression::Literal(Literal::I32(v)) => Some(v as i64),
        Expression::Literal(Literal::AbstractInt(v)) => Some(v),
        Expression::Constant(c) => integer_value(module, &module.global_expressions[module.constants[c].init]),
        Expression::Override(o) => {
            let init = module.overrides[o].init?;
            integer_value(module, &module.global_expressions[init])
        }
        _ => None,
    }
}

/// The last argument (the workgroup size; `None` where it is no constant) of
/// every `flat_index(..)` call that `function` makes, itself or through the
/// functions it calls. Read from naga's IR, so that only the calls an entry
/// point reaches count: one module may hold kernels of several sizes.
fn flat_index_sizes(module: &naga::Module, function: &naga::Function, sizes: &mut Vec<Option<i64>>) {
    use naga::Statement;
    fn walk(module: &naga::Module, f: &naga::Function, block: &naga::Block, sizes: &mut Vec<Option<i64>>) {
        for statement in block.iter() {
            match statement {
                Statement::Call {
                    function, arguments, ..
                } => {
                    let callee = &module.functions[*function];
                    if callee.name.as_deref() == Some("flat_index") {
                        let last = arguments.last().expect("flat_index takes arguments");
                        sizes.push(integer_value(module, &f.expressions[*last]));
                    } else {
                        walk(module, callee, &callee.body, sizes);
                    }
                }
                Statement::Block(b) => walk(module, f, b, sizes),
                Statement::If { accept, reject, .. } => {
                    walk(module, f, accept, sizes);
                    walk(module, f, reject, sizes);
                }
                Statement::Switch { cases, .. } => {
                    for case in cases {
                        walk(module, f, &case.body, sizes);
                    }
                }
                Statement::Loop { body, continuing, .. } => {
                    walk(module, f, body, sizes);
                    walk(module, f, continuing, sizes);
                }
                _ => {}
            }
        }
    }
    walk(module, function, &function.body, sizes);
}

/// How many `flat_index` calls kernel `k`'s entry point reaches, and one
/// line for each whose workgroup size is not the kernel's.
fn flat_index_failures(family: &str, k: &KernelSpec) -> (usize, Vec<String>) {
    let r = check_kernel(k).unwrap_or_else(|e| panic!("{family}/{}: {e:?}", k.name));
    let module = parse(&k.source.text(), k.requires).expect("check_kernel parsed it");
    let entry = module
        .entry_points
        .iter()
        .find(|e| e.name == k.entry)
        .expect("reflected");
    let mut sizes = Vec::new();
    flat_index_sizes(&module, &entry.function, &mut sizes);
    let failures = sizes
        .iter()
        .filter(|&&value| value != Some(r.workgroup_size[0] as i64) || r.workgroup_size[1..] != [1, 1])
        .map(|value| {
            format!(
                "{family}/{}: flat_index(.., {value:?}) in a kernel of workgroup size {:?}",
                k.name, r.workgroup_size
            )
        })
        .collect();
    (sizes.len(), failures)
}

#[test]
fn flat_index_is_given_the_workgroup_size_of_its_kernel() {
    let mut failures = Vec::new();
    let mut calls = 0;
    for (family, k) in every_kernel() {
        if k.source.own_text().contains("flat_index(") {
            let (n, f) = flat_index_failures(family, &k);
            calls += n;
            failures.extend(f);
        }
    }
    assert!(calls > 0, "no kernel calls flat_index");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_flat_index_call_counts_for_the_entry_points_that_reach_it() {
    let spec = find("conv2d_forward");
    assert_eq!(flat_index_failures("conv2d", &spec), (1, vec![]));
    // Another entry point of another size in the same module, with a helper
    // that calls flat_index: it does not count for this kernel.
    let other = with_source(&spec, |s| {
        s + "
fn other_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return flat_index(gid, nwg, WG); }
@compute @workgroup_size(WG)
fn other(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (other_index(gid, nwg) == 0u) { y[0] = 0.0; }
}
"
    });
    assert_eq!(flat_index_failures("conv2d", &other), (1, vec![]));
    // A call of another size from this kernel's own entry point is named.
    let wrong = with_source(&spec, |s| {
        s.replace("flat_index(gid, nwg, WG_SMALL)", "flat_index(gid, nwg, WG)")
    });
    let (calls, failures) = flat_index_failures("conv2d", &wrong);
    assert_eq!(calls, 1);
    assert!(
        failures.len() == 1 && failures[0].contains("Some(256)") && failures[0].contains("[64, 1, 1]"),
        "{failures:?}"
    );
}
