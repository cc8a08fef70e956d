//! Mean squared error, PyTorch `mse_loss`: `ℓ = (p − t)²`, `∂ℓ/∂p = 2 (p − t)`.
//!
//! Shader `shaders/mse.wgsl`; tests `tests/gpu/mse.rs`.

use super::{Loss, Options, Elementwise, Family, LossDef};
use crate::simd::elementwise::{Element, Inputs, Outputs, dispatch};

/// The descriptor.
pub(crate) struct Def;

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::Mse)
    }
    fn name(&self) -> &'static str {
        "mse"
    }
    fn about(&self) -> &'static str {
        "Mean squared error (PyTorch mse_loss)"
    }
    fn build(&self, _: &Options<'_>) -> Loss {
        Loss::Mse
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/mse.wgsl",
            include_str!("../../shaders/mse.wgsl"),
        )
    }
    fn family(&self) -> Family<'_> {
        Family::Elementwise(self)
    }
}

struct Kernel;

impl Element for Kernel {
    #[inline(always)]
    fn eval(&self, p: f32, t: f32, _: f32, _: f32) -> (f32, f32) {
        cpu::loss_and_grad(p, t)
    }
}

impl Elementwise for Def {
    fn reference(&self, _: &Loss, p: f64, t: f64, _: f64, _: f64) -> (f64, f64) {
        reference::loss_and_grad(p, t)
    }
    fn cpu(&self, _: &Loss, inputs: &Inputs<'_>, out: Outputs<'_>) -> Vec<Result<f64, usize>> {
        dispatch::<_, false>(Kernel, inputs, out)
    }
}

/// Mean squared error, reference for `shaders/mse.wgsl`.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂p)` for one element: `ℓ = (p − t)²`, `∂ℓ/∂p = 2 (p − t)`.
    pub fn loss_and_grad(p: f64, t: f64) -> (f64, f64) {
        let d = p - t;
        (d * d, 2.0 * d)
    }
}

/// Mean squared error, the fast CPU counterpart of [`reference`].
pub(crate) mod cpu {
    /// `(ℓ, ∂ℓ/∂p)` for one element: `ℓ = (p − t)²`, `∂ℓ/∂p = 2 (p − t)`.
    #[inline(always)]
    pub(crate) fn loss_and_grad(p: f32, t: f32) -> (f32, f32) {
        let d = p - t;
        (d * d, 2.0 * d)
    }
}
