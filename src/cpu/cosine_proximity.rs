//! Cosine proximity (negative cosine similarity), the fast CPU counterpart of
//! `src/reference/cosine_proximity.rs`.

use super::rows::{Row, RowKernel};
use super::{Acc, CHUNK, chunk, chunk_mut};

/// Cosine proximity's row kernel, norm floor `eps`. Per row, prediction `p` and target `t`:
///
/// ```text
/// cos = p·t / (max(‖p‖, ε) · max(‖t‖, ε)),   ℓ_r = −cos
/// ∂ℓ_r/∂p_j = −t_j / (max(‖p‖, ε) max(‖t‖, ε)) + cos · p_j / ‖p‖²   if ‖p‖ > ε
///           = −t_j / (ε · max(‖t‖, ε))                               otherwise
/// ```
///
/// One pass over the row for `p·t`, `‖p‖²`, `‖t‖²` (f32 products, accumulated as [`Acc`]);
/// the cosine and the gradient's two coefficients in f64; then the gradient `a t_j + b p_j`
/// from the row, now in cache.
pub(super) struct Cosine {
    eps: f64,
}

impl Cosine {
    pub(super) fn new(eps: f32) -> Cosine {
        Cosine {
            eps: f64::from(eps),
        }
    }
}

impl RowKernel for Cosine {
    #[inline(always)]
    fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
        let (p, t) = (row.x, row.t);
        let c = p.len();
        let whole = c - c % CHUNK;
        let (mut dot, mut pp, mut tt) = (Acc::default(), Acc::default(), Acc::default());
        let mut buf = [[0.0f32; CHUNK]; 3];
        for a in (0..whole).step_by(CHUNK) {
            let (pc, tc) = (chunk(p, a), chunk(t, a));
            for i in 0..CHUNK {
                buf[0][i] = pc[i] * tc[i];
                buf[1][i] = pc[i] * pc[i];
                buf[2][i] = tc[i] * tc[i];
            }
            dot.add_chunk(&buf[0]);
            pp.add_chunk(&buf[1]);
            tt.add_chunk(&buf[2]);
        }
        for j in whole..c {
            dot.add(p[j] * t[j]);
            pp.add(p[j] * p[j]);
            tt.add(t[j] * t[j]);
        }
        let (dot, pp, tt) = (dot.total(), pp.total(), tt.total());
        let eps = self.eps;
        let (np, nt) = (pp.sqrt(), tt.sqrt());
        let den = np.max(eps) * nt.max(eps);
        let cos = dot / den;
        if !grad.is_empty() {
            let f = f64::from(row.f);
            // ∂ℓ_r/∂p_j = a t_j + b p_j.
            let (a, b) = if np > eps {
                (-f / den, f * cos / pp)
            } else {
                (-f / (eps * nt.max(eps)), 0.0)
            };
            let (a, b) = (a as f32, b as f32);
            for a_ in (0..whole).step_by(CHUNK) {
                let (pc, tc, gc) = (chunk(p, a_), chunk(t, a_), chunk_mut(grad, a_));
                for i in 0..CHUNK {
                    gc[i] = a * tc[i] + b * pc[i];
                }
            }
            for j in whole..c {
                grad[j] = a * t[j] + b * p[j];
            }
        }
        Ok(-cos)
    }
}
