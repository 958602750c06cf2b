//! Rematerialization (recomputing blocks): a transform of a graph after autodiff that stops
//! keeping a segment's internal activations from the forward pass to the
//! backward pass and recomputes them there instead.
//!
//! A *segment* is a set of forward nodes (one encoder or decoder block, found
//! by [`block_segments`]). Its *internals* are the activations its nodes
//! produce that no forward node outside it reads and that are not graph
//! outputs; the others are its *boundaries*, kept as before. For a segment
//! whose internals some backward node reads, [`candidates`] finds the nodes
//! that recompute those internals (only those: a block's last conv, whose
//! output is a boundary, is not cloned) and the first backward node that
//! reads one. [`apply`] clones those nodes, with new output tensors and the
//! same ops, just before that backward node, and points every backward read
//! of the internals at the clones. The originals then die in the forward pass
//! and the memory plan's lifetimes shrink by themselves; segments are
//! recomputed one at a time, each right before its own backward, in reverse
//! order.
//!
//! Clones compute the same values as the originals: the same op on the same
//! inputs, and a noisy op carries its noise key (`tensor`) in the op, so its
//! clone draws the same noise at every step (on the GPU its dispatch is noisy
//! too and takes the step like the original). Gradients come out bit-identical
//! (`tests/recompute.rs`).
//!
//! Any grouping of forward nodes gives a correct graph; the grouping only
//! decides what is saved and what it costs.

use std::collections::{BTreeMap, HashMap};

use super::ir::{Graph, Node, Role, TensorId};

/// A set of forward nodes recomputed together.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// e.g. `decoder.dec_blocks.12`.
    pub name: String,
    /// Forward node indices, ascending.
    pub nodes: Vec<usize>,
}

/// The block a tensor name belongs to: the name up to and including its first
/// all-digit component (`decoder.dec_blocks.12.enc.c1` → `decoder.dec_blocks.12`,
/// `encoder.enc_blocks.3.pool` → `encoder.enc_blocks.3`), or None.
pub fn block_of(name: &str) -> Option<&str> {
    let mut end = 0;
    for part in name.split('.') {
        end += part.len();
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            return Some(&name[..end]);
        }
        end += 1;
    }
    None
}

/// The forward nodes grouped by the block of their first output's name
/// ([`block_of`]), in forward order. Loss nodes and nodes without a block
/// (input and output convs, the loss) belong to none.
pub fn block_segments(g: &Graph) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, node) in g.nodes[..g.forward_len].iter().enumerate() {
        if node.op.rule().is_loss() {
            continue;
        }
        let Some(&out) = node.outputs.first() else { continue };
        let Some(block) = block_of(&g.tensors[out].name) else {
            continue;
        };
        let k = *index.entry(block).or_insert_with(|| {
            segments.push(Segment {
                name: block.to_string(),
                nodes: Vec::new(),
            });
            segments.len() - 1
        });
        segments[k].nodes.push(i);
    }
    segments
}

/// What recomputing one segment does.
#[derive(Clone, Debug, PartialEq)]
pub struct Recompute {
    pub name: String,
    /// The segment's forward nodes that recompute its internals, ascending.
    pub clones: Vec<usize>,
    /// The internals some backward node reads (recomputed, then rewired).
    pub recomputed: Vec<TensorId>,
    /// The first backward node reading one of them: clones go just before it.
    pub first_use: usize,
    /// Bytes of `recomputed` (f32): what no longer lives from the forward pass
    /// to the backward pass.
    pub bytes: usize,
    /// Model FLOPs of the clones (see `OpRule::model_flops`).
    pub flops: f64,
}

