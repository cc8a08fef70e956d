// Workgroup-wide sum, plain flavour: a shared-memory tree in a fixed pairing order.
//
// The host (src/kernels/mod.rs, `ReduceFlavor::Plain`) puts this file in front of every kernel
// when the adapter has no subgroup operations or they are turned off. `reduce_subgroup.wgsl`
// defines the same three items (`WG`, `Lane`, `workgroup_sum`) with subgroup operations.

// Invocations per workgroup. Mirrored by `wgpu_loss::kernels::WORKGROUP_SIZE`;
// tests/shaders.rs checks that every entry point uses it.
const WG: u32 = 256u;

// The built-in ids a kernel hands to `workgroup_sum`.
struct Lane {
    @builtin(local_invocation_index) index: u32,
}

var<workgroup> wg_scratch: array<f32, WG>;

// Sum of `v` over the workgroup. The result is valid in invocation 0 only.
// Must be reached by every invocation (it holds barriers), at most once per dispatch.
// The pairing order is fixed, so the same inputs always give the same bits.
fn workgroup_sum(v: f32, lane: Lane) -> f32 {
    wg_scratch[lane.index] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lane.index < stride) {
            wg_scratch[lane.index] = wg_scratch[lane.index] + wg_scratch[lane.index + stride];
        }
        workgroupBarrier();
    }
    return wg_scratch[0];
}
