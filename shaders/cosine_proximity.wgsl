// Cosine proximity (Keras `CosineSimilarity`): the hooks of common/rows.wgsl.
// CPU reference: src/losses/cosine_proximity.rs (`reference`).
//   cos_r = p·t / (max(‖p‖, ε) max(‖t‖, ε)),  ℓ_r = −cos_r
//   ∂ℓ_r/∂p_j = −t_j / (max(‖p‖, ε) max(‖t‖, ε)) + cos_r p_j / ‖p‖²   if ‖p‖ > ε
//             = −t_j / (ε max(‖t‖, ε))                                 otherwise
// A zero row gives ℓ = 0, never NaN; a row of one feature (C = 1) has cos = ±1 and gradient 0
// exactly where both norms exceed ε.
//
// Scale-safe, in one pass (as BLAS `nrm2` keeps a scaled sum of squares): the loss does not
// depend on the scale of p or t, and ‖p‖² overflows f32 from elements of 1.8e19, so the sums
// are of p_j · ip and t_j · it, where ip = 2^−kp and it = 2^−kt are powers of two with kp the
// largest exponent of the p a lane has seen (clamped to [−126, 126], so that ip is a normal
// number), kt that of t. When an element exceeds the scale, the sums so far are rescaled by
// the exact power of two between the old and the new scale, as are two lanes' sums when they
// are combined. Scaling by powers of two is
// exact, so a row whose sums fit in f32 anyway gets the sums it would get unscaled, to the bit,
// and the scaled sums a = Σ (p ip)(t it), b = Σ (p ip)², c = Σ (t it)² never overflow
// (each term is below 4). The elements a lane holds in registers (all of a row of up to 4096)
// are scanned first (ROW_SCANS): their largest magnitudes set the lane's scales, so pushing
// them needs no check; only the rest of a longer row is checked element by element (the
// rescale is rare, but a SIMD adapter such as llvmpipe pays for a branch in every element).
// Then, with P = max(√b, ε ip) = max(‖p‖, ε) ip and T likewise:
//   cos = (a / P) / T,   1/max(‖p‖, ε) = ip / P,   1/max(‖t‖, ε) = it / T
//   ∂ℓ_r/∂p_j = rp (c' (p_j rp) − t_j rt),  rp = ip / P, rt = it / T, c' = cos if ‖p‖ > ε else 0
// where every factor is formed without overflow or needless underflow.

#import common/rows.wgsl
#import common/rows_single.wgsl
#import common/rows_no_lse.wgsl
#import common/rows_no_split.wgsl

struct LossParams {
    eps: f32, // the floor ε > 0 of each row's norm
}

struct Stats {
    // (Σ (p ip)(t it), Σ (p ip)², Σ (t it)²)
    sums: vec3<f32>,
    // (ip, it)
    inv: vec2<f32>,
}

const F32_MAX: f32 = 3.40282347e+38;

// The largest and smallest scale exponents, so that 2^±k is a normal f32.
const SCALE_MAX: i32 = 126;

// Until row_scanned, `inv` holds the largest |p| and |t| seen by row_scan (0: none yet); after,
// the scales (2^126 for a lane of zeros, or of no elements).
fn row_identity() -> Stats {
    return Stats(vec3<f32>(0.0), vec2<f32>(0.0));
}

// The empty statistics each block of a lane's streamed elements starts from (common/rows.wgsl):
// no sums, at the lane's scales so far (a push only ever lowers them; row_combine brings the
// block's and the lane's to the smaller).
fn row_block(s: Stats) -> Stats {
    return Stats(vec3<f32>(0.0), s.inv);
}

// 2^−k for k the exponent of x (from its bits: a flushed subnormal still has them), clamped to
// [−126, 126].
fn inverse_scale(x: f32) -> f32 {
    let k = clamp(i32((bitcast<u32>(x) >> 23u) & 0xffu) - 127, -SCALE_MAX, SCALE_MAX);
    return bitcast<f32>(u32(127 - k) << 23u);
}

