// Poisson negative log likelihood (PyTorch `poisson_nll_loss`), prediction x, target counts t:
//   log_input (LOG_INPUT):                  ℓ = e^x − t x              ∂ℓ/∂x = e^x − t
//   otherwise:                              ℓ = x − t ln(x + ε)        ∂ℓ/∂x = 1 − t / (x + ε)
//   full (FULL):                            ℓ += t ln t − t + ½ ln(2π t) where t > 1, no gradient
// e^x and the logs are common/log.wgsl's, accurate to about 1 ulp (WGSL's `exp` is 3 + 2|x|
// ulp, its `log` only 2^-21 absolute near 1): e^x = 1 / e^(−x) for x > 0, so it overflows to
// +∞ a little early, from x = 87.34 (the true value from 88.72). CPU reference:
// src/losses/poisson_nll.rs (`reference`). The hooks of common/elementwise.wgsl.

#import common/elementwise.wgsl

struct LossParams {
    eps: f32,
}
// PyTorch's `log_input` and `full`, fixed per pipeline (LossDef::switches).
override LOG_INPUT: bool = true;
override FULL: bool = false;
#import common/log.wgsl

fn loss_and_grad(i: u32, x: f32, t: f32) -> vec2<f32> {
    var out: vec2<f32>;
    if (LOG_INPUT) {
        let e = exp_any(x);
        out = vec2<f32>(e - t * x, e - t);
    } else {
        let r = x + params.loss.eps;
        out = vec2<f32>(x - t * ln_f32(r), 1.0 - t / r);
    }
    if (FULL && t > 1.0) {
        out.x = out.x + (t * ln_f32(t) - t + 0.5 * ln_f32(6.28318531 * t));
    }
    return out;
}
