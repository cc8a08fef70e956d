// KL divergence (PyTorch `kl_div`), input p = log-probabilities, target t:
//   probabilities (LOG_TARGET false):  ℓ = t (ln t − p), 0 where t = 0   ∂ℓ/∂p = −t
//   log-probabilities (LOG_TARGET):              ℓ = e^t (t − p)                  ∂ℓ/∂p = −e^t
// ln t and e^t are common/log.wgsl's (about 1 ulp, subnormal t included); ln t − p is one
// rounding, so ℓ is accurate relative to t·max(|ln t|, |p|). A negative probability target
// gives NaN (ln t), as PyTorch's xlogy. CPU reference: src/losses/kl_div.rs (`reference`).
// The hooks of common/elementwise.wgsl.

#import common/elementwise.wgsl

// No options in `params`: the target's form is the pipeline's (LossDef::switches).
struct LossParams {
    _unused: f32,
}
// Whether the target holds log-probabilities (PyTorch's `log_target`).
override LOG_TARGET: bool = false;
#import common/log.wgsl

fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32> {
    if (LOG_TARGET) {
        let e = exp_any(t);
        return vec2<f32>(e * (t - p), -e);
    }
    // t = 0 contributes 0 even against p = −∞ (never 0 · ∞).
    return vec2<f32>(select(t * (ln_f32(t) - p), 0.0, t == 0.0), -t);
}
