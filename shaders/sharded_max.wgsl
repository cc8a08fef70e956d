// Vocabulary-sharded softmax cross entropy, step 1 (src/sharded.rs `record_max`): each row's
// largest (soft-capped) logit over this shard, m_k, into `maxima`; the caller all-reduces
// them with MAX into M. NaN logits are left out (a MAX all-reduce need not propagate NaN:
// step 2 makes such a row NaN through the SUM instead); +∞ is a maximum like any other.
// The identity is −F32_MAX, not −∞, so that a row of −∞ logits has M = −F32_MAX and
// y − M = −∞, never ∞ − ∞. Rows whose class is ignored or out of range get −F32_MAX (unused).

#import common/shard.wgsl

// [rows] this shard's row maxima m_k (out).
@group(0) @binding(4) var<storage, read_write> maxima: array<f32>;

var<workgroup> row_scratch: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rl = row_lane(lane);
    let group = params.group;
    let units = params.cols / EPU;
    // Row loop: uniform trip count (barriers inside), ≤ 16 384 trips (the host checks).
    for (var it = 0u; it < params.row_iters; it = it + 1u) {
        let r = row_of(it, rl, wid.x, nwg.x);
        let live = r < params.rows;
        var skip = !live;
        if (live) {
            skip = row_class(r) < 0;
        }
        var m = -F32_MAX;
        // ⌈units / group⌉ ≤ 16 384 trips (the host checks).
        for (var q = rl.lig; !skip && q < units; q = q + group) {
            let x = unpack_unit(preds[r * units + q]);
            for (var e = 0u; e < EPU; e = e + 1u) {
                let y = capped(unit_elem(x, e)).x;
                if (!is_nan(y) && y > m) {
                    m = y;
                }
            }
        }
        // A fixed-order tree over the row's lanes.
        if (group > 1u) {
            row_scratch[lane.index] = m;
            workgroupBarrier();
            for (var h = group / 2u; h > 0u; h = h / 2u) {
                if (rl.lig < h) {
                    row_scratch[lane.index] = max(row_scratch[lane.index], row_scratch[lane.index + h]);
                }
                workgroupBarrier();
            }
            m = row_scratch[lane.index - rl.lig];
            workgroupBarrier(); // everyone has read before the next trip overwrites
        }
        if (live && rl.lig == 0u) {
            maxima[r] = m;
        }
    }
}
