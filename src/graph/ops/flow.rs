//! Normalizing-flow posteriors: a masked conv's weights (`w ⊙ mask`, so masked
//! taps are zero and get no gradient), an inverse-autoregressive cell's update
//! from its network's `[m, s]`, and a flowed level's KL term
//! `kl0 + log p(z0) − log p(zk) − Σ log|det|` (`kernels::flow` says why). The cells' networks are ordinary
//! convs (`model::flow` builds them). A flowed Ladder level first writes its
//! merged posterior out packed (`Graph::ladder_merge_packed`). Kernels:
//! `crate::kernels::flow`, and `crate::kernels::reparam_kl`'s merge.

use super::{nhwc_of, OpRule};
use crate::error::{shape_err, Error, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Part, Unit};
use crate::graph::ir::{Graph, Node, Role, TensorId};
use crate::kernels::flow::{self as kernels, reference, Cell, FlowLevel, FlowLevelGrads};
use crate::kernels::reparam_kl::{self as reparam, reference::LatentsRef, Latents};

/// in: w, mask (a constant of w's shape) → w ⊙ mask. Its backward is itself on dy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskWeights;

/// in: z `[.., zdim]`, ms `[.., 2·zdim]` (m then s) → z', ls (per-element log |det|).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Iaf {
    pub cell: Cell,
    pub zdim: usize,
}

/// in: dz', dls, z, ms → dz, dms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IafBackward {
    pub cell: Cell,
    pub zdim: usize,
}

/// in: kl0 (the Gaussian draw's KL, or its log ratio for importance
/// sampling), z0, p (the prior block's output, its first 2·zdim channels
/// `[mu_p, logsig_p]`), zk, ld → the level's per-element KL term.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowKl {
    pub zdim: usize,
}

/// in: dkl, z0, p, zk → dz0, d[mu_p, logsig_p] (2·zdim channels), dzk, dld.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowKlBackward {
    pub zdim: usize,
}

/// in: mu_d, logsig_d, mu_p, logsig_p → q `[.., 2·zdim]`: the Ladder VAE's
/// precision-weighted posterior, packed [mu_q, logsig_q].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LadderMergePacked {
    pub zdim: usize,
}

/// in: dq, mu_d, logsig_d, mu_p, logsig_p → their four gradients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LadderMergePackedBackward {
    pub zdim: usize,
}

impl Graph {
    /// The Ladder VAE's posterior from the bottom-up `d` and the prior `p`
    /// (each (mu, logsig) of one shape), packed along channels.
    pub fn ladder_merge_packed(
        &mut self,
        name: &str,
        d: (TensorId, TensorId),
        p: (TensorId, TensorId),
    ) -> Result<TensorId> {
        let [n, h, w, zdim] = nhwc_of(self, d.0, name)?;
        if [d.1, p.0, p.1].iter().any(|&t| self.shape(t) != [n, h, w, zdim]) {
            return shape_err(format!(
                "{name}: the bottom-up and prior (mu, logsig) must all be {:?}",
                self.shape(d.0)
            ));
        }
        let q = self.activation(name, vec![n, h, w, 2 * zdim]);
        self.node(LadderMergePacked { zdim }, vec![d.0, d.1, p.0, p.1], vec![q]);
        Ok(q)
    }

    /// `w ⊙ mask`, the mask a constant made here.
    pub fn mask_weights(&mut self, name: &str, w: TensorId, mask: Vec<f32>) -> Result<TensorId> {
        let shape = self.shape(w).to_vec();
        if mask.len() != shape.iter().product::<usize>() {
            return shape_err(format!("{name}: a mask of {} values for weights {shape:?}", mask.len()));
        }
        let m = self.tensor(format!("{name}.mask"), shape.clone(), Role::Constant);
        self.constants.push((m, mask));
        let y = self.activation(name, shape);
        self.node(MaskWeights, vec![w, m], vec![y]);
        Ok(y)
    }

    /// One cell's update of z from its network's output `ms` (2·zdim
    /// channels): returns (z', per-element log |det|).
    pub fn iaf(&mut self, name: &str, z: TensorId, ms: TensorId, cell: Cell) -> Result<(TensorId, TensorId)> {
        let [n, h, w, zdim] = nhwc_of(self, z, name)?;
        if self.shape(ms) != [n, h, w, 2 * zdim] {
            return shape_err(format!(
                "{name}: the cell's network gives {:?}, not [m, s] of z {:?}",
                self.shape(ms),
                self.shape(z)
            ));
        }
        let out = self.activation(&format!("{name}.z"), vec![n, h, w, zdim]);
        let ls = self.activation(&format!("{name}.log_det"), vec![n, h, w, zdim]);
        self.node(Iaf { cell, zdim }, vec![z, ms], vec![out, ls]);
        Ok((out, ls))
    }

