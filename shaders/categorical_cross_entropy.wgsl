// Categorical cross entropy on probabilities: the hooks of common/rows.wgsl.
// CPU reference: src/losses/categorical_cross_entropy.rs (`reference`).
//   ℓ_r = −Σ_j t_j · max(ln p_j, −100)      ∂ℓ_r/∂p_j = −t_j / max(p_j, 1e-12)
// Rows are not renormalised (Keras renormalises). ln p is common/log.wgsl's, accurate for
// every p (near 1, and subnormal p that the adapter would flush). A probability outside
// [0, 1] (tested on its bits) is an error: the first offending row is recorded and the host
// reports its first offending element.

#import common/rows.wgsl
#import common/rows_single.wgsl
#import common/rows_no_lse.wgsl

// No options.
struct LossParams {
    _unused: f32,
}
#import common/log.wgsl

alias Stats = vec4<f32>;

// [1] u32::MAX − (the smallest global row with a probability outside [0, 1]), kept with
// atomicMax so that a buffer cleared to zero means "none".
@group(0) @binding(10) var<storage, read_write> domain_error: atomic<u32>;

// max(ln p, −100), keeping NaN (common/nan.wgsl: a driver may turn the select into a `max`
// that drops it).
fn clamped_log(p: f32) -> f32 {
    let l = ln_f32(p);
    return keep_nan(p, select(l, -100.0, l < -100.0));
}

// No scan before the pushes (common/rows.wgsl).
const ROW_SCANS: bool = false;

fn row_scan(s: Stats, x: f32, t: f32) -> Stats {
    return s;
}

fn row_scanned(s: Stats) -> Stats {
    return s;
}

fn row_identity() -> Stats {
    return Stats(0.0);
}

// The empty statistics each block of a lane's streamed elements starts from (common/rows.wgsl).
fn row_block(s: Stats) -> Stats {
    return row_identity();
}

fn row_push(s: Stats, row: RowCtx, j: u32, p: f32, t: f32, scanned: bool) -> Stats {
    if (outside_unit_interval(bitcast<u32>(p))) {
        atomicMax(&domain_error, 0xffffffffu - row.row);
    }
    return Stats(s.x + t * clamped_log(p), 0.0, 0.0, 0.0);
}

fn row_combine(a: Stats, b: Stats) -> Stats {
    return a + b;
}

// Long rows may be split across workgroups (common/rows.wgsl's split passes): the
// statistics are one word.
const ROW_SPLIT: bool = true;

fn row_stats_words(s: Stats) -> StatsWords {
    return StatsWords(s, vec4<f32>(0.0));
}

fn row_stats_of(w: StatsWords) -> Stats {
    return w.lo;
}

fn row_finish(s: Stats, row: RowCtx) -> RowOut {
    return RowOut(-s.x, vec4<f32>(0.0));
}

// An element's gradient needs nothing of its row (but the NaN rule, which the driver keeps):
// a long row is read once, its gradient written as it is pushed (common/rows.wgsl).
const ROW_GRAD_EARLY: bool = true;

fn row_grad(r: RowOut, row: RowCtx, j: u32, p: f32, t: f32) -> f32 {
    return -t / keep_nan(p, select(p, 1e-12, p < 1e-12));
}
