//! [`KernelStep`]: one loss-and-gradient step over buffers already on the GPU, for timing the
//! kernels alone (`wgpu-loss bench`'s `gpu-kernel` path and the criterion benches).
//!
//! The prediction and target are uploaded once, into buffers of the step's own, with a
//! gradient buffer and a value buffer; the loss is planned once through the GPU-resident API
//! ([`GpuContext::resident`], `Mean`, with the gradient). [`KernelStep::record`] then records
//! one step ([`ResidentLoss::record`]: the clears of its atomics and one compute pass with every
//! dispatch) and nothing else, so a [`GpuTimer`](super::GpuTimer) around it times exactly the
//! work of a training step's loss.
//!
//! A resident loss binds each array whole, so an input larger than one storage binding is
//! split, as [`GpuContext::compute`] splits it, into chunks of whole rows (elements, for the
//! elementwise family) of at most [`GpuContext::max_chunk_elements`], each a resident loss over
//! buffers of its own, all recorded into the same encoder. Each chunk's value is then the mean
//! over its chunk (the traffic is the same).

use std::borrow::Cow;

use ndarray::ArrayViewD;
use wgpu_loss::resident::{GpuArray, ResidentBuffers, ResidentLoss, ResidentSpec, ValueReader};
use wgpu_loss::{ClassType, Dtype, Error, GpuContext, Loss, LossArgs, Result, Target};

/// The elements of `a` in row-major order, borrowed when they already are.
fn contiguous<'a, T: Clone>(a: &'a ArrayViewD<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

/// The target's elements as uploaded.
enum Targets {
    Dense(Vec<f32>),
    /// Class ids as the words a buffer of them holds, and their type.
    Classes(Vec<u32>, ClassType),
}

/// One chunk's resident loss and buffers.
struct Chunk {
    loss: ResidentLoss,
    pred: wgpu::Buffer,
    target: wgpu::Buffer,
    grad: wgpu::Buffer,
    value: wgpu::Buffer,
    /// Each row's log-sum-exp, where the arguments ask for it.
    lse: Option<wgpu::Buffer>,
}

/// A loss step over GPU-resident buffers.
///
/// [`KernelStep`]: one loss-and-gradient step over buffers already on the GPU, for timing the
/// kernels alone (`wgpu-loss bench`'s `gpu-kernel` path and the criterion benches).
///
/// The prediction and target are uploaded once, into buffers of the step's own, with a
/// gradient buffer and a value buffer; the loss is planned once through the GPU-resident API
/// ([`GpuContext::resident`], `Mean`, with the gradient). [`KernelStep::record`] then records
/// one step ([`ResidentLoss::record`]: the clears of its atomics and one compute pass with every
/// dispatch) and nothing else, so a [`GpuTimer`](super::GpuTimer) around it times exactly the
/// work of a training step's loss.
///
/// A resident loss binds each array whole, so an input larger than one storage binding is
/// split, as [`GpuContext::compute`] splits it, into chunks of whole rows (elements, for the
/// elementwise family) of at most [`GpuContext::max_chunk_elements`], each a resident loss over
/// buffers of its own, all recorded into the same encoder. Each chunk's value is then the mean
/// over its chunk (the traffic is the same).
pub struct KernelStep {
    chunks: Vec<Chunk>,
    rows: usize,
    cols: usize,
    classes: bool,
    dtype: Dtype,
}

impl std::fmt::Debug for KernelStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelStep")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("classes", &self.classes)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

fn storage(ctx: &GpuContext, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
}

fn zeroed(ctx: &GpuContext, label: &str, elems: usize) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (elems as u64 * 4).max(4),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

impl KernelStep {
    /// Uploads `args.pred` and `args.target` (f32, or class indices, stored as i32) and plans
    /// `loss` over them: `Mean`, upstream 1, with the gradient (and each row's log-sum-exp
    /// where `args.want_lse`). Weights, the reduction and the
    /// upstream gradient of `args` are not used.
    ///
    /// # Errors
    /// What [`LossArgs::validate`] rejects; [`Error::InvalidOption`] for a class index outside
    /// i32; [`Error::DeviceLimit`] for a row longer than one storage binding; what
    /// [`GpuContext::resident`] returns; [`Error::Gpu`] if creating the buffers fails.
    pub fn new(ctx: &GpuContext, loss: &Loss, args: &LossArgs<'_>) -> Result<Self> {
        Self::with_dtype(ctx, loss, args, Dtype::F32)
    }

