//! Poisson negative log likelihood, PyTorch `poisson_nll_loss`, prediction `x` (the log of the
//! rate with `log_input`, the default; else the rate), target counts `t`:
//!
//! ```text
//! log_input:  ℓ = e^x − t x               ∂ℓ/∂x = e^x − t
//! otherwise:  ℓ = x − t ln(x + ε)         ∂ℓ/∂x = 1 − t / (x + ε)
//! full:       ℓ += t ln t − t + ½ ln(2π t)   where t > 1 (Stirling's term; no gradient)
//! ```
//!
//! Shader `shaders/poisson_nll.wgsl` (`LossParams { eps }`, `log_input` and `full` as its
//! pipeline switches `LOG_INPUT`, `FULL`); tests
//! `tests/gpu/poisson_nll.rs`.

use super::{Elementwise, Family, Loss, LossDef, LossOption, Options, Synthetic};
use crate::error::{Error, Result};
use crate::simd::elementwise::{Element, Inputs, Outputs, dispatch};

/// The descriptor.
pub(crate) struct Def;

/// `(log_input, full, eps)`.
fn options(loss: &Loss) -> (bool, bool, f32) {
    match *loss {
        Loss::PoissonNll {
            log_input,
            full,
            eps,
        } => (log_input, full, eps),
        _ => (true, false, EPS),
    }
}

/// PyTorch's default `eps`.
const EPS: f32 = 1e-8;

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::PoissonNll { .. })
    }
    fn name(&self) -> &'static str {
        "poisson-nll"
    }
    fn about(&self) -> &'static str {
        "Poisson negative log likelihood (PyTorch poisson_nll_loss)"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["poisson-nll-loss"]
    }
    fn options(&self) -> &'static [LossOption] {
        &[
            LossOption {
                name: "log-input",
                help: "1: the prediction is the log of the rate, e^x - t x (PyTorch's default); 0: the rate, x - t ln(x + eps)",
                default: 1.0,
                integer: true,
                flag: true,
            },
            LossOption {
                name: "full",
                help: "1: add Stirling's term t ln t - t + ln(2 pi t)/2 where t > 1; 0: not (default)",
                default: 0.0,
                integer: true,
                flag: true,
            },
            LossOption {
                name: "eps",
                help: "added to the rate before its log when --log-input 0, > 0 (default 1e-8)",
                default: 1e-8,
                integer: false,
                flag: false,
            },
        ]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::PoissonNll {
            log_input: value("log-input").is_none_or(|v| v.int() != 0),
            full: value("full").is_some_and(|v| v.int() != 0),
            eps: value("eps").map_or(EPS, |v| v.float() as f32),
        }
    }
    fn validate(&self, loss: &Loss) -> Result<()> {
        let (_, _, eps) = options(loss);
        if eps.is_finite() && eps > 0.0 {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: "eps",
                reason: format!("Poisson NLL's eps must be finite and > 0, got {eps}"),
            })
        }
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/poisson_nll.wgsl",
            include_str!("../../shaders/poisson_nll.wgsl"),
        )
    }
    fn params(&self, loss: &Loss) -> [f32; 4] {
        [options(loss).2, 0.0, 0.0, 0.0]
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["eps"]
    }
    fn switches(&self, loss: &Loss) -> &'static [(&'static str, bool)] {
        // Each form compiled alone (a uniform branch per element costs llvmpipe the test and
        // both sides).
        match options(loss) {
            (true, true, _) => &[("LOG_INPUT", true), ("FULL", true)],
            (true, false, _) => &[("LOG_INPUT", true), ("FULL", false)],
            (false, true, _) => &[("LOG_INPUT", false), ("FULL", true)],
            (false, false, _) => &[("LOG_INPUT", false), ("FULL", false)],
        }
    }
    fn synthetic(&self) -> Synthetic {
        // Log-rates and counts.
        Synthetic {
            pred: (-3.0, 3.0),
            target: (0.0, 6.0),
            ..Synthetic::SIGNED
        }
    }
    fn family(&self) -> Family<'_> {
        Family::Elementwise(self)
    }
}

/// The builder of a Poisson negative log likelihood ([`Loss::PoissonNll`]), from
/// [`Loss::poisson_nll`]: options set by name, the loss validated once by
/// [`PoissonNll::build`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::poisson_nll().log_input(false).full(true).build()?;
/// assert_eq!(loss.name(), "poisson-nll");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct PoissonNll {
    log_input: bool,
    full: bool,
    eps: f32,
}

impl Default for PoissonNll {
    fn default() -> Self {
        PoissonNll {
            log_input: true,
            full: false,
            eps: EPS,
        }
    }
}

