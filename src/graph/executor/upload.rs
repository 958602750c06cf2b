//! Per-step input upload without allocation: two persistent mappable staging
//! buffers used in turn. While the GPU copies from one, the host fills the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

pub(crate) struct Uploader {
    slots: [wgpu::Buffer; 2],
    mapped: [Arc<AtomicBool>; 2],
    next: usize,
    bytes: u64,
}

impl Uploader {
    pub fn new(ctx: &GpuContext, bytes: usize) -> Uploader {
        let bytes = (bytes.max(4) as u64).div_ceil(4) * 4;
        let slots = [0, 1].map(|_| {
            ctx.create_buffer(&wgpu::BufferDescriptor {
                label: Some("input staging"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            })
        });
        Uploader {
            slots,
            mapped: [0, 1].map(|_| Arc::new(AtomicBool::new(true))),
            next: 0,
            bytes,
        }
    }

    /// Writes `words` (byte offset, f32 data) into the next free slot; returns it.
    pub fn stage(&mut self, ctx: &GpuContext, writes: &[(u64, &[f32])]) -> Result<usize> {
        let slot = self.next;
        while !self.mapped[slot].load(Ordering::Acquire) {
            ctx.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("waiting for an input staging buffer failed: {e}")))?;
        }
        {
            let mut view = self.slots[slot]
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| Error::Gpu(format!("writing input staging failed: {e}")))?;
            for &(offset, data) in writes {
                let bytes: &[u8] = bytemuck::cast_slice(data);
                let end = offset as usize + bytes.len();
                if end as u64 > self.bytes {
                    return Err(Error::Shape(format!(
                        "input write of {end} bytes past the {}-byte staging",
                        self.bytes
                    )));
                }
                view.slice(offset as usize..end).copy_from_slice(bytes);
            }
        }
        self.slots[slot].unmap();
        self.mapped[slot].store(false, Ordering::Release);
        self.next = 1 - slot;
        Ok(slot)
    }

    /// Records the copy of a staged slot into `dst`.
    pub fn record_copy(&self, encoder: &mut wgpu::CommandEncoder, slot: usize, dst: &wgpu::Buffer) {
        encoder.copy_buffer_to_buffer(&self.slots[slot], 0, dst, 0, self.bytes);
    }

    /// After the submit that copies from `slot`: map it again for a later step.
    pub fn recycle(&self, slot: usize) {
        let flag = self.mapped[slot].clone();
        self.slots[slot].slice(..).map_async(wgpu::MapMode::Write, move |r| {
            if r.is_ok() {
                flag.store(true, Ordering::Release);
            }
        });
    }
}