    /// As [`KernelStep::new`], with the prediction, dense target and gradient stored as
    /// `dtype` ([`ResidentSpec::dtype`]; the inputs are rounded to it when uploaded).
    ///
    /// # Errors
    /// As [`KernelStep::new`]; [`Error::Unsupported`] for f16 where the device lacks it.
    pub fn with_dtype(
        ctx: &GpuContext,
        loss: &Loss,
        args: &LossArgs<'_>,
        dtype: Dtype,
    ) -> Result<Self> {
        let args = LossArgs::new(args.pred.clone(), args.target.clone()).want_lse(args.want_lse);
        args.validate(loss)?;
        let shape = args.pred.shape().to_vec();
        let n: usize = shape.iter().product();
        let row_wise = loss.is_row_wise();
        let cols = if row_wise {
            shape.last().copied().unwrap_or(1).max(1)
        } else {
            1
        };
        let rows = n / cols;
        let max = ctx.max_chunk_elements();
        if cols > max {
            return Err(Error::DeviceLimit {
                what: "row elements bound at once by a resident loss",
                needed: cols as u64,
                limit: max as u64,
            });
        }
        let pred = contiguous(&args.pred);
        let target = match &args.target {
            Target::Dense(t) => Targets::Dense(contiguous(t).into_owned()),
            Target::ClassesI32(c) => Targets::Classes(
                bytemuck::cast_slice(&contiguous(c)).to_vec(),
                ClassType::I32,
            ),
            Target::ClassesI64(c) => Targets::Classes(
                bytemuck::cast_slice(&contiguous(c)).to_vec(),
                ClassType::I64,
            ),
            Target::ClassesU32(c) => Targets::Classes(contiguous(c).into_owned(), ClassType::U32),
            other => {
                return Err(Error::InvalidOption {
                    option: "target",
                    reason: format!("{} targets are not benchmarked", other.dtype()),
                });
            }
        };
        let rows_per_chunk = (max / cols).max(1);
        let scope = ctx
            .device()
            .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut chunks = Vec::with_capacity(rows.div_ceil(rows_per_chunk));
        let mut row0 = 0;
        while row0 < rows {
            let r = rows_per_chunk.min(rows - row0);
            let (e0, e1) = (row0 * cols, (row0 + r) * cols);
            let chunk_shape = if row_wise { vec![r, cols] } else { vec![r] };
            let mut spec = ResidentSpec::new(&chunk_shape).dtype(dtype);
            if args.want_lse {
                spec = spec.lse();
            }
            let target_buf = match &target {
                Targets::Dense(t) => storage(
                    ctx,
                    "wgpu-loss step target",
                    bytemuck::cast_slice(&dtype.pack(&t[e0..e1])),
                ),
                Targets::Classes(c, class_type) => {
                    spec = spec.classes(*class_type);
                    let per_id = class_type.words_per_id() as usize;
                    storage(
                        ctx,
                        "wgpu-loss step classes",
                        bytemuck::cast_slice(&c[row0 * per_id..(row0 + r) * per_id]),
                    )
                }
            };
            chunks.push(Chunk {
                loss: ctx.resident(loss, spec)?,
                pred: storage(
                    ctx,
                    "wgpu-loss step pred",
                    bytemuck::cast_slice(&dtype.pack(&pred[e0..e1])),
                ),
                target: target_buf,
                grad: zeroed(
                    ctx,
                    "wgpu-loss step grad",
                    (e1 - e0).div_ceil(dtype.per_word()),
                ),
                value: zeroed(ctx, "wgpu-loss step value", 1),
                lse: args.want_lse.then(|| zeroed(ctx, "wgpu-loss step lse", r)),
            });
            row0 += r;
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("creating the step's buffers: {e}")));
        }
        Ok(KernelStep {
            chunks,
            rows,
            cols,
            classes: matches!(target, Targets::Classes(..)),
            dtype,
        })
    }

    /// Records one step of every chunk into `encoder`.
    ///
    /// # Errors
    /// What [`ResidentLoss::record`] returns (nothing, for the buffers made here).
    pub fn record(&mut self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        for c in &mut self.chunks {
            let mut bufs = ResidentBuffers::new(&c.pred, &c.target, &c.value).grad(&c.grad);
            if let Some(lse) = &c.lse {
                bufs = bufs.lse(lse);
            }
            c.loss.record(ctx, encoder, &bufs)?;
        }
        Ok(())
    }

    /// Reads back the loss value of the last submitted step, one per chunk (each the mean
    /// over its chunk), waiting for the device.
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::Poll`].
    pub fn values(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let reader = ValueReader::new(ctx.device(), 1);
        let mut out = Vec::with_capacity(self.chunks.len());
        for c in &self.chunks {
            let v = reader.read_blocking(ctx.device(), ctx.queue(), GpuArray::from(&c.value))?;
            out.extend(v);
        }
        Ok(out)
    }

    /// Chunks (resident losses) recorded per step: 1 unless the input is larger than one
    /// storage binding.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The storage of the prediction, dense target and gradient.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Bytes per element of the prediction, dense target and gradient.
    fn elem_bytes(&self) -> u64 {
        4 / self.dtype.per_word() as u64
    }

    /// The minimum traffic of a step in bytes: the prediction and target read once, the
    /// gradient written once, 4 bytes each (2 for f16 and bf16; class indices: 4 bytes per
    /// row).
    pub fn min_bytes(&self) -> u64 {
        let n = (self.rows * self.cols) as u64;
        let e = self.elem_bytes();
        let target = if self.classes {
            4 * self.rows as u64
        } else {
            e * n
        };
        2 * e * n + target
    }

    /// The traffic of the passes a step actually runs, in bytes: the sum of its chunks'
    /// [`ResidentLoss::pass_bytes`] ([`KernelStep::min_bytes`] plus the further reads of the
    /// part of each long row its lanes do not hold in registers, and the class-index
    /// pre-pass's read of the classes). The bound a kernel can reach is this traffic at the
    /// copy kernel's bandwidth.
    pub fn pass_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.loss.pass_bytes()).sum()
    }
}
