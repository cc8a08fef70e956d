// Softmax cross entropy from logits x (PyTorch `cross_entropy`): the hooks of
// common/rows.wgsl.
// CPU reference: src/losses/softmax_cross_entropy.rs (`reference`).
//
// Statistics s = (m, S − 1, d, tw), combined online so a row is never held whole:
//   m  = the running maximum of the row,  S = Σ_j exp(x_j − m) ≥ 1,
//   d  = Σ_j wt_j (x_j − m) ≤ 0,           tw = Σ_j wt_j,
// with wt_j the weight of class j in the row's "dense" part:
//   probability targets:  wt_j = w_j ((1 − ε) t_j + ε/C)
//   class-index targets:  wt_j = w_j ε/C   (the target class adds (1 − ε) w_c separately)
// Then, with lse = m + ln S:
//   ℓ = Σ_j wt_j (lse − x_j) [+ (1 − ε) w_c (lse − x_c)] [+ λ lse²] = tw ln S − d [+ ...]
//   ∂ℓ/∂x_j = A s_j − wt_j [− (1 − ε) w_c [j = c]],  A = tw [+ (1 − ε) w_c] [+ 2λ lse]
// (the target class's entry formed without the cancellation of s_c − 1: see row_grad)
// Every term is non-negative, so nothing cancels. A zero weight contributes 0 even against
// x = −∞ (never 0 · ∞). The identity uses −F32_MAX, not −∞, so no ∞ − ∞ arises.
// The statistics keep S − 1, the sum without the maximum's own exp(0) = 1, and ln S is
// common/log.wgsl's ln(1 + (S − 1)): a confident row has S near 1 and ℓ ≈ S − 1 small, which
// an f32 S would round away (1 + 1e-8 = 1) and WGSL's `log` (2^-21 absolute near 1) lose.
// IEEE semantics as the reference: a row with a NaN or a +∞ logit (S is then NaN: a +∞ logit
// sets it so), or whose logits are all −∞ (S = 0), has loss NaN and a NaN gradient; a −∞
// logit among finite ones is an ordinary logit with s_j = 0 (a target weight on it gives
// ℓ = +∞).
// Soft-capping (softcap > 0): every formula above on y = c·tanh(x/c) (common/softcap.wgsl)
// instead of x, which caps ±∞ logits to ±c; the gradient times ∂y/∂x = 1 − tanh²(x/c).

#import common/rows.wgsl
#import common/rows_single.wgsl
#import common/log.wgsl
#import common/softcap.wgsl

struct LossParams {
    label_smoothing: f32, // ε in [0, 1)
    z_loss: f32,          // λ ≥ 0
    softcap: f32,         // c > 0, or 0 for no cap
    inv_softcap: f32,     // 1 / c (0 for no cap)
}

// Whether the logits are capped (set by the host when it builds the pipeline, from the
// loss's options: src/losses/softmax_cross_entropy.rs `switches`). A constant, so the plain
// kernel has no cap code: a uniform branch on params.loss.softcap per element cost llvmpipe
// 1.5× on every row.
override SOFTCAP: bool = false;

// The logit the softmax sees and its derivative: (x, 1) without a cap.
fn capped(x: f32) -> vec2<f32> {
    if (!SOFTCAP) {
        return vec2<f32>(x, 1.0);
    }
    return softcap(x, params.loss.softcap, params.loss.inv_softcap);
}

alias Stats = vec4<f32>;

const F32_MAX: f32 = 3.40282347e+38;

fn dense_weight(j: u32, t: f32) -> f32 {
    var wt = params.loss.label_smoothing / f32(params.cols);
    if (!CLASSES) {
        wt = wt + (1.0 - params.loss.label_smoothing) * t;
    }
    return class_weight(j) * wt;
}

// wt · δ, with 0 · (−∞) = 0.
fn shift(wt: f32, delta: f32) -> f32 {
    return select(wt * delta, 0.0, wt == 0.0);
}

// No scan before the pushes (common/rows.wgsl).
const ROW_SCANS: bool = false;

fn row_scan(s: Stats, x: f32, t: f32) -> Stats {
    return s;
}

fn row_scanned(s: Stats) -> Stats {
    return s;
}

// S = 0: S − 1 = −1.
fn row_identity() -> Stats {
    return Stats(-F32_MAX, -1.0, 0.0, 0.0);
}

// The empty statistics each block of a lane's streamed elements starts from (common/rows.wgsl).
fn row_block(s: Stats) -> Stats {
    return row_identity();
}

