//! Categorical cross entropy on probabilities `[B, C]` against probability targets `[B, C]`
//! (Keras `categorical_crossentropy` without its renormalisation of each row):
//! `ℓ_r = −Σ_j t_rj·max(ln p_rj, −100)`, `∂ℓ_r/∂p_rj = −t_rj / max(p_rj, 1e-12)`. A prediction
//! outside [0, 1] is an error.
//!
//! Shader `shaders/categorical_cross_entropy.wgsl`; tests
//! `tests/gpu/categorical_cross_entropy.rs`.

use super::{Loss, Options, Family, LossDef, Rows, Synthetic};
use crate::simd::rows::{Data, Outputs, Setup, groups};
use crate::bindings::{Access, Binding, ROWS_BINDINGS, Slot, binding, concat};
use super::RowTarget;

/// The descriptor.
pub(crate) struct Def;

/// The row driver's and the domain-error atomic.
const BINDINGS: [Binding; 11] = concat(
    ROWS_BINDINGS,
    [binding(10, Slot::DomainError, Access::ReadWrite)],
);

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::CategoricalCrossEntropy)
    }
    fn name(&self) -> &'static str {
        "cce"
    }
    fn about(&self) -> &'static str {
        "Categorical cross entropy on probabilities, rows of `[B, C]`"
    }
    fn build(&self, _: &Options<'_>) -> Loss {
        Loss::CategoricalCrossEntropy
    }
    fn checks_domain(&self) -> bool {
        true
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/categorical_cross_entropy.wgsl",
            include_str!("../../shaders/categorical_cross_entropy.wgsl"),
        )
    }
    fn bindings(&self) -> &'static [Binding] {
        &BINDINGS
    }
    fn synthetic(&self) -> Synthetic {
        Synthetic {
            pred: (0.0005, 1.0),
            target: (0.0, 1.0),
            normalise_pred: true,
            normalise_target: true,
        }
    }
    fn family(&self) -> Family<'_> {
        Family::Rows(self)
    }
}

impl Rows for Def {
    fn reference(
        &self,
        _: &Loss,
        x: &[f64],
        target: RowTarget<'_>,
        _: Option<&[f64]>,
    ) -> (f64, Vec<f64>) {
        match target {
            RowTarget::Probs(t) => reference::loss_and_grad(x, t),
            // validate() admits only float targets.
            RowTarget::Class(_) => crate::losses::nan_row(x.len()),
        }
    }
    fn cpu(
        &self,
        _: &Loss,
        _: &Setup<'_>,
        data: &Data<'_>,
        out: Outputs<'_>,
    ) -> Vec<Result<f64, usize>> {
        groups(&cpu::Cce, data, out)
    }
    fn main_job_cols(&self) -> usize {
        1000
    }
    // The statistic Σ t ln p adds across segments as across lanes.
    fn splits(&self) -> bool {
        true
    }
    // ∂ℓ_r/∂p_j = −t_j / max(p_j, 1e-12) is the element's alone.
    fn grad_early(&self) -> bool {
        true
    }
}

/// Categorical cross entropy on probabilities, reference for `shaders/categorical_cross_entropy.wgsl`.
pub mod reference {
    /// `(ℓ_r, ∂ℓ_r/∂p_r)` for one row: probabilities `p` (`C` values in [0, 1]) against targets
    /// `t` (`C` values, usually a probability distribution):
    ///
    /// ```text
    /// ℓ_r = −Σ_j t_j · max(ln p_j, −100)
    /// ∂ℓ_r/∂p_j = −t_j / max(p_j, 1e-12)
    /// ```
    ///
    /// The clamps are PyTorch's (as in BCE): `p_j = 0` gives a finite loss and gradient. Rows are
    /// not renormalised (Keras divides `p` by its row sum first; this does not). If any `p_j` or
    /// `t_j` is NaN, the loss and every gradient entry are NaN. `p` and `t` have the same length.
    pub fn loss_and_grad(p: &[f64], t: &[f64]) -> (f64, Vec<f64>) {
        debug_assert_eq!(p.len(), t.len());
        if crate::losses::has_nan(p) || crate::losses::has_nan(t) {
            return crate::losses::nan_row(p.len());
        }
        let mut sum = 0.0f64;
        for (&pj, &tj) in p.iter().zip(t) {
            sum += tj * pj.ln().max(-100.0);
        }
        let grad = p
            .iter()
            .zip(t)
            .map(|(&pj, &tj)| -tj / pj.max(1e-12))
            .collect();
        (-sum, grad)
    }
}

