//! Staging readback: copy GPU buffers into mappable ones, map them all, wait once.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

use super::{GpuContext, Pooled};

/// How long to wait for map callbacks after the device reports the work done.
const MAP_TIMEOUT: Duration = Duration::from_secs(60);

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
        // Wait for every callback. When threads share the device, another thread's poll may
        // have collected these callbacks and fire them a little after our poll returns, so
        // keep polling (without blocking) until all have arrived. A buffer whose map never
        // settled must not go back to the pool: its pending map would break the next user.
        let mut status: Vec<Option<std::result::Result<(), wgpu::BufferAsyncError>>> =
            (0..readbacks.len()).map(|_| None).collect();
        let mut pending = readbacks.len();
        let deadline = Instant::now() + MAP_TIMEOUT;
        while pending > 0 {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok((i, res)) => {
                    status[i] = Some(res);
                    pending -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    let _ = self.device.poll(wgpu::PollType::Poll);
                }
                Err(_) => break,
            }
        }
        let settled: Vec<bool> = status.iter().map(Option::is_some).collect();
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
        for (r, settled) in readbacks.into_iter().zip(settled) {
            if settled {
                self.pool.give_back(r.staging);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}
