use std::num::NonZeroU64;

use super::GpuContext;
use crate::error::{Error, Result};

/// How a tensor's elements are stored. Kernels compute in f32 either way:
/// an f16 view is bound to a variant of the kernel whose loads widen to f32
/// and whose stores round to f16 (see `gpu::f16_storage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// 4-byte elements (f32, or u32 words).
    #[default]
    F32,
    /// IEEE half precision, 2 bytes; needs the adapter feature SHADER_F16.
    F16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    /// `x` rounded as a store of this dtype rounds it (to nearest, ties to even).
    pub fn round(self, x: f32) -> f32 {
        match self {
            DType::F32 => x,
            DType::F16 => half::f16::from_f32(x).to_f32(),
        }
    }
}

/// A storage buffer of 4-byte elements (f32 or u32).
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    /// Length in 4-byte elements.
    pub len: usize,
}

/// A range of a buffer bound to one kernel binding. `offset` and `len` count
/// elements of `dtype` (4 bytes for f32, 2 for f16).
#[derive(Clone, Copy)]
pub struct BufView<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub len: usize,
    pub dtype: DType,
}

impl GpuBuffer {
    pub fn view(&self) -> BufView<'_> {
        BufView {
            buffer: &self.buffer,
            offset: 0,
            len: self.len,
            dtype: DType::F32,
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
            dtype: DType::F32,
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

    /// Byte offset of the first element.
    pub fn byte_offset(&self) -> u64 {
        (self.offset * self.dtype.size()) as u64
    }

    /// Bytes of the elements.
    pub fn bytes(&self) -> u64 {
        (self.len * self.dtype.size()) as u64
    }

    /// Bytes a binding or copy of the view covers: at least one element, rounded
    /// up to 4 bytes (WebGPU sizes bindings and copies in multiples of 4; the
    /// memory plan aligns every tensor's region, so the 2 bytes past an odd
    /// f16 tensor are its own padding).
    pub fn bound_bytes(&self) -> u64 {
        ((self.len.max(1) * self.dtype.size()) as u64).next_multiple_of(4)
    }

    pub(crate) fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.byte_offset(),
            // A zero-length tensor still binds one element so the layout stays valid.
            size: NonZeroU64::new(self.bound_bytes()),
        })
    }

    pub(crate) fn check_binding(&self, ctx: &GpuContext, kernel: &str) -> Result<()> {
        let bytes = self.bytes();
        if bytes > ctx.limits.max_storage_buffer_binding_size {
            return Err(Error::Shape(format!(
                "kernel `{kernel}`: a {bytes}-byte tensor exceeds this adapter's storage binding limit of {} bytes",
                ctx.limits.max_storage_buffer_binding_size
            )));
        }
        let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
        if !self.byte_offset().is_multiple_of(align) {
            return Err(Error::Shape(format!(
                "kernel `{kernel}`: binding offset {} bytes is not a multiple of {align}",
                self.byte_offset()
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

    /// Copies a view of 4-byte elements back to the CPU (waits for the GPU).
    pub fn read<T: bytemuck::Pod>(&self, view: BufView<'_>) -> Result<Vec<T>> {
        assert_eq!(std::mem::size_of::<T>(), 4, "GpuBuffer holds 4-byte elements");
        assert_eq!(view.dtype, DType::F32, "read_values reads f16 views");
        Ok(bytemuck::cast_slice(&self.read_bytes(view)?).to_vec())
    }

    /// Copies a view back to the CPU as f32 values, widening f16 ones (waits for the GPU).
    pub fn read_values(&self, view: BufView<'_>) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(view)?;
        Ok(match view.dtype {
            DType::F32 => bytemuck::cast_slice(&bytes).to_vec(),
            DType::F16 => bytes
                .chunks_exact(2)
                .take(view.len)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// The bytes of a view, rounded up to 4 (waits for the GPU).
    fn read_bytes(&self, view: BufView<'_>) -> Result<Vec<u8>> {
        if view.len == 0 {
            return Ok(Vec::new());
        }
        let bytes = view.bound_bytes();
        let staging = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(view.buffer, view.byte_offset(), &staging, 0, bytes);
        self.submit(encoder.finish());
        self.read_mapped(&staging, None)
    }

    /// The bytes of a `MAP_READ` buffer, mapped once submission `after` (None:
    /// everything submitted) has finished; the buffer is unmapped again.
    pub(crate) fn read_mapped(&self, buffer: &wgpu::Buffer, after: Option<wgpu::SubmissionIndex>) -> Result<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: after,
                timeout: None,
            })
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("readback callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer failed: {e}")))?;
        let data = {
            let mapped = buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading a mapped buffer failed: {e}")))?;
            mapped.to_vec()
        };
        buffer.unmap();
        Ok(data)
    }

    pub fn read_f32(&self, buf: &GpuBuffer) -> Result<Vec<f32>> {
        self.read(buf.view())
    }

    pub fn read_u32(&self, buf: &GpuBuffer) -> Result<Vec<u32>> {
        self.read(buf.view())
    }
}
