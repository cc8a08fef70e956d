//! Staging readback: copy GPU buffers into mappable ones, map them all, wait once.

use std::sync::mpsc;

use crate::error::{Error, Result};

use super::{GpuContext, Pooled};

/// A pending copy of `size` bytes from a GPU buffer into a staging buffer.
pub(crate) struct Readback {
    staging: Pooled,
    size: u64,
}

impl GpuContext {
    /// Records a copy of the first `size` bytes of `src` into a staging buffer.
    pub(crate) fn record_readback(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        size: u64,
    ) -> Readback {
        let staging = self.pool.take(
            &self.device,
            "wgpu-loss staging",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            self.limits.max_buffer_size,
        );
        encoder.copy_buffer_to_buffer(src, 0, &staging.buffer, 0, size);
        Readback { staging, size }
    }

    /// Maps every staging buffer (after the submission that filled them), waits for the
    /// device once, and returns their contents as `T`s, in order. The staging buffers go
    /// back to the pool whatever happens.
    pub(crate) fn finish_readbacks<T: bytemuck::Pod>(
        &self,
        readbacks: Vec<Readback>,
    ) -> Result<Vec<Vec<T>>> {
        let (tx, rx) = mpsc::channel();
        for (i, r) in readbacks.iter().enumerate() {
            let tx = tx.clone();
            r.staging
                .buffer
                .slice(..r.size)
                .map_async(wgpu::MapMode::Read, move |res| {
                    // The receiver outlives every callback; a failed send cannot happen.
                    let _ = tx.send((i, res));
                });
        }
        drop(tx);
        let polled = self.device.poll(wgpu::PollType::wait_indefinitely());
        let mut status: Vec<Option<std::result::Result<(), wgpu::BufferAsyncError>>> =
            (0..readbacks.len()).map(|_| None).collect();
        for (i, res) in rx.try_iter() {
            status[i] = Some(res);
        }
        let mut out = Vec::with_capacity(readbacks.len());
        let mut first_err: Option<Error> = polled.err().map(Error::from);
        for (r, st) in readbacks.iter().zip(status) {
            match st {
                Some(Ok(())) => {
                    if first_err.is_none() {
                        match r.staging.buffer.slice(..r.size).get_mapped_range() {
                            Ok(view) => out.push(bytemuck::pod_collect_to_vec::<u8, T>(&view)),
                            Err(e) => {
                                first_err =
                                    Some(Error::Gpu(format!("mapping a result buffer: {e}")))
                            }
                        }
                    }
                    r.staging.buffer.unmap();
                }
                Some(Err(e)) => {
                    first_err.get_or_insert(Error::Map(e));
                }
                None => {
                    first_err.get_or_insert(Error::Gpu("a result buffer was never mapped".into()));
                }
            }
        }
        for r in readbacks {
            self.pool.give_back(r.staging);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}
