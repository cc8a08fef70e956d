// Generalised Jensen–Shannon divergence from logits: the student's logits x (the prediction)
// against the teacher's u (the target), temperature T, weight β ∈ [0, 1]:
//   P = softmax(u/T), Q = softmax(x/T), M = β P + (1 − β) Q,
//   ℓ = β KL(P ‖ M) + (1 − β) KL(Q ‖ M)  (0 < β < 1),  KL(P ‖ Q) (β = 0),  KL(Q ‖ P) (β = 1),
//   ∂ℓ/∂x_j = (1 − β)/T · Q_j (ln(Q_j/M_j) − KL(Q ‖ M))            (0 < β < 1)
//           = (Q_j − P_j)/T                                          (β = 0)
//           = Q_j (ln Q_j − ln P_j − KL(Q ‖ P))/T                    (β = 1).
// The hooks of common/rows.wgsl, with its second sweep. CPU reference: src/losses/jsd.rs
// (`reference`).
//
// Sweep 1 (row_push, online as distill.wgsl; a = u/T, b = x/T): the maxima ma, mb and the
// sums SA − 1 = Σ_j exp(a_j − ma) − 1, SB − 1 likewise; row_finish turns them into
// k = (ma, ln SA, mb, ln SB), ln S = ln(1 + (S − 1)) from common/log.wgsl (for β = 0,
// distill's (ma, 1/SA, mb, 1/SB)).
// Sweep 2 (row_second_push), with ln P_j = (a_j − ma) − ln SA and ln Q_j = (b_j − mb) − ln SB
// (never ln of a softmax) and ln M_j = ln(β P_j + (1 − β) Q_j), a sum of two non-negative
// terms (so no cancellation; the f64 reference takes the log-add-exp of ln β + ln P_j and
// ln(1 − β) + ln Q_j), its terms dropped where M_j is below 2^-126 (contributions ≤ 1e-36):
//   kp = Σ_j P_j (ln P_j − ln M_j),  kq = Σ_j Q_j (ln Q_j − ln M_j)
// (with β = 0, M = Q: kp = KL(P ‖ Q), kq = 0; with β = 1, M = P: kp = 0, kq = KL(Q ‖ P)); a term
// with P_j = 0 (or Q_j = 0) contributes 0. row_second_finish: ℓ = β kp + (1 − β) kq (kp for
// β = 0, kq for β = 1) and, for β > 0, k = (D, mb, 1/SB, kq) with D = (ma − mb) + (ln SA −
// ln SB), so that Q_j = e^(b_j − mb) / SB, ln P_j − ln Q_j = (a_j − b_j) − D and
//   ln Q_j − ln M_j = −ln(β e^(ln P_j − ln Q_j) + (1 − β))
// (−(ln P_j − ln Q_j) for β = 1): the gradient needs four numbers. Errors are relative to the
// terms |a|, |b|, ln S, as distill's, not to ℓ itself where P ≈ Q.
// IEEE semantics as the reference: a NaN or +∞ logit in either row, or a row (either) of −∞
// logits, makes the loss and the gradient NaN. A −∞ logit among finite ones is a probability
// of 0: its terms contribute 0 and its gradient is 0 where Q_j = 0; ℓ = +∞ only for β = 0
// (a student −∞ where P_j > 0; the gradient Q − P stays finite) and β = 1 (a teacher −∞ where
// Q_j > 0; the gradient is then NaN, ∞ − ∞).

#import common/rows.wgsl
#import common/rows_no_lse.wgsl
#import common/rows_no_split.wgsl
#import common/log.wgsl
#import common/running_softmax.wgsl

struct LossParams {
    beta: f32,  // β in [0, 1]
    inv_t: f32, // 1 / T
}

struct Stats {
    ma: f32,
    sa: f32, // SA − 1
    mb: f32,
    sb: f32, // SB − 1
}

// (kp, kq)
alias Second = vec2<f32>;

const F32_MAX: f32 = 3.40282347e+38;
const NAN_BITS: u32 = 0x7fc00000u;
const INF_BITS: u32 = 0x7f800000u;
const F32_MIN_NORMAL: f32 = 1.17549435e-38;

// No scan before the pushes (common/rows.wgsl).
const ROW_SCANS: bool = false;
// The second sweep (common/rows.wgsl).
const ROW_SECOND: bool = true;
const ROW_SECOND_SLOTS: u32 = WG;

fn row_scan(s: Stats, x: f32, t: f32) -> Stats {
    return s;
}

fn row_scanned(s: Stats) -> Stats {
    return s;
}

// S = 0 for both: S − 1 = −1.
fn row_identity() -> Stats {
    return Stats(-F32_MAX, -1.0, -F32_MAX, -1.0);
}

// The empty statistics each block of a lane's streamed elements starts from (common/rows.wgsl).
fn row_block(s: Stats) -> Stats {
    return row_identity();
}

fn row_push(s: Stats, row: RowCtx, j: u32, x: f32, t: f32, scanned: bool) -> Stats {
    let a = t * params.loss.inv_t;
    let b = x * params.loss.inv_t;
    let pa = running_push(vec2<f32>(s.ma, s.sa), a);
    let pb = running_push(vec2<f32>(s.mb, s.sb), b);
    // +∞: the row is NaN, its other statistics as they were (selects, as running_push).
    let inf = bitcast<u32>(a) == INF_BITS || bitcast<u32>(b) == INF_BITS;
    let ka = select(pa, vec2<f32>(s.ma, bitcast<f32>(NAN_BITS)), inf);
    let kb = select(pb, vec2<f32>(s.mb, s.sb), inf);
    return Stats(ka.x, ka.y, kb.x, kb.y);
}

