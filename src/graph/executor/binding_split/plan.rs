//! Planning a split node's slices: the coarsest unit whose slices fit the
//! binding limit, even slices at aligned offsets, and the range of each
//! tensor every slice binds (in place, or through staging).

use super::super::advice::shrink;
use super::{BindingSplit, Part, Unit};
use crate::error::{shape_err, Result};
use crate::graph::ir::{Graph, Node, TensorId};

/// One tensor of a split node, measured in the chosen unit.
#[derive(Clone, Debug)]
struct Operand {
    part: Part,
    tensor: TensorId,
    shape: Vec<usize>,
    /// Elements per unit (Cut; Image when confined), or per image (PerImage).
    per_unit: usize,
    /// Rows of this tensor per unit (Rows).
    rows_per_unit: usize,
}

/// Where one slice binds part of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Range {
    /// First element, in the whole tensor.
    pub start: usize,
    pub len: usize,
    /// The shape the op sees for this slice.
    pub shape: Vec<usize>,
    /// The slice is the first to write these elements; otherwise it adds to them.
    pub first: bool,
}

/// How a slice binds one tensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bind {
    /// The whole tensor, as when unsplit.
    Whole,
    /// A sub-view of the tensor itself (an aligned start).
    InPlace(Range),
    /// A staging area: an input copied in before the op's dispatches, an
    /// output copied (or added) out after them.
    Staged(Range),
}

