//! Host side of the copy kernel (`copy.wgsl`, beside this file): the adapter's memory bandwidth, the
//! ceiling `wgpu-loss bench` compares the loss kernels with.
//!
//! [`CopyKernel::new`] sets the kernel up once (buffers filled, bind group built);
//! [`CopyKernel::record`] records one dispatch into an encoder, so the kernel is timed exactly
//! like the losses: by a [`GpuTimer`] around the recorded commands, with timestamp queries
//! where the device has them (see [`GpuTimer`]). The traffic counted is one read
//! and one write of the buffer.
//!
//! The grid: enough workgroups of 256 lanes for [`COPY_VEC4S_PER_LANE`] vec4s per lane (a
//! grid-stride loop of that many trips), at most the device's limit per dimension.
//! Measured on llvmpipe (2026-11-22, timestamps, each grid timed alternately with the others,
//! `docs/TUNING.md`): over 64 MiB, 4 vec4s per lane (4096 workgroups) beat 1 (16 384) by
//! 1.32×, 2 by 1.17×, 8 by 1.14× and 16 by 3.0×; over 16 MiB, 4 beat 1 by 1.24×. The old
//! rule (one vec4 per lane up to 4096 workgroups) was 4 per lane at 64 MiB, 1 below.

use std::time::Duration;

use wgpu_loss::{Error, GpuContext, Result};

use super::{GpuTimer, TimingMethod};

/// The kernel: self-contained WGSL, built with the device's own pipeline layout.
const SHADER: &str = include_str!("copy.wgsl");

/// Invocations per workgroup (`WG` in the shader).
const WORKGROUP_SIZE: u32 = 256;

/// The most grid-stride trips a lane may take, as the library's kernels keep to: far below
/// llvmpipe's silent 65 535-iteration cap.
const MAX_LOOP_TRIPS: u64 = 16_384;

/// vec4s each lane copies (grid-stride trips) when the grid is sized by default.
pub const COPY_VEC4S_PER_LANE: u32 = 4;

/// Mirrors `Params` in `copy.wgsl`.
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
    /// Median time of one dispatch.
    pub median: Duration,
    /// How it was timed.
    pub method: TimingMethod,
}

impl CopyTiming {
    /// Effective bandwidth in GB/s (10^9 bytes per second).
    pub fn gbps(&self) -> f64 {
        self.bytes_moved as f64 / self.median.as_secs_f64().max(1e-12) / 1e9
    }
}

/// The copy kernel over buffers of its own, ready to record; built by
/// [`CopyKernel::new`].
pub struct CopyKernel {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    n4: u32,
    workgroups: u32,
    max_per_dim: u32,
    // Kept alive with the bind group.
    _buffers: [wgpu::Buffer; 3],
}

impl std::fmt::Debug for CopyKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyKernel")
            .field("vec4s", &self.n4)
            .field("workgroups", &self.workgroups)
            .finish_non_exhaustive()
    }
}

/// The default grid for `n4` vec4s: [`COPY_VEC4S_PER_LANE`] per lane, within the device's
/// limit (the trip count is checked by [`check_grid`]).
fn default_workgroups(n4: u32, max_per_dim: u32) -> u32 {
    n4.div_ceil(WORKGROUP_SIZE * COPY_VEC4S_PER_LANE)
        .clamp(1, max_per_dim)
}

/// Checks a grid: within the device's limit, and a grid-stride trip count far below
/// llvmpipe's silent 65 535-iteration cap.
fn check_grid(n4: u32, workgroups: u32, max_per_dim: u32) -> Result<()> {
    if workgroups == 0 || workgroups > max_per_dim {
        return Err(Error::DeviceLimit {
            what: "copy kernel workgroups per dimension",
            needed: u64::from(workgroups),
            limit: u64::from(max_per_dim),
        });
    }
    let trips = u64::from(n4).div_ceil(u64::from(workgroups) * u64::from(WORKGROUP_SIZE));
    if trips > MAX_LOOP_TRIPS {
        return Err(Error::DeviceLimit {
            what: "grid-stride loop trips per invocation",
            needed: trips,
            limit: MAX_LOOP_TRIPS,
        });
    }
    Ok(())
}

impl CopyKernel {
    /// Bytes read plus bytes written by one dispatch.
    pub fn bytes_moved(&self) -> u64 {
        2 * 16 * u64::from(self.n4)
    }

    /// The workgroups of one dispatch.
    pub fn workgroups(&self) -> u32 {
        self.workgroups
    }

