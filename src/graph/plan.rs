//! Memory plan: persistent tensors get their own regions; activations share a
//! few large arena buffers. WebGPU tracks read/write usage per buffer, so a
//! kernel may not read one range of a buffer while writing another: every
//! activation gets a colour that differs from the colours its producer reads,
//! and each colour is its own arena. Inside an arena, tensors are placed
//! greedily by size so those whose lifetimes overlap never share bytes
//! (TFLite's "greedy by size" planner), and none crosses a `chunk` boundary, so
//! an arena can be split into buffers no larger than the adapter allows. A
//! tensor larger than `chunk` raises the chunk to its size (the executor checks
//! the buffers against the adapter's largest). Tensors larger than one storage
//! binding are fine: the executor splits the dispatches that bind them.

use super::ir::{Graph, Role, TensorId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Weights,
    Grads,
    Inputs,
    Constants,
    /// Arena buffer `k` (see [`MemoryPlan::arenas`]).
    Arena(usize),
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
    /// Bytes of every arena buffer.
    pub arenas: Vec<usize>,
    /// Bytes of all arena buffers together.
    pub activations: usize,
    /// Scratch the kernels need beyond their tensors (partial sums), the largest of any op.
    pub workspace: usize,
    /// The conv weights flipped and transposed for dx, refreshed once per run
    /// (known once the graph is built on an adapter; 0 before).
    pub flipped_weights: usize,
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
            + self.flipped_weights
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
    for &t in &g.outputs {
        touch(t, end);
    }
    life
}

/// A placed tensor: byte range `(start, end)` and lifetime `(first, last node)`.
type Tenant = (usize, usize, (usize, usize));

/// Colours activations so that no node writes a colour it reads. Each colour
/// is an arena sized by its own peak, and arenas peak at different times (the
/// forward activations at the end of the forward pass, gradients during the
/// backward), so colours are chosen to keep the sum of the peaks low: each
/// output takes, among the colours its node does not read, the one whose peak
/// grows least (the lowest on ties); then a few sweeps move single tensors to
/// another allowed colour wherever that lowers the sum.
fn colours(g: &Graph, life: &[Option<(usize, usize)>], bytes: impl Fn(TensorId) -> usize) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let mut colour = vec![NONE; g.tensors.len()];
    // Per colour: live bytes at each node, and their peak.
    let mut live: Vec<Vec<usize>> = Vec::new();
    let mut peak: Vec<usize> = Vec::new();
    // The peak colour `c` would have with `size` more bytes over `(first, last)`.
    let with =
        |live: &[Vec<usize>], peak: &[usize], c: usize, (first, last): (usize, usize), size: usize| match live.get(c) {
            Some(l) => (l[first..=last].iter().max().copied().unwrap_or(0) + size).max(peak[c]),
            None => size,
        };
    let mut placed = Vec::new();
    for node in &g.nodes {
        let read: Vec<usize> = node.inputs.iter().map(|&t| colour[t]).filter(|&c| c != NONE).collect();
        for &o in &node.outputs {
            let Some(span) = life[o] else { continue };
            if g.tensors[o].role != Role::Activation || colour[o] != NONE {
                continue;
            }
            let size = bytes(o);
            let growth = |c: usize| with(&live, &peak, c, span, size) - peak.get(c).copied().unwrap_or(0);
            let c = (0..=live.len())
                .filter(|c| !read.contains(c))
                .min_by_key(|&c| (growth(c), c))
                .expect("a node reads finitely many colours");
            let new_peak = with(&live, &peak, c, span, size);
            if c == live.len() {
                live.push(vec![0; g.nodes.len() + 1]);
                peak.push(0);
            }
            peak[c] = new_peak;
            live[c][span.0..=span.1].iter_mut().for_each(|b| *b += size);
            colour[o] = c;
            placed.push(o);
        }
    }
    // Colours each tensor may not take: those its producer reads and those its readers write.
    let mut forbidden: Vec<Vec<TensorId>> = vec![Vec::new(); g.tensors.len()];
    for node in &g.nodes {
        for &o in &node.outputs {
            forbidden[o].extend(&node.inputs);
        }
        for &i in &node.inputs {
            forbidden[i].extend(node.outputs.iter().filter(|&&o| o != i));
        }
    }
    for _sweep in 0..4 {
        let mut moved = false;
        for &t in &placed {
            let (span, size, from) = (life[t].unwrap(), bytes(t), colour[t]);
            live[from][span.0..=span.1].iter_mut().for_each(|b| *b -= size);
            let without = live[from].iter().max().copied().unwrap_or(0);
            let saving = peak[from] - without;
            let best = (0..live.len())
                .filter(|&c| c != from && forbidden[t].iter().all(|&u| colour[u] != c))
                .map(|c| (with(&live, &peak, c, span, size) - peak[c], c))
                .min();
            let to = match best {
                Some((growth, c)) if growth < saving => {
                    peak[from] = without;
                    moved = true;
                    c
                }
                _ => from,
            };
            peak[to] = with(&live, &peak, to, span, size);
            live[to][span.0..=span.1].iter_mut().for_each(|b| *b += size);
            colour[t] = to;
        }
        if !moved {
            break;
        }
    }
    colour
}