/// A node's slices.
#[derive(Clone, Debug)]
pub(crate) struct NodeBindingSplit {
    pub unit: Unit,
    /// Units of one image (1 for whole images).
    per_image: usize,
    /// Slices stay inside one image (the node has per-image or one-image tensors).
    confined: bool,
    inputs: Vec<Operand>,
    outputs: Vec<Operand>,
    /// Unit ranges `[start, end)`, in order.
    pub slices: Vec<(usize, usize)>,
    /// Binding offset alignment, in elements.
    align: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The tensors of `node` with their parts, as (part, tensor, is output).
fn operands<'a>(node: &'a Node, split: &'a BindingSplit) -> impl Iterator<Item = (Part, TensorId, bool)> + 'a {
    let ins = split.inputs.iter().zip(&node.inputs).map(|(&p, &t)| (p, t, false));
    ins.chain(split.outputs.iter().zip(&node.outputs).map(|(&p, &t)| (p, t, true)))
}

/// `node` measured in `unit`: its operands, units in all and per image; None
/// when its tensors do not have the shapes that unit needs.
fn measure(
    g: &Graph,
    node: &Node,
    split: &BindingSplit,
    unit: Unit,
) -> Option<(Vec<Operand>, Vec<Operand>, usize, usize)> {
    let cut: Vec<&[usize]> = operands(node, split)
        .filter(|(p, _, _)| *p == Part::Cut)
        .map(|(_, t, _)| g.shape(t))
        .collect();
    let first = cut.first()?;
    let n = *first.first()?;
    let spatial = |s: &[usize]| s.len() == 4;
    let (units, per_image) = match unit {
        Unit::Images => (n, 1),
        Unit::Rows | Unit::Pixels if !cut.iter().all(|s| spatial(s) && s[0] == n) => return None,
        Unit::Rows => {
            let images = operands(node, split).filter(|(p, _, _)| *p == Part::Image);
            let heights = cut.iter().map(|s| s[1]).chain(images.map(|(_, t, _)| g.shape(t)[1]));
            let h = heights.min()?;
            (n * h, h)
        }
        Unit::Pixels => {
            if !cut.iter().all(|s| s[1..3] == first[1..3]) {
                return None;
            }
            (n * first[1] * first[2], first[1] * first[2])
        }
    };
    if units == 0 || (unit == Unit::Images && !cut.iter().all(|s| s[0] == n)) {
        return None;
    }
    let (mut ins, mut outs) = (Vec::new(), Vec::new());
    for (part, t, is_out) in operands(node, split) {
        let shape = g.shape(t).to_vec();
        let images = if part == Part::Image { 1 } else { n };
        let (per_unit, rows_per_unit) = match (part, unit) {
            (Part::Cut | Part::Image, Unit::Rows) => {
                if !spatial(&shape) || shape[0] != images || !shape[1].is_multiple_of(per_image) {
                    return None;
                }
                let rows = shape[1] / per_image;
                (rows * shape[2] * shape[3], rows)
            }
            (Part::Cut | Part::Image, Unit::Pixels) => {
                if !spatial(&shape) || shape[..3] != [images, first[1], first[2]] {
                    return None;
                }
                (shape[3], 1)
            }
            (Part::Cut, Unit::Images) => (numel(&shape) / n, 1),
            (Part::PerImage, _) => {
                if shape.first() != Some(&n) {
                    return None;
                }
                (numel(&shape) / n, 1)
            }
            _ => (0, 0),
        };
        let op = Operand {
            part,
            tensor: t,
            shape,
            per_unit,
            rows_per_unit,
        };
        if is_out {
            outs.push(op);
        } else {
            ins.push(op);
        }
    }
    Some((ins, outs, units, per_image))
}

/// The node's name in errors: its first output and op.
fn node_name(g: &Graph, node: &Node) -> String {
    let out = node.outputs.first().map_or("?", |&t| g.tensors[t].name.as_str());
    format!("{out} ({})", node.op.rule().name())
}

fn describe(g: &Graph, t: TensorId) -> String {
    let info = &g.tensors[t];
    format!("{} {:?} ({} bytes)", info.name, info.shape, info.bytes())
}

/// Slices for `node` when one of its tensors exceeds `limit` bytes (None when
/// none does), at offsets that are multiples of `align` bytes where the
/// tensors allow. An error names the tensor and what to do when the op cannot
/// split far enough.
pub(crate) fn plan_binding_split(
    g: &Graph,
    node: &Node,
    limit: usize,
    align: usize,
) -> Result<Option<NodeBindingSplit>> {
    let tensors = node.inputs.iter().chain(&node.outputs);
    let Some(&big) = tensors.clone().find(|&&t| g.tensors[t].bytes() > limit) else {
        return Ok(None);
    };
    let name = node_name(g, node);
    let rule = node.op.rule();
    let Some(split) = rule.binding_split(g, node) else {
        return shape_err(format!(
            "{name}: {} exceeds the {limit}-byte storage binding and this op does not split; {}",
            describe(g, big),
            shrink(g.tensors[big].role)
        ));
    };
    // Counted in elements of the widest dtype (f32) for the limit, and of the
    // narrowest (f16) for alignment, so both hold for any tensor's dtype.
    let (limit, align) = (limit / 4, (align / 2).max(1));
    if split.inputs.len() != node.inputs.len() || split.outputs.len() != node.outputs.len() {
        return shape_err(format!(
            "{name}: its split names {} inputs and {} outputs, the node has {} and {}",
            split.inputs.len(),
            split.outputs.len(),
            node.inputs.len(),
            node.outputs.len()
        ));
    }
    // Tensors every slice binds whole must fit as they are.
    for (part, t, _) in operands(node, &split) {
        if matches!(part, Part::Whole | Part::Sum | Part::Accumulate) && g.tensors[t].numel() > limit {
            return shape_err(format!(
                "{name}: {} is bound whole by every dispatch and exceeds the {}-byte storage binding; {}",
                describe(g, t),
                limit * 4,
                shrink(g.tensors[t].role)
            ));
        }
    }
    let confining = operands(node, &split).any(|(p, _, _)| matches!(p, Part::PerImage | Part::Image));
    let mut too_big = None;
    for unit in [Unit::Images, Unit::Rows, Unit::Pixels] {
        if unit > split.finest {
            break;
        }
        let Some((inputs, outputs, units, per_image)) = measure(g, node, &split, unit) else {
            continue;
        };
        let confined = confining && unit != Unit::Images;
        let span = if confined { per_image } else { units };
        let (most, step, over) = fit(inputs.iter().chain(&outputs), span, confined, limit, align);
        if let Some(op) = over {
            too_big = Some(format!(
                "one {} of {} {:?} is {} bytes",
                unit.name(),
                g.tensors[op.tensor].name,
                op.shape,
                op.per_unit * 4
            ));
        }
        if most == 0 {
            continue;
        }
        let size = even_slices(span, most, step);
        let starts = if confined {
            (0..units).step_by(per_image).collect()
        } else {
            vec![0]
        };
        let slices = starts
            .into_iter()
            .flat_map(|s| (s..s + span).step_by(size).map(move |a| (a, (a + size).min(s + span))))
            .collect();
        return Ok(Some(NodeBindingSplit {
            unit,
            per_image,
            confined,
            inputs,
            outputs,
            slices,
            align,
        }));
    }
    let why = if split.finest_because.is_empty() {
        String::new()
    } else {
        format!(" ({})", split.finest_because)
    };
    let over = too_big.unwrap_or_else(|| describe(g, big));
    shape_err(format!(
        "{name}: {over}, over the {}-byte storage binding, and this op splits its work no finer than by {}s{why}; \
         use a smaller image or fewer channels there, or an adapter with a larger max_storage_buffer_binding_size",
        limit * 4,
        split.finest.name()
    ))
}

/// The most units of `span` one slice may cover so that every tensor it cuts
/// stays within `limit` elements (0: not even one), the step that keeps cut
/// offsets aligned, and a tensor one unit of which is over the limit.
fn fit<'a>(
    ops: impl Iterator<Item = &'a Operand>,
    span: usize,
    confined: bool,
    limit: usize,
    align: usize,
) -> (usize, usize, Option<&'a Operand>) {
    let (mut most, mut step, mut over) = (span, 1, None);
    for op in ops {
        let cut = match op.part {
            Part::Cut => true,
            Part::Image => confined,
            Part::PerImage => !confined,
            _ => false,
        };
        // A shared image bound whole must fit as it is.
        if op.part == Part::Image && !confined && numel(&op.shape) > limit {
            most = 0;
        }
        if !cut || op.per_unit == 0 {
            continue;
        }
        most = most.min(limit / op.per_unit);
        if op.per_unit > limit {
            over = Some(op);
        }
        // Per-image blocks are small and go through staging: no alignment step.
        if op.part != Part::PerImage {
            step = lcm(step, align / gcd(align, op.per_unit));
        }
    }
    (most, step, over)
}

