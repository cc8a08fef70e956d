// Softmax cross entropy from logits x (PyTorch `cross_entropy`), composed after
// common/nan.wgsl + common/log.wgsl + common/rows.wgsl + common/classes.wgsl.
// CPU reference: src/reference/softmax_cross_entropy.rs.
//
// Statistics s = (m, S, d, tw), combined online so a row is never held whole:
//   m  = the running maximum of the row,  S = Σ_j exp(x_j − m),
//   d  = Σ_j wt_j (x_j − m) ≤ 0,           tw = Σ_j wt_j,
// with wt_j the weight of class j in the row's "dense" part:
//   probability targets:  wt_j = w_j ((1 − ε) t_j + ε/C)
//   class-index targets:  wt_j = w_j ε/C   (the target class adds (1 − ε) w_c separately)
// Then, with lse = m + ln S:
//   ℓ = Σ_j wt_j (lse − x_j) [+ (1 − ε) w_c (lse − x_c)] [+ λ lse²] = tw ln S − d [+ ...]
//   ∂ℓ/∂x_j = A s_j − wt_j [− (1 − ε) w_c [j = c]],  A = tw [+ (1 − ε) w_c] [+ 2λ lse]
// Every term is non-negative, so nothing cancels. A zero weight contributes 0 even against
// x = −∞ (never 0 · ∞). The identity uses −F32_MAX, not −∞, so no ∞ − ∞ arises.
// ln S is common/log.wgsl's `ln_f32`: S is near 1 for a confident row, where WGSL's `log` has
// only an absolute 2^-21, and ℓ ≈ ln S is then small.
// IEEE semantics as the reference: a row with a NaN or a +∞ logit (S is then NaN: a +∞ logit
// sets it so), or whose logits are all −∞ (S = 0), has loss NaN and a NaN gradient; a −∞
// logit among finite ones is an ordinary logit with s_j = 0 (a target weight on it gives
// ℓ = +∞).

alias Stats = vec4<f32>;

const F32_MAX: f32 = 3.40282347e+38;

fn dense_weight(j: u32, t: f32) -> f32 {
    var wt = params.eps / f32(params.cols);
    if ((params.flags & FLAG_CLASSES) == 0u) {
        wt = wt + (1.0 - params.eps) * t;
    }
    return class_weight(j) * wt;
}

// wt · δ, with 0 · (−∞) = 0.
fn shift(wt: f32, delta: f32) -> f32 {
    return select(wt * delta, 0.0, wt == 0.0);
}

fn row_identity() -> Stats {
    return Stats(-F32_MAX, 0.0, 0.0, 0.0);
}

fn row_push(s: Stats, row: RowCtx, j: u32, x: f32, t: f32) -> Stats {
    let wt = dense_weight(j, t);
    if (bitcast<u32>(x) == 0x7f800000u) {
        return Stats(s.x, bitcast<f32>(0x7fc00000u), s.z, s.w); // +∞: the row is NaN
    }
    if (x > s.x) {
        // A new maximum: rescale what was summed against the old one.
        return vec4<f32>(x, s.y * exp(s.x - x) + 1.0, s.z + shift(s.w, s.x - x), s.w + wt);
    }
    return vec4<f32>(s.x, s.y + exp(x - s.x), s.z + shift(wt, x - s.x), s.w + wt);
}

// `v`'s sums taken against a maximum m ≥ v.x.
fn against(v: Stats, m: f32) -> Stats {
    return Stats(m, v.y * exp(v.x - m), v.z + shift(v.w, v.x - m), v.w);
}

fn row_combine(a: Stats, b: Stats) -> Stats {
    let m = max(a.x, b.x);
    let ra = against(a, m);
    let rb = against(b, m);
    return Stats(m, ra.y + rb.y, ra.z + rb.z, ra.w + rb.w);
}

fn row_finish(s: Stats, row: RowCtx) -> RowOut {
    if (is_nan(s.y) || is_nan(s.w) || s.y == 0.0) {
        return RowOut(bitcast<f32>(0x7fc00000u), vec3<f32>(0.0));
    }
    let ln_s = ln_f32(s.y);
    let lse = s.x + ln_s;
    var loss = shift(s.w, ln_s) - s.z;
    var a = s.w;
    var b = 0.0;
    if (row.cls >= 0) {
        let wc = (1.0 - params.eps) * class_weight(u32(row.cls));
        let xc = pred_at(row.start + u32(row.cls));
        loss = loss + shift(wc, (s.x - xc) + ln_s);
        a = a + wc;
        b = wc;
    }
    if (params.z_loss != 0.0) {
        loss = loss + params.z_loss * lse * lse;
        a = a + 2.0 * params.z_loss * lse;
    }
    // k = (m, A / S, (1 − ε) w_c)
    return RowOut(loss, vec3<f32>(s.x, a / s.y, b));
}

fn row_grad(r: RowOut, row: RowCtx, j: u32, x: f32, t: f32) -> f32 {
    var d = r.k.y * exp(x - r.k.x) - dense_weight(j, t);
    if (i32(j) == row.cls) {
        d = d - r.k.z;
    }
    return d;
}
