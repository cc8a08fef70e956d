//! The fast CPU path's elementwise driver: blocks of [`BLOCK`] elements in parallel, each a
//! loop over chunks of [`CHUNK`] elements that computes loss and gradient in one pass, with
//! the loss's element kernel ([`Element`], from its file in `src/losses/`) and the output mode
//! fixed at compile time.

use ndarray::ArrayViewD;

use super::{
    Acc, BLOCK, CHUNK, chunk, chunk_mut, contiguous, run_tasks, store_chunk, store_fence, streams,
};

/// One element's `(ℓ, ∂ℓ/∂p)` from prediction `p`, target `t`, weight `w` and `pos_weight` `q`
/// (1 where absent): a loss's formula (`src/losses/<loss>.rs`), inlined into the chunk loop.
pub(crate) trait Element: Sync {
    fn eval(&self, p: f32, t: f32, w: f32, q: f32) -> (f32, f32);

    /// Whether the loss has an ordinary-chunk form ([`Element::ordinary`]); without one the
    /// driver does not scan its chunks.
    const ORDINARY: bool = false;

    /// Whether `(p, t)` is *ordinary*: neither is NaN, `p` is in the loss's domain, and
    /// [`Element::eval_ordinary`] gives the same bits as `eval` there. A chunk whose every
    /// element is ordinary takes `eval_ordinary`, without the NaN rule or the domain check:
    /// the special values (and their selects) are handled once per chunk instead of per
    /// element.
    #[inline(always)]
    fn ordinary(&self, _p: f32, _t: f32) -> bool {
        false
    }

    /// `eval` for ordinary elements, bit for bit, with what only the others need left out.
    #[inline(always)]
    fn eval_ordinary(&self, p: f32, t: f32, w: f32, q: f32) -> (f32, f32) {
        self.eval(p, t, w, q)
    }

    /// [`Element::eval`] over a chunk: the losses into `l`, the gradients into `d`. The
    /// default is one loop over the elements; a loss whose element is a long chain of
    /// dependent operations (`exp`, then `ln` of it) overrides it with one loop per stage,
    /// each stage's results in an array, so the CPU overlaps many elements' chains instead
    /// of the one or two that fit its reorder window (see `docs/TUNING.md`, "Loop fission").
    /// The same operations on each element, so the same bits as `eval`.
    #[inline(always)]
    fn eval_chunk(&self, x: &Chunk<'_>, l: &mut [f32; CHUNK], d: &mut [f32; CHUNK]) {
        for i in 0..CHUNK {
            (l[i], d[i]) = self.eval(x.p[i], x.t[i], x.w[i], x.q[i]);
        }
    }

    /// [`Element::eval_ordinary`] over a chunk of ordinary elements, as [`Element::eval_chunk`].
    #[inline(always)]
    fn eval_chunk_ordinary(&self, x: &Chunk<'_>, l: &mut [f32; CHUNK], d: &mut [f32; CHUNK]) {
        for i in 0..CHUNK {
            (l[i], d[i]) = self.eval_ordinary(x.p[i], x.t[i], x.w[i], x.q[i]);
        }
    }
}

/// One chunk's inputs: predictions, targets, weights and `pos_weight`s (ones where absent).
pub(crate) struct Chunk<'a> {
    pub(crate) p: &'a [f32; CHUNK],
    pub(crate) t: &'a [f32; CHUNK],
    pub(crate) w: &'a [f32; CHUNK],
    pub(crate) q: &'a [f32; CHUNK],
}

/// A broadcast weight (`weight[k % len]` for element `k`) repeated to at least [`Tile::MIN`]
/// elements, so that the weights of a run of elements are one contiguous slice: for element
/// `k`, [`Tile::from`] starts at `k % len` and runs at least `MIN − len + 1` elements.
/// Without a weight, ones.
pub(crate) struct Tile {
    data: Vec<f32>,
    len: usize,
}