    /// The per-element KL term of a level whose Gaussian draw `z0` (its
    /// second output `kl0`) the cells made `zk` with summed log |det| `ld`,
    /// against the prior in `p`'s first 2·zdim channels.
    pub fn flow_kl(
        &mut self,
        name: &str,
        kl0: TensorId,
        z0: TensorId,
        p: TensorId,
        zk: TensorId,
        ld: TensorId,
    ) -> Result<TensorId> {
        let [n, h, w, zdim] = nhwc_of(self, z0, name)?;
        let [n2, h2, w2, cp] = nhwc_of(self, p, name)?;
        let same = [kl0, zk, ld].iter().all(|&t| self.shape(t) == self.shape(z0));
        if !same || (n2, h2, w2) != (n, h, w) || cp < 2 * zdim {
            return shape_err(format!(
                "{name}: kl0 {:?}, z0 {:?}, zk {:?} and ld {:?} must agree and p {:?} hold at least 2·zdim channels",
                self.shape(kl0),
                self.shape(z0),
                self.shape(zk),
                self.shape(ld),
                self.shape(p)
            ));
        }
        let kl = self.activation(&format!("{name}.kl"), vec![n, h, w, zdim]);
        self.node(FlowKl { zdim }, vec![kl0, z0, p, zk, ld], vec![kl]);
        Ok(kl)
    }
}

impl OpRule for MaskWeights {
    fn name(&self) -> &'static str {
        "mask_weights"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        if b.wants(0) {
            let dw = b.grad_like(0);
            let inputs = vec![b.dy(), b.input(1)];
            b.node(MaskWeights, inputs, vec![dw]);
            b.push(0, dw);
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::mask(c.input(0), c.input(1))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        Ok(vec![kernels::mask(l.ctx, l.input(0), l.input(1), l.output(0))?])
    }

    /// Weights: the conv reads them in f32.
    fn keeps_f32(&self, _: usize) -> bool {
        true
    }
}

