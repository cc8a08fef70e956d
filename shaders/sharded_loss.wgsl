// Vocabulary-sharded softmax cross entropy, step 3 (src/sharded.rs `record_loss`): from M and
// the SUM-reduced sums (common/shard_layout.wgsl), each row's loss, the same on every shard,
// and the gradient of this shard's columns. With ε the label smoothing, λ the z-loss, w the
// class weights (1 without), W = Σ_j w_j, D = Σ_j w_j (M − y_j) over the whole vocabulary,
// S − 1 = rest + (ties − 1), ln S by common/log.wgsl's ln_sum, lse = M + ln S:
//   ℓ  = (1 − ε) w_c ((M − y_c) + ln S) + (ε/C) (W ln S + D) + λ lse²
//   ∂ℓ/∂y_j = A e_j / S − (ε/C) w_j − (1 − ε) w_c [j = c],  e_j = exp(y_j − M),
//   A = (1 − ε) w_c + (ε/C) W + 2 λ lse
// the target's entry written as −wc ((1 − e_c) + (S − 1)) / S + ..., without the
// cancellation of e_c/S − 1 (as softmax_cross_entropy.wgsl's row_grad). Every term of ℓ is
// non-negative. With a soft cap, y = c·tanh(x/c) and the gradient times 1 − tanh²(x/c).
// A NaN sum (a NaN or +∞ logit on some shard), a NaN M, or S = 0 (every logit −∞) makes the
// row's loss and gradient NaN. Ignored rows and rows whose class is out of range: loss 0,
// gradient 0. The gradient is scaled by norm.y (g, or g/D for the mean: sharded_divisor.wgsl)
// and exactly 0 where norm.w is set (a mean over no counted weight).

#import common/shard.wgsl
#import <grad>

// [rows] M, the all-reduced row maxima.
@group(0) @binding(4) var<storage, read> maxima: array<f32>;
// [rows · SHARD_SUMS] the SUM-reduced sums.
@group(0) @binding(5) var<storage, read> sums: array<f32>;
// [rows · cols] the shard's gradient (out).
@group(0) @binding(6) var<storage, read_write> grad: array<GradSlot>;
// [rows] per-row losses: the caller's output (Reduction::None), or the plan's scratch, which
// reduce_partials.wgsl then adds in a fixed order over the rows, the same on every shard
// whatever its width (a sum per workgroup would follow the shard's lanes per row).
@group(0) @binding(7) var<storage, read_write> losses: array<f32>;
// (D, gradient scale, value scale, zero flag).
@group(0) @binding(8) var<uniform> norm: vec4<f32>;

// A finished row: its loss and what its gradient needs.
struct Row {
    loss: f32,
    m: f32,    // M
    ky: f32,   // ((ε/C) W + 2λ lse) / S
    kz: f32,   // (1 − ε) w_c / S
    rest: f32, // S − 1
    bad: bool, // the row is NaN
}

fn finish(r: u32) -> Row {
    let m = maxima[r];
    let at = r * SHARD_SUMS;
    let rest = sums[at + SUM_REST] + (sums[at + SUM_TIES] - 1.0);
    let gap = sums[at + SUM_TARGET_GAP];
    let nan = bitcast<f32>(0x7fc00000u);
    if (is_nan(rest) || is_nan(m) || is_nan(gap) || rest <= -1.0) {
        return Row(nan, m, 0.0, 0.0, 0.0, true);
    }
    let big_s = 1.0 + rest;
    let ln_s = ln_sum(rest);
    let lse = m + ln_s;
    let wc = (1.0 - params.label_smoothing) * sums[at + SUM_TARGET_WEIGHT];
    let tw = params.smooth_per_class * sums[at + SUM_WEIGHT];
    var loss = shift(wc, gap + ln_s) + shift(tw, ln_s)
        + shift(params.smooth_per_class, sums[at + SUM_SMOOTH_GAP]);
    var b = tw;
    if (params.z_loss != 0.0) {
        loss = loss + params.z_loss * lse * lse;
        b = b + 2.0 * params.z_loss * lse;
    }
    return Row(loss, m, b / big_s, wc / big_s, rest, false);
}

// ∂ℓ/∂y of the shard's column j (local) of a finished row whose target is `local`.
fn grad_of(row: Row, j: u32, local: u32, y: f32) -> f32 {
    let e = exp(y - row.m);
    let dense = params.smooth_per_class * class_weight(j);
    if (j == local) {
        return row.ky * e - row.kz * ((1.0 - e) + row.rest) - dense;
    }
    return (row.ky + row.kz) * e - dense;
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rl = row_lane(lane);
    let group = params.group;
    let cols = params.cols;
    let units = cols / EPU;
    for (var it = 0u; it < params.row_iters; it = it + 1u) {
        let r = row_of(it, rl, wid.x, nwg.x);
        if (r >= params.rows) {
            continue; // no barrier in this loop: lanes may leave early
        }
        let c = row_class(r);
        let skip = c < 0;
        var row = Row(0.0, 0.0, 0.0, 0.0, 0.0, false);
        if (!skip) {
            row = finish(r);
        }
        let local = u32(c) - params.offset; // ≥ cols unless the shard holds c
        let scale = norm.y;
        // ⌈units / group⌉ ≤ 16 384 trips (the host checks).
        for (var q = rl.lig; q < units; q = q + group) {
            var g = unit_zero();
            var ok = 0u; // bit e: element e of the unit is written
            if (!skip) {
                let x = unpack_unit(preds[r * units + q]);
                for (var e = 0u; e < EPU; e = e + 1u) {
                    var v: f32;
                    if (norm.w != 0.0) {
                        v = 0.0;
                    } else if (row.bad) {
                        v = row.loss;
                    } else {
                        let y = capped(unit_elem(x, e));
                        v = scale * (grad_of(row, q * EPU + e, local, y.x) * y.y);
                    }
                    g = unit_with(g, e, v);
                }
            }
            for (var e = 0u; e < EPU; e = e + 1u) {
                ok = ok | (1u << e);
            }
            write_grad(r * units + q, g, ok);
        }
        if (rl.lig == 0u) {
            losses[r] = row.loss;
        }
    }
}