impl Tile {
    const MIN: usize = 4096;

    pub(crate) fn new(w: Option<&ArrayViewD<'_, f32>>) -> Tile {
        let w = match w {
            Some(w) => contiguous(w),
            None => std::borrow::Cow::Borrowed(&[1.0f32][..]),
        };
        let len = w.len();
        let data = w
            .iter()
            .copied()
            .cycle()
            .take(len * Self::MIN.div_ceil(len))
            .collect();
        Tile { data, len }
    }

    /// The weights of elements `k, k + 1, ...` (as many as the tile holds from there).
    fn from(&self, k: usize) -> &[f32] {
        &self.data[k % self.len..]
    }
}

/// The inputs of one call, contiguous.
pub(crate) struct Inputs<'a> {
    pub(crate) p: &'a [f32],
    pub(crate) t: &'a [f32],
    pub(crate) w: Tile,
    pub(crate) q: Tile,
    /// The upstream array (empty without one).
    pub(crate) u: &'a [f32],
    /// The gradient's factor `g · scale` (1/N for the mean).
    pub(crate) c: f32,
}

/// The outputs, each empty when not wanted.
pub(crate) struct Outputs<'a> {
    pub(crate) grad: &'a mut [f32],
    pub(crate) losses: &'a mut [f32],
}

/// Chooses the monomorphised block loop for the output mode: gradient or not, per-element
/// losses or not, upstream array or not.
pub(crate) fn dispatch<F, const CHECK: bool>(
    f: F,
    inputs: &Inputs<'_>,
    out: Outputs<'_>,
) -> Vec<Result<f64, usize>>
where
    F: Element,
{
    let g = !out.grad.is_empty();
    let l = !out.losses.is_empty();
    let u = !inputs.u.is_empty();
    match (g, l, u) {
        (false, false, false) => blocks::<F, false, false, false, CHECK>(&f, inputs, out),
        (false, false, true) => blocks::<F, false, false, true, CHECK>(&f, inputs, out),
        (false, true, false) => blocks::<F, false, true, false, CHECK>(&f, inputs, out),
        (false, true, true) => blocks::<F, false, true, true, CHECK>(&f, inputs, out),
        (true, false, false) => blocks::<F, true, false, false, CHECK>(&f, inputs, out),
        (true, false, true) => blocks::<F, true, false, true, CHECK>(&f, inputs, out),
        (true, true, false) => blocks::<F, true, true, false, CHECK>(&f, inputs, out),
        (true, true, true) => blocks::<F, true, true, true, CHECK>(&f, inputs, out),
    }
}

/// Cuts the outputs into blocks and runs [`block`] on each, in parallel; one result per block,
/// in order: the block's f64 sum, or the index of its first out-of-domain prediction.
fn blocks<F, const G: bool, const L: bool, const U: bool, const CHECK: bool>(
    f: &F,
    inputs: &Inputs<'_>,
    out: Outputs<'_>,
) -> Vec<Result<f64, usize>>
where
    F: Element,
{
    let n = inputs.p.len();
    let mut grad = out.grad.chunks_mut(BLOCK);
    let mut losses = out.losses.chunks_mut(BLOCK);
    let tasks: Vec<_> = (0..n)
        .step_by(BLOCK)
        .map(|start| {
            let g = if G { grad.next() } else { None };
            let l = if L { losses.next() } else { None };
            (start, g.unwrap_or_default(), l.unwrap_or_default())
        })
        .collect();
    let stream = streams(n);
    // Decided once for the call: every block streams, and then fences, or none does.
    let run = |start, g: &mut [f32], l: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if super::avx512() {
            // SAFETY: the CPU has these AVX-512 subsets, checked just above.
            return unsafe { block_avx512::<F, G, L, U, CHECK>(f, inputs, stream, start, g, l) };
        }
        #[cfg(target_arch = "x86_64")]
        if super::avx2() {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { block_avx2::<F, G, L, U, CHECK>(f, inputs, stream, start, g, l) };
        }
        block::<F, G, L, U, CHECK>(f, inputs, stream, start, g, l)
    };
    run_tasks(tasks, |(start, g, l)| {
        let sum = run(start, g, l);
        if stream {
            // The block's streaming stores made visible before its task counts as done.
            store_fence();
        }
        sum
    })
}