    /// The same kernel with a grid of `workgroups` (for tuning).
    ///
    /// # Errors
    /// [`Error::DeviceLimit`] for 0 or more than the device allows, or a grid so small that
    /// the grid-stride loop would run more than `MAX_LOOP_TRIPS` times.
    pub fn with_workgroups(mut self, workgroups: u32) -> Result<Self> {
        check_grid(self.n4, workgroups, self.max_per_dim)?;
        self.workgroups = workgroups;
        Ok(self)
    }

    /// The median of `repeats` dispatches timed by `timer`, after one warm-up.
    ///
    /// # Errors
    /// As [`GpuTimer::time`].
    pub fn time(
        &self,
        ctx: &GpuContext,
        timer: &mut GpuTimer,
        repeats: usize,
    ) -> Result<CopyTiming> {
        let mut once = || {
            timer.time(ctx, |encoder| {
                self.record(encoder);
                Ok(())
            })
        };
        once()?;
        let mut times = (0..repeats.max(1))
            .map(|_| once())
            .collect::<Result<Vec<_>>>()?;
        times.sort();
        Ok(CopyTiming {
            bytes_moved: self.bytes_moved(),
            median: times[times.len() / 2],
            method: timer.method(),
        })
    }

    /// Records one dispatch (one compute pass) into `encoder`.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("wgpu-loss copy"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.workgroups, 1, 1);
    }
}

impl CopyKernel {
    /// Sets up the copy kernel over `elements` f32 values (rounded down to a multiple of 4 and
    /// capped at one storage binding): a source filled with non-zero values, a destination,
    /// and the bind group. Waits for the upload.
    ///
    /// # Errors
    /// [`Error::Empty`] for fewer than 4 elements; [`Error::Gpu`] if the setup fails.
    pub fn new(ctx: &GpuContext, elements: usize) -> Result<CopyKernel> {
        let _serial = ctx.exclusive();
        let n4 = (elements.min(ctx.max_chunk_elements()) / 4) as u32;
        if n4 == 0 {
            return Err(Error::Empty {
                shape: vec![elements],
            });
        }
        let max_per_dim = ctx.device().limits().max_compute_workgroups_per_dimension;
        let workgroups = default_workgroups(n4, max_per_dim);
        check_grid(n4, workgroups, max_per_dim)?;
        let bytes = u64::from(n4) * 16;
        let scope = ctx.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let module = ctx
            .device()
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("wgpu-loss copy"),
                source: wgpu::ShaderSource::Wgsl(SHADER.into()),
            });
        let pipeline = ctx
            .device()
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("wgpu-loss copy"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        let make = |label: &str, usage: wgpu::BufferUsages| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
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
        ctx.queue()
            .write_buffer(&src, 0, bytemuck::cast_slice(&fill));
        drop(fill);
        let params = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-loss copy params"),
            size: std::mem::size_of::<CopyParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue().write_buffer(
            &params,
            0,
            bytemuck::bytes_of(&CopyParams {
                n4,
                ..Default::default()
            }),
        );
        let entries = [
            (0, params.as_entire_binding()),
            (1, src.as_entire_binding()),
            (2, dst.as_entire_binding()),
        ]
        .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource });
        let group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-loss copy"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("setting up the copy kernel: {e}")));
        }
        ctx.queue().submit(std::iter::empty());
        ctx.device().poll(wgpu::PollType::wait_indefinitely())?;
        Ok(CopyKernel {
            pipeline,
            group,
            n4,
            workgroups,
            max_per_dim,
            _buffers: [src, dst, params],
        })
    }

    /// Times the copy kernel over `elements` f32 values (see [`CopyKernel::new`]),
    /// `repeats` times after one warm-up, with a [`GpuTimer`] (timestamps where the device
    /// has them); see [`CopyTiming`].
    ///
    /// # Errors
    /// As [`CopyKernel::new`] and [`GpuTimer::time`].
    pub fn bandwidth(ctx: &GpuContext, elements: usize, repeats: usize) -> Result<CopyTiming> {
        let copy = CopyKernel::new(ctx, elements)?;
        copy.time(ctx, &mut GpuTimer::new(ctx), repeats)
    }
}

#[cfg(test)]
mod tests {
    /// The shader is valid WGSL, and `CopyParams` is the size of its `Params`.
    #[test]
    fn shader_matches_its_mirror() {
        let module = naga::front::wgsl::parse_str(super::SHADER).expect("copy.wgsl parses");
        let params = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .expect("a Params struct");
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("layout");
        assert_eq!(
            layouter[params.0].size as usize,
            std::mem::size_of::<super::CopyParams>()
        );
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .expect("copy.wgsl validates");
    }
}