fn row_combine(p: Stats, q: Stats) -> Stats {
    let ca = running_combine(vec2<f32>(p.ma, p.sa), vec2<f32>(q.ma, q.sa));
    let cb = running_combine(vec2<f32>(p.mb, p.sb), vec2<f32>(q.mb, q.sb));
    return Stats(ca.x, ca.y, cb.x, cb.y);
}

fn row_finish(s: Stats, row: RowCtx) -> RowOut {
    if (is_nan(s.sa) || is_nan(s.sb) || s.sa == -1.0 || s.sb == -1.0) {
        return RowOut(bitcast<f32>(NAN_BITS), vec4<f32>(0.0));
    }
    // k = (ma, ln SA, mb, ln SB); the loss slot holds 1 / SB until row_second_finish puts the
    // loss there (the gradient's Q_j = e^(b_j − mb) / SB: WGSL's exp is accurate to 3 + 2|x| ulp,
    // so its argument is kept near 0 for the large Q_j, not e^((b_j − mb) − ln SB)).
    let lsa = ln_sum(s.sa);
    let lsb = ln_sum(s.sb);
    if (params.loss.beta == 0.0) {
        // KL(P ‖ Q) as distill.wgsl's gradient: k = (ma, 1/SA, mb, 1/SB), and the loss slot
        // holds D = (ma − mb) + (ln SA − ln SB), so that ln P_j − ln Q_j = (a_j − b_j) − D.
        let d = (s.ma - s.mb) + (lsa - lsb);
        return RowOut(d, vec4<f32>(s.ma, 1.0 / (1.0 + s.sa), s.mb, 1.0 / (1.0 + s.sb)));
    }
    return RowOut(1.0 / (1.0 + s.sb), vec4<f32>(s.ma, lsa, s.mb, lsb));
}

fn row_second_identity() -> Second {
    return Second(0.0);
}

fn row_second_push(s: Second, out: RowOut, row: RowCtx, j: u32, x: f32, t: f32) -> Second {
    let a = t * params.loss.inv_t;
    let b = x * params.loss.inv_t;
    let beta = params.loss.beta;
    if (beta == 0.0) {
        let p = exp(a - out.k.x) * out.k.y;
        return s + Second(select(p * ((a - b) - out.loss), 0.0, p == 0.0), 0.0);
    }
    let lp = (a - out.k.x) - out.k.y;
    let lq = (b - out.k.z) - out.k.w;
    // P_j and Q_j by `exp_accurate` (about 1 ulp; lp, lq ≤ 0): ln M_j carries their relative
    // error as an absolute one, which WGSL's `exp` (3 + 2|x| ulp) makes ~1e-6 for |lp| ≈ 8.
    let p = exp_accurate(lp);
    let q = exp_accurate(lq);
    if (beta == 1.0) {
        return s + Second(0.0, select(q * (lq - lp), 0.0, q == 0.0));
    }
    // M = β P + (1 − β) Q: two non-negative terms, no cancellation. Where it is not a normal
    // number (both probabilities below 2^-126) the element's terms are dropped (≤ 1e-36).
    let m = beta * p + (1.0 - beta) * q;
    let lm = ln_normal(m);
    let drop = m < F32_MIN_NORMAL;
    return s + Second(select(p * (lp - lm), 0.0, p == 0.0 || drop), select(q * (lq - lm), 0.0, q == 0.0 || drop));
}

fn row_second_combine(a: Second, b: Second) -> Second {
    return a + b;
}

fn row_second_finish(out: RowOut, s: Second, row: RowCtx) -> RowOut {
    if (is_nan(out.loss)) {
        return out;
    }
    let beta = params.loss.beta;
    if (beta == 0.0) {
        return RowOut(s.x, out.k);
    }
    let d = (out.k.x - out.k.z) + (out.k.y - out.k.w);
    let k = vec4<f32>(d, out.k.z, out.loss, s.y);
    if (beta == 1.0) {
        return RowOut(s.y, k);
    }
    return RowOut(beta * s.x + (1.0 - beta) * s.y, k);
}

// The gradient needs the finished row (common/rows.wgsl).
const ROW_GRAD_EARLY: bool = false;

fn row_grad(r: RowOut, row: RowCtx, j: u32, x: f32, t: f32) -> f32 {
    let inv = params.loss.inv_t;
    let b = x * inv;
    let beta = params.loss.beta;
    if (beta == 0.0) {
        // (Q_j − P_j)/T, k = (ma, 1/SA, mb, 1/SB).
        let q = exp(b - r.k.z) * r.k.w;
        let p = exp(t * inv - r.k.x) * r.k.y;
        return inv * (q - p);
    }
    // k = (D, mb, 1 / SB, kq).
    let q = exp(b - r.k.y) * r.k.z;
    let lr = (t * inv - b) - r.k.x; // ln P_j − ln Q_j
    var lqm = -lr;                  // ln Q_j − ln M_j, β = 1
    var w = 1.0;
    if (beta != 1.0) {
        // M_j / Q_j = β e^(ln P_j − ln Q_j) + (1 − β) ≥ 1 − β: a normal number (or +∞, where
        // P_j / Q_j > 2^127 and so Q_j < 2^-127, whose term is then 0 or below 1e-36).
        lqm = -ln_normal(beta * exp(lr) + (1.0 - beta));
        w = 1.0 - beta;
    }
    if (bitcast<u32>(r.k.w) == INF_BITS) {
        return bitcast<f32>(NAN_BITS); // β = 1 and ℓ = +∞: ∞ − ∞
    }
    return select(w * inv * q * (lqm - r.k.w), 0.0, q == 0.0);
}