/// [`block`] compiled for AVX2 (8 lanes of f32 per instruction instead of SSE2's 4). The
/// operations are the same, in the same order (no FMA: Rust never fuses `a * b + c`), so the
/// results are bit-identical to the baseline's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn block_avx2<F, const G: bool, const L: bool, const U: bool, const CHECK: bool>(
    f: &F,
    inputs: &Inputs<'_>,
    stream: bool,
    start: usize,
    grad: &mut [f32],
    losses: &mut [f32],
) -> Result<f64, usize>
where
    F: Element,
{
    block::<F, G, L, U, CHECK>(f, inputs, stream, start, grad, losses)
}

/// [`block`] compiled for AVX-512 (see [`super::avx512`]): bit-identical to [`block_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512dq")]
fn block_avx512<F, const G: bool, const L: bool, const U: bool, const CHECK: bool>(
    f: &F,
    inputs: &Inputs<'_>,
    stream: bool,
    start: usize,
    grad: &mut [f32],
    losses: &mut [f32],
) -> Result<f64, usize>
where
    F: Element,
{
    block::<F, G, L, U, CHECK>(f, inputs, stream, start, grad, losses)
}

/// One block: elements `start .. start + BLOCK` (or to the end), `grad` and `losses` its
/// part of the outputs (empty when not wanted). Whole chunks go through [`chunk_loop`], their
/// outputs written by streaming stores with `stream` ([`super::streams`]); a chunk's remainder
/// (at the end, or where a broadcast weight's tile ends) one at a time.
#[inline(always)]
fn block<F, const G: bool, const L: bool, const U: bool, const CHECK: bool>(
    f: &F,
    inputs: &Inputs<'_>,
    stream: bool,
    start: usize,
    grad: &mut [f32],
    losses: &mut [f32],
) -> Result<f64, usize>
where
    F: Element,
{
    let n = BLOCK.min(inputs.p.len() - start);
    let p = &inputs.p[start..start + n];
    let t = &inputs.t[start..start + n];
    let u = if U { &inputs.u[start..start + n] } else { &[] };
    let c = inputs.c;
    let mut acc = Acc::default();
    let (mut g_buf, mut l_buf, u_dummy) = ([0.0f32; CHUNK], [0.0f32; CHUNK], [0.0f32; CHUNK]);
    let mut i = 0;
    while i < n {
        let (w, q) = (inputs.w.from(start + i), inputs.q.from(start + i));
        let seg = (n - i).min(w.len()).min(q.len());
        let whole = seg - seg % CHUNK;
        for j in (0..whole).step_by(CHUNK) {
            let a = i + j;
            // Streamed outputs are computed into the buffers, then stored.
            let gc = if G && !stream {
                chunk_mut(grad, a)
            } else {
                &mut g_buf
            };
            let lc = if L && !stream {
                chunk_mut(losses, a)
            } else {
                &mut l_buf
            };
            let uc = if U { chunk(u, a) } else { &u_dummy };
            let bad = chunk_loop::<F, G, U, CHECK>(
                f,
                chunk(p, a),
                chunk(t, a),
                chunk(w, j),
                chunk(q, j),
                uc,
                c,
                gc,
                lc,
            );
            acc.add_chunk(lc);
            if G && stream {
                store_chunk(chunk_mut(grad, a), &g_buf);
            }
            if L && stream {
                store_chunk(chunk_mut(losses, a), &l_buf);
            }
            if CHECK && bad {
                let first = chunk(p, a).iter().position(|&v| out_of_domain(v));
                return Err(start + a + first.expect("the chunk has one"));
            }
        }
        for j in whole..seg {
            let k = i + j;
            if CHECK && out_of_domain(p[k]) {
                return Err(start + k);
            }
            let (l, d) = element(f, p[k], t[k], w[j], q[j]);
            acc.add(l);
            if G {
                grad[k] = if U { c * u[k] * d } else { c * d };
            }
            if L {
                losses[k] = l;
            }
        }
        i += seg;
    }
    Ok(acc.total())
}

