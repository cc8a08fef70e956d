//! Huber loss, PyTorch `huber_loss`, threshold `δ > 0`, `d = p − t`:
//! `ℓ = ½d²` if `|d| ≤ δ`, else `δ(|d| − ½δ)`; `∂ℓ/∂p = d` if `|d| ≤ δ`, else `δ·sign(d)`.
//!
//! Shader `shaders/huber.wgsl` (`LossParams { delta }`); tests `tests/gpu/huber.rs`.

use super::{Loss, Options, Elementwise, Family, LossDef, LossOption};
use crate::simd::elementwise::{Element, Inputs, Outputs, dispatch};
use crate::error::{Error, Result};

/// The descriptor.
pub(crate) struct Def;

fn delta(loss: &Loss) -> f32 {
    match *loss {
        Loss::Huber { delta } => delta,
        _ => 1.0,
    }
}

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::Huber { .. })
    }
    fn name(&self) -> &'static str {
        "huber"
    }
    fn about(&self) -> &'static str {
        "Huber loss with threshold --delta (PyTorch huber_loss)"
    }
    fn options(&self) -> &'static [LossOption] {
        &[LossOption {
            name: "delta",
            help: "Huber's threshold delta > 0 between the quadratic and the linear part",
            default: 1.0,
            integer: false,
            flag: false,
        }]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::Huber {
            delta: value("delta").map_or(1.0, |v| v.float() as f32),
        }
    }
    fn validate(&self, loss: &Loss) -> Result<()> {
        let delta = delta(loss);
        if delta.is_finite() && delta > 0.0 {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: "delta",
                reason: format!("Huber's delta must be finite and > 0, got {delta}"),
            })
        }
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/huber.wgsl",
            include_str!("../../shaders/huber.wgsl"),
        )
    }
    fn params(&self, loss: &Loss) -> [f32; 4] {
        [delta(loss), 0.0, 0.0, 0.0]
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["delta"]
    }
    fn family(&self) -> Family<'_> {
        Family::Elementwise(self)
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
        reference::loss_and_grad(p, t, f64::from(delta(loss)))
    }
    fn cpu(
        &self,
        loss: &Loss,
        inputs: &Inputs<'_>,
        out: Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>> {
        dispatch::<_, false>(Kernel(delta(loss)), inputs, out)
    }
}

/// The builder of a Huber loss ([`Loss::Huber`]), from [`Loss::huber`]: options set by name,
/// the loss validated once by [`Huber::build`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::huber().delta(1.5).build()?;
/// assert_eq!(loss.name(), "huber");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct Huber {
    delta: f32,
}

impl Default for Huber {
    fn default() -> Self {
        Huber {
            delta: 1.0,
        }
    }
}

impl Huber {
    /// The threshold δ between the quadratic and the linear part: finite and > 0 (default 1).
    pub fn delta(mut self, delta: f32) -> Self {
        self.delta = delta;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `delta` that is not finite and > 0.
    pub fn build(self) -> Result<Loss> {
        let loss = Loss::Huber { delta: self.delta };
        loss.validate()?;
        Ok(loss)
    }
}

impl Loss {
    /// The builder of a Huber loss with default options ([`Huber`]).
    pub fn huber() -> Huber {
        Huber::default()
    }
}


/// Huber loss, reference for `shaders/huber.wgsl`.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂p)` for one element, `d = p − t`, threshold `delta > 0`:
    ///
    /// ```text
    /// ℓ = ½ d²            if |d| ≤ δ,  else δ (|d| − ½ δ)
    /// ∂ℓ/∂p = d           if |d| ≤ δ,  else δ sign(d)
    /// ```
    pub fn loss_and_grad(p: f64, t: f64, delta: f64) -> (f64, f64) {
        let d = p - t;
        if d.abs() <= delta {
            (0.5 * d * d, d)
        } else {
            // d NaN (p − t = ∞ − ∞) lands here: signum(NaN) is NaN, so the gradient is NaN.
            (delta * (d.abs() - 0.5 * delta), delta * d.signum())
        }
    }
}

/// Huber loss, the fast CPU counterpart of [`reference`].
pub(crate) mod cpu {
    /// `(ℓ, ∂ℓ/∂p)` for one element, `d = p − t`, threshold `delta > 0`, both branches computed
    /// and one selected:
    ///
    /// ```text
    /// ℓ = ½ d²            if |d| ≤ δ,  else δ (|d| − ½ δ)
    /// ∂ℓ/∂p = d           if |d| ≤ δ,  else δ sign(d)
    /// ```
    #[inline(always)]
    pub(crate) fn loss_and_grad(p: f32, t: f32, delta: f32) -> (f32, f32) {
        let d = p - t;
        let a = d.abs();
        if a <= delta {
            (0.5 * d * d, d)
        } else {
            // d NaN (p − t = ∞ − ∞) lands here; copysign would make it ±δ: keep the NaN.
            (
                delta * (a - 0.5 * delta),
                if d.is_nan() { d } else { delta.copysign(d) },
            )
        }
    }
}
