//! Cross entropy over a vocabulary split across devices (tensor parallelism), with four
//! uneven shards on one device and the host standing in for the collectives.
//! `cargo run --release --example vocab_shards` (`-- --time` also times the three steps of
//! one shard against the unsharded kernel at 4096 × 32000).
//!
//! Each "rank" holds the logits of its own columns `[B, C_k]` of a vocabulary of `C`, the
//! class ids of the whole batch, and its slice of the class weights. The loss takes three
//! recorded steps (`wgpu_loss::sharded`, docs/SHARDS.md):
//!
//! ```text
//! record_max   → maxima [B]          → all-reduce MAX (here: read back, max on the host,
//!                                      written to every shard's buffer)
//! record_sums  → sums [B, SHARD_SUMS] → all-reduce SUM (the same, with +)
//! record_loss  → the value (every shard the same) and the shard's gradient columns
//! ```
//!
//! With NCCL the two host round trips become `ncclAllReduce(maxima, .., ncclMax, ..)` and
//! `ncclAllReduce(sums, .., ncclSum, ..)` on each rank's own device. The program prints the
//! sharded and the unsharded loss and the largest gradient difference, and exits non-zero if
//! they disagree beyond the row-wise tolerance (value 1e-5 relative, gradient 1e-5 of its
//! largest magnitude).

use std::error::Error;
use std::time::Instant;

use wgpu::util::DeviceExt;
use wgpu_loss::resident::{GpuArray, ResidentBuffers, ResidentSpec, ValueReader};
use wgpu_loss::sharded::{SHARD_SUMS, ShardBuffers, ShardSpec, ShardedLoss};
use wgpu_loss::{ClassType, Compute, GpuContext, Loss, LossArgs, synthetic};

/// Rows and the vocabulary.
const B: usize = 256;
const C: usize = 32000;
/// The four shards' widths: uneven, one narrower than a workgroup's lanes.
const WIDTHS: [usize; 4] = [7000, 255, 16745, 8000];

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

fn upload<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: USAGE,
        })
}

fn zeros(ctx: &GpuContext, label: &str, elems: usize) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: elems.max(1) as u64 * 4,
        usage: USAGE,
        mapped_at_creation: false,
    })
}

fn read(ctx: &GpuContext, buf: &wgpu::Buffer, elems: usize) -> wgpu_loss::Result<Vec<f32>> {
    ValueReader::new(ctx.device(), elems).read_blocking(
        ctx.device(),
        ctx.queue(),
        GpuArray::from(buf),
    )
}

/// One rank: its plan and its buffers.
struct Rank {
    loss: ShardedLoss,
    offset: usize,
    width: usize,
    logits: wgpu::Buffer,
    classes: wgpu::Buffer,
    weight: wgpu::Buffer,
    maxima: wgpu::Buffer,
    sums: wgpu::Buffer,
    grad: wgpu::Buffer,
    value: wgpu::Buffer,
}

impl Rank {
    /// Records one step into an encoder of its own and submits it.
    fn step(&mut self, ctx: &GpuContext, step: usize) -> wgpu_loss::Result<()> {
        let bufs = ShardBuffers::new(
            &self.logits,
            &self.classes,
            &self.maxima,
            &self.sums,
            &self.grad,
            &self.value,
        )
        .weight(&self.weight);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        match step {
            1 => self.loss.record_max(ctx, &mut encoder, &bufs)?,
            2 => self.loss.record_sums(ctx, &mut encoder, &bufs)?,
            _ => self.loss.record_loss(ctx, &mut encoder, &bufs)?,
        }
        ctx.queue().submit([encoder.finish()]);
        Ok(())
    }
}

