// Copy kernel: `dst = src`, four floats at a time. Not a loss: `wgpu-loss bench` times it to
// measure the adapter's memory bandwidth, the ceiling the loss kernels are compared with.
// Self-contained (built by the CLI, not composed by the library).
// Host side: copy.rs beside it (`CopyParams` mirrors `Params`).

// Invocations per workgroup; `WORKGROUP_SIZE` in copy.rs.
const WG: u32 = 256u;

struct Lane {
    @builtin(local_invocation_index) index: u32,
}

struct Params {
    n4: u32, // vec4 elements to copy; `src` and `dst` hold at least this many
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// [n4] source, vec4<f32>.
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
// [n4] destination, vec4<f32>.
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Grid-stride loop; the host sizes the grid so the trip count stays far below 65 535
    // (llvmpipe silently ends longer loops). The tail is guarded by the buffer's length too.
    let stride = nwg.x * WG;
    let n = min(params.n4, min(arrayLength(&src), arrayLength(&dst)));
    for (var i = wid.x * WG + lane.index; i < n; i = i + stride) {
        dst[i] = src[i];
    }
}
