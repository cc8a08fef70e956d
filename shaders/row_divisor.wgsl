// The mean's divisor of softmax cross entropy with class-index targets: D = the sum of the
// class weights of the rows that count (class_count.wgsl's partials, added in a fixed order),
// turned into the scales the row kernels and reduce_partials.wgsl read:
//   norm = (D, g / D, 1 / D, 0), or (0, 0, 0, 1) when D = 0 (every row ignored, or every
//   counted weight 0): the 1 tells the row kernels and reduce_partials.wgsl that the value and
//   the gradient are exactly 0, even where a row's loss is NaN (PyTorch gives NaN here).
// The same for a resident loss planned with `ResidentSpec::divisor_buffer`: `partials` is then
// the caller's buffer and `count` 1, and a negative or NaN D gives NaN scales.
// Host side: src/kernels/rows.rs (`DivisorParams` mirrors `Params`).

#import <reduce>
#import common/nan.wgsl

struct Params {
    count: u32, // partial sums to add
    g: f32,     // the scalar upstream gradient
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// [count] per-workgroup weight sums.
@group(0) @binding(1) var<storage, read> partials: array<f32>;
// (D, gradient scale, value scale, zero flag).
@group(0) @binding(2) var<storage, read_write> norm: vec4<f32>;

@compute @workgroup_size(WG)
fn main(lane: Lane) {
    // Trip count count / WG ≤ 16 384 (the host bounds count).
    var acc = 0.0;
    for (var i = lane.index; i < params.count; i = i + WG) {
        acc = acc + partials[i];
    }
    let d = workgroup_sum(acc, lane);
    if (lane.index == 0u) {
        if (d == 0.0) {
            norm = vec4<f32>(d, 0.0, 0.0, 1.0);
        } else if (d > 0.0 && !is_nan(d)) {
            norm = vec4<f32>(d, params.g / d, 1.0 / d, 0.0);
        } else {
            // A caller's negative or NaN divisor: NaN scales, so that it shows.
            let nan = bitcast<f32>(0x7fc00000u);
            norm = vec4<f32>(d, nan, nan, 0.0);
        }
    }
}
