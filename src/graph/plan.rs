//! Memory plan: persistent tensors get their own regions; activations share
//! buffer slots, assigned greedily by size so tensors whose lifetimes overlap
//! never share a slot (TFLite's "greedy by size" planner, with one buffer per
//! slot: WebGPU tracks read/write usage per buffer, so a kernel may not read
//! one range of a buffer while writing another).

use super::ir::{Graph, Role, TensorId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Weights,
    Grads,
    Inputs,
    Constants,
    /// An activation buffer shared by tensors whose lifetimes do not overlap.
    Slot(usize),
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
    /// Bytes of every activation slot.
    pub slots: Vec<usize>,
    /// Bytes of all activation slots together.
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
/// `train` adds optimizer state and EMA.
pub fn plan(g: &Graph, align: usize, train: bool) -> MemoryPlan {
    let bytes = |t: TensorId| align_up(g.tensors[t].numel() * 4, align);
    let unplaced = Placement {
        region: Region::Slot(0),
        offset: 0,
        bytes: 0,
    };
    let mut placements = vec![unplaced; g.tensors.len()];
    let mut totals = [0usize; 4];
    for (t, info) in g.tensors.iter().enumerate() {
        let (region, slot) = match info.role {
            Role::Param => (Region::Weights, 0),
            Role::Input => (Region::Inputs, 2),
            Role::Constant => (Region::Constants, 3),
            Role::ParamGrad | Role::Activation => continue,
        };
        placements[t] = Placement {
            region,
            offset: totals[slot],
            bytes: bytes(t),
        };
        totals[slot] += bytes(t);
    }
    // Each gradient sits at its parameter's offset, so the optimizer can sweep
    // the weights, gradients and moment buffers as one flat array.
    for &(p, d) in &g.param_grads {
        placements[d] = Placement {
            region: Region::Grads,
            ..placements[p]
        };
    }
    totals[1] = if g.param_grads.is_empty() { 0 } else { totals[0] };
    let life = lifetimes(g);
    let mut order: Vec<TensorId> = (0..g.tensors.len())
        .filter(|&t| g.tensors[t].role == Role::Activation && life[t].is_some())
        .collect();
    order.sort_by_key(|&t| (std::cmp::Reverse(bytes(t)), t));
    // Each slot: its size (its first, largest tenant) and its tenants' lifetimes.
    let mut slots: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
    for t in order {
        let (size, lt) = (bytes(t), life[t].unwrap());
        let free = slots
            .iter()
            .position(|(_, lives)| lives.iter().all(|l| l.1 < lt.0 || lt.1 < l.0));
        let k = free.unwrap_or_else(|| {
            slots.push((size, Vec::new()));
            slots.len() - 1
        });
        slots[k].1.push(lt);
        placements[t] = Placement {
            region: Region::Slot(k),
            offset: 0,
            bytes: size,
        };
    }
    let slots: Vec<usize> = slots.into_iter().map(|(size, _)| size).collect();
    let weights = totals[0];
    MemoryPlan {
        placements,
        weights,
        grads: totals[1],
        optimizer: if train { 2 * weights } else { 0 },
        ema: if train { weights } else { 0 },
        inputs: totals[2],
        constants: totals[3],
        activations: slots.iter().sum(),
        slots,
        workspace: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Op, Role};

    #[test]
    fn tensors_alive_together_never_share_a_slot_and_dead_ones_are_reused() {
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
        let p = plan(&g, 64, false);
        let life = lifetimes(&g);
        for &a in &ts {
            for &b in &ts {
                let (la, lb) = (life[a].unwrap(), life[b].unwrap());
                let overlap_time = la.0 <= lb.1 && lb.0 <= la.1;
                let same_slot = p.placements[a].region == p.placements[b].region;
                assert!(a == b || !(overlap_time && same_slot), "{a} and {b} collide");
            }
        }
        // A chain needs only two live buffers at a time, not six.
        assert_eq!(p.slots, vec![64, 64]);
        assert_eq!(p.activations, 128);
    }
}