impl OpRule for Iaf {
    fn name(&self) -> &'static str {
        "iaf"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let (Some(dz_out), Some(dls)) = (b.dy_of(0), b.dy_of(1)) else {
            return Err(Error::Shape("iaf: both z and its log det must reach the loss".into()));
        };
        let d = [b.grad_like(0), b.grad_like(1)];
        let inputs = vec![dz_out, dls, b.input(0), b.input(1)];
        b.node(
            IafBackward {
                cell: self.cell,
                zdim: self.zdim,
            },
            inputs,
            d.to_vec(),
        );
        for (k, dk) in d.into_iter().enumerate() {
            if b.wants(k) {
                b.push(k, dk);
            }
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let (z, ls) = reference::iaf(self.cell, self.zdim, c.input(0), c.input(1));
        Ok(vec![z, ls])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let d = kernels::iaf(
            l.ctx,
            self.cell,
            self.zdim,
            l.input(0),
            l.input(1),
            l.output(0),
            l.output(1),
        )?;
        Ok(vec![d])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

impl OpRule for IafBackward {
    fn name(&self) -> &'static str {
        "iaf_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let (dz, dms) = reference::iaf_backward(self.cell, self.zdim, c.input(0), c.input(1), c.input(2), c.input(3));
        Ok(vec![dz, dms])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let d = kernels::iaf_backward(
            l.ctx,
            self.cell,
            self.zdim,
            l.input(0),
            l.input(1),
            l.input(2),
            l.input(3),
            l.output(0),
            l.output(1),
        )?;
        Ok(vec![d])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

/// The CPU view of a flowed level's `z0, p, zk` (inputs `first..first + 3`).
fn level_ref<'a>(c: &'a CpuCall<'_>, zdim: usize, first: usize) -> reference::FlowLevelRef<'a> {
    reference::FlowLevelRef {
        zdim,
        z0: c.input(first),
        p: c.input(first + 1),
        p_channels: c.channels(first + 1),
        zk: c.input(first + 2),
    }
}

/// The GPU view of the same.
fn level<'a>(l: &LowerCall<'a>, zdim: usize, first: usize) -> FlowLevel<'a> {
    FlowLevel {
        zdim,
        z0: l.input(first),
        p: l.input(first + 1),
        p_channels: l.channels(first + 1),
        zk: l.input(first + 2),
    }
}

impl OpRule for FlowKl {
    fn name(&self) -> &'static str {
        "flow_kl"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dkl = b.dy();
        let (dz0, dzk, dld) = (b.grad_like(1), b.grad_like(3), b.grad_like(4));
        let z0 = b.input(1);
        let dp_name = format!("grad.{}.mu_logsig_p", b.g.tensors[b.input(2)].name);
        let [n, h, w, zdim] = [0, 1, 2, 3].map(|k| b.g.shape(z0)[k]);
        let dp = b.g.activation(&dp_name, vec![n, h, w, 2 * zdim]);
        let inputs = vec![dkl, z0, b.input(2), b.input(3)];
        b.node(FlowKlBackward { zdim: self.zdim }, inputs, vec![dz0, dp, dzk, dld]);
        // kl is kl0 plus terms that do not depend on it.
        if b.wants(0) {
            b.push(0, dkl);
        }
        for (k, dk) in [(1, dz0), (3, dzk), (4, dld)] {
            if b.wants(k) {
                b.push(k, dk);
            }
        }
        if b.wants(2) {
            b.push_channels(2, (0, 2 * self.zdim), dp, 0);
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::kl(&level_ref(c, self.zdim, 1), c.input(0), c.input(4))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let d = kernels::kl(l.ctx, &level(l, self.zdim, 1), l.input(0), l.input(4), l.output(0))?;
        Ok(vec![d])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

impl OpRule for FlowKlBackward {
    fn name(&self) -> &'static str {
        "flow_kl_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let d = reference::kl_backward(&level_ref(c, self.zdim, 1), c.input(0));
        Ok(vec![d.z0, d.p, d.zk, d.ld])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let d = FlowLevelGrads {
            z0: l.output(0),
            p: l.output(1),
            zk: l.output(2),
            ld: l.output(3),
        };
        Ok(vec![kernels::kl_backward(
            l.ctx,
            &level(l, self.zdim, 1),
            l.input(0),
            &d,
        )?])
    }

    /// Elementwise; a single dkl value (broadcast) is bound whole.
    fn binding_split(&self, g: &Graph, node: &Node) -> Option<BindingSplit> {
        let mut split = BindingSplit::cut_all(Unit::Pixels, node);
        if g.tensors[node.inputs[0]].numel() != g.tensors[node.inputs[1]].numel() {
            split.inputs[0] = Part::Whole;
        }
        Some(split)
    }
}

/// The four latent inputs from `first` on, for the CPU reference.
fn latents_ref<'a>(c: &'a CpuCall<'_>, first: usize) -> LatentsRef<'a> {
    LatentsRef {
        q_mu: c.input(first),
        q_logsig: c.input(first + 1),
        p_mu: c.input(first + 2),
        p_logsig: c.input(first + 3),
    }
}

/// The same on the GPU.
fn latents<'a>(l: &LowerCall<'a>, first: usize) -> Latents<'a> {
    Latents {
        q_mu: l.input(first),
        q_logsig: l.input(first + 1),
        p_mu: l.input(first + 2),
        p_logsig: l.input(first + 3),
    }
}

impl OpRule for LadderMergePacked {
    fn name(&self) -> &'static str {
        "ladder_merge_packed"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let d: Vec<TensorId> = (0..4).map(|k| b.grad_like(k)).collect();
        let mut inputs = vec![b.dy()];
        inputs.extend((0..4).map(|k| b.input(k)));
        b.node(LadderMergePackedBackward { zdim: self.zdim }, inputs, d.clone());
        for (k, dk) in d.into_iter().enumerate() {
            if b.wants(k) {
                b.push(k, dk);
            }
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reparam::reference::merge_packed(&latents_ref(c, 0), self.zdim)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        Ok(vec![reparam::merge_packed(
            l.ctx,
            &latents(l, 0),
            self.zdim,
            l.output(0),
        )?])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

impl OpRule for LadderMergePackedBackward {
    fn name(&self) -> &'static str {
        "ladder_merge_packed_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let d = reparam::reference::merge_packed_backward(&latents_ref(c, 1), self.zdim, c.input(0));
        Ok(d.to_vec())
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let grads = Latents {
            q_mu: l.output(0),
            q_logsig: l.output(1),
            p_mu: l.output(2),
            p_logsig: l.output(3),
        };
        let d = reparam::merge_packed_backward(l.ctx, &latents(l, 1), self.zdim, l.input(0), &grads)?;
        Ok(vec![d])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}