/// Units per slice when `span` units are cut into slices of at most `most`:
/// as even as possible, a multiple of `step` (keeping offsets aligned) when
/// `most` allows one.
fn even_slices(span: usize, most: usize, step: usize) -> usize {
    let most = if most >= step { most / step * step } else { most };
    let step = if most >= step { step } else { 1 };
    let count = span.div_ceil(most);
    span.div_ceil(count).next_multiple_of(step).min(most).min(span)
}

impl NodeBindingSplit {
    /// What slice `s` binds of operand `op`.
    fn range(&self, op: &Operand, s: usize) -> Option<Range> {
        let (a, b) = self.slices[s];
        let units = b - a;
        let (image, at) = (a / self.per_image, a % self.per_image);
        let spatial = |units: usize, shape: &[usize]| match self.unit {
            Unit::Images => {
                let mut shape = shape.to_vec();
                shape[0] = units;
                shape
            }
            Unit::Rows => vec![1, units * op.rows_per_unit, shape[2], shape[3]],
            Unit::Pixels => vec![1, 1, units, shape[3]],
        };
        let total = numel(&op.shape);
        let whole = |first| Range {
            start: 0,
            len: total,
            shape: op.shape.clone(),
            first,
        };
        Some(match op.part {
            Part::Whole => return None,
            Part::Cut => Range {
                start: a * op.per_unit,
                len: units * op.per_unit,
                shape: spatial(units, &op.shape),
                first: true,
            },
            Part::Sum | Part::Accumulate => whole(s == 0),
            Part::Image if !self.confined => whole(s == 0),
            Part::Image => Range {
                start: at * op.per_unit,
                len: units * op.per_unit,
                shape: spatial(units, &op.shape),
                first: image == 0,
            },
            Part::PerImage => {
                let (first_image, images) = if self.confined { (image, 1) } else { (a, units) };
                let mut shape = op.shape.clone();
                shape[0] = images;
                Range {
                    start: first_image * op.per_unit,
                    len: images * op.per_unit,
                    shape,
                    first: !self.confined || at == 0,
                }
            }
        })
    }

    /// How slice `s` binds input `k`.
    pub fn input(&self, k: usize, s: usize) -> Bind {
        let op = &self.inputs[k];
        match self.range(op, s) {
            None => Bind::Whole,
            Some(r) if r.start == 0 && r.len == numel(&op.shape) => Bind::Whole,
            Some(r) if r.start.is_multiple_of(self.align) => Bind::InPlace(r),
            Some(r) => Bind::Staged(r),
        }
    }

    /// How slice `s` binds output `k`.
    pub fn output(&self, k: usize, s: usize) -> Bind {
        let op = &self.outputs[k];
        let r = self.range(op, s).expect("outputs are never Whole");
        let aligned = r.start.is_multiple_of(self.align);
        if aligned && (r.first || op.part == Part::Accumulate) {
            Bind::InPlace(r)
        } else {
            Bind::Staged(r)
        }
    }

