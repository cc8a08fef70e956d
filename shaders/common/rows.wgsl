// The row-wise driver, shared by categorical_cross_entropy/softmax_cross_entropy/
// cosine_proximity/distill/jsd.wgsl: a segmented reduction over rows of `cols` elements, then
// the gradient.
//
// Each row is handled by a group of `params.group` adjacent lanes (a power of two, chosen by the
// host from the row length, src/kernels/rows.rs: on GPUs one lane per row for C ≤ 16, the
// whole workgroup for C > 2048, so short rows keep every lane busy and long rows are read by
// many lanes at once; on software adapters one lane per row up to C = 4096, at most 8
// beyond, since each combine step is a barrier there). Each lane
// accumulates statistics over its elements j = lane, lane + group, ... (keeping the first
// ROW_REGS of them in registers), the group combines them in a fixed-order tree in workgroup
// memory, and each lane then writes its elements' gradient. A row of at most group · ROW_REGS
// elements is read once; a longer row is read twice (statistics, then gradient; three times
// with the second sweep below; once where the loss's gradient is written early, below), never
// held in workgroup memory. Long rows may instead be
// split across workgroups (the split passes below).
//
// Imports the storage slots `<io>` (how p and dense t are stored: units of EPU elements per
// 32-bit word), `<grad>` (how the gradient is stored) and `<preds>` (the prediction's binding:
// read only, or read_write for a gradient written in place over it). Lanes own whole *units*
// (words), so with 16-bit storage one lane reads, and writes, both elements of a word. A row
// whose start is not word-aligned (odd C) shares its first and last words with its
// neighbours: each row uses only its own elements of those, and grad_packed.wgsl sets its own
// half of a shared word atomically. Class-index targets are decoded by common/classes.wgsl
// (imported), which reads them through `class_word`, defined here. The loss file that imports
// this one defines
//     alias Stats = ...   (or a struct)                             // a row's statistics
//     fn row_identity() -> Stats                                    // empty statistics
//     const ROW_SCANS: bool   // whether the lane's held elements are scanned before any push:
//     fn row_scan(s: Stats, x: f32, t: f32) -> Stats                // each held element, then
//     fn row_scanned(s: Stats) -> Stats                             // once (cosine's scales)
//     fn row_push(s: Stats, row: RowCtx, j: u32, x: f32, t: f32, scanned: bool) -> Stats
//                                          // scanned: row_scan has seen this element
//     fn row_combine(a: Stats, b: Stats) -> Stats                   // associative
//     fn row_block(s: Stats) -> Stats   // the empty statistics a block of a lane's streamed
//                                       // elements starts from (s: the lane's so far)
//     fn row_finish(s: Stats, row: RowCtx) -> RowOut                // ℓ_r and coefficients
//     fn row_grad(r: RowOut, row: RowCtx, j: u32, x: f32, t: f32) -> f32  // ∂ℓ_r/∂x_rj
//     const ROW_GRAD_EARLY: bool  // row_grad needs nothing of the finished row (it ignores
//                                 // r; categorical_cross_entropy.wgsl): each streamed element's
//                                 // gradient is then written as it is pushed, so a long row is
//                                 // read once, and only a row whose loss turns out NaN is
//                                 // read again, to be written NaN (the rule of scaled_grad)
// and a second statistics sweep, for a loss whose sums need the first sweep's finished
// statistics (jsd.wgsl: Σ_j P_j ln(P_j/M_j) needs the row's maxima and sums):
//     const ROW_SECOND: bool  // whether the second sweep runs (false: common/rows_single.wgsl
//                             // defines it and the stubs below, for the one-sweep losses)
//     alias Second = ...      (or a struct)                         // its statistics
//     const ROW_SECOND_SLOTS: u32  // WG with a second sweep, else 1 (its scratch, unused)
//     fn row_second_identity() -> Second
//     fn row_second_push(s: Second, out: RowOut, row: RowCtx, j: u32, x: f32, t: f32) -> Second
//     fn row_second_combine(a: Second, b: Second) -> Second         // associative
//     fn row_second_finish(out: RowOut, s: Second, row: RowCtx) -> RowOut
// With ROW_SECOND, row_finish's RowOut is what row_second_push sees and row_second_finish's
// what row_grad sees (row_second_finish is not called for a skipped row). The second sweep
// pushes the lane's held elements from registers and re-reads the rest of a long row with
// the same bounded loop as the first, then combines in the same fixed-order tree (in its own
// scratch array `row_second_scratch`): the same bits every run. A row longer than
// group · ROW_REGS is then read three times. ROW_SECOND is a constant, so the one-sweep losses
// compile without the sweep.
// And one more per-row output, the log-sum-exp of the logits the softmax sees (softmax cross
// entropy; the others import common/rows_no_lse.wgsl):
//     const ROW_LSE: bool     // whether the loss has one
//     fn row_lse(out: RowOut) -> f32   // from row_finish's RowOut, NaN rows included
// With FLAG_WRITE_LSE, every live row's is written to `lse_out`, an ignored row's too: its
// statistics are then gathered as a counted row's (its loss and gradient stay 0).
// And for a loss whose long rows may be split across workgroups (softmax cross entropy, cce,
// distill; cosine, whose scan needs a lane's held elements, and jsd, whose second sweep needs
// the finished row, import common/rows_no_split.wgsl), its statistics as eight words, to and
// from the buffer the split passes below hand them over in:
//     const ROW_SPLIT: bool   // whether the host may run the split passes (below)
//     fn row_stats_words(s: Stats) -> StatsWords
//     fn row_stats_of(w: StatsWords) -> Stats    // row_stats_of(row_stats_words(s)) = s
// Host side: src/kernels/rows.rs (`RowParams` mirrors `Params`).

