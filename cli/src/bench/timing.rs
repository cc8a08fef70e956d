//! [`GpuTimer`]: the device time of a recorded piece of work, for benchmarks.
//!
//! With `Features::TIMESTAMP_QUERY` (which [`GpuContext::new`] requests where the adapter has
//! it), the work is bracketed by two timestamps written on the device's own clock: an empty
//! compute pass that writes timestamp 0 at its beginning, the caller's commands, and an empty
//! compute pass that writes timestamp 1 at its end, all in one encoder and one submission. The
//! two timestamps are resolved into a buffer, copied to a mappable one, read back, and
//! converted with [`wgpu::Queue::get_timestamp_period`] (nanoseconds per tick). Pass-boundary
//! timestamps need only `TIMESTAMP_QUERY` (not `TIMESTAMP_QUERY_INSIDE_ENCODERS`, which
//! WebGPU lacks); on Vulkan wgpu writes both at `BOTTOM_OF_PIPE`, so timestamp 0 is taken once
//! the work submitted before has finished, and timestamp 1 once the caller's commands have.
//! Submission, scheduling and the readback are outside the interval.
//!
//! Without the feature (a [`GpuContext::from_device`] device created without it, or a backend
//! without timestamps), or with [`GpuTimer::wall_clock`], the timer waits for the device to be
//! idle, then measures the host's clock around one submission and a blocking wait for it: an
//! upper bound that includes the submission and wake-up latency (tens of microseconds), which
//! matters only for small kernels. [`GpuTimer::method`] says which is in use.
//!
//! ```no_run
//! use wgpu_loss_cli::bench::{CopyKernel, GpuTimer};
//! use wgpu_loss::GpuContext;
//!
//! let ctx = GpuContext::new()?;
//! let copy = CopyKernel::new(&ctx, 1 << 22)?;
//! let mut timer = GpuTimer::new(&ctx);
//! let t = timer.time(&ctx, |encoder| {
//!     copy.record(encoder);
//!     Ok(())
//! })?;
//! eprintln!("copy: {t:?} ({})", timer.method());
//! # Ok::<(), wgpu_loss::Error>(())
//! ```

use std::fmt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wgpu_loss::{Error, Result};

use wgpu_loss::GpuContext;

/// How long to wait for the timestamps' map callback after the device reports the work done.
const MAP_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`GpuTimer`] measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimingMethod {
    /// Timestamp queries on the device's clock around the recorded work.
    Timestamps,
    /// The host's clock around one submission and a blocking wait for the device.
    WallClock,
}

impl TimingMethod {
    /// A short name for tables and JSON: `"timestamps"` or `"wall-clock"`.
    pub fn name(self) -> &'static str {
        match self {
            TimingMethod::Timestamps => "timestamps",
            TimingMethod::WallClock => "wall-clock",
        }
    }

    /// A sentence fragment that says what is measured.
    pub fn describe(self) -> &'static str {
        match self {
            TimingMethod::Timestamps => {
                "GPU timestamp queries around the recorded commands (device clock; \
                 submission and readback excluded)"
            }
            TimingMethod::WallClock => {
                "host clock around one submission and a blocking wait (no TIMESTAMP_QUERY; \
                 includes submission latency)"
            }
        }
    }
}

impl fmt::Display for TimingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The query set and buffers of the timestamp method, made once per timer.
struct Stamps {
    query_set: wgpu::QuerySet,
    /// `QUERY_RESOLVE | COPY_SRC`, two u64 ticks.
    resolve: wgpu::Buffer,
    /// `MAP_READ | COPY_DST`, two u64 ticks.
    readback: wgpu::Buffer,
    /// Nanoseconds per tick.
    period: f32,
}

/// Bytes of the two resolved timestamps.
const STAMP_BYTES: u64 = 2 * std::mem::size_of::<u64>() as u64;

