// Sigmoid focal loss on logits x (torchvision `sigmoid_focal_loss`), target t ∈ [0, 1],
// α = params.loss.alpha (< 0: no weighting), γ = params.loss.gamma ≥ 0, p = σ(x):
//   ce = ln(1 + e^(−|x|)) + ((1 − t) x if x ≥ 0, else −t x)      (BCE with logits)
//   q = t (1 − p) + (1 − t) p                                     (1 − p_t)
//   α_t = α t + (1 − α)(1 − t), or 1
//   ℓ = α_t ce q^γ
//   ∂ℓ/∂x = α_t [(p − t) q^γ + γ ce q^(γ−1) p (1 − p)(1 − 2t)]
// p and 1 − p each come from e^(−|x|) (no cancellation for confident logits); q^γ is
// e^(γ ln q) with common/log.wgsl's accurate `ln` and `exp` (γ ln q ≤ 0); where q = 0 the
// second term is its limit, 0, and q^0 = 1. A factor that is exactly 0 makes its term 0 even
// against an infinite logit. CPU reference: src/losses/focal.rs (`reference`). The hooks of
// common/elementwise.wgsl.

#import common/elementwise.wgsl

struct LossParams {
    alpha: f32,
    gamma: f32,
}
#import common/log.wgsl

// Whether γ = 2 (set by the host from the options, src/losses/focal.rs `switches`):
// q^γ is then q · q and q^(γ−1) is q, without the `ln` and `exp` of the general power (half
// of the element's transcendental functions). A constant, so neither form costs the other.
override GAMMA_TWO: bool = false;

// `weighted` (a · v, 0 where a is 0) is common/nan.wgsl's.

fn loss_and_grad(i: u32, x: f32, t: f32) -> vec2<f32> {
    let alpha = params.loss.alpha;
    let gamma = params.loss.gamma;
    let e = exp_accurate(-abs(x));
    let r = 1.0 / (1.0 + e);
    let pos = x >= 0.0;
    let p = select(e * r, r, pos);
    let pm = select(r, e * r, pos);
    let ce = ln_1p(e) + select(weighted(-t, x), weighted(1.0 - t, x), pos);
    let q = t * pm + (1.0 - t) * p;
    let at = select(1.0, alpha * t + (1.0 - alpha) * (1.0 - t), alpha >= 0.0);
    let has_q = q > 0.0;
    // m = q^γ and its quotient q^(γ−1) = m / q (used only where q > 0).
    var m = q * q;
    var m_over_q = q;
    if (!GAMMA_TWO) {
        m = select(select(0.0, exp_accurate(gamma * ln_f32(q)), has_q), 1.0, gamma == 0.0);
        m_over_q = m / q;
    }
    let p_minus_t = select(p - t, (1.0 - t) - pm, pos);
    let focus = select(
        0.0,
        gamma * weighted(p * pm, ce) * m_over_q * (1.0 - 2.0 * t),
        has_q && gamma != 0.0,
    );
    return vec2<f32>(weighted(at * m, ce), at * (p_minus_t * m + focus));
}