#import <reduce>
#import <io>
#import <grad>
#import <preds>
#import common/nan.wgsl
#import common/classes.wgsl

struct Params {
    rows: u32,         // rows in this chunk
    cols: u32,         // C, the row length
    group: u32,        // lanes per row: a power of two ≤ WG
    row_iters: u32,    // trips of the row loop (the host keeps it ≤ 16 384)
    partial_base: u32, // index in `partials` of this chunk's first workgroup sum
    flags: u32,        // FLAG_* below
    row_base: u32,     // global index of this chunk's row 0 (for error reports)
    ignore_lo: u32,    // ignore_index as an i64: its low word,
    ignore_hi: u32,    // and its high word (class ids equal to it are ignored)
    segments: u32,     // split rows (SPLIT_STATS, SPLIT_FINISH, SPLIT_GRAD): segments a row, else 1
    seg_units: u32,    // split rows: units per segment (the last may have fewer)
    stats_base: u32,   // split rows: index in `partials` of the segment statistics and RowOuts
    loss: LossParams,  // the loss's own options: `struct LossParams` of its file
}

// Where a row starts and what it is.
struct RowCtx {
    start: u32, // flat index (in this chunk) of the row's element 0
    row: u32,   // global row index
    cls: i32,   // class-index target, or -1 for float targets
}

// A finished row: its loss and four coefficients its gradient needs.
struct RowOut {
    loss: f32,
    k: vec4<f32>,
}

// Four units per trip in the long-row loops (set by the host: GPUs yes, software adapters no).
override UNROLL: bool = false;

// The target's form and the class weights, fixed per pipeline (set by the host, `RowPlan`
// in src/kernels/rows.rs) because each is tested per element: llvmpipe runs a branch on a
// uniform value with its test on every element even when it is never taken. What is tested
// once per row stays in `params.flags`.
// Class-index targets [rows] (else dense targets shaped like the prediction).
override CLASSES: bool = false;
// Class weights bound (binding 7).
override WEIGHT: bool = false;

const FLAG_WRITE_GRAD: u32 = 1u;
const FLAG_WRITE_LOSSES: u32 = 2u;
const FLAG_UPSTREAM_ARRAY: u32 = 4u;
// With CLASSES: the class ids are i64 (two words each, low first), or u32; else i32.
const FLAG_CLASSES_I64: u32 = 32u;
const FLAG_CLASSES_U32: u32 = 64u;
// Each row's log-sum-exp into `lse_out` (a loss with ROW_LSE).
const FLAG_WRITE_LSE: u32 = 128u;

// Elements per lane kept in registers between the statistics and the gradient.
const ROW_REGS: u32 = 16u;
// A lane's streamed units (those past its held ones) are pushed in blocks of this many, each
// into statistics of its own (row_block), and ROW_BLOCK blocks join a span's statistics
// (row_combine), which then join the lane's. So a lane's f32 sums have at most ROW_BLOCK · EPU
// terms in a row, ROW_BLOCK blocks in a span and one term per span: with 16 032 elements per
// lane (a row of 128 256 over 8 lanes on software adapters), about 16 + 64 + 16 + 16 terms in
// a row instead of 16 + 64 + 250, whose rounding (a random walk, √terms ulp) is then 1.7×
// smaller.
const ROW_BLOCK: u32 = 16u;
// The same, in units (words).
const UNIT_REGS: u32 = ROW_REGS / EPU;

