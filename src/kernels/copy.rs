//! Host side of the copy kernel (`shaders/copy.wgsl`): the adapter's memory bandwidth, the
//! ceiling `wgpu-loss bench` compares the loss kernels with.
//!
//! Timing is by whole submissions: one dispatch, submitted, then a blocking wait for the
//! device, per repeat; the median is reported. The traffic counted is one read and one write
//! of the buffer.

use std::time::{Duration, Instant};

use super::elementwise::workgroups_for;
use super::{Kernel, Slot};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// Mirrors `Params` in `shaders/copy.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct CopyParams {
    n4: u32,
    _pad: [u32; 3],
}

/// One measurement of the copy kernel.
#[derive(Clone, Copy, Debug)]
pub struct CopyTiming {
    /// Bytes read plus bytes written by one dispatch.
    pub bytes_moved: u64,
    /// Median time of one dispatch (submission to completion).
    pub median: Duration,
}

impl CopyTiming {
    /// Effective bandwidth in GB/s (10^9 bytes per second).
    pub fn gbps(&self) -> f64 {
        self.bytes_moved as f64 / self.median.as_secs_f64().max(1e-12) / 1e9
    }
}

impl GpuContext {
    /// Times the copy kernel over `elements` f32 values (rounded down to a multiple of 4 and
    /// capped at one storage binding), `repeats` times after one warm-up; see [`CopyTiming`].
    ///
    /// # Errors
    /// [`Error::Empty`] for fewer than 4 elements; [`Error::Gpu`] or a device error if the
    /// dispatch fails.
    pub fn copy_bandwidth(&self, elements: usize, repeats: usize) -> Result<CopyTiming> {
        let n4 = (elements.min(self.max_chunk_elements) / 4) as u32;
        if n4 == 0 {
            return Err(Error::Empty {
                shape: vec![elements],
            });
        }
        let pipeline = self.pipeline(Kernel::Copy)?;
        let bytes = u64::from(n4) * 16;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let make = |label: &str, usage: wgpu::BufferUsages| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let src = make(
            "wgpu-loss copy src",
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        let dst = make("wgpu-loss copy dst", wgpu::BufferUsages::STORAGE);
        // Non-zero contents, so no driver can shortcut a copy of a fresh (zeroed) buffer.
        let fill: Vec<f32> = (0..n4 as usize * 4).map(|i| i as f32).collect();
        self.queue
            .write_buffer(&src, 0, bytemuck::cast_slice(&fill));
        drop(fill);
        let params = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-loss copy params"),
            size: std::mem::size_of::<CopyParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(
            &params,
            0,
            bytemuck::bytes_of(&CopyParams {
                n4,
                ..Default::default()
            }),
        );
        let entries: Vec<wgpu::BindGroupEntry<'_>> = Kernel::Copy
            .bindings()
            .iter()
            .map(|b| wgpu::BindGroupEntry {
                binding: b.index,
                resource: match b.slot {
                    Slot::Params => params.as_entire_binding(),
                    Slot::Pred => src.as_entire_binding(),
                    _ => dst.as_entire_binding(),
                },
            })
            .collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-loss copy"),
            layout: &pipeline.layout,
            entries: &entries,
        });
        let workgroups = workgroups_for(n4, self.limits.max_compute_workgroups_per_dimension)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("setting up the copy kernel: {e}")));
        }
        let run = || -> Result<Duration> {
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("wgpu-loss copy"),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("wgpu-loss copy"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline.pipeline);
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups(workgroups, 1, 1);
            }
            let t0 = Instant::now();
            self.queue.submit([encoder.finish()]);
            self.device.poll(wgpu::PollType::wait_indefinitely())?;
            Ok(t0.elapsed())
        };
        // Warm-up: the upload above, and the first run of the pipeline.
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        run()?;
        let mut times = (0..repeats.max(1))
            .map(|_| run())
            .collect::<Result<Vec<_>>>()?;
        times.sort();
        Ok(CopyTiming {
            bytes_moved: 2 * bytes,
            median: times[times.len() / 2],
        })
    }
}
