// The elementwise-loss driver, shared by mse/mae/huber/bce/bce_with_logits.wgsl.
//
// One dispatch per chunk (a range of at most one storage binding of elements) reads `preds`
// and `targets` once, writes the gradient (and the per-element losses for Reduction::None)
// and one partial sum per workgroup. `reduce_partials.wgsl` then adds the partials.
// Composed after an io_*.wgsl file (how p and t are stored: the unit of EPU elements per
// word) and a grad_*.wgsl file (how the gradient is stored). Each invocation handles whole
// units, so no two invocations write the same word. The loss file that follows defines
//     fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32>   // (ℓ, ∂ℓ/∂p) of element i
// Host side: src/kernels/elementwise.rs (`ElementwiseParams` mirrors `Params`).

struct Params {
    n: u32,            // elements in this chunk; every [n] binding below holds exactly n
    partial_base: u32, // index in `partials` of this chunk's first workgroup sum
    flags: u32,        // FLAG_* below
    index_base: u32,   // global index of this chunk's element 0 (for error reports)
    w_len: u32,        // weight: element i uses weight[(w_phase + i) % w_len]; 0 = no weight
    w_phase: u32,
    q_len: u32,        // pos_weight, same scheme; 0 = none
    q_phase: u32,
    grad_scale: f32,   // g · (1/N for Reduction::Mean)
    delta: f32,        // Huber's δ
    _pad0: u32,
    _pad1: u32,
}

const FLAG_WRITE_GRAD: u32 = 1u;
const FLAG_WRITE_LOSSES: u32 = 2u;
const FLAG_UPSTREAM_ARRAY: u32 = 4u;

@group(0) @binding(0) var<uniform> params: Params;
// [n] prediction (probabilities for BCE, logits for BCE with logits), ⌈n / EPU⌉ Words.
@group(0) @binding(1) var<storage, read> preds: array<Word>;
// [n] target, stored like the prediction.
@group(0) @binding(2) var<storage, read> targets: array<Word>;
// [n] upstream gradient g_i (Reduction::None with an array), else a 1-element dummy.
@group(0) @binding(3) var<storage, read> upstream: array<f32>;
// [n] gradient out, g · ∂ℓ_i/∂p_i (FLAG_WRITE_GRAD), else a 1-element dummy.
@group(0) @binding(4) var<storage, read_write> grad: array<GradSlot>;
// [n] per-element losses out (FLAG_WRITE_LOSSES), else a 1-element dummy.
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;
// [all chunks' workgroups] one partial sum of ℓ per workgroup.
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// NaN test on the bits: WGSL lets compilers assume floats are never NaN, so `x != x` may fold away.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn broadcast_at(len: u32, phase: u32, i: u32) -> u32 {
    return (phase + i) % len;
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Grid-stride loop over units (words). The host sizes the grid so the trip count stays
    // far below 65 535 (llvmpipe silently ends longer loops): see `plan_chunk` in elementwise.rs.
    let stride = nwg.x * WG;
    let units = (params.n + EPU - 1u) / EPU;
    var acc = 0.0;
    for (var u = wid.x * WG + lane.index; u < units; u = u + stride) {
        let pu = unpack_unit(preds[u]);
        let tu = unpack_unit(targets[u]);
        var gu = unit_zero();
        var ok: Mask;
        for (var e = 0u; e < EPU; e = e + 1u) {
            let i = u * EPU + e;
            if (i < params.n) {
                let p = unit_elem(pu, e);
                let t = unit_elem(tu, e);
                var lg = loss_and_grad(i, p, t);
                if (is_nan(p) || is_nan(t)) {
                    lg = vec2<f32>(bitcast<f32>(0x7fc00000u));
                }
                acc = acc + lg.x;
                if ((params.flags & FLAG_WRITE_LOSSES) != 0u) {
                    losses[i] = lg.x;
                }
                if ((params.flags & FLAG_WRITE_GRAD) != 0u) {
                    var g = params.grad_scale;
                    if ((params.flags & FLAG_UPSTREAM_ARRAY) != 0u) {
                        g = g * upstream[i];
                    }
                    gu = unit_with(gu, e, g * lg.y);
                    ok[e] = true;
                }
            }
        }
        if ((params.flags & FLAG_WRITE_GRAD) != 0u) {
            write_grad(u, gu, ok);
        }
    }
    let total = workgroup_sum(acc, lane);
    if (lane.index == 0u) {
        partials[params.partial_base + wid.x] = total;
    }
}
