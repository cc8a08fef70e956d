// Distillation from logits: the student's logits x (the prediction) against the teacher's u
// (the target), temperature T: P = softmax(u/T), Q = softmax(x/T),
//   ℓ = T² KL(P ‖ Q) = T² Σ_j P_j (ln P_j − ln Q_j),   ∂ℓ/∂x_j = T (Q_j − P_j).
// The hooks of common/rows.wgsl. CPU reference: src/losses/distill.rs (`reference`).
//
// Statistics, combined online so a row is never held whole (a = u/T, b = x/T):
//   ma, SA − 1 = Σ_j exp(a_j − ma) − 1      the teacher's running maximum and sum,
//   mb, SB − 1 = Σ_j exp(b_j − mb) − 1      the student's,
//   d = Σ_j exp(a_j − ma) (a_j − b_j)       rescaled with SA when ma grows,
// then KL = d / SA − (ma − mb) − (ln SA − ln SB) (Σ_j P_j (a_j − b_j) − lse_a + lse_b), with
// ln S = ln(1 + (S − 1)) from common/log.wgsl, as softmax_cross_entropy.wgsl keeps it. Its
// error is relative to the terms |a − b|, |ma − mb| and ln S, not to KL itself when P ≈ Q.
// IEEE semantics as the reference: a NaN or +∞ logit in either row, or a row of −∞ logits,
// makes the loss and the gradient NaN; a teacher logit of −∞ (P_j = 0) contributes 0, a
// student logit of −∞ where P_j > 0 makes ℓ = +∞.

#import common/rows.wgsl
#import common/rows_single.wgsl
#import common/rows_no_lse.wgsl
#import common/log.wgsl
#import common/running_softmax.wgsl

struct LossParams {
    temperature: f32, // T > 0
    inv_t: f32,       // 1 / T
}

struct Stats {
    ma: f32,
    sa: f32, // SA − 1
    mb: f32,
    sb: f32, // SB − 1
    d: f32,
}

const F32_MAX: f32 = 3.40282347e+38;
const NAN_BITS: u32 = 0x7fc00000u;

// No scan before the pushes (common/rows.wgsl).
const ROW_SCANS: bool = false;

fn row_scan(s: Stats, x: f32, t: f32) -> Stats {
    return s;
}

fn row_scanned(s: Stats) -> Stats {
    return s;
}

// S = 0 for both: S − 1 = −1.
fn row_identity() -> Stats {
    return Stats(-F32_MAX, -1.0, -F32_MAX, -1.0, 0.0);
}

// The empty statistics each block of a lane's streamed elements starts from (common/rows.wgsl).
fn row_block(s: Stats) -> Stats {
    return row_identity();
}

fn row_push(s: Stats, row: RowCtx, j: u32, x: f32, t: f32, scanned: bool) -> Stats {
    let a = t * params.loss.inv_t;
    let b = x * params.loss.inv_t;
    let diff = a - b;
    // The teacher's softmax as running_push's, carrying d with it: a new maximum rescales
    // the old sums by e = exp(ma − a), and its own term is 1 · (a − b); otherwise e =
    // exp(a − ma) joins them (P_j = 0 contributes 0). Selects, not branches, as there.
    let up = a > s.ma;
    let e = exp(-abs(a - s.ma));
    let d = select(s.d + select(e * diff, 0.0, e == 0.0), s.d * e + diff, up);
    let sa = select(s.sa + e, (s.sa + 1.0) * e, up);
    // The student's.
    let pb = running_push(vec2<f32>(s.mb, s.sb), b);
    // +∞: the row is NaN, its other statistics as they were.
    let inf = bitcast<u32>(a) == 0x7f800000u || bitcast<u32>(b) == 0x7f800000u;
    return Stats(
        select(select(s.ma, a, up), s.ma, inf),
        select(sa, bitcast<f32>(NAN_BITS), inf),
        select(pb.x, s.mb, inf),
        select(pb.y, s.sb, inf),
        select(d, s.d, inf),
    );
}

fn row_combine(p: Stats, q: Stats) -> Stats {
    var r: Stats;
    var hi = p;
    var lo = q;
    if (q.ma > p.ma) {
        hi = q;
        lo = p;
    }
    let fa = exp(lo.ma - hi.ma);
    r.ma = hi.ma;
    r.sa = hi.sa + (lo.sa + 1.0) * fa;
    r.d = hi.d + select(lo.d * fa, 0.0, fa == 0.0);
    let cb = running_combine(vec2<f32>(p.mb, p.sb), vec2<f32>(q.mb, q.sb));
    r.mb = cb.x;
    r.sb = cb.y;
    return r;
}

// Long rows may be split across workgroups (common/rows.wgsl's split passes): the
// statistics are five words.
const ROW_SPLIT: bool = true;

fn row_stats_words(s: Stats) -> StatsWords {
    return StatsWords(vec4<f32>(s.ma, s.sa, s.mb, s.sb), vec4<f32>(s.d, 0.0, 0.0, 0.0));
}

fn row_stats_of(w: StatsWords) -> Stats {
    return Stats(w.lo.x, w.lo.y, w.lo.z, w.lo.w, w.hi.x);
}

fn row_finish(s: Stats, row: RowCtx) -> RowOut {
    if (is_nan(s.sa) || is_nan(s.sb) || is_nan(s.d) || s.sa == -1.0 || s.sb == -1.0) {
        return RowOut(bitcast<f32>(NAN_BITS), vec4<f32>(0.0));
    }
    let big_sa = 1.0 + s.sa;
    let big_sb = 1.0 + s.sb;
    let kl = s.d / big_sa - (s.ma - s.mb) - (ln_sum(s.sa) - ln_sum(s.sb));
    let t = params.loss.temperature;
    // k = (ma, 1 / SA, mb, 1 / SB)
    return RowOut(t * t * kl, vec4<f32>(s.ma, 1.0 / big_sa, s.mb, 1.0 / big_sb));
}

// The gradient needs the finished row (common/rows.wgsl).
const ROW_GRAD_EARLY: bool = false;

// T (Q_j − P_j), each softmax as exp(v − m) / S (v − m exact near the maximum).
fn row_grad(r: RowOut, row: RowCtx, j: u32, x: f32, t: f32) -> f32 {
    let q = exp(x * params.loss.inv_t - r.k.z) * r.k.w;
    let p = exp(t * params.loss.inv_t - r.k.x) * r.k.y;
    return params.loss.temperature * (q - p);
}
