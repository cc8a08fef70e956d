//! Buffers a host-side call takes from the pool, uploads into, and gives back at the end.

use std::borrow::Cow;

use ndarray::ArrayViewD;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Pooled, Readback};

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

/// The error scopes a call records under: validation and out-of-memory.
pub(crate) struct Scopes {
    validation: wgpu::ErrorScopeGuard,
    oom: wgpu::ErrorScopeGuard,
}

impl GpuContext {
    /// Opens the error scopes of one call; [`GpuContext::finish_call`] closes them.
    pub(crate) fn open_scopes(&self) -> Scopes {
        Scopes {
            validation: self.device.push_error_scope(wgpu::ErrorFilter::Validation),
            oom: self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
        }
    }

    /// Submits `encoder`, closes the call's error scopes, reads back `readbacks` (as u32
    /// words, in order) and gives every taken buffer back to the pool, whatever happens.
    ///
    /// # Errors
    /// [`Error::Gpu`] for a validation or out-of-memory error in the call; the readback's
    /// [`Error::Map`] or [`Error::Poll`].
    pub(crate) fn finish_call(
        &self,
        encoder: wgpu::CommandEncoder,
        scopes: Scopes,
        readbacks: Vec<Readback>,
        taken: Taken,
    ) -> Result<Vec<Vec<u32>>> {
        self.queue.submit([encoder.finish()]);
        // Scopes close in the reverse order of opening.
        let oom = pollster::block_on(scopes.oom.pop());
        let validation = pollster::block_on(scopes.validation.pop());
        let results = self.finish_readbacks::<u32>(readbacks);
        for p in taken.0 {
            self.pool.give_back(p);
        }
        if let Some(e) = validation.or(oom) {
            return Err(Error::Gpu(e.to_string()));
        }
        results
    }
}