@group(0) @binding(0) var<uniform> params: Params;
// Binding 1, `preds`: the [rows · cols] prediction in units, declared by the `<preds>` slot
// (common/preds_read.wgsl, or common/preds_in_place.wgsl for a gradient written over it).
// Float targets [rows · cols] stored like the prediction, or class ids [rows] (CLASSES):
// i32, u32, or i64 as two words each (FLAG_CLASSES_I64, FLAG_CLASSES_U32).
@group(0) @binding(2) var<storage, read> targets: array<u32>;
// [rows] upstream gradient g_r (Reduction::None with an array), else a dummy.
@group(0) @binding(3) var<storage, read> upstream: array<f32>;
// [rows · cols] gradient out (FLAG_WRITE_GRAD), else a dummy.
@group(0) @binding(4) var<storage, read_write> grad: array<GradSlot>;
// [rows] per-row losses out (FLAG_WRITE_LOSSES), else a dummy.
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;
// [all chunks' workgroups] one partial sum of ℓ_r per workgroup.
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
// [cols] class weights (WEIGHT), else a dummy.
@group(0) @binding(7) var<storage, read> weight: array<f32>;
// (D, gradient scale, value scale, zero flag): written by row_divisor.wgsl or by the host.
// A non-zero flag (D = 0 for a mean) makes every gradient element exactly 0.
@group(0) @binding(8) var<uniform> norm: vec4<f32>;
// [rows] per-row log-sum-exp out (FLAG_WRITE_LSE with ROW_LSE), else a dummy.
@group(0) @binding(9) var<storage, read_write> lse_out: array<f32>;

var<workgroup> row_scratch: array<Stats, WG>;
// The second sweep's combine tree (ROW_SECOND; one unused slot otherwise).
var<workgroup> row_second_scratch: array<Second, ROW_SECOND_SLOTS>;

// Word i of the class ids (common/classes.wgsl decodes them).
fn class_word(i: u32) -> u32 {
    return targets[i];
}

// Dense targets of unit (word) w; zeros with class-index targets.
fn target_unit(w: u32) -> Unit {
    if (CLASSES) {
        return unit_zero();
    }
    let i = w * WORD_U32S;
    if (WORD_U32S == 4u) {
        return unit_of_u32s(vec4<u32>(targets[i], targets[i + 1u], targets[i + 2u], targets[i + 3u]));
    }
    return unit_of_u32s(vec4<u32>(targets[i], 0u, 0u, 0u));
}

// Four units of a row, `group` words apart from word w, with their loads issued together
// (the unrolled trips of every sweep).
struct Quad {
    x: array<Unit, 4>,
    t: array<Unit, 4>,
}

fn load_quad(w: u32, group: u32) -> Quad {
    let x0 = preds[w];
    let x1 = preds[w + group];
    let x2 = preds[w + 2u * group];
    let x3 = preds[w + 3u * group];
    let t0 = target_unit(w);
    let t1 = target_unit(w + group);
    let t2 = target_unit(w + 2u * group);
    let t3 = target_unit(w + 3u * group);
    return Quad(
        array<Unit, 4>(unpack_unit(x0), unpack_unit(x1), unpack_unit(x2), unpack_unit(x3)),
        array<Unit, 4>(t0, t1, t2, t3),
    );
}

// Prediction element i (flat, in this chunk).
fn pred_at(i: u32) -> f32 {
    return unit_elem(unpack_unit(preds[i / EPU]), i % EPU);
}

fn class_weight(j: u32) -> f32 {
    if (WEIGHT) {
        return weight[j];
    }
    return 1.0;
}

// Gradient of element j of a finished row, with the row's scale; a row whose loss is NaN
// (NaN somewhere in its inputs) gets NaN everywhere, and every element is 0 where norm's
// zero flag is set. Selects, not branches: the tests are the same for every element of a row.
fn scaled_grad(r: RowOut, row: RowCtx, j: u32, x: f32, t: f32, scale: f32) -> f32 {
    let g = select(scale * row_grad(r, row, j, x, t), r.loss, is_nan(r.loss));
    return select(g, 0.0, norm.w != 0.0);
}

// Whether element e of the unit whose first element is the row's `at` (counted from its first
// word) is the row's (in [0, C) after `lead`). Always with one element per unit, and with the
// vec4 units' four or eight (io_f32x4.wgsl, io_f16x8.wgsl, io_bf16x8.wgsl), which the host
// uses only for rows of a whole number of units: every unit the lane reaches (q < units) is
// then the row's, so the test compiles away.
fn in_row(at: u32, e: u32, lead: u32) -> bool {
    let k = at + e;
    return EPU == 1u || EPU >= 4u || (k >= lead && k - lead < params.cols);
}

