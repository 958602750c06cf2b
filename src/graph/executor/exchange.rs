//! The gradient's trip between data-parallel ranks: GPU → host → all-reduce →
//! GPU, through buffers made once (no allocation per step). The gradient is cut
//! into buckets; while one bucket is summed among the ranks, the next is
//! copied out of its mapped buffer, and each sum goes straight into the
//! mapped upload buffer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::parallel::{Buckets, Collective};

pub(crate) struct GradientExchange {
    /// One readable buffer per bucket, filled by the gradient pass.
    download: Vec<wgpu::Buffer>,
    /// The summed gradient, written while mapped and copied into the
    /// gradient buffer by the update pass.
    upload: wgpu::Buffer,
    /// True while `upload` is mapped (it is remapped after each update pass).
    upload_mapped: Arc<AtomicBool>,
    buckets: Buckets,
    /// Each bucket's elements in the gradient (`buckets` is lent to the all-reduce).
    ranges: Vec<std::ops::Range<usize>>,
    /// One bucket's sum times the scale, on its way into the write-only mapping.
    scaled: Vec<f32>,
}

fn bytes(range: &std::ops::Range<usize>) -> (u64, u64) {
    (range.start as u64 * 4, range.len() as u64 * 4)
}

impl GradientExchange {
    /// Buffers for a gradient of `len` elements in buckets of `bucket_len`.
    pub fn new(ctx: &GpuContext, len: usize, bucket_len: usize) -> GradientExchange {
        let buckets = Buckets::new(len, bucket_len.max(64));
        let download = (0..buckets.count())
            .map(|k| {
                ctx.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gradient download"),
                    size: bytes(&buckets.range(k)).1.max(4),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let upload = ctx.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gradient upload"),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        GradientExchange {
            download,
            upload,
            upload_mapped: Arc::new(AtomicBool::new(true)),
            scaled: vec![0.0; bucket_len.max(64).min(len.max(1))],
            ranges: (0..buckets.count()).map(|k| buckets.range(k)).collect(),
            buckets,
        }
    }

    /// Records the copy of each bucket of `grads` into its download buffer.
    pub fn record_download(&self, encoder: &mut wgpu::CommandEncoder, grads: &wgpu::Buffer) {
        for (dst, range) in self.download.iter().zip(&self.ranges) {
            let (offset, size) = bytes(range);
            encoder.copy_buffer_to_buffer(grads, offset, dst, 0, size);
        }
    }

    /// After the gradient pass has finished: sums every bucket over the ranks
    /// and writes `scale` times the sum into the upload buffer.
    pub fn reduce(&mut self, ctx: &GpuContext, ranks: &mut dyn Collective, scale: f32) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        for (k, b) in self.download.iter().enumerate() {
            let tx = tx.clone();
            b.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send((k, r));
            });
        }
        drop(tx);
        // The upload buffer was given back for mapping after the last update pass.
        while !self.upload_mapped.load(Ordering::Acquire) {
            ctx.wait()?;
        }
        ctx.wait()?;
        for (_, r) in rx.iter() {
            r.map_err(|e| Error::Gpu(format!("mapping a gradient bucket failed: {e}")))?;
        }
        let (download, scaled, ranges) = (&self.download, &mut self.scaled, &self.ranges);
        let mut view = self
            .upload
            .slice(..)
            .get_mapped_range_mut()
            .map_err(|e| Error::Gpu(format!("writing the summed gradient failed: {e}")))?;
        let mut fill = |k: usize, send: &mut [f32]| -> Result<()> {
            {
                let mapped = download[k]
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu(format!("reading a gradient bucket failed: {e}")))?;
                send.copy_from_slice(&bytemuck::cast_slice(&mapped)[..send.len()]);
            }
            download[k].unmap();
            Ok(())
        };
        let mut drain = |k: usize, sum: &[f32]| -> Result<()> {
            let scaled = &mut scaled[..sum.len()];
            for (dst, &s) in scaled.iter_mut().zip(sum) {
                *dst = s * scale;
            }
            let (offset, size) = bytes(&ranges[k]);
            view.slice(offset as usize..(offset + size) as usize)
                .copy_from_slice(bytemuck::cast_slice(scaled));
            Ok(())
        };
        ranks.all_reduce_buckets(&mut self.buckets, &mut fill, &mut drain)
    }

    /// Records the copy of the summed gradient into `grads` (after `reduce`).
    pub fn record_upload(&self, encoder: &mut wgpu::CommandEncoder, grads: &wgpu::Buffer) {
        self.upload.unmap();
        self.upload_mapped.store(false, Ordering::Release);
        encoder.copy_buffer_to_buffer(&self.upload, 0, grads, 0, self.upload.size());
    }

    /// After the submit that copies from the upload buffer: map it again for the next step.
    pub fn recycle(&self) {
        let flag = self.upload_mapped.clone();
        self.upload.slice(..).map_async(wgpu::MapMode::Write, move |r| {
            if r.is_ok() {
                flag.store(true, Ordering::Release);
            }
        });
    }
}