/// The recompute plan of every segment that has internals a backward node reads,
/// in the order of `segments`. `g` must have its backward appended.
pub fn candidates(g: &Graph, segments: &[Segment]) -> Vec<Recompute> {
    let f = g.forward_len;
    let mut segment_of: Vec<Option<usize>> = vec![None; f];
    for (k, s) in segments.iter().enumerate() {
        for &n in &s.nodes {
            if n < f && !g.nodes[n].op.rule().is_loss() {
                segment_of[n] = Some(k);
            }
        }
    }
    let mut producer: Vec<Option<usize>> = vec![None; g.tensors.len()];
    for (i, node) in g.nodes[..f].iter().enumerate() {
        for &o in &node.outputs {
            producer[o] = Some(i);
        }
    }
    // A tensor escapes its segment when a forward node elsewhere reads it.
    let mut escapes = vec![false; g.tensors.len()];
    for (i, node) in g.nodes[..f].iter().enumerate() {
        for &t in &node.inputs {
            if producer[t].is_some_and(|p| segment_of[p] != segment_of[i]) {
                escapes[t] = true;
            }
        }
    }
    for &t in &g.outputs {
        escapes[t] = true;
    }
    let internal = |t: TensorId| {
        g.tensors[t].role == Role::Activation && !escapes[t] && producer[t].is_some_and(|p| segment_of[p].is_some())
    };
    let mut first_read: Vec<Option<usize>> = vec![None; g.tensors.len()];
    for (i, node) in g.nodes.iter().enumerate().skip(f) {
        for &t in &node.inputs {
            first_read[t].get_or_insert(i);
        }
    }
    let mut out = Vec::new();
    for (k, s) in segments.iter().enumerate() {
        let mine = |n: usize| n < f && segment_of[n] == Some(k);
        let recomputed: Vec<TensorId> = s
            .nodes
            .iter()
            .filter(|&&n| mine(n))
            .flat_map(|&n| g.nodes[n].outputs.iter().copied())
            .filter(|&t| internal(t) && first_read[t].is_some())
            .collect();
        let Some(first_use) = recomputed.iter().filter_map(|&t| first_read[t]).min() else {
            continue;
        };
        // The producers of the recomputed tensors and, through internal inputs, theirs.
        let mut clone = vec![false; f];
        let mut work: Vec<usize> = recomputed.iter().filter_map(|&t| producer[t]).collect();
        while let Some(n) = work.pop() {
            if std::mem::replace(&mut clone[n], true) {
                continue;
            }
            for &t in &g.nodes[n].inputs {
                if internal(t) {
                    work.extend(producer[t]);
                }
            }
        }
        let clones: Vec<usize> = (0..f).filter(|&n| clone[n]).collect();
        debug_assert!(clones.iter().all(|&n| mine(n)));
        let flops = clones
            .iter()
            .map(|&n| g.nodes[n].op.rule().model_flops(g, &g.nodes[n]))
            .sum();
        let bytes = recomputed.iter().map(|&t| g.tensors[t].bytes()).sum();
        out.push(Recompute {
            name: s.name.clone(),
            clones,
            recomputed,
            first_use,
            bytes,
            flops,
        });
    }
    out
}

