//! The caller's buffers of the tests of the GPU-resident and sharded APIs: uploaded, zeroed
//! and read back.

use wgpu::util::DeviceExt;
use wgpu_loss::GpuContext;
use wgpu_loss::resident::{GpuArray, ValueReader};

/// Storage that can be copied in and read back.
pub const STORAGE_IO: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A buffer holding `data`.
pub fn upload<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: STORAGE_IO,
        })
}

/// A buffer of `elems` 32-bit words (at least one), zeroed.
pub fn zeros(ctx: &GpuContext, label: &str, elems: usize) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (elems.max(1) * 4) as u64,
        usage: STORAGE_IO,
        mapped_at_creation: false,
    })
}

/// The first `elems` f32 of `buf`, read back (blocking).
pub fn read(ctx: &GpuContext, buf: &wgpu::Buffer, elems: usize) -> Vec<f32> {
    ValueReader::new(ctx.device(), elems)
        .read_blocking(ctx.device(), ctx.queue(), GpuArray::from(buf))
        .expect("read back")
}
