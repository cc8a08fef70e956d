//! Softmax cross entropy from logits (PyTorch `cross_entropy`), reference for
//! `shaders/softmax_cross_entropy.wgsl`.

/// The target of one row of softmax cross entropy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowTarget<'a> {
    /// Probability targets `t`, one per class (`C` values).
    Probs(&'a [f64]),
    /// A class index `c` in `[0, C)` (ignored rows never reach [`loss_and_grad`]).
    Class(usize),
}

/// `(ℓ_r, ∂ℓ_r/∂x_r)` for one row of logits `x` (`C` values), with optional class weights
/// `w` (`C` values, default all 1, `W = Σ_j w_j`), label smoothing `ε = label_smoothing` in
/// [0, 1) and z-loss coefficient `λ = z_loss ≥ 0`. With `lse = ln Σ_j exp x_j` (computed as
/// `m + ln Σ_j exp(x_j − m)`, `m` the row maximum) and `s = softmax(x)`, `s_j = exp(x_j − lse)`:
///
/// ```text
/// probability targets t, t' = (1 − ε) t + ε/C:
///     ℓ_r = −Σ_j w_j t'_j ln s_j = Σ_j w_j t'_j (lse − x_j)
///     ∂ℓ_r/∂x_j = (Σ_k w_k t'_k) s_j − w_j t'_j
/// class index c:
///     ℓ_r = (1 − ε) w_c (lse − x_c) + (ε/C) Σ_j w_j (lse − x_j)
///     ∂ℓ_r/∂x_j = (1 − ε) w_c (s_j − [j = c]) + (ε/C)(W s_j − w_j)
/// z-loss, both kinds:
///     ℓ_r += λ lse²,   ∂ℓ_r/∂x_j += 2 λ lse s_j
/// ```
///
/// Each `lse − x_j` is formed as `(m − x_j) + ln Σ_k exp(x_k − m)`, never as a difference of
/// two large numbers: a uniform row of logits 1e20 has loss `ln C`, not `1e20 − 1e20 = 0`.
/// A term whose weight (`w_j t'_j`, `(ε/C) w_j`, `(1 − ε) w_c` or `λ`) is exactly 0 contributes
/// 0 even where `x_j = −∞` (never `0 · ∞ = NaN`): a row of `−∞` logits but one finite, with
/// its target on the finite one, has loss 0 and a finite gradient; a target weight on a `−∞`
/// logit gives loss `+∞`. `ln(softmax)` is never formed. If any `x_j` (or probability target
/// `t_j`) is NaN, any `x_j` is `+∞`, or every `x_j` is `−∞`, the loss and every gradient entry
/// are NaN (as PyTorch's `log_softmax` makes them).
///
/// # Panics
/// If a class index is not below `C` (the caller checks the range), or `t`/`w` is shorter
/// than `x`.
pub fn loss_and_grad(
    x: &[f64],
    target: RowTarget<'_>,
    w: Option<&[f64]>,
    label_smoothing: f64,
    z_loss: f64,
) -> (f64, Vec<f64>) {
    let c = x.len();
    let target_nan = match target {
        RowTarget::Probs(t) => super::has_nan(t),
        RowTarget::Class(_) => false,
    };
    if super::has_nan(x) || target_nan {
        return super::nan_row(c);
    }
    let eps = label_smoothing;
    let cf = c as f64;
    let weight = |j: usize| w.map_or(1.0, |w| w[j]);

    // lse with the row maximum subtracted.
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m.is_infinite() {
        // A +∞ logit (∞ − ∞ in every form of the softmax), or no finite logit at all.
        return super::nan_row(c);
    }
    // S = 1 + Σ of the others, the first maximum's exp(0) = 1 left out of the sum, so that
    // ln S = ln_1p(rest) keeps a confident row's small loss (1 + 2e-17 would round to 1).
    let top = x.iter().position(|&xj| xj == m).unwrap_or(0);
    let mut rest = 0.0f64;
    for (j, &xj) in x.iter().enumerate() {
        if j != top {
            rest += (xj - m).exp();
        }
    }
    let sum_exp = 1.0 + rest;
    let ln_s = rest.ln_1p();
    let lse = m + ln_s;
    let s: Vec<f64> = x.iter().map(|&xj| (xj - m).exp() / sum_exp).collect();
    // One term `a · (lse − x_j)`, as `a · ((m − x_j) + ln S)`; 0 when its weight `a` is 0.
    let term = |a: f64, xj: f64| if a == 0.0 { 0.0 } else { a * ((m - xj) + ln_s) };

    let (mut loss, mut grad) = match target {
        RowTarget::Probs(t) => {
            // wt_j = w_j t'_j
            let wt: Vec<f64> = (0..c)
                .map(|j| weight(j) * ((1.0 - eps) * t[j] + eps / cf))
                .collect();
            let mut total = 0.0f64;
            let mut loss = 0.0f64;
            for j in 0..c {
                total += wt[j];
                loss += term(wt[j], x[j]);
            }
            let grad = (0..c).map(|j| total * s[j] - wt[j]).collect::<Vec<_>>();
            (loss, grad)
        }
        RowTarget::Class(cls) => {
            let wc = (1.0 - eps) * weight(cls);
            let mut big_w = 0.0f64;
            let mut smooth = 0.0f64;
            for (j, &xj) in x.iter().enumerate() {
                big_w += weight(j);
                smooth += term(eps / cf * weight(j), xj);
            }
            let loss = term(wc, x[cls]) + smooth;
            // s_c − 1 = −(S − e_c)/S = −((1 − e_c) + rest)/S: a confident row's target entry
            // keeps its digits (1/S − 1 is 0 in f64 once S − 1 < 1e-16).
            let e_c = (x[cls] - m).exp();
            let s_c_minus_1 = -((1.0 - e_c) + rest) / sum_exp;
            let grad = (0..c)
                .map(|j| {
                    let ds = if j == cls { s_c_minus_1 } else { s[j] };
                    wc * ds + eps / cf * (big_w * s[j] - weight(j))
                })
                .collect::<Vec<_>>();
            (loss, grad)
        }
    };
    if z_loss != 0.0 {
        loss += z_loss * lse * lse;
        for (gj, sj) in grad.iter_mut().zip(&s) {
            *gj += 2.0 * z_loss * lse * sj;
        }
    }
    (loss, grad)
}