/// Times recorded GPU work, one submission at a time, for benchmarks.
///
/// With `Features::TIMESTAMP_QUERY` (which [`GpuContext::new`] requests where the adapter has
/// it), the work is bracketed by two timestamps written on the device's own clock: an empty
/// compute pass that writes timestamp 0 at its beginning, the caller's commands, and an empty
/// compute pass that writes timestamp 1 at its end, all in one encoder and one submission. The
/// two timestamps are resolved into a buffer, copied to a mappable one, read back, and
/// converted with [`wgpu::Queue::get_timestamp_period`] (nanoseconds per tick). Pass-boundary
/// timestamps need only `TIMESTAMP_QUERY` (not `TIMESTAMP_QUERY_INSIDE_ENCODERS`, which
/// WebGPU lacks); on Vulkan wgpu writes both at `BOTTOM_OF_PIPE`, so timestamp 0 is taken once
/// the work submitted before has finished, and timestamp 1 once the caller's commands have.
/// Submission, scheduling and the readback are outside the interval.
///
/// Without the feature (a [`GpuContext::from_device`] device created without it, or a backend
/// without timestamps), or with [`GpuTimer::wall_clock`], the timer waits for the device to be
/// idle, then measures the host's clock around one submission and a blocking wait for it: an
/// upper bound that includes the submission and wake-up latency (tens of microseconds), which
/// matters only for small kernels. [`GpuTimer::method`] says which is in use.
///
/// ```no_run
/// use wgpu_loss_cli::bench::{CopyKernel, GpuTimer};
/// use wgpu_loss::GpuContext;
///
/// let ctx = GpuContext::new()?;
/// let copy = CopyKernel::new(&ctx, 1 << 22)?;
/// let mut timer = GpuTimer::new(&ctx);
/// let t = timer.time(&ctx, |encoder| {
///     copy.record(encoder);
///     Ok(())
/// })?;
/// eprintln!("copy: {t:?} ({})", timer.method());
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub struct GpuTimer {
    stamps: Option<Stamps>,
}

impl fmt::Debug for GpuTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuTimer")
            .field("method", &self.method())
            .field("period_ns", &self.stamps.as_ref().map(|s| s.period))
            .finish()
    }
}

/// The duration between two timestamps of `period` nanoseconds per tick; zero if the clock did
/// not advance (or went back: some drivers' clocks are not monotonic across power states).
pub(crate) fn ticks_to_duration(begin: u64, end: u64, period: f32) -> Duration {
    let ns = end.saturating_sub(begin) as f64 * f64::from(period);
    if ns.is_finite() && ns > 0.0 {
        Duration::from_secs_f64(ns * 1e-9)
    } else {
        Duration::ZERO
    }
}