/// Lowest offset for `size` bytes that misses every `(start, end)` in `taken`
/// (sorted) and does not cross a multiple of `chunk`.
fn first_fit(taken: &[(usize, usize)], size: usize, chunk: usize) -> usize {
    let fits_chunk = |o: usize| size > chunk || o / chunk == (o + size - 1) / chunk;
    let next_chunk = |o: usize| if fits_chunk(o) { o } else { o.div_ceil(chunk) * chunk };
    let mut offset = 0;
    for &(start, end) in taken {
        offset = next_chunk(offset);
        if offset + size <= start {
            return offset;
        }
        offset = offset.max(end);
    }
    next_chunk(offset)
}

/// Places every tensor. `align` is the binding offset alignment in bytes,
/// `chunk` the largest buffer to make (raised to the largest activation when
/// that is larger); `train` adds optimizer state and EMA.
pub fn plan(g: &Graph, align: usize, chunk: usize, train: bool) -> MemoryPlan {
    let bytes = |t: TensorId| align_up(g.tensors[t].bytes(), align);
    let unplaced = Placement {
        region: Region::Arena(0),
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
    // Every activation must fit one arena buffer.
    let chunk = order.first().map_or(chunk, |&t| chunk.max(bytes(t)));
    let colour = colours(g, &life, bytes);
    let colours_used = order.iter().map(|&t| colour[t] + 1).max().unwrap_or(0);
    // Per colour: the placed tensors, and the arena's size.
    let mut placed: Vec<Vec<Tenant>> = vec![Vec::new(); colours_used];
    let mut sizes = vec![0usize; colours_used];
    for &t in &order {
        let (size, lt, c) = (bytes(t), life[t].unwrap(), colour[t]);
        let mut taken: Vec<(usize, usize)> = placed[c]
            .iter()
            .filter(|(_, _, l)| l.0 <= lt.1 && lt.0 <= l.1)
            .map(|&(o, e, _)| (o, e))
            .collect();
        taken.sort_unstable();
        let offset = first_fit(&taken, size, chunk);
        placed[c].push((offset, offset + size, lt));
        sizes[c] = sizes[c].max(offset + size);
    }
    // Each colour's arena becomes ceil(size / chunk) buffers.
    let mut first_buffer = Vec::with_capacity(colours_used);
    let mut arenas = Vec::new();
    for &size in &sizes {
        first_buffer.push(arenas.len());
        let mut left = size;
        while left > 0 {
            arenas.push(left.min(chunk));
            left -= left.min(chunk);
        }
    }
    for (c, tenants) in placed.iter().enumerate() {
        let ids = order.iter().filter(|&&t| colour[t] == c);
        for (&t, &(offset, end, _)) in ids.zip(tenants) {
            let k = first_buffer[c] + offset / chunk;
            placements[t] = Placement {
                region: Region::Arena(k),
                offset: offset % chunk,
                bytes: end - offset,
            };
        }
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
        activations: arenas.iter().sum(),
        arenas,
        workspace: 0,
        flipped_weights: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Role;

    fn chain(n: usize, elems: usize) -> (Graph, Vec<TensorId>) {
        let mut g = Graph::default();
        let x = g.tensor("x", vec![elems], Role::Input);
        let mut prev = x;
        let mut ts = Vec::new();
        for i in 0..n {
            let y = g.tensor(format!("t{i}"), vec![elems], Role::Activation);
            g.node(crate::graph::ops::Add, vec![prev, x], vec![y]);
            ts.push(y);
            prev = y;
        }
        g.outputs.push(prev);
        (g, ts)
    }

    #[test]
    fn live_tensors_never_share_bytes_and_no_node_writes_a_buffer_it_reads() {
        let (g, ts) = chain(6, 16);
        let p = plan(&g, 64, usize::MAX, false);
        let life = lifetimes(&g);
        for &a in &ts {
            for &b in &ts {
                let (la, lb) = (life[a].unwrap(), life[b].unwrap());
                let (pa, pb) = (p.placements[a], p.placements[b]);
                let overlap_time = la.0 <= lb.1 && lb.0 <= la.1;
                let overlap_bytes =
                    pa.region == pb.region && pa.offset < pb.offset + pb.bytes && pb.offset < pa.offset + pa.bytes;
                assert!(a == b || !(overlap_time && overlap_bytes), "{a} and {b} collide");
            }
        }
        for node in &g.nodes {
            for &o in &node.outputs {
                assert!(node
                    .inputs
                    .iter()
                    .all(|&i| p.placements[i].region != p.placements[o].region || i == 0));
            }
        }
        // A chain alternates between two arenas of one tensor each.
        assert_eq!(p.arenas, vec![64, 64]);
    }

    #[test]
    fn no_tensor_crosses_a_chunk_boundary() {
        let mut g = Graph::default();
        let x = g.tensor("x", vec![40], Role::Input);
        let a = g.tensor("a", vec![40], Role::Activation);
        let b = g.tensor("b", vec![40], Role::Activation);
        let c = g.tensor("c", vec![40], Role::Activation);
        g.node(crate::graph::ops::Add, vec![x, x], vec![a]);
        g.node(crate::graph::ops::Add, vec![x, x], vec![b]);
        g.node(crate::graph::ops::Add, vec![a, b], vec![c]);
        g.outputs.push(c);
        // 160-byte tensors in 256-byte chunks: a and b share colour 0, one per buffer.
        let p = plan(&g, 32, 256, false);
        for t in [a, b, c] {
            let pl = p.placements[t];
            assert!(pl.offset + pl.bytes <= 256, "{t} crosses: {pl:?}");
        }
        assert_ne!(p.placements[a].region, p.placements[b].region);
    }

    #[test]
    fn a_tensor_larger_than_a_chunk_gets_a_buffer_its_size() {
        let mut g = Graph::default();
        let x = g.tensor("x", vec![100], Role::Input);
        let a = g.tensor("a", vec![100], Role::Activation);
        let b = g.tensor("b", vec![100], Role::Activation);
        g.node(crate::graph::ops::Add, vec![x, x], vec![a]);
        g.node(crate::graph::ops::Add, vec![a, x], vec![b]);
        g.outputs.push(b);
        // 400-byte tensors, 256-byte chunks: each arena is one 448-byte buffer (aligned to 64).
        let p = plan(&g, 64, 256, false);
        for t in [a, b] {
            let pl = p.placements[t];
            let Region::Arena(k) = pl.region else { panic!() };
            assert!(
                pl.offset + pl.bytes <= p.arenas[k],
                "{t} overflows: {pl:?} in {:?}",
                p.arenas
            );
        }
        assert_eq!(p.arenas, vec![448, 448]);
    }
}
