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
/// One pass over the row for `p·t`, `‖p‖²`, `‖t‖²` (f32 products, accumulated as [`Acc`]) and
/// the largest `|p_j|` and `|t_j|`; where those are outside [2^-50, 2^48] (f32 products could
/// overflow, from elements of 1.8e19, or lose bits to underflow), the three sums again from the
/// row in f64, so the loss, which does not depend on the scale of `p` or `t`, is right at any
/// scale. The cosine and the gradient's coefficients in f64; then the gradient, from the row now
/// in cache, as `rp (c (p_j rp) − t_j rt)` with `rp = 1/max(‖p‖, ε)`, `rt = 1/max(‖t‖, ε)` and
/// `c` the cosine (0 when `‖p‖ ≤ ε`): each factor is an f32 without overflow or needless
/// underflow, where `t_j / (‖p‖ ‖t‖)` for norms of 1e20 would underflow as one coefficient.
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

/// Below this largest element (and above 0), f32 squares lose bits to underflow.
const SAFE_LO: f32 = 1.0 / (1u64 << 50) as f32;
/// Above this largest element, f32 sums of squares may overflow.
const SAFE_HI: f32 = (1u64 << 48) as f32;

/// `(p·t, ‖p‖², ‖t‖²)` in f64 from f64 products: exact enough at any f32 scale.
fn sums_f64(p: &[f32], t: &[f32]) -> (f64, f64, f64) {
    let (mut dot, mut pp, mut tt) = (0.0f64, 0.0f64, 0.0f64);
    for (&pj, &tj) in p.iter().zip(t) {
        let (pj, tj) = (f64::from(pj), f64::from(tj));
        dot += pj * tj;
        pp += pj * pj;
        tt += tj * tj;
    }
    (dot, pp, tt)
}

/// Whether a row whose largest `|element|` is `m` has f32 sums of squares without overflow
/// or underflow (a zero row's are exact).
fn safe_scale(m: f32) -> bool {
    m == 0.0 || (SAFE_LO..=SAFE_HI).contains(&m)
}

impl RowKernel for Cosine {
    #[inline(always)]
    fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
        let (p, t) = (row.x, row.t);
        let c = p.len();
        let whole = c - c % CHUNK;
        let (mut dot, mut pp, mut tt) = (Acc::default(), Acc::default(), Acc::default());
        let mut buf = [[0.0f32; CHUNK]; 3];
        let (mut pmax, mut tmax) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
        for a in (0..whole).step_by(CHUNK) {
            let (pc, tc) = (chunk(p, a), chunk(t, a));
            for i in 0..CHUNK {
                buf[0][i] = pc[i] * tc[i];
                buf[1][i] = pc[i] * pc[i];
                buf[2][i] = tc[i] * tc[i];
                let (ap, at) = (pc[i].abs(), tc[i].abs());
                pmax[i] = if ap > pmax[i] { ap } else { pmax[i] };
                tmax[i] = if at > tmax[i] { at } else { tmax[i] };
            }
            dot.add_chunk(&buf[0]);
            pp.add_chunk(&buf[1]);
            tt.add_chunk(&buf[2]);
        }
        for j in whole..c {
            dot.add(p[j] * t[j]);
            pp.add(p[j] * p[j]);
            tt.add(t[j] * t[j]);
            pmax[0] = pmax[0].max(p[j].abs());
            tmax[0] = tmax[0].max(t[j].abs());
        }
        let top = |m: &[f32; CHUNK]| m.iter().fold(0.0f32, |a, &b| a.max(b));
        let (dot, pp, tt) = if safe_scale(top(&pmax)) && safe_scale(top(&tmax)) {
            (dot.total(), pp.total(), tt.total())
        } else {
            sums_f64(p, t)
        };
        let eps = self.eps;
        let (np, nt) = (pp.sqrt(), tt.sqrt());
        let (dp, dt) = (np.max(eps), nt.max(eps));
        let cos = dot / dp / dt;
        if !grad.is_empty() {
            let f = f64::from(row.f);
            // ∂ℓ_r/∂p_j · f = rp (k (p_j rp) − t_j rt), with f folded into k and rt.
            let rp = (1.0 / dp) as f32;
            let rt = (f / dt) as f32;
            let k = if np > eps { (f * cos) as f32 } else { 0.0 };
            for a_ in (0..whole).step_by(CHUNK) {
                let (pc, tc, gc) = (chunk(p, a_), chunk(t, a_), chunk_mut(grad, a_));
                for i in 0..CHUNK {
                    gc[i] = rp * (k * (pc[i] * rp) - tc[i] * rt);
                }
            }
            for j in whole..c {
                grad[j] = rp * (k * (p[j] * rp) - t[j] * rt);
            }
        }
        Ok(-cos)
    }
}
