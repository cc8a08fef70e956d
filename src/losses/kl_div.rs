//! KL divergence, PyTorch `kl_div`: input `p` the log-probabilities of the prediction, target
//! `t` probabilities (or log-probabilities with `log_target`), elementwise:
//!
//! ```text
//! ℓ = t (ln t − p), 0 where t = 0        ∂ℓ/∂p = −t
//! log_target:  ℓ = e^t (t − p)            ∂ℓ/∂p = −e^t
//! ```
//!
//! PyTorch's `reduction="batchmean"` (the sum over the first dimension's size, the KL
//! divergence per sample) is [`crate::Reduction::BatchMean`]; its default `mean` divides by
//! every element, as here.
//!
//! Shader `shaders/kl_div.wgsl` (`log_target` as its pipeline switch `LOG_TARGET`); tests
//! `tests/gpu/kl_div.rs`.

use super::{Elementwise, Family, Loss, LossDef, LossOption, Options, Synthetic};
use crate::error::Result;
use crate::simd::elementwise::{Element, Inputs, Outputs, dispatch};

/// The descriptor.
pub(crate) struct Def;

/// `log_target`.
fn options(loss: &Loss) -> bool {
    match *loss {
        Loss::KlDiv { log_target } => log_target,
        _ => false,
    }
}

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::KlDiv { .. })
    }
    fn name(&self) -> &'static str {
        "kl-div"
    }
    fn about(&self) -> &'static str {
        "KL divergence t (ln t - p) of log-probabilities p (PyTorch kl_div)"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["kl-div-loss"]
    }
    fn options(&self) -> &'static [LossOption] {
        &[LossOption {
            name: "log-target",
            help: "1: the target holds log-probabilities, e^t (t - p); 0: probabilities (default)",
            default: 0.0,
            integer: true,
            flag: true,
        }]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::KlDiv {
            log_target: value("log-target").is_some_and(|v| v.int() != 0),
        }
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/kl_div.wgsl",
            include_str!("../../shaders/kl_div.wgsl"),
        )
    }
    fn switches(&self, loss: &Loss) -> &'static [(&'static str, bool)] {
        // Each form compiled alone (a uniform branch per element costs llvmpipe the test and
        // both sides).
        if options(loss) {
            &[("LOG_TARGET", true)]
        } else {
            &[("LOG_TARGET", false)]
        }
    }
    fn synthetic(&self) -> Synthetic {
        // Log-probabilities against probabilities.
        Synthetic {
            pred: (-8.0, 0.0),
            target: (0.0, 1.0),
            ..Synthetic::SIGNED
        }
    }
    fn family(&self) -> Family<'_> {
        Family::Elementwise(self)
    }
}

/// The builder of a KL divergence ([`Loss::KlDiv`]), from [`Loss::kl_div`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::kl_div().log_target(true).build()?;
/// assert_eq!(loss.name(), "kl-div");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[must_use]
pub struct KlDiv {
    log_target: bool,
}

impl KlDiv {
    /// Whether the target holds log-probabilities (PyTorch's `log_target`, default false).
    pub fn log_target(mut self, log_target: bool) -> Self {
        self.log_target = log_target;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// None today (every option value is valid); a `Result` like every builder's.
    pub fn build(self) -> Result<Loss> {
        Ok(Loss::KlDiv {
            log_target: self.log_target,
        })
    }
}

impl Loss {
    /// The builder of a KL divergence with default options ([`KlDiv`]).
    pub fn kl_div() -> KlDiv {
        KlDiv::default()
    }
}

/// The f64 reference.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂p)` for one element, log-probability `p`, target `t`:
    ///
    /// ```text
    /// ℓ = t (ln t − p), 0 where t = 0        ∂ℓ/∂p = −t
    /// log_target:  ℓ = e^t (t − p)            ∂ℓ/∂p = −e^t
    /// ```
    ///
    /// As PyTorch, nothing is checked: a negative probability target gives NaN. Where `t = 0`
    /// the loss is 0 whatever `p` is (PyTorch gives NaN for `p = −∞` there).
    pub fn loss_and_grad(p: f64, t: f64, log_target: bool) -> (f64, f64) {
        if log_target {
            let e = t.exp();
            (e * (t - p), -e)
        } else if t == 0.0 {
            (0.0, -t)
        } else {
            (t * (t.ln() - p), -t)
        }
    }
}

/// The fast CPU kernel.
pub(crate) mod cpu {
    use crate::simd::math::{exp, ln};

    /// `(ℓ, ∂ℓ/∂p)` for one element, as [`super::reference::loss_and_grad`] in f32.
    #[inline(always)]
    pub(crate) fn loss_and_grad(p: f32, t: f32, log_target: bool) -> (f32, f32) {
        if log_target {
            let e = exp(t);
            (e * (t - p), -e)
        } else {
            let l = t * (ln(t) - p);
            (if t == 0.0 { 0.0 } else { l }, -t)
        }
    }
}

struct Kernel<const LOG_TARGET: bool>;

impl<const LOG_TARGET: bool> Element for Kernel<LOG_TARGET> {
    #[inline(always)]
    fn eval(&self, p: f32, t: f32, _: f32, _: f32) -> (f32, f32) {
        cpu::loss_and_grad(p, t, LOG_TARGET)
    }
}

impl Elementwise for Def {
    fn reference(&self, loss: &Loss, p: f64, t: f64, _: f64, _: f64) -> (f64, f64) {
        reference::loss_and_grad(p, t, options(loss))
    }
    fn cpu(
        &self,
        loss: &Loss,
        inputs: &Inputs<'_>,
        out: Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>> {
        if options(loss) {
            dispatch::<_, false>(Kernel::<true>, inputs, out)
        } else {
            dispatch::<_, false>(Kernel::<false>, inputs, out)
        }
    }
}
