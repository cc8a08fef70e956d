// Second pass of every reduction: adds the per-workgroup partial sums into the loss value,
// in one workgroup and a fixed order (no float atomics), and applies the reduction's scale
// (1/D for Mean, 1 for Sum; from `norm` when D was computed on the GPU). Host side:
// src/kernels/elementwise.rs and rows.rs (`FinalizeParams` mirrors `Params`).

#import <reduce>

struct Params {
    count: u32,  // partial sums to add
    scale: f32,  // 1/D for Reduction::Mean, 1 for Reduction::Sum
    flags: u32,  // FLAG_SCALE_FROM_NORM: use norm.z (computed on the GPU) instead of `scale`
    _pad0: u32,
}

const FLAG_SCALE_FROM_NORM: u32 = 1u;

@group(0) @binding(0) var<uniform> params: Params;
// [count] per-workgroup sums from the first pass.
@group(0) @binding(1) var<storage, read> partials: array<f32>;
// [1] the loss value.
@group(0) @binding(2) var<storage, read_write> value: array<f32>;
// (D, gradient scale, value scale, zero flag) of a row-wise call (row_divisor.wgsl), else a
// dummy.
@group(0) @binding(3) var<uniform> norm: vec4<f32>;

@compute @workgroup_size(WG)
fn main(lane: Lane) {
    // Trip count count / WG; the host keeps count ≤ 65 535 · WG (`MAX_PARTIALS`).
    var acc = 0.0;
    for (var i = lane.index; i < params.count; i = i + WG) {
        acc = acc + partials[i];
    }
    let total = workgroup_sum(acc, lane);
    if (lane.index == 0u) {
        var scale = params.scale;
        if ((params.flags & FLAG_SCALE_FROM_NORM) != 0u) {
            scale = norm.z;
        }
        var v = total * scale;
        if ((params.flags & FLAG_SCALE_FROM_NORM) != 0u && norm.w != 0.0) {
            v = 0.0; // D = 0: the value is 0 even if a row's loss is NaN
        }
        value[0] = v;
    }
}