// a / b for powers of two a ≤ b (normal numbers), exactly, by their exponents: WGSL's division
// is only accurate to 2.5 ulp. 0 where the quotient is below the smallest normal number.
fn power_ratio(a: f32, b: f32) -> f32 {
    let d = i32(bitcast<u32>(a) >> 23u) - i32(bitcast<u32>(b) >> 23u);
    return select(0.0, bitcast<f32>(u32(max(d + 127, 1)) << 23u), d > -127);
}

// `s` with its scales moved down to `inv` (each component ≤ s.inv), its sums rescaled to match
// (old sums that the new scale makes negligible become 0).
fn rescaled(s: Stats, inv: vec2<f32>) -> Stats {
    let fp = power_ratio(inv.x, s.inv.x);
    let ft = power_ratio(inv.y, s.inv.y);
    return Stats(s.sums * vec3<f32>(fp * ft, fp * fp, ft * ft), inv);
}

// The scan keeps the largest |p| and |t| in `inv` (the sums are still 0) ...
const ROW_SCANS: bool = true;

fn row_scan(s: Stats, p: f32, t: f32) -> Stats {
    return Stats(s.sums, max(s.inv, abs(vec2<f32>(p, t))));
}

// ... and turns them into the scales. A NaN element makes the sums NaN, whatever `max` does
// with it.
fn row_scanned(s: Stats) -> Stats {
    return Stats(s.sums, vec2<f32>(inverse_scale(s.inv.x), inverse_scale(s.inv.y)));
}

fn row_push(s: Stats, row: RowCtx, j: u32, p: f32, t: f32, scanned: bool) -> Stats {
    var r = s;
    var a = p * r.inv.x;
    var b = t * r.inv.y;
    if (!scanned && (abs(a) >= 2.0 || abs(b) >= 2.0)) {
        // A new largest exponent: |a| and |b| are below 2 again after this.
        r = rescaled(r, min(r.inv, vec2<f32>(inverse_scale(p), inverse_scale(t))));
        a = p * r.inv.x;
        b = t * r.inv.y;
    }
    r.sums = r.sums + vec3<f32>(a * b, a * a, b * b);
    return r;
}

fn row_combine(x: Stats, y: Stats) -> Stats {
    let inv = min(x.inv, y.inv);
    let rx = rescaled(x, inv);
    let ry = rescaled(y, inv);
    return Stats(rx.sums + ry.sums, inv);
}

fn row_finish(s: Stats, row: RowCtx) -> RowOut {
    let eps = params.loss.eps;
    let np = sqrt(s.sums.y); // ‖p‖ ip
    let big_p = max(np, eps * s.inv.x);
    let big_t = max(sqrt(s.sums.z), eps * s.inv.y);
    let finite = !is_nan(s.sums.x) && s.sums.y <= F32_MAX && s.sums.z <= F32_MAX;
    if (params.cols == 1u && finite && np > eps * s.inv.x && sqrt(s.sums.z) > eps * s.inv.y) {
        // One feature: cos = ±1 exactly, and the gradient's two terms cancel exactly (in
        // rounded arithmetic they leave an ulp of 1/(‖p‖‖t‖)).
        return RowOut(-sign(s.sums.x), vec4<f32>(0.0));
    }
    let cos = (s.sums.x / big_p) / big_t;
    var c = 0.0;
    if (np > eps * s.inv.x) {
        c = cos;
    }
    // k = (1 / max(‖p‖, ε), 1 / max(‖t‖, ε), cos or 0)
    return RowOut(-cos, vec4<f32>(s.inv.x / big_p, s.inv.y / big_t, c, 0.0));
}

// The gradient needs the finished row (common/rows.wgsl).
const ROW_GRAD_EARLY: bool = false;

fn row_grad(r: RowOut, row: RowCtx, j: u32, p: f32, t: f32) -> f32 {
    return r.k.x * (r.k.z * (p * r.k.x) - t * r.k.y);
}
