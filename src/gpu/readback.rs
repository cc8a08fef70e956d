//! Staging transfers of the host-array path, through buffers kept in the pool: uploads are
//! written into mapped staging buffers and copied on the device; readbacks copy GPU buffers
//! into mappable ones, map them all, wait once, and hand each mapped range to the caller.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::error::{Error, Result};

use super::{GpuContext, Pooled};

/// How long to wait for map callbacks after the device reports the work done.
const MAP_TIMEOUT: Duration = Duration::from_secs(60);

/// Host copies of at least this many bytes are split over the rayon pool.
const PARALLEL_COPY_BYTES: usize = 4 << 20;

/// The piece each rayon task copies in a parallel host copy.
const COPY_PIECE_BYTES: usize = 1 << 20;

/// A pending copy of `size` bytes from a GPU buffer into a staging buffer.
pub(crate) struct Readback {
    staging: Pooled,
    size: u64,
}

/// A pending upload: `bytes` go into a staging buffer, then into the buffer `dst` (an index
/// into the call's taken buffers) at the start of the call's encoder.
pub(crate) struct Upload<'d> {
    staging: Pooled,
    dst: usize,
    bytes: &'d [u8],
}

/// How each map of [`GpuContext::map_all`] settled: `None` if its callback never came.
type MapStatus = Option<std::result::Result<(), wgpu::BufferAsyncError>>;

impl GpuContext {
    /// Takes a staging buffer for `bytes`, to be copied into the buffer `dst` by
    /// [`GpuContext::write_uploads`]. Unlike `Queue::write_buffer`, which allocates fresh staging
    /// memory on every write, the staging buffer comes from (and goes back to) the pool.
    pub(crate) fn stage_upload<'d>(&self, dst: usize, bytes: &'d [u8]) -> Upload<'d> {
        let staging = self.pool.take(
            &self.device,
            "wgpu-loss upload staging",
            bytes.len() as u64,
            wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            self.limits.max_buffer_size,
        );
        Upload {
            staging,
            dst,
            bytes,
        }
    }

    /// Maps every upload's staging buffer, copies its bytes in (on every core when large),
    /// unmaps it, and records its copy into its destination (one of `taken`) in `encoder`.
    /// The staging buffers join `taken`, so they go back to the pool when the call ends.
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::Poll`] or [`Error::Gpu`] when a staging buffer cannot be
    /// mapped; its buffers are then dropped, not pooled.
    pub(crate) fn write_uploads(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        uploads: Vec<Upload<'_>>,
        taken: &mut Vec<Pooled>,
    ) -> Result<()> {
        let slices: Vec<(&wgpu::Buffer, u64)> = uploads
            .iter()
            .map(|u| (&u.staging.buffer, u.bytes.len() as u64))
            .collect();
        // The staging buffers are idle (the pool holds only buffers whose call has finished),
        // so a non-blocking poll maps them.
        let (polled, status) = self.map_all(&slices, wgpu::MapMode::Write, wgpu::PollType::Poll);
        let mut first_err: Option<Error> = polled.err().map(Error::from);
        for (u, st) in uploads.iter().zip(&status) {
            match st {
                Some(Ok(())) => {
                    if first_err.is_none() {
                        let size = u.bytes.len() as u64;
                        match u.staging.buffer.slice(..size).get_mapped_range_mut() {
                            Ok(mut view) => fill(view.slice(..), u.bytes),
                            Err(e) => {
                                first_err =
                                    Some(Error::Gpu(format!("mapping an upload buffer: {e}")))
                            }
                        }
                    }
                    u.staging.buffer.unmap();
                }
                Some(Err(e)) => {
                    first_err.get_or_insert(Error::Map(e.clone()));
                }
                None => {
                    first_err.get_or_insert(Error::Gpu("an upload buffer was never mapped".into()));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for u in uploads {
            let size = u.bytes.len() as u64;
            encoder.copy_buffer_to_buffer(&u.staging.buffer, 0, &taken[u.dst].buffer, 0, size);
            taken.push(u.staging);
        }
        Ok(())
    }

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
    /// device once, and hands each mapped range to `sink` with its index, in order (the
    /// range is unmapped when `sink` returns, so it copies what it keeps). The staging
    /// buffers go back to the pool whatever happens.
    pub(crate) fn finish_readbacks(
        &self,
        readbacks: Vec<Readback>,
        sink: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<()> {
        let slices: Vec<(&wgpu::Buffer, u64)> = readbacks
            .iter()
            .map(|r| (&r.staging.buffer, r.size))
            .collect();
        let (polled, status) = self.map_all(
            &slices,
            wgpu::MapMode::Read,
            wgpu::PollType::wait_indefinitely(),
        );
        let settled: Vec<bool> = status.iter().map(Option::is_some).collect();
        let mut first_err: Option<Error> = polled.err().map(Error::from);
        for (i, (r, st)) in readbacks.iter().zip(status).enumerate() {
            match st {
                Some(Ok(())) => {
                    if first_err.is_none() {
                        match r.staging.buffer.slice(..r.size).get_mapped_range() {
                            Ok(view) => sink(i, &view),
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
            None => Ok(()),
        }
    }

    /// Requests a map of the first `size` bytes of each buffer, polls the device once with
    /// `poll`, and waits for every callback. When threads share the device, another thread's
    /// poll may have collected these callbacks and fire them a little after our poll returns,
    /// so keep polling (without blocking) until all have arrived. A buffer whose map never
    /// settled (`None`) must not go back to the pool: its pending map would break the next
    /// user.
    fn map_all(
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
fn fill(mut dst: wgpu::WriteOnly<'_, [u8]>, src: &[u8]) {
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

/// The 32-bit words of `bytes` (a small mapped range).
pub(crate) fn words(bytes: &[u8]) -> Vec<u32> {
    bytemuck::pod_collect_to_vec(bytes)
}
