// Class-index pre-pass of softmax cross entropy: checks every class index, counts the rows
// that are not ignored, and sums their class weights (the mean's divisor D, as in PyTorch).
// One partial sum of weights per workgroup (added by row_divisor.wgsl in a fixed order);
// the count and the first out-of-range row are integer atomics, exact in any order. Both start
// from a buffer cleared to zero, so a step recorded into an encoder needs no host write.
// common/classes.wgsl decodes the ids (i32, u32 or i64) through `class_word`, defined here.
// Host side: src/kernels/rows.rs (`ClassParams` mirrors `Params`).

#import <reduce>
#import common/classes.wgsl

struct Params {
    rows: u32,         // rows (class indices) in this chunk
    cols: u32,         // C
    ignore_lo: u32,    // ignore_index as an i64: its low word,
    flags: u32,        // FLAG_WEIGHT: class weights bound; FLAG_CLASSES_*: the ids' type
    row_base: u32,     // global index of this chunk's row 0
    partial_base: u32, // index in `partials` of this chunk's first workgroup sum
    ignore_hi: u32,    // and its high word
    _pad0: u32,
}

// The values of rows.wgsl's flags of the same names.
const FLAG_WEIGHT: u32 = 16u;
const FLAG_CLASSES_I64: u32 = 32u;
const FLAG_CLASSES_U32: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
// [rows] class ids: i32 or u32 words, or i64 as two words each (the flags say which).
@group(0) @binding(1) var<storage, read> classes: array<u32>;
// [cols] class weights (FLAG_WEIGHT), else a dummy.
@group(0) @binding(2) var<storage, read> weight: array<f32>;
// [all chunks' workgroups] the weight sum of each workgroup's counted rows.
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;
// [0]: u32::MAX − (the smallest global row whose index is out of range), kept with atomicMax
// so that a buffer cleared to zero means "none"; [1]: rows counted.
@group(0) @binding(4) var<storage, read_write> stats: array<atomic<u32>, 2>;

var<workgroup> wg_counted: atomic<u32>;

// Word i of the class ids (common/classes.wgsl decodes them).
fn class_word(i: u32) -> u32 {
    return classes[i];
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Grid-stride loop; the host keeps the trip count ≤ 16 384.
    var acc = 0.0;
    var counted = 0u;
    for (var i = wid.x * WG + lane.index; i < params.rows; i = i + nwg.x * WG) {
        let c = class_of(i, params.flags, params.cols, vec2<u32>(params.ignore_lo, params.ignore_hi));
        if (c == CLASS_IGNORED) {
            continue;
        }
        if (c == CLASS_OUT_OF_RANGE) {
            atomicMax(&stats[0], 0xffffffffu - (params.row_base + i));
            continue;
        }
        var w = 1.0;
        if ((params.flags & FLAG_WEIGHT) != 0u) {
            w = weight[u32(c)];
        }
        acc = acc + w;
        counted = counted + 1u;
    }
    atomicAdd(&wg_counted, counted);
    let total = workgroup_sum(acc, lane); // its barrier makes every atomicAdd above visible
    if (lane.index == 0u) {
        partials[params.partial_base + wid.x] = total;
        atomicAdd(&stats[1], atomicLoad(&wg_counted));
    }
}
