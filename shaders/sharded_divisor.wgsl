// The mean's divisor of vocabulary-sharded softmax cross entropy (src/sharded.rs, step 3,
// Reduction::Mean): D = Σ_r w_{c_r} over the rows that count, read from the SUM-reduced sums
// (SUM_TARGET_WEIGHT: w_c from the shard holding c, 0 for ignored and out-of-range rows), in
// a fixed order, so every shard finds the same D; then the scales, as row_divisor.wgsl:
//   norm = (D, g / D, 1 / D, 0), or (0, 0, 0, 1) when D = 0 (value and gradient exactly 0).

#import <reduce>
#import common/nan.wgsl
#import common/shard_layout.wgsl

struct Params {
    rows: u32, // B
    g: f32,    // the scalar upstream gradient
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// [rows · SHARD_SUMS] the SUM-reduced sums.
@group(0) @binding(1) var<storage, read> sums: array<f32>;
// (D, gradient scale, value scale, zero flag) (out).
@group(0) @binding(2) var<storage, read_write> norm: vec4<f32>;

@compute @workgroup_size(WG)
fn main(lane: Lane) {
    // Trip count rows / WG ≤ 16 384 (the host bounds rows).
    var acc = 0.0;
    for (var i = lane.index; i < params.rows; i = i + WG) {
        acc = acc + sums[i * SHARD_SUMS + SUM_TARGET_WEIGHT];
    }
    let d = workgroup_sum(acc, lane);
    if (lane.index == 0u) {
        if (d == 0.0) {
            norm = vec4<f32>(0.0, 0.0, 0.0, 1.0);
        } else if (d > 0.0 && !is_nan(d)) {
            norm = vec4<f32>(d, params.g / d, 1.0 / d, 0.0);
        } else {
            let nan = bitcast<f32>(0x7fc00000u);
            norm = vec4<f32>(d, nan, nan, 0.0);
        }
    }
}
