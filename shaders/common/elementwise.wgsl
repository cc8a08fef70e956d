// The elementwise-loss driver, shared by mse/mae/huber/bce/bce_with_logits.wgsl.
//
// One dispatch per chunk (a range of at most one storage binding of elements) reads `preds`
// and `targets` once, writes the gradient (and the per-element losses for Reduction::None)
// and one partial sum per workgroup. `reduce_partials.wgsl` then adds the partials.
// Imports the storage slots: `<io>`, an io_*.wgsl file (how p and t are stored: the unit of
// EPU elements per word), and `<grad>`, a grad_*.wgsl file (how the gradient is stored). Each
// invocation handles whole units, so no two invocations write the same word. The loss file
// that imports this one defines its options, read as `params.loss`,
//     struct LossParams { ... }                                // f32 members (one at least)
// and
//     fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32>   // (ℓ, ∂ℓ/∂p) of element i
// Host side: src/kernels/elementwise.rs (`ElementwiseParams` mirrors `Params`).

#import <reduce>
#import <io>
#import <grad>
#import common/nan.wgsl

struct Params {
    n: u32,            // elements in this chunk; every [n] binding below holds exactly n
    partial_base: u32, // index in `partials` of this chunk's first workgroup sum
    index_base: u32,   // global index of this chunk's element 0 (for error reports)
    w_len: u32,        // weight (WEIGHT): element i uses weight[(w_phase + i) % w_len]
    w_phase: u32,
    q_len: u32,        // pos_weight (POS_WEIGHT), same scheme
    q_phase: u32,
    grad_scale: f32,   // g · (1/N for Reduction::Mean)
    loss: LossParams,  // the loss's own options: `struct LossParams` of its file
}

// Four units per trip in the main loop (set by the host: GPUs yes, software adapters no, and
// never with the vec4 units of io_f32x4.wgsl, io_f16x8.wgsl and io_bf16x8.wgsl, whose lanes
// already move 16 bytes per array per trip).
override UNROLL: bool = false;

// What the call writes and reads, fixed per pipeline (set by the host, `ew_switches` in
// src/kernels/elementwise.rs) rather than read from `params` per element: llvmpipe runs a
// branch on a uniform value as a masked branch with its test, on every element, even when
// it is never taken (`docs/TUNING.md`: the three tests cost 1.65x on mse's kernel step).
// The gradient (binding 4).
override WRITE_GRAD: bool = false;
// The per-element losses (binding 5; Reduction::None).
override WRITE_LOSSES: bool = false;
// The upstream gradient is an array (binding 3; Reduction::None), not the scalar in grad_scale.
override UPSTREAM_ARRAY: bool = false;
// A weight (weight.wgsl's binding 7) and a pos_weight (bce_with_logits.wgsl's binding 8) are
// bound; without them every element's is 1.
override WEIGHT: bool = false;
override POS_WEIGHT: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
// [n] prediction (probabilities for BCE, logits for BCE with logits), ⌈n / EPU⌉ Words.
@group(0) @binding(1) var<storage, read> preds: array<Word>;
// [n] target, stored like the prediction.
@group(0) @binding(2) var<storage, read> targets: array<Word>;
// [n] upstream gradient g_i (Reduction::None with an array), else a 1-element dummy.
@group(0) @binding(3) var<storage, read> upstream: array<f32>;
// [n] gradient out, g · ∂ℓ_i/∂p_i (WRITE_GRAD), else a 1-element dummy.
@group(0) @binding(4) var<storage, read_write> grad: array<GradSlot>;
// [n] per-element losses out (WRITE_LOSSES), else a 1-element dummy.
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;
// [all chunks' workgroups] one partial sum of ℓ per workgroup.
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

fn broadcast_at(len: u32, phase: u32, i: u32) -> u32 {
    return (phase + i) % len;
}

// The loss sum `acc` after unit u's elements (whose values are pu, tu), in element order;
// writes their gradient and per-element losses. `whole`: all EPU elements of the unit are in
// [0, n) (a constant at every call, so the test per element compiles away where it is true).
fn unit_step(acc_in: f32, u: u32, pu: Unit, tu: Unit, whole: bool) -> f32 {
    var acc = acc_in;
    var gu = unit_zero();
    var ok = 0u; // bit e: element e of the unit is written
    for (var e = 0u; e < EPU; e = e + 1u) {
        let i = u * EPU + e;
        if (whole || i < params.n) {
            let p = unit_elem(pu, e);
            let t = unit_elem(tu, e);
            var lg = loss_and_grad(i, p, t);
            if (is_nan(p) || is_nan(t)) {
                lg = vec2<f32>(bitcast<f32>(0x7fc00000u));
            }
            acc = acc + lg.x;
            if (WRITE_LOSSES) {
                losses[i] = lg.x;
            }
            if (WRITE_GRAD) {
                var g = params.grad_scale;
                if (UPSTREAM_ARRAY) {
                    g = g * upstream[i];
                }
                gu = unit_with(gu, e, g * lg.y);
                ok = ok | (1u << e);
            }
        }
    }
    if (WRITE_GRAD) {
        write_grad(u, gu, ok);
    }
    return acc;
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Grid-stride loop over units (words). The host sizes the grid so the trip count stays
    // far below 65 535 (llvmpipe silently ends longer loops): see `grid_for` in
    // src/kernels/elementwise.rs.
    // With UNROLL, four of a lane's units per trip, all eight loads issued before any is used,
    // so each lane keeps four times the bytes in flight (a GPU's bandwidth needs that much
    // memory-level parallelism); the units are still summed in the lane's order u, u + stride,
    // ..., so the result is the same bits as one unit per trip.
    // The units wholly in [0, n) first, then the one partial unit at the end (16-bit storage
    // with n odd), which is the last in its lane's order too: the same sums as one loop.
    let stride = nwg.x * WG;
    let units = params.n / EPU;
    var acc = 0.0;
    var u = wid.x * WG + lane.index;
    for (; UNROLL && u + 3u * stride < units; u = u + 4u * stride) {
        let p0 = preds[u];
        let p1 = preds[u + stride];
        let p2 = preds[u + 2u * stride];
        let p3 = preds[u + 3u * stride];
        let t0 = targets[u];
        let t1 = targets[u + stride];
        let t2 = targets[u + 2u * stride];
        let t3 = targets[u + 3u * stride];
        acc = unit_step(acc, u, unpack_unit(p0), unpack_unit(t0), true);
        acc = unit_step(acc, u + stride, unpack_unit(p1), unpack_unit(t1), true);
        acc = unit_step(acc, u + 2u * stride, unpack_unit(p2), unpack_unit(t2), true);
        acc = unit_step(acc, u + 3u * stride, unpack_unit(p3), unpack_unit(t3), true);
    }
    for (; u < units; u = u + stride) {
        acc = unit_step(acc, u, unpack_unit(preds[u]), unpack_unit(targets[u]), true);
    }
    if (u == units && units * EPU < params.n) {
        acc = unit_step(acc, u, unpack_unit(preds[u]), unpack_unit(targets[u]), false);
    }
    let total = workgroup_sum(acc, lane);
    if (lane.index == 0u) {
        partials[params.partial_base + wid.x] = total;
    }
}
