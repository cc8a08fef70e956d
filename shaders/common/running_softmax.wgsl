// A softmax's running statistics over a stream of values v, for the losses that keep one per
// distribution (distill.wgsl's student, both of jsd.wgsl's): s = (m, S − 1), m the maximum so
// far and S = Σ exp(v − m), kept as S − 1 (the maximum's own exp(0) = 1 left out, so that a
// confident row's small S − 1 is not rounded away; common/log.wgsl's ln_sum takes it). The
// identity is (−F32_MAX, −1): S = 0, and no ∞ − ∞ arises.

// s with v pushed: a new maximum rescales the old sum (its 1 included) by exp(m − v) and
// becomes the 1; otherwise exp(v − m) joins the rest. Both are the exponential of −|v − m|,
// so one, and selects, not a branch (llvmpipe runs both sides of a branch its lanes
// disagree on: docs/TUNING.md).
fn running_push(s: vec2<f32>, v: f32) -> vec2<f32> {
    let e = exp(-abs(v - s.x));
    return select(vec2<f32>(s.x, s.y + e), vec2<f32>(v, (s.y + 1.0) * e), v > s.x);
}

// p and q combined: the larger maximum's 1 stays, the other's whole S joins the rest, rescaled.
fn running_combine(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
    var hi = p;
    var lo = q;
    if (q.x > p.x) {
        hi = q;
        lo = p;
    }
    return vec2<f32>(hi.x, hi.y + (lo.y + 1.0) * exp(lo.x - hi.x));
}
