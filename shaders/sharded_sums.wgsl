// Vocabulary-sharded softmax cross entropy, step 2 (src/sharded.rs `record_sums`): with the
// all-reduced row maxima M, each row's sums over this shard, into `sums` [rows, SHARD_SUMS]
// (common/shard_layout.wgsl), which the caller all-reduces with SUM:
//   rest  = Σ_{j: y_j < M} exp(y_j − M),   ties = #{j: y_j = M},
//   gap_c = M − y_c and w_c where the shard holds the target class c (else 0, 0),
//   and with label smoothing  Σ_j w_j (M − y_j) ≥ 0  and  Σ_j w_j,
// y = the (soft-capped) logits. After the SUM, S − 1 = rest + (ties − 1) without the 1 of
// the maximum's own exp(0) rounded in (a confident row's S − 1 is tiny), and every term is
// non-negative, so nothing cancels. A NaN or +∞ logit sets rest to NaN, which the SUM
// carries to every shard: the row's loss and gradient are NaN (as softmax_cross_entropy.wgsl).
// A zero weight contributes 0 even against y = −∞ (never 0 · ∞).
// Ignored rows and rows whose class id is out of [0, C) get zeros; the first out-of-range
// row and the rows counted go to `stats` (integer atomics, cleared by the host before the
// pass), as class_count.wgsl does for the unsharded loss.

#import common/shard.wgsl

// [rows] M, the all-reduced row maxima.
@group(0) @binding(4) var<storage, read> maxima: array<f32>;
// [rows · SHARD_SUMS] this shard's sums (out).
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;
// [0]: u32::MAX − (the smallest row whose class id is out of range), kept with atomicMax so
// that a cleared buffer means "none"; [1]: rows counted.
@group(0) @binding(6) var<storage, read_write> stats: array<atomic<u32>, 2>;

// (rest, ties, Σ w (M − y), Σ w)
var<workgroup> row_scratch: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rl = row_lane(lane);
    let group = params.group;
    let cols = params.cols;
    let units = cols / EPU;
    let smoothing = params.smooth_per_class != 0.0;
    for (var it = 0u; it < params.row_iters; it = it + 1u) {
        let r = row_of(it, rl, wid.x, nwg.x);
        let live = r < params.rows;
        var skip = !live;
        var c = CLASS_IGNORED;
        var m = 0.0;
        if (live) {
            c = row_class(r);
            skip = c < 0;
            m = maxima[r];
        }
        var s = vec4<f32>(0.0);
        // ⌈units / group⌉ ≤ 16 384 trips (the host checks).
        for (var q = rl.lig; !skip && q < units; q = q + group) {
            let x = unpack_unit(preds[r * units + q]);
            for (var e = 0u; e < EPU; e = e + 1u) {
                let y = capped(unit_elem(x, e)).x;
                let b = bitcast<u32>(y);
                if (is_nan(y) || b == 0x7f800000u) {
                    s.x = bitcast<f32>(0x7fc00000u); // NaN or +∞: the row is NaN
                } else if (y == m) {
                    s.y = s.y + 1.0;
                } else {
                    s.x = s.x + exp(y - m);
                }
                if (smoothing) {
                    let w = class_weight(q * EPU + e);
                    s.z = s.z + shift(w, m - y);
                    s.w = s.w + w;
                }
            }
        }
        if (group > 1u) {
            row_scratch[lane.index] = s;
            workgroupBarrier();
            for (var h = group / 2u; h > 0u; h = h / 2u) {
                if (rl.lig < h) {
                    row_scratch[lane.index] = row_scratch[lane.index] + row_scratch[lane.index + h];
                }
                workgroupBarrier();
            }
            s = row_scratch[lane.index - rl.lig];
            workgroupBarrier();
        }
        if (live && rl.lig == 0u) {
            // The target's terms, on the shard that holds its class.
            var gap = 0.0;
            var wc = 0.0;
            let local = u32(c) - params.offset; // wraps for c < offset: then ≥ cols
            if (!skip && local < cols) {
                gap = m - capped(pred_at(r * cols + local)).x;
                wc = class_weight(local);
            }
            let at = r * SHARD_SUMS;
            sums[at + SUM_REST] = s.x;
            sums[at + SUM_TIES] = s.y;
            sums[at + SUM_TARGET_GAP] = gap;
            sums[at + SUM_TARGET_WEIGHT] = wc;
            sums[at + SUM_SMOOTH_GAP] = s.z;
            sums[at + SUM_WEIGHT] = s.w;
            if (c == CLASS_OUT_OF_RANGE) {
                atomicMax(&stats[0], 0xffffffffu - r);
            } else if (c >= 0) {
                atomicAdd(&stats[1], 1u);
            }
        }
    }
}