impl GpuTimer {
    /// Timestamps where `ctx`'s device has `Features::TIMESTAMP_QUERY`, the wall clock
    /// otherwise.
    pub fn new(ctx: &GpuContext) -> Self {
        if !ctx.has_timestamps() {
            return Self::wall_clock();
        }
        let device = ctx.device();
        let query_set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("wgpu-loss timer"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-loss timer resolve"),
            size: STAMP_BYTES,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-loss timer readback"),
            size: STAMP_BYTES,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuTimer {
            stamps: Some(Stamps {
                query_set,
                resolve,
                readback,
                period: ctx.queue().get_timestamp_period(),
            }),
        }
    }

    /// A timer that always uses the wall clock (submit, then wait), even where timestamps
    /// exist: for comparing the two methods.
    pub fn wall_clock() -> Self {
        GpuTimer { stamps: None }
    }

    /// The method in use.
    pub fn method(&self) -> TimingMethod {
        if self.stamps.is_some() {
            TimingMethod::Timestamps
        } else {
            TimingMethod::WallClock
        }
    }

    /// Nanoseconds per timestamp tick (`None` for the wall clock).
    pub fn period_ns(&self) -> Option<f32> {
        self.stamps.as_ref().map(|s| s.period)
    }

    /// Records what `record` puts into a fresh encoder, submits it alone, waits for it, and
    /// returns the time the device took (see [`GpuTimer`] for what is inside the
    /// interval). Blocks until the device is done.
    ///
    /// # Errors
    /// What `record` returns; [`Error::Gpu`] for a validation error in the submission;
    /// [`Error::Poll`], [`Error::Map`] when waiting or reading the timestamps fails.
    pub fn time(
        &mut self,
        ctx: &GpuContext,
        record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<()>,
    ) -> Result<Duration> {
        let _serial = ctx.exclusive();
        let device = ctx.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("wgpu-loss timed work"),
        });
        let bracket = |encoder: &mut wgpu::CommandEncoder, s: &Stamps, index: u32| {
            let begin = index == 0;
            // An empty pass: wgpu writes the timestamp at its beginning or end.
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(if begin {
                    "wgpu-loss timer begin"
                } else {
                    "wgpu-loss timer end"
                }),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &s.query_set,
                    beginning_of_pass_write_index: begin.then_some(index),
                    end_of_pass_write_index: (!begin).then_some(index),
                }),
            });
        };
        if let Some(s) = &self.stamps {
            bracket(&mut encoder, s, 0);
        }
        let recorded = record(&mut encoder);
        if let Some(s) = &self.stamps {
            bracket(&mut encoder, s, 1);
            encoder.resolve_query_set(&s.query_set, 0..2, &s.resolve, 0);
            encoder.copy_buffer_to_buffer(&s.resolve, 0, &s.readback, 0, STAMP_BYTES);
        }
        let commands = encoder.finish();
        let validation = pollster::block_on(scope.pop());
        recorded?;
        if let Some(e) = validation {
            return Err(Error::Gpu(format!("recording timed work: {e}")));
        }
        let Some(s) = &self.stamps else {
            // Wall clock: start from an idle device, so earlier work is not counted.
            device.poll(wgpu::PollType::wait_indefinitely())?;
            let t0 = Instant::now();
            ctx.queue().submit([commands]);
            device.poll(wgpu::PollType::wait_indefinitely())?;
            return Ok(t0.elapsed());
        };
        ctx.queue().submit([commands]);
        let (tx, rx) = mpsc::channel();
        s.readback
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| {
                // The receiver waits below until the callback has run; a failed send cannot happen.
                let _ = tx.send(r);
            });
        let polled = device.poll(wgpu::PollType::wait_indefinitely());
        // Another thread's poll may have collected the callback and run it a little later.
        let deadline = Instant::now() + MAP_TIMEOUT;
        let mapped = loop {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(r) => break Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    let _ = device.poll(wgpu::PollType::Poll);
                }
                Err(_) => break None,
            }
        };
        let Some(mapped) = mapped else {
            // The map never settled: this timer's readback buffer cannot be reused, so it
            // falls back to the wall clock from now on.
            self.stamps = None;
            polled?;
            return Err(Error::Gpu("the timestamps were never mapped".into()));
        };
        polled?;
        mapped?;
        let ticks: Vec<u64> = {
            let view = s
                .readback
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("mapping the timestamps: {e}")))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        s.readback.unmap();
        Ok(ticks_to_duration(ticks[0], ticks[1], s.period))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_with_the_period() {
        // 1 ns per tick (Vulkan on llvmpipe, most desktop GPUs).
        assert_eq!(ticks_to_duration(100, 1_100, 1.0), Duration::from_micros(1));
        // 83.333 ns per tick (a 12 MHz clock): 12 000 ticks are 1 ms, to a nanosecond.
        let d = ticks_to_duration(5, 12_005, 83.333_336);
        assert!(
            (d.as_secs_f64() - 1e-3).abs() < 1e-9,
            "12 000 ticks of 83.3 ns: {d:?}"
        );
        // Large tick values (a clock that started long ago) lose nothing.
        let base = 1u64 << 60;
        assert_eq!(
            ticks_to_duration(base, base + 2_500_000, 1.0),
            Duration::from_micros(2_500)
        );
    }

    #[test]
    fn ticks_that_do_not_advance_are_zero() {
        assert_eq!(ticks_to_duration(7, 7, 1.0), Duration::ZERO);
        assert_eq!(ticks_to_duration(9, 3, 1.0), Duration::ZERO);
        assert_eq!(ticks_to_duration(0, 10, 0.0), Duration::ZERO);
        assert_eq!(ticks_to_duration(0, 10, f32::NAN), Duration::ZERO);
    }

    #[test]
    fn method_names() {
        assert_eq!(TimingMethod::Timestamps.to_string(), "timestamps");
        assert_eq!(TimingMethod::WallClock.name(), "wall-clock");
        assert_eq!(GpuTimer::wall_clock().method(), TimingMethod::WallClock);
        assert_eq!(GpuTimer::wall_clock().period_ns(), None);
    }
}
