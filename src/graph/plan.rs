//! Memory plan: persistent tensors get their own regions; activations share one
//! arena, placed greedily by size so tensors whose lifetimes overlap never
//! share bytes (TFLite's "greedy by size" arena planner).

use super::ir::{Graph, Role, TensorId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Weights,
    Grads,
    Inputs,
    Constants,
    Arena,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub region: Region,
    /// Byte offset in the region, a multiple of the plan's alignment.
    pub offset: usize,
    pub bytes: usize,
}

/// Where every tensor lives, and the byte totals `vdvae plan` prints.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    pub placements: Vec<Placement>,
    pub weights: usize,
    pub grads: usize,
    /// AdamW first and second moments.
    pub optimizer: usize,
    pub ema: usize,
    pub inputs: usize,
    pub constants: usize,
    /// Peak bytes of activations (the arena size).
    pub activations: usize,
    /// Scratch the kernels need beyond their tensors (partial sums), the largest of any op.
    pub workspace: usize,
}

impl MemoryPlan {
    pub fn total(&self) -> usize {
        self.weights
            + self.grads
            + self.optimizer
            + self.ema
            + self.inputs
            + self.constants
            + self.activations
            + self.workspace
    }
}

fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// First and last node index touching each activation (outputs live to the end).
pub fn lifetimes(g: &Graph) -> Vec<Option<(usize, usize)>> {
    let mut life: Vec<Option<(usize, usize)>> = vec![None; g.tensors.len()];
    let mut touch = |t: TensorId, i: usize| {
        let l = life[t].get_or_insert((i, i));
        l.0 = l.0.min(i);
        l.1 = l.1.max(i);
    };
    for (i, node) in g.nodes.iter().enumerate() {
        for &t in node.inputs.iter().chain(&node.outputs) {
            touch(t, i);
        }
    }
    let end = g.nodes.len();
    for &(_, t) in &g.outputs {
        touch(t, end);
    }
    life
}

/// Places every tensor. `align` is the binding offset alignment in bytes;
/// `train` adds optimizer state and EMA. No arena tensor crosses a multiple of
/// `chunk` bytes, so the arena can be split into buffers of at most `chunk`
/// (the adapter's max buffer size).
pub fn plan(g: &Graph, align: usize, chunk: usize, train: bool) -> MemoryPlan {
    let bytes = |t: TensorId| align_up(g.tensors[t].numel() * 4, align);
    let mut placements = vec![
        Placement {
            region: Region::Arena,
            offset: 0,
            bytes: 0
        };
        g.tensors.len()
    ];
    let mut totals = [0usize; 4];
    for (t, info) in g.tensors.iter().enumerate() {
        let (region, slot) = match info.role {
            Role::Param => (Region::Weights, 0),
            Role::ParamGrad => (Region::Grads, 1),
            Role::Input => (Region::Inputs, 2),
            Role::Constant => (Region::Constants, 3),
            Role::Activation => continue,
        };
        placements[t] = Placement {
            region,
            offset: totals[slot],
            bytes: bytes(t),
        };
        totals[slot] += bytes(t);
    }
    let life = lifetimes(g);
    let mut order: Vec<TensorId> = (0..g.tensors.len())
        .filter(|&t| g.tensors[t].role == Role::Activation && life[t].is_some())
        .collect();
    order.sort_by_key(|&t| (std::cmp::Reverse(bytes(t)), t));
    let mut placed: Vec<(usize, usize, (usize, usize))> = Vec::new(); // (offset, end, lifetime)
    let mut arena = 0;
    for t in order {
        let (size, lt) = (bytes(t), life[t].unwrap());
        let mut clashes: Vec<(usize, usize)> = placed
            .iter()
            .filter(|(_, _, l)| l.0 <= lt.1 && lt.0 <= l.1)
            .map(|&(o, e, _)| (o, e))
            .collect();
        clashes.sort_unstable();
        // Lowest offset that fits between the clashing tensors and inside one chunk.
        let fits_chunk = |o: usize| o / chunk == (o + size - 1) / chunk || size > chunk;
        let mut offset = 0;
        for (o, e) in clashes {
            if !fits_chunk(offset) {
                offset = offset.div_ceil(chunk) * chunk;
            }
            if offset + size <= o {
                break;
            }
            offset = offset.max(e);
        }
        if !fits_chunk(offset) {
            offset = offset.div_ceil(chunk) * chunk;
        }
        placed.push((offset, offset + size, lt));
        arena = arena.max(offset + size);
        placements[t] = Placement {
            region: Region::Arena,
            offset,
            bytes: size,
        };
    }
    let weights = totals[0];
    MemoryPlan {
        placements,
        weights,
        grads: totals[1],
        optimizer: if train { 2 * weights } else { 0 },
        ema: if train { weights } else { 0 },
        inputs: totals[2],
        constants: totals[3],
        activations: arena,
        workspace: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Op, Role};

    #[test]
    fn overlapping_lifetimes_never_share_bytes_and_dead_tensors_are_reused() {
        let mut g = Graph::default();
        let x = g.tensor("x", vec![1, 2, 2, 4], Role::Input);
        let mut prev = x;
        let mut ts = Vec::new();
        for i in 0..6 {
            let y = g.tensor(format!("t{i}"), vec![1, 2, 2, 4], Role::Activation);
            g.node(Op::Add, vec![prev, x], vec![y]);
            ts.push(y);
            prev = y;
        }
        g.outputs.push(("out".into(), prev));
        let p = plan(&g, 64, usize::MAX, false);
        let life = lifetimes(&g);
        for &a in &ts {
            for &b in &ts {
                let (la, lb) = (life[a].unwrap(), life[b].unwrap());
                let (pa, pb) = (p.placements[a], p.placements[b]);
                let overlap_time = la.0 <= lb.1 && lb.0 <= la.1;
                let overlap_bytes = pa.offset < pb.offset + pb.bytes && pb.offset < pa.offset + pa.bytes;
                assert!(a == b || !(overlap_time && overlap_bytes), "{a} and {b} collide");
            }
        }
        // A chain needs only two live buffers at a time, not six.
        assert_eq!(p.activations, 2 * 64);
    }

    #[test]
    fn no_tensor_crosses_a_chunk_boundary() {
        let mut g = Graph::default();
        let x = g.tensor("x", vec![40], Role::Input);
        let a = g.tensor("a", vec![40], Role::Activation);
        let b = g.tensor("b", vec![40], Role::Activation);
        let c = g.tensor("c", vec![40], Role::Activation);
        g.node(Op::Add, vec![x, x], vec![a]);
        g.node(Op::Add, vec![a, x], vec![b]);
        g.node(Op::Add, vec![a, b], vec![c]);
        g.outputs.push(("c".into(), c));
        // 160-byte tensors in 256-byte chunks: one per chunk.
        let p = plan(&g, 32, 256, false);
        for t in [a, b, c] {
            let pl = p.placements[t];
            assert_eq!(pl.offset / 256, (pl.offset + pl.bytes - 1) / 256, "{t} crosses: {pl:?}");
        }
    }
}