// Pushes the row's elements of one unit; `at` = the unit's first element counted from the
// row's first word, so element e is the row's element at + e − lead when that is in [0, C).
// `scanned`: row_scan has seen these elements (the lane's held units).
fn push_unit(s: Stats, row: RowCtx, at: u32, lead: u32, x: Unit, t: Unit, scanned: bool) -> Stats {
    var r = s;
    for (var e = 0u; e < EPU; e = e + 1u) {
        let k = at + e;
        if (in_row(at, e, lead)) {
            r = row_push(r, row, k - lead, unit_elem(x, e), unit_elem(t, e), scanned);
        }
    }
    return r;
}

// Scans the row's elements of one unit (row_scan), as push_unit pushes them.
fn scan_unit(s: Stats, at: u32, lead: u32, x: Unit, t: Unit) -> Stats {
    var r = s;
    for (var e = 0u; e < EPU; e = e + 1u) {
        let k = at + e;
        if (in_row(at, e, lead)) {
            r = row_scan(r, unit_elem(x, e), unit_elem(t, e));
        }
    }
    return r;
}

// Pushes the row's elements of one unit into the second sweep (row_second_push), as push_unit.
fn second_unit(s: Second, out: RowOut, row: RowCtx, at: u32, lead: u32, x: Unit, t: Unit) -> Second {
    var r = s;
    for (var e = 0u; e < EPU; e = e + 1u) {
        let k = at + e;
        if (in_row(at, e, lead)) {
            r = row_second_push(r, out, row, k - lead, unit_elem(x, e), unit_elem(t, e));
        }
    }
    return r;
}

// Writes the gradient of the row's elements of unit (word) `w`: zeros for a skipped row.
fn grad_unit(out: RowOut, row: RowCtx, w: u32, at: u32, lead: u32, x: Unit, t: Unit, scale: f32, skip: bool) {
    var g = unit_zero();
    var ok = 0u; // bit e: element e of the unit is written
    for (var e = 0u; e < EPU; e = e + 1u) {
        let k = at + e;
        if (in_row(at, e, lead)) {
            ok = ok | (1u << e);
            let ge = scaled_grad(out, row, k - lead, unit_elem(x, e), unit_elem(t, e), scale);
            g = unit_with(g, e, select(ge, 0.0, skip));
        }
    }
    write_grad(w, g, ok);
}