// Without branches (llvmpipe runs both sides of a branch its lanes disagree on, and tests
// each: 1.2× the step over 4096 × 1000, docs/TUNING.md). Both sides' exponential is of
// −|x − m|: a new maximum x rescales the old S − 1 (plus its 1) by exp(m − x) and becomes
// the 1; otherwise exp(x − m) joins the rest. A +∞ logit makes the row NaN and changes
// nothing else.
fn row_push(s: Stats, row: RowCtx, j: u32, logit: f32, t: f32, scanned: bool) -> Stats {
    let x = capped(logit).x;
    let wt = dense_weight(j, t);
    let inf = bitcast<u32>(x) == 0x7f800000u;
    let up = x > s.x && !inf;
    let delta = -abs(x - s.x);
    let e = exp(delta);
    let rest = select(s.y + e, (s.y + 1.0) * e, up);
    let d = s.z + shift(select(wt, s.w, up), delta);
    return select(
        Stats(select(s.x, x, up), rest, d, s.w + wt),
        Stats(s.x, bitcast<f32>(0x7fc00000u), s.z, s.w),
        inf,
    );
}

// `hi` and `lo` combined, hi.x ≥ lo.x: hi's maximum stays the 1, lo's whole S (its S − 1,
// plus 1) joins the rest, rescaled.
fn combine_ordered(hi: Stats, lo: Stats) -> Stats {
    let delta = lo.x - hi.x;
    return Stats(
        hi.x,
        hi.y + (lo.y + 1.0) * exp(delta),
        hi.z + lo.z + shift(lo.w, delta),
        hi.w + lo.w,
    );
}

fn row_combine(a: Stats, b: Stats) -> Stats {
    if (b.x > a.x) {
        return combine_ordered(b, a);
    }
    return combine_ordered(a, b);
}

fn row_finish(s: Stats, row: RowCtx) -> RowOut {
    if (is_nan(s.y) || is_nan(s.w) || s.y == -1.0) {
        // (m, S − 1) kept for row_lse: NaN, or −∞ for S = 0.
        return RowOut(bitcast<f32>(0x7fc00000u), vec4<f32>(s.x, 0.0, 0.0, s.y));
    }
    let big_s = 1.0 + s.y;
    // ln S = ln(1 + (S − 1)), S − 1 ∈ [0, C − 1].
    let ln_s = ln_sum(s.y);
    let lse = s.x + ln_s;
    var loss = shift(s.w, ln_s) - s.z;
    // A = b + wc: b the dense part and the z-loss's, wc the target class's (1 − ε) w_c.
    var b = s.w;
    var wc = 0.0;
    if (row.cls >= 0) {
        wc = (1.0 - params.loss.label_smoothing) * class_weight(u32(row.cls));
        let xc = capped(pred_at(row.start + u32(row.cls))).x;
        loss = loss + shift(wc, (s.x - xc) + ln_s);
    }
    if (params.loss.z_loss != 0.0) {
        loss = loss + params.loss.z_loss * lse * lse;
        b = b + 2.0 * params.loss.z_loss * lse;
    }
    // k = (m, b / S, wc / S, S − 1)
    return RowOut(loss, vec4<f32>(s.x, b / big_s, wc / big_s, s.y));
}

// The row's log-sum-exp (of the capped logits) for FLAG_WRITE_LSE, from row_finish's k:
// m + ln S, with IEEE semantics as the loss's: NaN where S is (a NaN or a +∞ logit), −∞ for a
// row of −∞ logits (S = 0).
const ROW_LSE: bool = true;

fn row_lse(out: RowOut) -> f32 {
    if (out.k.w == -1.0) {
        return bitcast<f32>(0xff800000u);
    }
    return out.k.x + ln_sum(out.k.w);
}

// Long rows may be split across workgroups (common/rows.wgsl's split passes): the statistics
// are four words.
const ROW_SPLIT: bool = true;

fn row_stats_words(s: Stats) -> StatsWords {
    return StatsWords(s, vec4<f32>(0.0));
}

fn row_stats_of(w: StatsWords) -> Stats {
    return w.lo;
}

// ∂ℓ/∂x_j = (b + wc) e_j / S − wt_j, and for the target class wc (e_c/S − 1) written as
// −wc ((1 − e_c) + (S − 1)) / S: for a confident row (e_c = 1) that is −wc (S − 1)/S, not the
// difference 1/S − 1 that an f32 S rounds to 0.
fn grad_of(r: RowOut, row: RowCtx, j: u32, x: f32, t: f32) -> f32 {
    let e = exp(x - r.k.x);
    if (i32(j) == row.cls) {
        return r.k.y * e - r.k.z * ((1.0 - e) + r.k.w) - dense_weight(j, t);
    }
    return (r.k.y + r.k.z) * e - dense_weight(j, t);
}

// The gradient needs the finished row (common/rows.wgsl).
const ROW_GRAD_EARLY: bool = false;

// With a cap, that of y times ∂y/∂x; without, the uncapped path alone (a uniform branch: the
// cap's work, and a select over both forms, cost the plain kernel 1.4× on llvmpipe).
fn row_grad(r: RowOut, row: RowCtx, j: u32, logit: f32, t: f32) -> f32 {
    if (SOFTCAP) {
        let y = capped(logit);
        return grad_of(r, row, j, y.x, t) * y.y;
    }
    return grad_of(r, row, j, logit, t);
}
