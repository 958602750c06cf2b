//! A forward-only graph's state on a device (the GPU or the CPU reference):
//! a checkpoint's weights written once, then runs with new inputs. The graph
//! itself stays with its owner, which passes it to each call.

use super::assemble::param_values;
use super::evaluate::Device;
use super::params::ParamSpec;
use crate::checkpoint::NamedTensors;
use crate::error::{Error, Result};
use crate::graph::executor::cpu::{self, Noise, Values};
use crate::graph::executor::GpuGraph;
use crate::graph::{Graph, TensorId};

pub struct Forward<'d> {
    device: Device<'d>,
    gpu: Option<GpuGraph>,
    values: Values,
    seed: u64,
}

impl<'d> Forward<'d> {
    /// The graph with `weights` (official names, checked against `params`)
    /// written once; `seed` keys the noise of every run.
    pub fn new(
        device: Device<'d>,
        graph: &Graph,
        params: &[(ParamSpec, TensorId)],
        weights: &NamedTensors,
        seed: u64,
    ) -> Result<Forward<'d>> {
        let values = param_values(graph, params, weights, "checkpoint")?;
        let gpu = match device {
            Device::Gpu(ctx) => {
                let gpu = GpuGraph::build(ctx, graph, seed, None)?;
                gpu.write_values(ctx, graph, &values)?;
                Some(gpu)
            }
            Device::Cpu => None,
        };
        Ok(Forward {
            device,
            gpu,
            values,
            seed,
        })
    }

    /// Sets an input of `graph` for the next runs.
    pub fn set(&mut self, graph: &Graph, t: TensorId, data: &[f32]) -> Result<()> {
        let info = &graph.tensors[t];
        if data.len() != info.numel() {
            return Err(Error::Input(format!(
                "{}: {} values for shape {:?}",
                info.name,
                data.len(),
                info.shape
            )));
        }
        match (self.device, &self.gpu) {
            (Device::Gpu(ctx), Some(gpu)) => gpu.write(ctx, graph, t, data),
            _ => {
                self.values[t] = Some(data.to_vec());
                Ok(())
            }
        }
    }

    /// Runs `graph` with noise step `step`.
    pub fn run(&mut self, graph: &Graph, step: u32) -> Result<()> {
        match (self.device, &self.gpu) {
            (Device::Gpu(ctx), Some(gpu)) => gpu.run(ctx, step),
            _ => cpu::run(graph, &mut self.values, Noise::new(self.seed, step as u64)),
        }
    }

    /// A tensor's values after the last run (it must be one of the graph's outputs).
    pub fn read(&self, t: TensorId) -> Result<Vec<f32>> {
        match (self.device, &self.gpu) {
            (Device::Gpu(ctx), Some(gpu)) => gpu.read(ctx, t),
            _ => self.values[t]
                .clone()
                .ok_or_else(|| Error::Shape(format!("tensor {t} was not computed"))),
        }
    }
}
