//! Building a kernel's pipeline: its composed source, its bind-group layout, its overrides;
//! cached by the context under the kernel's name and storage.

use std::sync::Arc;

use super::{Access, ENTRY_POINT, Io, Kernel, ReduceFlavor};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, KernelPipeline};

/// The pipeline of `kernel` on f32 storage, built on first use and kept.
pub(crate) fn pipeline(ctx: &GpuContext, kernel: Kernel) -> Result<Arc<KernelPipeline>> {
    pipeline_io(ctx, kernel, Io::F32)
}

/// The pipeline of `kernel` for the storage `io` (ignored by kernels that do not take
/// it), built on first use and kept.
pub(crate) fn pipeline_io(ctx: &GpuContext, kernel: Kernel, io: Io) -> Result<Arc<KernelPipeline>> {
    pipeline_switched(ctx, kernel, io, &[])
}

/// [`pipeline_io`] with the shader's `override` switches set (a loss's `LossDef::switches`),
/// which are part of the cache key.
pub(crate) fn pipeline_switched(
    ctx: &GpuContext,
    kernel: Kernel,
    io: Io,
    switches: &[(&str, bool)],
) -> Result<Arc<KernelPipeline>> {
    let io = if kernel.takes_io() { io } else { Io::F32 };
    let key = format!("{}/{:?}/{switches:?}", kernel.name(), io);
    ctx.cached_pipeline(&key, &|| build(ctx, kernel, io, switches))
}

/// Builds `kernel`'s pipeline for `io`: its composed source ([`Kernel::source_io`] with the
/// context's reduction flavour), its bind-group layout from [`Kernel::bindings`], the
/// drivers' `UNROLL` override.
fn build(
    ctx: &GpuContext,
    kernel: Kernel,
    io: Io,
    switches: &[(&str, bool)],
) -> Result<KernelPipeline> {
    let storage = kernel
        .bindings()
        .iter()
        .filter(|b| b.access != Access::Uniform)
        .count() as u32;
    if storage > ctx.limits.max_storage_buffers_per_shader_stage {
        return Err(Error::DeviceLimit {
            what: "storage buffers per shader stage",
            needed: u64::from(storage),
            limit: u64::from(ctx.limits.max_storage_buffers_per_shader_stage),
        });
    }
    let source = kernel.source_io(ReduceFlavor::of(ctx), io)?;
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let label = if io == Io::F32 {
        format!("wgpu-loss {}", kernel.name())
    } else {
        format!(
            "wgpu-loss {} ({} in, {} grad{})",
            kernel.name(),
            io.input.name(),
            io.grad.name(),
            match (io.vec4, io.in_place) {
                (true, true) => ", vec4, in place",
                (true, false) => ", vec4",
                (false, true) => ", in place",
                (false, false) => "",
            }
        )
    };
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    // Without wgpu's loop bounding: it adds a counter and a test to every loop trip (5–8% of
    // llvmpipe's kernel steps, `docs/TUNING.md`), there to stop an unbounded loop, and every
    // loop of these kernels has a bounded trip count (llvmpipe ends any loop after 65 535
    // trips, so the planners keep each under MAX_LOOP_TRIPS). Bounds checks stay on.
    let checks = wgpu::ShaderRuntimeChecks {
        force_loop_bounding: false,
        ..wgpu::ShaderRuntimeChecks::checked()
    };
    // SAFETY: `create_shader_module_trusted` requires the shader to be valid and, without
    // `force_loop_bounding`, free of infinite loops. The sources are this crate's own,
    // validated by naga in tests/shaders.rs and src/kernels/shader_tests.rs, and every loop
    // in them counts to a bound fixed before it starts (a constant, a uniform, or a workgroup
    // size), so each terminates.
    let module = unsafe { ctx.device.create_shader_module_trusted(desc, checks) };
    let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
        .bindings_io(io)
        .iter()
        .map(|b| wgpu::BindGroupLayoutEntry {
            binding: b.index,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b.access {
                    Access::Uniform => wgpu::BufferBindingType::Uniform,
                    Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = ctx
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
    let pipeline_layout = ctx
        .device
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
    // The loss drivers' `UNROLL` (elementwise.wgsl, rows.wgsl; `ContextOptions::unroll`),
    // except with vec4 storage, whose lanes already move 16 bytes per array per trip.
    let mut constants = vec![("UNROLL", f64::from(u8::from(ctx.unroll() && !io.vec4)))];
    constants.extend(
        switches
            .iter()
            .map(|&(name, on)| (name, f64::from(u8::from(on)))),
    );
    let pipeline = ctx
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(ENTRY_POINT),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: if kernel.takes_io() { &constants } else { &[] },
                ..Default::default()
            },
            cache: None,
        });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::Gpu(format!("building the {label} pipeline: {e}")));
    }
    Ok(KernelPipeline { pipeline, layout })
}
