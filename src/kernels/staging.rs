//! Buffers a host-side call takes from the pool, uploads into, and gives back at the end.

use std::borrow::Cow;

use ndarray::ArrayViewD;

use crate::gpu::{GpuContext, Pooled};

/// An array's elements in row-major order: borrowed when it is contiguous, copied otherwise.
pub(crate) fn contiguous<'b>(a: &'b ArrayViewD<'_, f32>) -> Cow<'b, [f32]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// Buffers taken for one call; all go back to the pool at the end.
#[derive(Default)]
pub(crate) struct Taken(pub(crate) Vec<Pooled>);

impl GpuContext {
    pub(crate) fn upload<T: bytemuck::Pod>(
        &self,
        taken: &mut Taken,
        label: &str,
        data: &[T],
    ) -> usize {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let p = self.pool.take(
            &self.device,
            label,
            bytes.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            self.limits.max_buffer_size,
        );
        self.queue.write_buffer(&p.buffer, 0, bytes);
        taken.0.push(p);
        taken.0.len() - 1
    }

    pub(crate) fn scratch(
        &self,
        taken: &mut Taken,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> usize {
        let p = self.pool.take(
            &self.device,
            label,
            size,
            usage,
            self.limits.max_buffer_size,
        );
        taken.0.push(p);
        taken.0.len() - 1
    }
}