/// `g` with every recompute plan in `chosen` applied (candidates of `g`, disjoint
/// segments): clones inserted before each one's first backward use, backward
/// reads of recomputed tensors rewired to the clones. Tensor ids of `g` keep
/// their meaning (clones get new ones); `forward_len` is unchanged, so the
/// clones sit in the backward part.
pub fn apply(g: &Graph, chosen: &[&Recompute]) -> Graph {
    let mut out = Graph {
        nodes: Vec::with_capacity(g.nodes.len() + chosen.iter().map(|c| c.clones.len()).sum::<usize>()),
        ..g.clone()
    };
    let mut rewire: HashMap<TensorId, TensorId> = HashMap::new();
    let mut inserts: BTreeMap<usize, Vec<Node>> = BTreeMap::new();
    for c in chosen {
        let mut local: HashMap<TensorId, TensorId> = HashMap::new();
        let mut nodes = Vec::with_capacity(c.clones.len());
        for &n in &c.clones {
            let node = &g.nodes[n];
            let inputs = node.inputs.iter().map(|t| *local.get(t).unwrap_or(t)).collect();
            let outputs = node
                .outputs
                .iter()
                .map(|&t| {
                    let info = &g.tensors[t];
                    let copy = out.tensor(format!("{}.recomputed", info.name), info.shape.clone(), info.role);
                    out.tensors[copy].dtype = info.dtype;
                    local.insert(t, copy);
                    copy
                })
                .collect();
            nodes.push(Node {
                op: node.op.clone(),
                inputs,
                outputs,
            });
        }
        // Only the recomputed internals: a boundary a cloned node also writes
        // may be read by backward nodes that run before the clones.
        for &t in &c.recomputed {
            rewire.insert(t, local[&t]);
        }
        inserts.entry(c.first_use).or_default().extend(nodes);
    }
    for (i, node) in g.nodes.iter().enumerate() {
        if let Some(clones) = inserts.remove(&i) {
            out.nodes.extend(clones);
        }
        let mut node = node.clone();
        if i >= g.forward_len {
            for t in &mut node.inputs {
                *t = *rewire.get(t).unwrap_or(t);
            }
        }
        out.nodes.push(node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::autodiff::append_backward;
    use crate::graph::executor::cpu::{run, Noise};

    #[test]
    fn block_names() {
        assert_eq!(block_of("decoder.dec_blocks.12.enc.c1"), Some("decoder.dec_blocks.12"));
        assert_eq!(block_of("encoder.enc_blocks.3.pool"), Some("encoder.enc_blocks.3"));
        assert_eq!(block_of("encoder.enc_blocks.3"), Some("encoder.enc_blocks.3"));
        assert_eq!(block_of("encoder.in_conv"), None);
        assert_eq!(block_of("loss"), None);
        assert_eq!(block_of("a.b2.c"), None);
    }

    /// Two residual "blocks" of two convs each, then a sum and the loss.
    fn two_blocks() -> Graph {
        let mut g = Graph::default();
        let x = g.tensor("input", vec![1, 3, 3, 4], Role::Input);
        let w = |g: &mut Graph, n: &str| g.tensor(n, vec![4, 3, 3, 4], Role::Param);
        let mut t = x;
        for b in 0..2 {
            let (w1, w2) = (w(&mut g, &format!("w{b}1")), w(&mut g, &format!("w{b}2")));
            let h = g.conv2d(&format!("blocks.{b}.c1"), t, w1, None, None, true).unwrap();
            t = g.conv2d(&format!("blocks.{b}.c2"), h, w2, None, Some(t), true).unwrap();
        }
        let s = g.sum_per_image("sum", t).unwrap();
        g.elbo("loss", s, &[], 36).unwrap();
        append_backward(&mut g).unwrap();
        g
    }

    #[test]
    fn a_block_recomputes_its_internals_before_its_backward_and_nothing_else() {
        let g = two_blocks();
        let segments = block_segments(&g);
        assert_eq!(segments.len(), 2);
        let cands = candidates(&g, &segments);
        assert_eq!(cands.len(), 2);
        // Each block recomputes c1 (read by c2's backward), not c2 (a boundary).
        for c in &cands {
            assert_eq!(c.clones.len(), 1);
            assert_eq!(g.tensors[c.recomputed[0]].name, format!("{}.c1", c.name));
        }
        let all: Vec<&Recompute> = cands.iter().collect();
        let h = apply(&g, &all);
        assert_eq!(h.nodes.len(), g.nodes.len() + 2);
        assert_eq!(h.forward_len, g.forward_len);
        // No backward node reads an original internal; each clone runs before its readers.
        for c in &cands {
            let t = c.recomputed[0];
            assert!(!h.nodes[h.forward_len..].iter().any(|n| n.inputs.contains(&t)));
        }
        let mut values = vec![None; g.tensors.len()];
        values[0] = Some((0..36).map(|i| (i as f32 * 0.37).sin()).collect());
        for (t, info) in g.tensors.iter().enumerate() {
            if info.role == Role::Param {
                values[t] = Some((0..144).map(|i| ((i * 7 + t) % 11) as f32 / 11.0 - 0.5).collect());
            }
        }
        let mut a = values.clone();
        run(&g, &mut a, Noise::default()).unwrap();
        let mut b = values;
        run(&h, &mut b, Noise::default()).unwrap();
        for &(_, d) in &g.param_grads {
            assert_eq!(a[d], b[d], "{}", g.tensors[d].name);
        }
    }
}
