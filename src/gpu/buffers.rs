use std::num::NonZeroU64;

use super::GpuContext;
use crate::error::{Error, Result};

/// A storage buffer of 4-byte elements (f32 or u32).
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    /// Length in 4-byte elements.
    pub len: usize,
}

/// A range of a buffer bound to one kernel binding, in 4-byte elements.
#[derive(Clone, Copy)]
pub struct BufView<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub len: usize,
}

impl GpuBuffer {
    pub fn view(&self) -> BufView<'_> {
        BufView {
            buffer: &self.buffer,
            offset: 0,
            len: self.len,
        }
    }

    /// A sub-range; `offset * 4` must be a multiple of the adapter's storage offset alignment.
    pub fn slice(&self, offset: usize, len: usize) -> BufView<'_> {
        assert!(
            offset + len <= self.len,
            "slice {offset}+{len} past buffer of {}",
            self.len
        );
        BufView {
            buffer: &self.buffer,
            offset,
            len,
        }
    }
}

impl<'a> BufView<'a> {
    /// A shape error unless the view holds exactly `want` elements.
    pub fn expect_len(&self, op: &str, what: &str, want: usize) -> Result<()> {
        if self.len != want {
            return Err(Error::Shape(format!(
                "{op}: `{what}` has {} elements, expected {want}",
                self.len
            )));
        }
        Ok(())
    }

    pub(crate) fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset as u64 * 4,
            // A zero-length tensor still binds one element so the layout stays valid.
            size: NonZeroU64::new(self.len.max(1) as u64 * 4),
        })
    }

    pub(crate) fn check_binding(&self, ctx: &GpuContext, kernel: &str) -> Result<()> {
        let bytes = self.len as u64 * 4;
        if bytes > ctx.limits.max_storage_buffer_binding_size {
            return Err(Error::Shape(format!(
                "kernel `{kernel}`: a {bytes}-byte tensor exceeds this adapter's storage binding limit of {} bytes",
                ctx.limits.max_storage_buffer_binding_size
            )));
        }
        let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
        if !(self.offset as u64 * 4).is_multiple_of(align) {
            return Err(Error::Shape(format!(
                "kernel `{kernel}`: binding offset {} bytes is not a multiple of {align}",
                self.offset * 4
            )));
        }
        Ok(())
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuContext {
    pub(crate) fn upload_bytes(&self, bytes: &[u8], usage: wgpu::BufferUsages, label: &str) -> wgpu::Buffer {
        let size = (bytes.len() as u64).max(4).div_ceil(4) * 4;
        let buffer = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: true,
        });
        let mut padded = bytes.to_vec();
        padded.resize(size as usize, 0);
        buffer
            .slice(..)
            .get_mapped_range_mut()
            .expect("a buffer created mapped can be written")
            .copy_from_slice(&padded);
        buffer.unmap();
        buffer
    }

    /// A storage buffer holding `data` (f32 or u32).
    pub fn upload<T: bytemuck::Pod>(&self, data: &[T]) -> GpuBuffer {
        assert_eq!(std::mem::size_of::<T>(), 4, "GpuBuffer holds 4-byte elements");
        GpuBuffer {
            buffer: self.upload_bytes(bytemuck::cast_slice(data), STORAGE, "tensor"),
            len: data.len(),
        }
    }

    /// A zero-filled storage buffer of `len` 4-byte elements.
    pub fn zeros(&self, len: usize) -> GpuBuffer {
        let buffer = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensor"),
            size: (len.max(1) * 4) as u64,
            usage: STORAGE,
            mapped_at_creation: false,
        });
        GpuBuffer { buffer, len }
    }

    /// Copies a view back to the CPU (waits for the GPU).
    pub fn read<T: bytemuck::Pod>(&self, view: BufView<'_>) -> Result<Vec<T>> {
        assert_eq!(std::mem::size_of::<T>(), 4, "GpuBuffer holds 4-byte elements");
        if view.len == 0 {
            return Ok(Vec::new());
        }
        let bytes = view.len as u64 * 4;
        let staging = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(view.buffer, view.offset as u64 * 4, &staging, 0, bytes);
        self.submit(encoder.finish());
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("readback callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer failed: {e}")))?;
        let data = {
            let mapped = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading a mapped buffer failed: {e}")))?;
            bytemuck::cast_slice(&mapped).to_vec()
        };
        staging.unmap();
        Ok(data)
    }

    pub fn read_f32(&self, buf: &GpuBuffer) -> Result<Vec<f32>> {
        self.read(buf.view())
    }

    pub fn read_u32(&self, buf: &GpuBuffer) -> Result<Vec<u32>> {
        self.read(buf.view())
    }
}