/// The host's all-reduce of `len` f32 of each rank's `pick` buffer with `op`, written back
/// to every rank (what NCCL's all-reduce does between devices).
fn all_reduce(
    ctx: &GpuContext,
    ranks: &[Rank],
    len: usize,
    pick: fn(&Rank) -> &wgpu::Buffer,
    op: fn(f32, f32) -> f32,
) -> wgpu_loss::Result<()> {
    let mut acc = read(ctx, pick(&ranks[0]), len)?;
    for r in &ranks[1..] {
        for (a, v) in acc.iter_mut().zip(read(ctx, pick(r), len)?) {
            *a = op(*a, v);
        }
    }
    for r in ranks {
        ctx.queue()
            .write_buffer(pick(r), 0, bytemuck::cast_slice(&acc));
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.adapter_summary());
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(1e-4)
        .build()?;

    // The whole batch, as an unsharded run sees it: logits [B, C], i64 ids (every 16th row
    // ignored), class weights [C].
    let x = synthetic::uniform(&[B, C], -8.0, 8.0, 7).into_dimensionality::<ndarray::Ix2>()?;
    let classes: Vec<i64> = (0..B)
        .map(|r| {
            if r % 16 == 5 {
                -100
            } else {
                ((r * 7919) % C) as i64
            }
        })
        .collect();
    let weight: Vec<f32> = (0..C).map(|j| 0.5 + (j % 5) as f32 * 0.25).collect();

    // Four ranks, each planned once for its columns.
    let mut offset = 0;
    let mut ranks = Vec::new();
    for width in WIDTHS {
        let spec = ShardSpec::new(B, width, offset, C)
            .classes(ClassType::I64)
            .weight();
        let cols: Vec<f32> = x
            .slice(ndarray::s![.., offset..offset + width])
            .iter()
            .copied()
            .collect();
        ranks.push(Rank {
            loss: ctx.sharded(&loss, spec)?,
            offset,
            width,
            logits: upload(&ctx, "logits", &cols),
            classes: upload(&ctx, "classes", &classes),
            weight: upload(&ctx, "weight", &weight[offset..offset + width]),
            maxima: zeros(&ctx, "maxima", B),
            sums: zeros(&ctx, "sums", B * SHARD_SUMS),
            grad: zeros(&ctx, "grad", B * width),
            value: zeros(&ctx, "value", 1),
        });
        offset += width;
    }
    assert_eq!(offset, C);

    // Step 1, then MAX; step 2, then SUM; step 3.
    for r in &mut ranks {
        r.step(&ctx, 1)?;
    }
    all_reduce(&ctx, &ranks, B, |r| &r.maxima, f32::max)?;
    for r in &mut ranks {
        r.step(&ctx, 2)?;
    }
    all_reduce(&ctx, &ranks, B * SHARD_SUMS, |r| &r.sums, |a, v| a + v)?;
    for r in &mut ranks {
        r.step(&ctx, 3)?;
    }

    // The unsharded loss of the same batch, and the comparison.
    let ids = ndarray::Array1::from(classes.clone());
    let args = LossArgs::new(x.view(), ids.view()).weight(ndarray::ArrayView1::from(&weight[..]));
    let whole = ctx.value_and_grad(&loss, args)?;
    let whole_value = whole.value;
    let full = whole.grad_into::<ndarray::Ix2>()?;
    let mut values = Vec::new();
    let mut grad_diff = 0.0f32;
    let grad_max = full.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    for r in &ranks {
        values.push(read(&ctx, &r.value, 1)?[0]);
        let g = read(&ctx, &r.grad, B * r.width)?;
        let cols = full.slice(ndarray::s![.., r.offset..r.offset + r.width]);
        for (a, b) in g.iter().zip(cols.iter()) {
            grad_diff = grad_diff.max((a - b).abs());
        }
    }
    let status = ranks[0].loss.status_blocking(&ctx)?;
    println!(
        "{} shards of widths {WIDTHS:?} (C = {C}), {B} rows, {} counted",
        ranks.len(),
        status.counted
    );
    println!("sharded loss   (each shard): {values:?}");
    println!("unsharded loss:              {}", whole_value);
    println!("max |gradient difference|:   {grad_diff:e} (max |gradient| {grad_max:e})");
    let value_err = (values[0] - whole_value).abs() / whole_value.abs();
    let same = values.iter().all(|v| v.to_bits() == values[0].to_bits());
    let ok = same && value_err <= 1e-5 && grad_diff <= 1e-5 * grad_max;
    if std::env::args().any(|a| a == "--time") {
        time_steps(&ctx, &loss)?;
    }
    if !ok {
        eprintln!(
            "sharded and unsharded disagree: value relative error {value_err:e}, shards equal: {same}"
        );
        std::process::exit(1);
    }
    println!("agree within the row-wise tolerance");
    Ok(())
}

/// The three steps against the unsharded kernel over 4096 × 32000 logits, on one device: a
/// shard of 4096 × 8000 (a quarter of the vocabulary; four such shards make the whole
/// batch) against the unsharded resident loss over 1024 × 32000 (a quarter of the rows),
/// the same bytes in one binding (the whole batch exceeds llvmpipe's 128 MiB binding).
/// Each recorded and waited for `TRIPS` times; the best time of each.
fn time_steps(ctx: &GpuContext, loss: &Loss) -> Result<(), Box<dyn Error>> {
    const TRIPS: usize = 5;
    let (b, c, shard_width, rows) = (4096, 32000, 8000, 1024);
    let x = synthetic::uniform(&[b * shard_width], -8.0, 8.0, 11);
    let flat: Vec<f32> = x.iter().copied().collect();
    let ids: Vec<i64> = (0..b).map(|r| ((r * 31) % c) as i64).collect();
    let logits = upload(ctx, "logits", &flat);
    let classes = upload(ctx, "classes", &ids);
    let (maxima, sums) = (zeros(ctx, "maxima", b), zeros(ctx, "sums", b * SHARD_SUMS));
    let (grad, value) = (zeros(ctx, "grad", b * shard_width), zeros(ctx, "value", 1));
    let spec = ShardSpec::new(b, shard_width, 8000, c).classes(ClassType::I64);
    let mut shard = ctx.sharded(loss, spec)?;
    let spec = ResidentSpec::new(&[rows, c]).classes(ClassType::I64);
    let mut whole = ctx.resident(loss, spec)?;
    let bufs = ShardBuffers::new(&logits, &classes, &maxima, &sums, &grad, &value);
    let wait = || ctx.device().poll(wgpu::PollType::wait_indefinitely());
    let time = |record: &mut dyn FnMut(&mut wgpu::CommandEncoder) -> wgpu_loss::Result<()>|
     -> Result<f64, Box<dyn Error>> {
        let mut best = f64::INFINITY;
        for _ in 0..TRIPS {
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            record(&mut encoder)?;
            let t = Instant::now();
            ctx.queue().submit([encoder.finish()]);
            wait()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let sharded = time(&mut |e| {
        shard.record_max(ctx, e, &bufs)?;
        shard.record_sums(ctx, e, &bufs)?;
        shard.record_loss(ctx, e, &bufs)
    })?;
    let rbufs = ResidentBuffers::new(&logits, &classes, &value).grad(&grad);
    let unsharded = time(&mut |e| whole.record(ctx, e, &rbufs))?;
    println!(
        "4096 x 32000 in quarters, best of {TRIPS}: three steps of a 4096 x 8000 shard {:.1} ms, \
         unsharded 1024 x 32000 {:.1} ms, ratio {:.2}",
        sharded * 1e3,
        unsharded * 1e3,
        sharded / unsharded
    );
    Ok(())
}
