//! Mean absolute error (L1), PyTorch `l1_loss`: `ℓ = |p − t|`, `∂ℓ/∂p = sign(p − t)`, 0 at 0.
//!
//! Shader `shaders/mae.wgsl`; tests `tests/gpu/mae.rs`.

use super::{Loss, Options, Elementwise, Family, LossDef};
use crate::simd::elementwise::{Element, Inputs, Outputs, dispatch};

/// The descriptor.
pub(crate) struct Def;

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::Mae)
    }
    fn name(&self) -> &'static str {
        "mae"
    }
    fn about(&self) -> &'static str {
        "Mean absolute error (PyTorch l1_loss)"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["l1"]
    }
    fn build(&self, _: &Options<'_>) -> Loss {
        Loss::Mae
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/mae.wgsl",
            include_str!("../../shaders/mae.wgsl"),
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

/// Mean absolute error (L1), reference for `shaders/mae.wgsl`.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂p)` for one element: `ℓ = |p − t|`, `∂ℓ/∂p = sign(p − t)`, 0 at 0 (PyTorch's choice).
    pub fn loss_and_grad(p: f64, t: f64) -> (f64, f64) {
        let d = p - t;
        let sign = if d > 0.0 {
            1.0
        } else if d < 0.0 {
            -1.0
        } else if d.is_nan() {
            d // p − t is NaN (∞ − ∞): NaN propagates to the gradient
        } else {
            0.0
        };
        (d.abs(), sign)
    }
}

/// Mean absolute error (L1), the fast CPU counterpart of [`reference`].
pub(crate) mod cpu {
    /// `(ℓ, ∂ℓ/∂p)` for one element: `ℓ = |p − t|`, `∂ℓ/∂p = sign(p − t)`, 0 at 0 (PyTorch's
    /// choice), as selects.
    #[inline(always)]
    pub(crate) fn loss_and_grad(p: f32, t: f32) -> (f32, f32) {
        let d = p - t;
        let sign = if d > 0.0 {
            1.0
        } else if d < 0.0 {
            -1.0
        } else if d.is_nan() {
            d // p − t is NaN (∞ − ∞): NaN propagates to the gradient
        } else {
            0.0
        };
        (d.abs(), sign)
    }
}
