//! Buffers reused from call to call, keyed by (size class, usage), so repeated calls of the
//! same size allocate nothing on the device.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A buffer taken from the pool; give it back with [`BufferPool::give_back`].
pub(crate) struct Pooled {
    pub(crate) buffer: wgpu::Buffer,
    key: (u64, wgpu::BufferUsages),
}

#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>>,
}

impl BufferPool {
    /// A buffer of at least `size` bytes with exactly `usage`. Sizes are rounded up to a power
    /// of two (at least 256 bytes, at most `max_size`) so that nearby sizes share buffers.
    pub(crate) fn take(
        &self,
        device: &wgpu::Device,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
        max_size: u64,
    ) -> Pooled {
        let class = size.max(256).next_power_of_two().min(max_size).max(size);
        let key = (class, usage);
        let reused = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&key)
            .and_then(Vec::pop);
        let buffer = reused.unwrap_or_else(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: class,
                usage,
                mapped_at_creation: false,
            })
        });
        Pooled { buffer, key }
    }

    pub(crate) fn give_back(&self, pooled: Pooled) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(pooled.key)
            .or_default()
            .push(pooled.buffer);
    }

    pub(crate) fn clear(&self) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
