// Workgroup-wide sum, subgroup flavour: `subgroupAdd` inside each subgroup, then one subgroup
// adds the per-subgroup sums. Used when the adapter has `Features::SUBGROUP`
// (`ReduceFlavor::Subgroup` in src/kernels/mod.rs). Same items as `reduce.wgsl`.
// No `enable subgroups;` line: naga 30 does not implement that directive and
// enables subgroup operations from the device feature instead.

// Invocations per workgroup. Mirrored by `wgpu_loss::kernels::WORKGROUP_SIZE`.
const WG: u32 = 256u;

struct Lane {
    @builtin(local_invocation_index) index: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) num_sg: u32,
}

// One slot per subgroup; WG slots cover even a subgroup size of 1.
var<workgroup> wg_scratch: array<f32, WG>;

// Sum of `v` over the workgroup; valid in invocation 0 only. Reached by every invocation,
// at most once per dispatch. Subgroup sizes are fixed per device, so the order of the
// additions, and hence the bits of the result, are the same from run to run.
fn workgroup_sum(v: f32, lane: Lane) -> f32 {
    let s = subgroupAdd(v);
    if (lane.sg_lane == 0u) {
        wg_scratch[lane.sg_id] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    if (lane.sg_id == 0u) {
        // Trip count: num_subgroups / subgroup_size ≤ WG / 1, a constant bound.
        var x = 0.0;
        for (var j = lane.sg_lane; j < lane.num_sg; j = j + lane.sg_size) {
            x = x + wg_scratch[j];
        }
        total = subgroupAdd(x);
    }
    return total;
}
