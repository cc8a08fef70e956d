//! Categorical cross entropy on probabilities, the fast CPU counterpart of
//! `src/reference/categorical_cross_entropy.rs`.

use super::math::ln;
use super::rows::{Row, RowKernel};
use super::{Acc, CHUNK, chunk, chunk_mut};

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
pub(super) struct Cce;

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
    for j in whole..c {
        if out_of_domain(p[j]) {
            return Err(j);
        }
        let (l, d) = element(p[j], t[j]);
        acc.add(l);
        if G {
            grad[j] = f * d;
        }
    }
    Ok(-acc.total())
}
