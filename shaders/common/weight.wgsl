// The optional per-element weight of the BCE kernels (bce.wgsl, bce_with_logits.wgsl).
// Follows common/elementwise.wgsl, which defines `params` and `broadcast_at`.

#import common/elementwise.wgsl

// [w_len] weight, broadcast along the trailing dimensions (WEIGHT); else a 1-element dummy.
@group(0) @binding(7) var<storage, read> weight: array<f32>;

fn weight_at(i: u32) -> f32 {
    if (!WEIGHT) {
        return 1.0;
    }
    return weight[broadcast_at(params.w_len, params.w_phase, i)];
}
