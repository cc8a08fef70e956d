// What the three steps of vocabulary-sharded softmax cross entropy share (sharded_max.wgsl,
// sharded_sums.wgsl, sharded_loss.wgsl; host side src/sharded.rs, `ShardParams` mirrors
// `Params`; the formulas in docs/SHARDS.md): the parameter block, the shard's logits, the
// class ids and the shard's class weights, and the row layout.
//
// A shard holds columns [offset, offset + cols) of a vocabulary of `vocab` classes: logits
// [rows, cols] (units of EPU elements, `<io>`; with 16-bit storage the host requires an even
// `cols`, so every row starts on a word), the class ids [rows] of the whole batch (i32, u32,
// or i64 as two words; common/classes.wgsl compares them with [0, vocab) and ignore_index),
// and the weights [cols] of the shard's own classes. Each row is handled by `group` adjacent
// lanes (a power of two ≤ WG, chosen by the host from the row length as the row driver's
// `group_for`); a lane's loop over its units runs ⌈units / group⌉ ≤ 16 384 trips and the row
// loop `row_iters` ≤ 16 384 (both checked by the host), far below llvmpipe's silent
// 65 535-iteration cap. Reductions over a row are fixed-order trees: the same bits every run.

#import <reduce>
#import <io>
#import common/nan.wgsl
#import common/classes.wgsl
#import common/softcap.wgsl
#import common/shard_layout.wgsl

struct Params {
    rows: u32,             // B
    cols: u32,             // C_k, this shard's width
    group: u32,            // lanes per row: a power of two ≤ WG
    row_iters: u32,        // trips of the row loop (≤ 16 384)
    offset: u32,           // o_k, the global class id of the shard's column 0
    vocab: u32,            // C, the whole vocabulary
    flags: u32,            // FLAG_* below
    ignore_lo: u32,        // ignore_index as an i64: its low word,
    ignore_hi: u32,        // and its high word
    smooth_per_class: f32, // ε / C
    _pad0: u32,
    _pad1: u32,
    label_smoothing: f32,  // ε in [0, 1)
    z_loss: f32,           // λ ≥ 0
    softcap: f32,          // c > 0, or 0 for no cap
    inv_softcap: f32,      // 1 / c (0 for no cap)
}

const FLAG_WEIGHT: u32 = 16u;
// The class ids are i64 (two words each, low first), or u32; else i32 (common/classes.wgsl).
const FLAG_CLASSES_I64: u32 = 32u;
const FLAG_CLASSES_U32: u32 = 64u;

const F32_MAX: f32 = 3.40282347e+38;

// Whether the logits are capped (the host's pipeline switch, as softmax_cross_entropy.wgsl).
override SOFTCAP: bool = false;
// The loss drivers' four-units-per-trip switch, which the host sets on every kernel that
// takes `<io>`; these kernels take one unit per trip either way.
override UNROLL: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
// [rows · cols] the shard's logits, in units (`<io>`).
@group(0) @binding(1) var<storage, read> preds: array<u32>;
// [rows] class ids of the whole batch: i32 or u32 words, or i64 as two words each.
@group(0) @binding(2) var<storage, read> targets: array<u32>;
// [cols] the class weights of the shard's classes (FLAG_WEIGHT), else a dummy.
@group(0) @binding(3) var<storage, read> weight: array<f32>;

// Word i of the class ids (common/classes.wgsl decodes them).
fn class_word(i: u32) -> u32 {
    return targets[i];
}

// The class of row r: in [0, vocab), CLASS_IGNORED or CLASS_OUT_OF_RANGE.
fn row_class(r: u32) -> i32 {
    return class_of(r, params.flags, params.vocab, vec2<u32>(params.ignore_lo, params.ignore_hi));
}

// The weight of the shard's column j (local).
fn class_weight(j: u32) -> f32 {
    if ((params.flags & FLAG_WEIGHT) != 0u) {
        return weight[j];
    }
    return 1.0;
}

// The logit the softmax sees and its derivative: (x, 1) without a cap.
fn capped(x: f32) -> vec2<f32> {
    if (!SOFTCAP) {
        return vec2<f32>(x, 1.0);
    }
    return softcap(x, params.softcap, params.inv_softcap);
}

// Logit i (flat over the shard's [rows, cols]).
fn pred_at(i: u32) -> f32 {
    return unit_elem(unpack_unit(preds[i / EPU]), i % EPU);
}

// wt · δ, with 0 · (±∞) = 0.
fn shift(wt: f32, delta: f32) -> f32 {
    return select(wt * delta, 0.0, wt == 0.0);
}

// Where a lane is: its row slot and its lane within the row's group.
struct RowLane {
    lig: u32,    // lane within the row's group
    per_wg: u32, // rows per workgroup per trip
    slot: u32,   // which of them
}

fn row_lane(lane: Lane) -> RowLane {
    let group = params.group;
    return RowLane(lane.index & (group - 1u), WG / group, lane.index / group);
}

// Row of trip `it` of a lane (≥ rows: none).
fn row_of(it: u32, rl: RowLane, wid: u32, nwg: u32) -> u32 {
    return (it * nwg + wid) * rl.per_wg + rl.slot;
}
