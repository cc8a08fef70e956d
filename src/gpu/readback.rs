//! The host side of staging transfers: mapping a set of staging buffers and waiting for them
//! ([`GpuContext::map_all`]), and the host copies into and out of mapped ranges, on every core
//! when they are large. [`GpuContext::stream`] (`src/gpu/stream.rs`) drives them.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::GpuContext;

/// How long to wait for map callbacks after the device reports the work done.
const MAP_TIMEOUT: Duration = Duration::from_secs(60);

/// Host copies of at least this many bytes are split over the rayon pool.
const PARALLEL_COPY_BYTES: usize = 4 << 20;

/// The piece each rayon task copies in a parallel host copy.
const COPY_PIECE_BYTES: usize = 1 << 20;

/// How each map of [`GpuContext::map_all`] settled: `None` if its callback never came.
type MapStatus = Option<std::result::Result<(), wgpu::BufferAsyncError>>;

impl GpuContext {
    /// Requests a map of the first `size` bytes of each buffer, polls the device once with
    /// `poll`, and waits for every callback. When threads share the device, another thread's
    /// poll may have collected these callbacks and fire them a little after our poll returns,
    /// so keep polling (without blocking) until all have arrived. A buffer whose map never
    /// settled (`None`) must not go back to the pool: its pending map would break the next
    /// user.
    pub(crate) fn map_all(
        &self,
        slices: &[(&wgpu::Buffer, u64)],
        mode: wgpu::MapMode,
        poll: wgpu::PollType,
    ) -> (
        std::result::Result<wgpu::PollStatus, wgpu::PollError>,
        Vec<MapStatus>,
    ) {
        let (tx, rx) = mpsc::channel();
        for (i, (buffer, size)) in slices.iter().enumerate() {
            let tx = tx.clone();
            buffer.slice(..*size).map_async(mode, move |res| {
                // The receiver outlives every callback; a failed send cannot happen.
                let _ = tx.send((i, res));
            });
        }
        drop(tx);
        let polled = self.device.poll(poll);
        let mut status: Vec<MapStatus> = (0..slices.len()).map(|_| None).collect();
        let mut pending = slices.len();
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
        (polled, status)
    }
}

/// Copies `src` into the mapped range `dst` (of the same length), in 1 MiB pieces on every
/// core when it is large.
pub(crate) fn fill(mut dst: wgpu::WriteOnly<'_, [u8]>, src: &[u8]) {
    if src.len() < PARALLEL_COPY_BYTES {
        dst.copy_from_slice(src);
        return;
    }
    // Whole pieces (sized, so they can move to other threads), then the remainder here.
    let (pieces, mut rest) = dst.into_chunks::<COPY_PIECE_BYTES>();
    let pieces: Vec<wgpu::WriteOnly<'_, [u8; COPY_PIECE_BYTES]>> = pieces.into_iter().collect();
    let whole = pieces.len() * COPY_PIECE_BYTES;
    pieces
        .into_par_iter()
        .zip(src[..whole].par_chunks_exact(COPY_PIECE_BYTES))
        .for_each(|(d, s)| wgpu::WriteOnly::<'_, [u8]>::from(d).copy_from_slice(s));
    rest.copy_from_slice(&src[whole..]);
}

/// Appends the f32s of `bytes` (a mapped range) to `out`: one copy, spread over every core
/// when it is large. No intermediate vector, and `out`'s new elements are written once.
pub(crate) fn extend_f32(out: &mut Vec<f32>, bytes: &[u8]) {
    match bytemuck::try_cast_slice::<u8, f32>(bytes) {
        Ok(src) if bytes.len() >= PARALLEL_COPY_BYTES => {
            out.par_extend(src.par_iter().copied().with_min_len(COPY_PIECE_BYTES / 4));
        }
        Ok(src) => out.extend_from_slice(src),
        // Mapped ranges are aligned; this is only a fallback.
        Err(_) => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        ),
    }
}

/// Writes the f32s of `bytes` (a mapped range) over the start of `out`, as [`extend_f32`]
/// appends them: one copy, spread over every core when it is large. Returns how many were
/// written (all of them, unless `out` is shorter).
pub(crate) fn write_f32(out: &mut [f32], bytes: &[u8]) -> usize {
    let n = (bytes.len() / 4).min(out.len());
    let dst = &mut out[..n];
    match bytemuck::try_cast_slice::<u8, f32>(&bytes[..4 * n]) {
        Ok(src) if bytes.len() >= PARALLEL_COPY_BYTES => {
            dst.par_chunks_mut(COPY_PIECE_BYTES / 4)
                .zip(src.par_chunks(COPY_PIECE_BYTES / 4))
                .for_each(|(d, s)| d.copy_from_slice(s));
        }
        Ok(src) => dst.copy_from_slice(src),
        // Mapped ranges are aligned; this is only a fallback.
        Err(_) => {
            for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                *d = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
    n
}

/// The 32-bit words of `bytes` (a small mapped range).
pub(crate) fn words(bytes: &[u8]) -> Vec<u32> {
    bytemuck::pod_collect_to_vec(bytes)
}