/// One chunk: per-element losses into `losses`, the gradient (times `c`, and the upstream
/// `u` with `U`) into `grad` with `G`; returns whether a prediction is outside [0, 1] (with
/// `CHECK`). The loss's chunk form ([`Element::eval_chunk`], loops over fixed-size arrays
/// that vectorise) writes the losses and the gradients `d`; a second loop applies the NaN
/// rule, `c` and `u`. A chunk of ordinary elements only ([`Element::ordinary`], nothing out
/// of the domain among them) takes the loss's ordinary form, without the NaN rule.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn chunk_loop<F, const G: bool, const U: bool, const CHECK: bool>(
    f: &F,
    p: &[f32; CHUNK],
    t: &[f32; CHUNK],
    w: &[f32; CHUNK],
    q: &[f32; CHUNK],
    u: &[f32; CHUNK],
    c: f32,
    grad: &mut [f32; CHUNK],
    losses: &mut [f32; CHUNK],
) -> bool
where
    F: Element,
{
    #[cfg(test)]
    let ordinary =
        F::ORDINARY && !super::FORCE_NO_ORDINARY.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(test))]
    let ordinary = F::ORDINARY;
    let x = Chunk { p, t, w, q };
    let mut d = [0.0f32; CHUNK];
    // Element i's gradient, `d` times `c` (and `u`).
    let scaled = |i: usize, d: f32| if U { c * u[i] * d } else { c * d };
    if ordinary {
        let mut all = true;
        for i in 0..CHUNK {
            all &= f.ordinary(p[i], t[i]);
        }
        if all {
            let mut ls = [0.0f32; CHUNK];
            f.eval_chunk_ordinary(&x, &mut ls, &mut d);
            for i in 0..CHUNK {
                losses[i] = ls[i];
                if G {
                    grad[i] = scaled(i, d[i]);
                }
            }
            return false;
        }
    }
    let mut ls = [0.0f32; CHUNK];
    f.eval_chunk(&x, &mut ls, &mut d);
    let mut bad = false;
    for i in 0..CHUNK {
        let (l, d) = nan_rule(p[i], t[i], (ls[i], d[i]));
        losses[i] = l;
        if G {
            grad[i] = scaled(i, d);
        }
        if CHECK {
            bad |= out_of_domain(p[i]);
        }
    }
    bad
}

/// `f` with the NaN rule: NaN in `p` or `t` gives NaN loss and gradient (the BCE clamps
/// would otherwise swallow it, and MAE's sign).
#[inline(always)]
fn element<F>(f: &F, p: f32, t: f32, w: f32, q: f32) -> (f32, f32)
where
    F: Element,
{
    nan_rule(p, t, f.eval(p, t, w, q))
}

/// `(ℓ, ∂ℓ/∂p)`, or NaNs where `p` or `t` is NaN.
#[inline(always)]
fn nan_rule(p: f32, t: f32, (l, d): (f32, f32)) -> (f32, f32) {
    if p.is_nan() | t.is_nan() {
        (f32::NAN, f32::NAN)
    } else {
        (l, d)
    }
}

/// A BCE probability outside [0, 1] (NaN is not).
#[inline(always)]
#[allow(clippy::manual_range_contains)] // `!(0.0..=1.0).contains(&p)` would be true for NaN
fn out_of_domain(p: f32) -> bool {
    (p < 0.0) | (p > 1.0)
}
