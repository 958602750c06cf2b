//! The memory plan of whole training graphs (no adapter): tensors alive at the
//! same time never share bytes, no node writes a buffer it reads (WebGPU
//! forbids it within a dispatch), and cifar10 at batch 16 fits the issue's
//! 4 GiB with f16 activations.

use vdvae::graph::autodiff::append_backward;
use vdvae::graph::plan::{lifetimes, plan, MemoryPlan, Region};
use vdvae::graph::{set_precision, Graph, Precision, Role, Sampling};
use vdvae::model::assemble::build_model;
use vdvae::model::preset;
use vdvae::model::report::{PLAN_ALIGN, PLAN_CHUNK};

fn training_graph(name: &str, batch: usize, precision: Precision) -> Graph {
    let mut m = build_model(&preset(name).unwrap(), batch, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    set_precision(&mut m.graph, precision);
    m.graph
}

fn check(g: &Graph, p: &MemoryPlan) {
    let life = lifetimes(g);
    let placed: Vec<usize> = (0..g.tensors.len())
        .filter(|&t| g.tensors[t].role == Role::Activation && life[t].is_some())
        .collect();
    for &t in &placed {
        let pl = p.placements[t];
        assert!(pl.bytes >= g.tensors[t].bytes(), "{} is short", g.tensors[t].name);
        assert!(pl.offset.is_multiple_of(PLAN_ALIGN) && pl.offset + pl.bytes <= PLAN_CHUNK);
    }
    let mut by_region: Vec<Vec<usize>> = vec![Vec::new(); p.arenas.len()];
    for &t in &placed {
        let Region::Arena(k) = p.placements[t].region else {
            panic!("activation {} outside the arenas", g.tensors[t].name)
        };
        by_region[k].push(t);
    }
    for tenants in &by_region {
        for (i, &a) in tenants.iter().enumerate() {
            for &b in &tenants[i + 1..] {
                let (la, lb) = (life[a].unwrap(), life[b].unwrap());
                let (pa, pb) = (p.placements[a], p.placements[b]);
                let together = la.0 <= lb.1 && lb.0 <= la.1;
                let overlap = pa.offset < pb.offset + pb.bytes && pb.offset < pa.offset + pa.bytes;
                assert!(
                    !(together && overlap),
                    "{} and {} share bytes while both alive",
                    g.tensors[a].name,
                    g.tensors[b].name
                );
            }
        }
    }
    for node in &g.nodes {
        for &o in node.outputs.iter().filter(|&&o| g.tensors[o].role == Role::Activation) {
            for &i in node.inputs.iter().filter(|&&i| g.tensors[i].role == Role::Activation) {
                assert_ne!(
                    p.placements[o].region, p.placements[i].region,
                    "{} is written into the buffer of {}, which its node reads",
                    g.tensors[o].name, g.tensors[i].name
                );
            }
        }
    }
}

#[test]
fn training_plans_keep_tensors_apart_and_cifar10_fits_4_gib_at_f16() {
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    for (name, batch) in [("mnist-tiny", 4), ("cifar10", 16)] {
        for precision in [Precision::F32, Precision::F16] {
            let g = training_graph(name, batch, precision);
            let p = plan(&g, PLAN_ALIGN, PLAN_CHUNK, true);
            check(&g, &p);
            println!(
                "{name} batch {batch} {precision}: activations {:.1} MiB in {} buffers, total {:.1} MiB (without flipped weights)",
                mib(p.activations),
                p.arenas.len(),
                mib(p.total())
            );
            if name == "cifar10" && precision == Precision::F16 {
                // + the flipped conv weights (147 MiB), known once built on an adapter.
                assert!(mib(p.total()) + 150.0 <= 4096.0, "{:.1} MiB", mib(p.total()));
            }
        }
    }
}