// A row's statistics as the split passes store them (ROW_SPLIT).
struct StatsWords {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// What the driver knows of row r (counted in this chunk) before reading it.
struct RowAt {
    row: RowCtx,
    live: bool, // r < rows
    skip: bool, // not live, or its class ignored or out of range: loss 0, gradient 0
    idle: bool, // not read: skipped, and no log-sum-exp wanted from it
    lse: bool,  // its log-sum-exp is written (FLAG_WRITE_LSE with ROW_LSE)
    // The row's units: words w0 .. w0 + units − 1; element e of unit q is the row's element
    // q·EPU + e − lead, where lead (0 or 1) is how far into its first word the row starts.
    // Elements outside [0, C) belong to the neighbouring rows.
    lead: u32,
    w0: u32,
    units: u32,
}

fn row_at(r: u32) -> RowAt {
    let cols = params.cols;
    let live = r < params.rows;
    var row = RowCtx(r * cols, params.row_base + r, -1);
    var skip = !live;
    if (live && CLASSES) {
        // Ignored, or out of range (class_count.wgsl reports it): loss 0, gradient 0.
        let c = class_of(r, params.flags, cols, vec2<u32>(params.ignore_lo, params.ignore_hi));
        skip = c < 0;
        row.cls = select(c, -1, skip);
    }
    // Whether the row is read: a skipped row too where its log-sum-exp is wanted.
    let lse = ROW_LSE && (params.flags & FLAG_WRITE_LSE) != 0u;
    let idle = skip && !(live && lse);
    let lead = row.start % EPU;
    return RowAt(row, live, skip, idle, lse, lead, row.start / EPU, (lead + cols + EPU - 1u) / EPU);
}

// Whether the gradient of row r's streamed elements is written as they are pushed
// (ROW_GRAD_EARLY, a constant: false compiles the writes away).
fn grad_early(a: RowAt) -> bool {
    return ROW_GRAD_EARLY && a.live && (params.flags & FLAG_WRITE_GRAD) != 0u;
}

// Pushes one streamed unit (word w, its first element the row's `at` from its first word),
// and with `early` writes its gradient too (scale: grad_scale's; grad_unit makes a skipped
// row's 0), while it is in registers.
fn push_streamed(s: Stats, a: RowAt, w: u32, at: u32, x: Unit, t: Unit, early: bool, scale: f32) -> Stats {
    if (early) {
        grad_unit(RowOut(0.0, vec4<f32>(0.0)), a.row, w, at, a.lead, x, t, scale, a.skip);
    }
    return push_unit(s, a.row, at, a.lead, x, t, false);
}

// Pushes the row's units q, q + step, ... below `end` from memory, in spans of ROW_BLOCK
// blocks of ROW_BLOCK units per lane (with UNROLL, four units per trip with their loads issued
// together); trips ≤ (end − q) / step ≤ 16 384 in all (checked by the host), at most
// ROW_BLOCK of them per block and per span. With grad_early, each unit's gradient is written
// as it is pushed (push_streamed), with `scale`.
fn push_stream(s0: Stats, a: RowAt, q0: u32, end: u32, step: u32, scale: f32) -> Stats {
    var s = s0;
    var q = q0;
    let early = grad_early(a);
    let w0 = a.w0;
    for (; !a.idle && q < end;) {
        let span_end = min(end, q + ROW_BLOCK * ROW_BLOCK * step);
        var sp = row_block(s);
        for (; q < span_end;) {
            let block_end = min(span_end, q + ROW_BLOCK * step);
            var b = row_block(s);
            for (; UNROLL && q + 3u * step < block_end; q = q + 4u * step) {
                let u = load_quad(w0 + q, step);
                b = push_streamed(b, a, w0 + q, q * EPU, u.x[0], u.t[0], early, scale);
                b = push_streamed(b, a, w0 + q + step, (q + step) * EPU, u.x[1], u.t[1], early, scale);
                b = push_streamed(b, a, w0 + q + 2u * step, (q + 2u * step) * EPU, u.x[2], u.t[2], early, scale);
                b = push_streamed(b, a, w0 + q + 3u * step, (q + 3u * step) * EPU, u.x[3], u.t[3], early, scale);
            }
            for (; q < block_end; q = q + step) {
                b = push_streamed(b, a, w0 + q, q * EPU, unpack_unit(preds[w0 + q]), target_unit(w0 + q), early, scale);
            }
            sp = row_combine(sp, b);
        }
        s = row_combine(s, sp);
    }
    return s;
}

// The statistics of `group` adjacent lanes combined, lane `lig` of them at workgroup index
// `index`: a fixed-order tree, so the same bits every run. Every lane of the workgroup calls
// it (barriers inside).
fn group_stats(s: Stats, index: u32, lig: u32, group: u32) -> Stats {
    row_scratch[index] = s;
    workgroupBarrier();
    for (var h = group / 2u; h > 0u; h = h / 2u) {
        if (lig < h) {
            row_scratch[index] = row_combine(row_scratch[index], row_scratch[index + h]);
        }
        workgroupBarrier();
    }
    let out = row_scratch[index - lig];
    workgroupBarrier(); // everyone has read before the scratch is written again
    return out;
}

// The row finished from its statistics (zeros for an idle row), its log-sum-exp written
// where wanted (by the lane that passes `first`): a skipped row is read for that alone.
fn finish_row(a: RowAt, r: u32, s: Stats, first: bool) -> RowOut {
    var out = RowOut(0.0, vec4<f32>(0.0));
    if (!a.idle) {
        out = row_finish(s, a.row);
        if (a.lse && first) {
            lse_out[r] = row_lse(out);
        }
        if (a.skip) {
            out = RowOut(0.0, vec4<f32>(0.0)); // read for its log-sum-exp alone
        }
    }
    return out;
}

// The scale of row r's gradient: g/D, times its upstream gradient where there is an array.
fn grad_scale(r: u32) -> f32 {
    var scale = norm.y;
    if ((params.flags & FLAG_UPSTREAM_ARRAY) != 0u) {
        scale = scale * upstream[r];
    }
    return scale;
}

// The scale push_stream writes row r's early gradient with: grad_scale's where grad_early,
// else 0 (unused).
fn early_scale(a: RowAt, r: u32) -> f32 {
    var scale = 0.0;
    if (grad_early(a)) {
        scale = grad_scale(r);
    }
    return scale;
}

// Writes the gradient of the row's units q, q + step, ... below `end`, read from memory
// (with UNROLL four units per trip, as push_stream).
fn grad_stream(out: RowOut, a: RowAt, q0: u32, end: u32, step: u32, scale: f32) {
    var q = q0;
    for (; UNROLL && q + 3u * step < end; q = q + 4u * step) {
        let u = load_quad(a.w0 + q, step);
        grad_unit(out, a.row, a.w0 + q, q * EPU, a.lead, u.x[0], u.t[0], scale, a.skip);
        grad_unit(out, a.row, a.w0 + q + step, (q + step) * EPU, a.lead, u.x[1], u.t[1], scale, a.skip);
        grad_unit(out, a.row, a.w0 + q + 2u * step, (q + 2u * step) * EPU, a.lead, u.x[2], u.t[2], scale, a.skip);
        grad_unit(out, a.row, a.w0 + q + 3u * step, (q + 3u * step) * EPU, a.lead, u.x[3], u.t[3], scale, a.skip);
    }
    for (; q < end; q = q + step) {
        grad_unit(out, a.row, a.w0 + q, q * EPU, a.lead, unpack_unit(preds[a.w0 + q]), target_unit(a.w0 + q), scale, a.skip);
    }
}

// ---------------------------------------------------------------------------------------------
// Long rows split across workgroups (a loss with ROW_SPLIT; the host's `RowPlan` with
// segments, src/kernels/rows.rs), so that a few long rows still fill a GPU. Each row's units
// are cut into params.segments segments of params.seg_units (the last may be shorter). Three
// dispatches with the same bind group, each row read twice:
// - SPLIT_STATS: segment k of rows w / segments, w / segments + slots, ... is the work of
//   workgroup w (k = w % segments, slots = workgroups / segments): its statistics
//   (push_stream, then the fixed-order tree) into `partials` at segment_stats_at (eight
//   words, row_stats_words);
// - SPLIT_FINISH: one lane a row combines the row's segment statistics in the order 0, 1, ...,
//   finishes the row (its loss and log-sum-exp written, its loss added to the workgroup's
//   partial sum at partial_base + w) and leaves its RowOut at row_out_at (five words);
// - SPLIT_GRAD: workgroup w again takes segment k of its rows and writes their gradient from
//   the RowOut. A gradient written in place over the logits is then safe: every row's finish
//   (which may read its logits: softmax's target logit) is done before the first gradient
//   word is written. With ROW_GRAD_EARLY the statistics pass writes the gradient (the loss's
//   finish reads nothing of the row) and this pass only a NaN row's again.
override SPLIT_STATS: bool = false;
override SPLIT_FINISH: bool = false;
override SPLIT_GRAD: bool = false;

// Where the statistics of segment k of row r start in `partials`: after the partial sums,
// eight words per segment, `segments` per row.
fn segment_stats_at(r: u32, k: u32) -> u32 {
    return params.stats_base + 8u * (r * params.segments + k);
}

fn store_stats(at: u32, s: Stats) {
    let w = row_stats_words(s);
    partials[at] = w.lo.x;
    partials[at + 1u] = w.lo.y;
    partials[at + 2u] = w.lo.z;
    partials[at + 3u] = w.lo.w;
    partials[at + 4u] = w.hi.x;
    partials[at + 5u] = w.hi.y;
    partials[at + 6u] = w.hi.z;
    partials[at + 7u] = w.hi.w;
}

fn load_stats(at: u32) -> Stats {
    let lo = vec4<f32>(partials[at], partials[at + 1u], partials[at + 2u], partials[at + 3u]);
    let hi = vec4<f32>(partials[at + 4u], partials[at + 5u], partials[at + 6u], partials[at + 7u]);
    return row_stats_of(StatsWords(lo, hi));
}

// Where row r's finished RowOut starts in `partials`: after the chunk's segment statistics.
fn row_out_at(r: u32) -> u32 {
    return segment_stats_at(params.rows, 0u) + 5u * r;
}

// The units [q0, q1) of segment k of a row of `units` units.
fn segment_units(k: u32, units: u32) -> vec2<u32> {
    let q0 = min(units, k * params.seg_units);
    return vec2<u32>(q0, min(units, q0 + params.seg_units));
}

// Of workgroup w of the statistics and gradient passes (of `workgroups`), on trip `it` of its
// row loop: (k, r), its segment and its row.
fn segment_of(w: u32, workgroups: u32, it: u32) -> vec2<u32> {
    let slots = workgroups / params.segments;
    return vec2<u32>(w % params.segments, it * slots + w / params.segments);
}

fn split_stats(lane: Lane, w: u32, workgroups: u32) {
    // Row loop: uniform trip count (barriers inside), ≤ 16 384 trips (the host checks).
    for (var it = 0u; it < params.row_iters; it = it + 1u) {
        let kr = segment_of(w, workgroups, it);
        let a = row_at(kr.y);
        let span = segment_units(kr.x, a.units);
        var s = push_stream(row_identity(), a, span.x + lane.index, span.y, WG, early_scale(a, kr.y));
        s = group_stats(s, lane.index, lane.index, WG);
        if (a.live && lane.index == 0u) {
            store_stats(segment_stats_at(kr.y, kr.x), s);
        }
    }
}

fn split_finish(lane: Lane, w: u32, workgroups: u32) {
    var acc = 0.0;
    // ⌈rows / (workgroups · WG)⌉ ≤ 16 384 trips (the host checks).
    let trips = (params.rows + workgroups * WG - 1u) / (workgroups * WG);
    for (var it = 0u; it < trips; it = it + 1u) {
        let r = (it * workgroups + w) * WG + lane.index;
        let a = row_at(r);
        if (!a.live) {
            continue;
        }
        var s = row_identity();
        // ≤ 16 384 trips (the host checks the segment count).
        for (var j = 0u; j < params.segments; j = j + 1u) {
            let seg = load_stats(segment_stats_at(r, j));
            if (j == 0u) {
                s = seg;
            } else {
                s = row_combine(s, seg);
            }
        }
        let out = finish_row(a, r, s, true);
        let at = row_out_at(r);
        partials[at] = out.loss;
        partials[at + 1u] = out.k.x;
        partials[at + 2u] = out.k.y;
        partials[at + 3u] = out.k.z;
        partials[at + 4u] = out.k.w;
        if ((params.flags & FLAG_WRITE_LOSSES) != 0u) {
            losses[r] = out.loss;
        }
        acc = acc + out.loss;
    }
    let total = workgroup_sum(acc, lane);
    if (lane.index == 0u) {
        partials[params.partial_base + w] = total;
    }
}

fn split_grad(lane: Lane, w: u32, workgroups: u32) {
    for (var it = 0u; it < params.row_iters; it = it + 1u) {
        let kr = segment_of(w, workgroups, it);
        let a = row_at(kr.y);
        if (a.live && (params.flags & FLAG_WRITE_GRAD) != 0u) {
            let at = row_out_at(kr.y);
            let out = RowOut(partials[at], vec4<f32>(partials[at + 1u], partials[at + 2u], partials[at + 3u], partials[at + 4u]));
            // With ROW_GRAD_EARLY the statistics pass wrote the gradient: only a NaN row's
            // is written again.
            if (!ROW_GRAD_EARLY || is_nan(out.loss)) {
                let span = segment_units(kr.x, a.units);
                grad_stream(out, a, span.x + lane.index, span.y, WG, grad_scale(kr.y));
            }
        }
    }
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (SPLIT_STATS) {
        split_stats(lane, wid.x, nwg.x);
        return;
    }
    if (SPLIT_FINISH) {
        split_finish(lane, wid.x, nwg.x);
        return;
    }
    if (SPLIT_GRAD) {
        split_grad(lane, wid.x, nwg.x);
        return;
    }
    let group = params.group;
    let lig = lane.index & (group - 1u); // lane within its row's group
    let per_wg = WG / group;             // rows per workgroup per trip
    let slot = lane.index / group;
    var acc = 0.0;
    // Row loop: uniform trip count (barriers inside), ≤ 16 384 trips by construction.
    for (var it = 0u; it < params.row_iters; it = it + 1u) {
        let r = (it * nwg.x + wid.x) * per_wg + slot;
        let a = row_at(r);
        let row = a.row;
        let idle = a.idle;
        let skip = a.skip;
        let lead = a.lead;
        let w0 = a.w0;
        let units = a.units;

        // Statistics: the first UNIT_REGS units of this lane stay in registers.
        var s = row_identity();
        var xs: array<Unit, UNIT_REGS>;
        var ts: array<Unit, UNIT_REGS>;
        // A constant trip bound (so compilers can unroll into registers), ended early where a
        // lane owns fewer units.
        // All of these loads are issued before the first is used (memory-level parallelism),
        // then pushed in the same order as loaded.
        let held = min(UNIT_REGS, (units + group - 1u) / group);
        for (var k = 0u; k < UNIT_REGS; k = k + 1u) {
            if (k >= held) {
                break;
            }
            let q = lig + k * group;
            if (!idle && q < units) {
                xs[k] = unpack_unit(preds[w0 + q]);
                ts[k] = target_unit(w0 + q);
            }
        }
        // A loss that scans (ROW_SCANS, a constant) sees the held elements first: cosine sets
        // its scales from them, so that pushing them needs no check.
        if (ROW_SCANS) {
            for (var k = 0u; k < UNIT_REGS; k = k + 1u) {
                if (k >= held) {
                    break;
                }
                let q = lig + k * group;
                if (!idle && q < units) {
                    s = scan_unit(s, q * EPU, lead, xs[k], ts[k]);
                }
            }
            s = row_scanned(s);
        }
        for (var k = 0u; k < UNIT_REGS; k = k + 1u) {
            if (k >= held) {
                break;
            }
            let q = lig + k * group;
            if (!idle && q < units) {
                s = push_unit(s, row, q * EPU, lead, xs[k], ts[k], true);
            }
        }
        // The rest of a long row, from memory (with ROW_GRAD_EARLY its gradient too).
        s = push_stream(s, a, lig + UNIT_REGS * group, units, group, early_scale(a, r));

        // Combine the group's statistics.
        if (group > 1u) {
            s = group_stats(s, lane.index, lig, group);
        }

        var out = finish_row(a, r, s, lig == 0u);
        // The second sweep (a constant: the one-sweep losses compile without it): the held
        // units from registers, the rest of a long row re-read (trips ≤ units / group ≤ 16 384,
        // as above), then the same fixed-order tree.
        if (ROW_SECOND) {
            var s2 = row_second_identity();
            for (var k = 0u; k < UNIT_REGS; k = k + 1u) {
                if (k >= held) {
                    break;
                }
                let q = lig + k * group;
                if (!skip && q < units) {
                    s2 = second_unit(s2, out, row, q * EPU, lead, xs[k], ts[k]);
                }
            }
            var q = lig + UNIT_REGS * group;
            for (; !skip && q < units;) {
                let span_end = min(units, q + ROW_BLOCK * ROW_BLOCK * group);
                var sp2 = row_second_identity();
                for (; q < span_end;) {
                    let end = min(span_end, q + ROW_BLOCK * group);
                    var b2 = row_second_identity();
                    for (; UNROLL && q + 3u * group < end; q = q + 4u * group) {
                        let u = load_quad(w0 + q, group);
                        b2 = second_unit(b2, out, row, q * EPU, lead, u.x[0], u.t[0]);
                        b2 = second_unit(b2, out, row, (q + group) * EPU, lead, u.x[1], u.t[1]);
                        b2 = second_unit(b2, out, row, (q + 2u * group) * EPU, lead, u.x[2], u.t[2]);
                        b2 = second_unit(b2, out, row, (q + 3u * group) * EPU, lead, u.x[3], u.t[3]);
                    }
                    for (; q < end; q = q + group) {
                        b2 = second_unit(b2, out, row, q * EPU, lead, unpack_unit(preds[w0 + q]), target_unit(w0 + q));
                    }
                    sp2 = row_second_combine(sp2, b2);
                }
                s2 = row_second_combine(s2, sp2);
            }
            if (group > 1u) {
                row_second_scratch[lane.index] = s2;
                workgroupBarrier();
                for (var h = group / 2u; h > 0u; h = h / 2u) {
                    if (lig < h) {
                        row_second_scratch[lane.index] = row_second_combine(row_second_scratch[lane.index], row_second_scratch[lane.index + h]);
                    }
                    workgroupBarrier();
                }
                s2 = row_second_scratch[lane.index - lig];
                workgroupBarrier();
            }
            if (!skip) {
                out = row_second_finish(out, s2, row);
            }
        }
        if (IN_PLACE) {
            // Every lane's row_finish has read what it reads of the row (softmax's target
            // logit) before any lane overwrites its units with the gradient.
            workgroupBarrier();
        }
        if (a.live && (params.flags & FLAG_WRITE_GRAD) != 0u) {
            let scale = grad_scale(r);
            for (var k = 0u; k < UNIT_REGS; k = k + 1u) {
                if (k >= held) {
                    break;
                }
                let q = lig + k * group;
                if (q < units) {
                    grad_unit(out, row, w0 + q, q * EPU, lead, xs[k], ts[k], scale, skip);
                }
            }
            // The rest, from memory: with ROW_GRAD_EARLY already written, but for a NaN row.
            if (!ROW_GRAD_EARLY || is_nan(out.loss)) {
                grad_stream(out, a, lig + UNIT_REGS * group, units, group, scale);
            }
        }
        if (a.live && lig == 0u) {
            if ((params.flags & FLAG_WRITE_LOSSES) != 0u) {
                losses[r] = out.loss;
            }
            acc = acc + out.loss;
        }
    }
    let total = workgroup_sum(acc, lane);
    if (lane.index == 0u) {
        partials[params.partial_base + wid.x] = total;
    }
}
