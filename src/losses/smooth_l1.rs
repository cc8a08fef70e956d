//! Smooth L1 loss, PyTorch `smooth_l1_loss`, threshold `β ≥ 0`, `d = p − t`:
//! `ℓ = ½d²/β` if `|d| < β`, else `|d| − ½β`; `∂ℓ/∂p = d/β` if `|d| < β`, else `sign(d)`
//! (0 at `d = 0`). `β = 0` is the L1 loss. (Huber with `δ = β`, divided by `β`.)
//!
//! Shader `shaders/smooth_l1.wgsl` (`LossParams { beta }`); tests `tests/gpu/smooth_l1.rs`.

use super::{Loss, Options, Elementwise, Family, LossDef, LossOption};
use crate::simd::elementwise::{Element, Inputs, Outputs, dispatch};
use crate::error::{Error, Result};

/// The descriptor.
pub(crate) struct Def;

fn beta(loss: &Loss) -> f32 {
    match *loss {
        Loss::SmoothL1 { beta } => beta,
        _ => 1.0,
    }
}

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::SmoothL1 { .. })
    }
    fn name(&self) -> &'static str {
        "smooth-l1"
    }
    fn about(&self) -> &'static str {
        "Smooth L1 loss with threshold --beta (PyTorch smooth_l1_loss)"
    }
    fn options(&self) -> &'static [LossOption] {
        &[LossOption {
            name: "beta",
            help: "Smooth L1's threshold beta >= 0 (0: the L1 loss)",
            default: 1.0,
            integer: false,
            flag: false,
        }]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::SmoothL1 {
            beta: value("beta").map_or(1.0, |v| v.float() as f32),
        }
    }
    fn validate(&self, loss: &Loss) -> Result<()> {
        let beta = beta(loss);
        if beta.is_finite() && beta >= 0.0 {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: "beta",
                reason: format!("smooth L1's beta must be finite and >= 0, got {beta}"),
            })
        }
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/smooth_l1.wgsl",
            include_str!("../../shaders/smooth_l1.wgsl"),
        )
    }
    fn params(&self, loss: &Loss) -> [f32; 4] {
        [beta(loss), 0.0, 0.0, 0.0]
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["beta"]
    }
    fn family(&self) -> Family<'_> {
        Family::Elementwise(self)
    }
}

/// The builder of a smooth L1 loss ([`Loss::SmoothL1`]), from [`Loss::smooth_l1`]: options set by name,
/// the loss validated once by [`SmoothL1::build`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::smooth_l1().beta(0.5).build()?;
/// assert_eq!(loss.name(), "smooth-l1");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct SmoothL1 {
    beta: f32,
}

impl Default for SmoothL1 {
    fn default() -> Self {
        SmoothL1 {
            beta: 1.0,
        }
    }
}

impl SmoothL1 {
    /// The threshold β between the quadratic and the linear part: finite and ≥ 0, 0 giving the L1 loss (default 1).
    pub fn beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `beta` that is negative or not finite.
    pub fn build(self) -> Result<Loss> {
        let loss = Loss::SmoothL1 { beta: self.beta };
        loss.validate()?;
        Ok(loss)
    }
}

impl Loss {
    /// The builder of a smooth L1 loss with default options ([`SmoothL1`]).
    pub fn smooth_l1() -> SmoothL1 {
        SmoothL1::default()
    }
}


/// The f64 reference.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂p)` for one element, `d = p − t`, threshold `beta ≥ 0`:
    ///
    /// ```text
    /// ℓ = ½ d² / β        if |d| < β,  else |d| − ½ β
    /// ∂ℓ/∂p = d / β       if |d| < β,  else sign(d), 0 at 0
    /// ```
    pub fn loss_and_grad(p: f64, t: f64, beta: f64) -> (f64, f64) {
        let d = p - t;
        if d.abs() < beta {
            (0.5 * d * d / beta, d / beta)
        } else {
            // sign(0) = 0 (β = 0, d = 0: PyTorch's gradient); NaN (∞ − ∞) propagates.
            let sign = if d == 0.0 { 0.0 } else { d.signum() };
            (d.abs() - 0.5 * beta, sign)
        }
    }
}

/// The fast CPU kernel.
pub(crate) mod cpu {
    /// `(ℓ, ∂ℓ/∂p)` for one element, as [`super::reference::loss_and_grad`] in f32.
    #[inline(always)]
    pub(crate) fn loss_and_grad(p: f32, t: f32, beta: f32) -> (f32, f32) {
        let d = p - t;
        let a = d.abs();
        if a < beta {
            (0.5 * d * d / beta, d / beta)
        } else {
            let sign = if d == 0.0 || d.is_nan() {
                d
            } else {
                1.0f32.copysign(d)
            };
            (a - 0.5 * beta, sign)
        }
    }
}

struct Kernel(f32);

impl Element for Kernel {
    #[inline(always)]
    fn eval(&self, p: f32, t: f32, _: f32, _: f32) -> (f32, f32) {
        cpu::loss_and_grad(p, t, self.0)
    }
}

impl Elementwise for Def {
    fn reference(&self, loss: &Loss, p: f64, t: f64, _: f64, _: f64) -> (f64, f64) {
        reference::loss_and_grad(p, t, f64::from(beta(loss)))
    }
    fn cpu(
        &self,
        loss: &Loss,
        inputs: &Inputs<'_>,
        out: Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>> {
        dispatch::<_, false>(Kernel(beta(loss)), inputs, out)
    }
}