/// Categorical cross entropy on probabilities, the fast CPU counterpart of [`reference`].
pub(crate) mod cpu {
    use crate::simd::math::ln;
    use crate::simd::rows::{Row, RowKernel};
    use crate::simd::{Acc, CHUNK, chunk, chunk_mut, padded};

    /// Categorical cross entropy's row kernel. Per row, probabilities `p` against targets `t`:
    ///
    /// ```text
    /// ℓ_r = −Σ_j t_j · max(ln p_j, −100)
    /// ∂ℓ_r/∂p_j = −t_j / max(p_j, 1e-12)
    /// ```
    ///
    /// The gradient of an element needs nothing from the rest of its row, so a row is one pass:
    /// loss terms, gradient and the domain check together. The clamp of `ln p` keeps NaN (so a
    /// NaN in the row makes its loss NaN, and the driver its gradient).
    pub(crate) struct Cce;

    impl RowKernel for Cce {
        #[inline(always)]
        fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
            if grad.is_empty() {
                pass::<false>(row, grad)
            } else {
                pass::<true>(row, grad)
            }
        }
    }

    /// One element: `(t · max(ln p, −100), −t / max(p, 1e-12))`.
    #[inline(always)]
    fn element(p: f32, t: f32) -> (f32, f32) {
        let lp = ln(p);
        let lp = if lp < -100.0 { -100.0 } else { lp };
        (t * lp, -t / if p > 1e-12 { p } else { 1e-12 })
    }

    /// A probability outside [0, 1] (NaN is not).
    #[inline(always)]
    #[allow(clippy::manual_range_contains)] // `!(0.0..=1.0).contains(&p)` would be true for NaN
    fn out_of_domain(p: f32) -> bool {
        (p < 0.0) | (p > 1.0)
    }

    #[inline(always)]
    fn pass<const G: bool>(row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
        let (p, t, f) = (row.x, row.t, row.f);
        let c = p.len();
        let whole = c - c % CHUNK;
        let mut acc = Acc::default();
        let (mut terms, mut g_dummy) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
        for a in (0..whole).step_by(CHUNK) {
            let (pc, tc) = (chunk(p, a), chunk(t, a));
            let gc = if G { chunk_mut(grad, a) } else { &mut g_dummy };
            let mut bad = false;
            for i in 0..CHUNK {
                let (l, d) = element(pc[i], tc[i]);
                terms[i] = l;
                if G {
                    gc[i] = f * d;
                }
                bad |= out_of_domain(pc[i]);
            }
            if bad {
                return Err(a + pc.iter().position(|&v| out_of_domain(v)).expect("one is"));
            }
            acc.add_chunk(&terms);
        }
        if whole < c {
            // The tail in a padded chunk (simd::padded), its first c − whole results kept.
            if let Some(j) = p[whole..].iter().position(|&v| out_of_domain(v)) {
                return Err(whole + j);
            }
            let (pc, tc) = (padded(&p[whole..], 1.0), padded(&t[whole..], 0.0));
            let mut gt = [0.0f32; CHUNK];
            for i in 0..CHUNK {
                let (l, d) = element(pc[i], tc[i]);
                (terms[i], gt[i]) = (l, f * d);
            }
            acc.add_first(&terms, c - whole);
            if G {
                grad[whole..].copy_from_slice(&gt[..c - whole]);
            }
        }
        Ok(-acc.total())
    }
}