impl PoissonNll {
    /// Whether the prediction is the log of the rate (`e^x − t x`, PyTorch's default, true)
    /// or the rate itself (`x − t ln(x + ε)`).
    pub fn log_input(mut self, log_input: bool) -> Self {
        self.log_input = log_input;
        self
    }

    /// Whether Stirling's approximation of `ln t!`, `t ln t − t + ½ ln(2π t)`, is added where
    /// `t > 1` (default false).
    pub fn full(mut self, full: bool) -> Self {
        self.full = full;
        self
    }

    /// The ε added to the rate before its log when `log_input` is false: finite and > 0
    /// (default 1e-8).
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an `eps` that is not finite and > 0.
    pub fn build(self) -> Result<Loss> {
        let loss = Loss::PoissonNll {
            log_input: self.log_input,
            full: self.full,
            eps: self.eps,
        };
        loss.validate()?;
        Ok(loss)
    }
}

impl Loss {
    /// The builder of a Poisson negative log likelihood with default options ([`PoissonNll`]).
    pub fn poisson_nll() -> PoissonNll {
        PoissonNll::default()
    }
}

/// The f64 reference.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂x)` for one element, prediction `x`, target `t`:
    ///
    /// ```text
    /// log_input:  ℓ = e^x − t x                  ∂ℓ/∂x = e^x − t
    /// otherwise:  ℓ = x − t ln(x + eps)          ∂ℓ/∂x = 1 − t / (x + eps)
    /// full:       ℓ += t ln t − t + ½ ln(2π t)   where t > 1 (0 elsewhere), no gradient
    /// ```
    ///
    /// As PyTorch: nothing is checked (a negative rate gives NaN, a count need not be an
    /// integer), and `e^x` overflows to +∞ where the true value does.
    pub fn loss_and_grad(x: f64, t: f64, log_input: bool, full: bool, eps: f64) -> (f64, f64) {
        let (loss, grad) = if log_input {
            let e = x.exp();
            (e - t * x, e - t)
        } else {
            (x - t * (x + eps).ln(), 1.0 - t / (x + eps))
        };
        (loss + if full { stirling(t) } else { 0.0 }, grad)
    }

    /// `t ln t − t + ½ ln(2π t)` for `t > 1`, else 0 (PyTorch's mask).
    pub fn stirling(t: f64) -> f64 {
        if t > 1.0 {
            t * t.ln() - t + 0.5 * (2.0 * std::f64::consts::PI * t).ln()
        } else {
            0.0
        }
    }
}

/// The fast CPU kernel.
pub(crate) mod cpu {
    use crate::simd::math::{exp, ln};

    /// `(ℓ, ∂ℓ/∂x)` for one element, as [`super::reference::loss_and_grad`] in f32.
    #[inline(always)]
    pub(crate) fn loss_and_grad(x: f32, t: f32, log_input: bool, full: bool, eps: f32) -> (f32, f32) {
        let (loss, grad) = if log_input {
            let e = exp(x);
            (e - t * x, e - t)
        } else {
            let r = x + eps;
            (x - t * ln(r), 1.0 - t / r)
        };
        let s = if full && t > 1.0 {
            t * ln(t) - t + 0.5 * ln(std::f32::consts::TAU * t)
        } else {
            0.0
        };
        (loss + s, grad)
    }
}

struct Kernel<const LOG_INPUT: bool, const FULL: bool>(f32);

impl<const LOG_INPUT: bool, const FULL: bool> Element for Kernel<LOG_INPUT, FULL> {
    #[inline(always)]
    fn eval(&self, x: f32, t: f32, _: f32, _: f32) -> (f32, f32) {
        cpu::loss_and_grad(x, t, LOG_INPUT, FULL, self.0)
    }
}

impl Elementwise for Def {
    fn reference(&self, loss: &Loss, x: f64, t: f64, _: f64, _: f64) -> (f64, f64) {
        let (log_input, full, eps) = options(loss);
        reference::loss_and_grad(x, t, log_input, full, f64::from(eps))
    }
    fn cpu(
        &self,
        loss: &Loss,
        inputs: &Inputs<'_>,
        out: Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>> {
        // The options fixed at compile time, so the loop has no branch on them.
        match options(loss) {
            (true, false, eps) => dispatch::<_, false>(Kernel::<true, false>(eps), inputs, out),
            (true, true, eps) => dispatch::<_, false>(Kernel::<true, true>(eps), inputs, out),
            (false, false, eps) => dispatch::<_, false>(Kernel::<false, false>(eps), inputs, out),
            (false, true, eps) => dispatch::<_, false>(Kernel::<false, true>(eps), inputs, out),
        }
    }
}