    /// Whether the op's kernels add into its [`Part::Accumulate`] outputs in slice `s`.
    pub fn accumulates(&self, s: usize) -> bool {
        s > 0 && self.outputs.iter().any(|o| o.part == Part::Accumulate)
    }

    /// Elements of the input and output staging areas the slices need, each
    /// staged range starting at a multiple of the alignment.
    pub fn staging(&self) -> (usize, usize) {
        let mut most = (0, 0);
        for s in 0..self.slices.len() {
            let sum = |binds: Vec<Bind>| -> usize {
                binds
                    .iter()
                    .map(|b| match b {
                        Bind::Staged(r) => r.len.next_multiple_of(self.align),
                        _ => 0,
                    })
                    .sum()
            };
            let ins = sum((0..self.inputs.len()).map(|k| self.input(k, s)).collect());
            let outs = sum((0..self.outputs.len()).map(|k| self.output(k, s)).collect());
            most = (most.0.max(ins), most.1.max(outs));
        }
        most
    }

    /// Elements of staging slots, aligned (for laying staged ranges one after another).
    pub fn aligned(&self, len: usize) -> usize {
        len.next_multiple_of(self.align)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Role;

    #[test]
    fn slices_are_even_and_aligned_where_the_limit_allows() {
        assert_eq!(even_slices(10, 4, 1), 4);
        assert_eq!(even_slices(9, 4, 1), 3);
        // 100 units, at most 30 a slice, offsets on multiples of 8: slices of 24 (the last of 4).
        assert_eq!(even_slices(100, 30, 8), 24);
        // A limit below one aligned step: unaligned (staged) slices.
        assert_eq!(even_slices(100, 5, 8), 5);
        assert_eq!(even_slices(3, 100, 8), 3);
    }

    fn add_graph(shape: Vec<usize>) -> Graph {
        let mut g = Graph::default();
        let a = g.tensor("a", shape.clone(), Role::Input);
        let b = g.tensor("b", shape, Role::Input);
        let y = g.add("y", a, b).unwrap();
        g.outputs.push(y);
        g
    }

    #[test]
    fn weights_over_the_binding_name_the_config_widths_not_the_batch() {
        let mut g = Graph::default();
        let x = g.tensor("x", vec![2, 1, 1, 64], Role::Input);
        let w = g.tensor("dense.weight", vec![64, 64], Role::Param);
        let y = g.linear("dense", x, w, None).unwrap();
        g.outputs.push(y);
        // The weight (16 KiB) is bound whole; the rows of x and y fit 4 KiB.
        let err = plan_binding_split(&g, &g.nodes[0], 4096, 32).unwrap_err().to_string();
        assert!(err.contains("dense.weight [64, 64]"), "{err}");
        assert!(
            err.contains("bottleneck_multiple") && !err.contains("smaller batch"),
            "{err}"
        );
    }

    #[test]
    fn a_node_under_the_limit_is_not_split() {
        let g = add_graph(vec![2, 4, 4, 8]);
        assert!(plan_binding_split(&g, &g.nodes[0], 1024, 32).unwrap().is_none());
    }

    #[test]
    fn whole_images_first_then_rows_then_pixels() {
        // 2 images of 4x4x8 = 128 elements (512 bytes) each.
        let g = add_graph(vec![2, 4, 4, 8]);
        let p = plan_binding_split(&g, &g.nodes[0], 512, 32).unwrap().unwrap();
        assert_eq!((p.unit, p.slices.clone()), (Unit::Images, vec![(0, 1), (1, 2)]));
        let r = match p.input(0, 1) {
            Bind::InPlace(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!((r.start, r.len, r.shape), (128, 128, vec![1, 4, 4, 8]));
        // Two rows (64 elements) per slice.
        let p = plan_binding_split(&g, &g.nodes[0], 256, 32).unwrap().unwrap();
        assert_eq!(p.unit, Unit::Rows);
        assert_eq!(p.slices.len(), 4);
        match p.output(0, 3) {
            Bind::InPlace(r) => assert_eq!((r.start, r.shape), (192, vec![1, 2, 4, 8])),
            other => panic!("{other:?}"),
        }
        // Under one row: pixels.
        let p = plan_binding_split(&g, &g.nodes[0], 64, 32).unwrap().unwrap();
        assert_eq!((p.unit, p.slices.len()), (Unit::Pixels, 16));
    }
}
