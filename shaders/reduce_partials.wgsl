// Second pass of every reduction: adds the per-workgroup partial sums into the loss value,
// in one workgroup and a fixed order (no float atomics), and applies the reduction's scale
// (1/D for Mean, 1 for Sum). Host side: src/kernels/mod.rs (`FinalizeParams` mirrors `Params`).

struct Params {
    count: u32,  // partial sums to add
    scale: f32,  // 1/D for Reduction::Mean, 1 for Reduction::Sum
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// [count] per-workgroup sums from the first pass.
@group(0) @binding(1) var<storage, read> partials: array<f32>;
// [1] the loss value.
@group(0) @binding(2) var<storage, read_write> value: array<f32>;

@compute @workgroup_size(WG)
fn main(lane: Lane) {
    // Trip count count / WG; the host keeps count ≤ 65 535 · WG (`MAX_PARTIALS`).
    var acc = 0.0;
    for (var i = lane.index; i < params.count; i = i + WG) {
        acc = acc + partials[i];
    }
    let total = workgroup_sum(acc, lane);
    if (lane.index == 0u) {
        value[0] = total * params.scale;
    }
}
