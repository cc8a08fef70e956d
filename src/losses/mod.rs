//! The losses, one file each: `src/losses/<loss>.rs` owns everything about one loss (its
//! name, family and options, their validation, the uniform its shader reads, its bindings,
//! its f64 reference, its fast CPU kernel, its synthetic batch and its formula), and
//! `shaders/<loss>.wgsl` holds its WGSL hooks. The `register!` line of this file lists them,
//! once; the GPU path, the CPU path, the reference, the CLI and the benchmarks read that list
//! (publicly as [`LossInfo`]) and never match on losses.
//!
//! Adding a loss: a variant of [`Loss`] (its public options), `src/losses/<name>.rs` (a
//! `Def` implementing the crate's `LossDef` and `Elementwise` or `Rows` traits: see
//! `smooth_l1.rs`), `shaders/<name>.wgsl` (the family driver's hooks and its `LossParams`),
//! and its name in the `register!` line; `docs/DESIGN.md` walks through it.

use crate::bindings::Binding;
use crate::error::Result;

/// Declares the loss modules and lists their descriptors, in the order the CLI lists them.
macro_rules! register {
    ($($m:ident),* $(,)?) => {
        $(pub mod $m;)*
        /// Every loss's descriptor, in the order the CLI and the main job list them.
        pub(crate) const REGISTRY: &[&dyn LossDef] = &[$(&$m::Def),*];
    };
}

pub use cosine_proximity::CosineProximity;
pub use distill::Distill;
pub use focal::Focal;
pub use huber::Huber;
pub use jsd::Jsd;
pub use kl_div::KlDiv;
pub use poisson_nll::PoissonNll;
pub use smooth_l1::SmoothL1;
pub use softmax_cross_entropy::SoftmaxCrossEntropy;

register!(
    mse,
    mae,
    huber,
    bce,
    bce_with_logits,
    categorical_cross_entropy,
    softmax_cross_entropy,
    cosine_proximity,
    smooth_l1,
    poisson_nll,
    focal,
    kl_div,
    distill,
    jsd,
);

/// A loss and its options.
///
/// A loss without options is its variant (`Loss::Mse`); one with options comes from its
/// builder, validated once: [`Loss::huber`], [`Loss::smooth_l1`],
/// [`Loss::softmax_cross_entropy`], [`Loss::cosine_proximity`], [`Loss::poisson_nll`],
/// [`Loss::focal`], [`Loss::kl_div`], [`Loss::distill`], [`Loss::jsd`]
/// (`Loss::huber().delta(1.5).build()?`). The variants with options can be matched (with
/// `..`: their fields may grow) but not written as literals outside this crate.
///
/// Elementwise family: `p` and `t` have the same shape (any rank), `d = p − t`.
///
/// ```text
/// Mse             ℓ = d²                                    ∂ℓ/∂p = 2d
/// Mae             ℓ = |d|                                   ∂ℓ/∂p = sign(d), 0 at 0
/// Huber { δ }     ℓ = ½d² if |d| ≤ δ, else δ(|d| − ½δ)      ∂ℓ/∂p = d if |d| ≤ δ, else δ·sign(d)
/// SmoothL1 { β }  ℓ = ½d²/β if |d| < β, else |d| − ½β       ∂ℓ/∂p = d/β if |d| < β, else sign(d)
/// Bce             ℓ = −w[t·max(ln p, −100) + (1−t)·max(ln(1−p), −100)]
///                                                           ∂ℓ/∂p = w(p − t) / max(p(1−p), 1e-12)
/// BceWithLogits   ℓ = w[(1−t)x + (1+(q−1)t)(ln(1+e^(−|x|)) + max(−x, 0))]
///                                                           ∂ℓ/∂x = w[(1+(q−1)t)σ(x) − qt]
/// PoissonNll      ℓ = e^x − t x (log_input), else x − t ln(x + ε); full: + t ln t − t + ½ ln(2πt), t > 1
///                                                           ∂ℓ/∂x = e^x − t, else 1 − t/(x + ε)
/// Focal { α, γ }  ℓ = α_t ce q^γ, ce = BCE with logits, q = 1 − p_t = t(1−σ) + (1−t)σ
///                                                           ∂ℓ/∂x = α_t[(σ − t)q^γ + γ ce q^(γ−1) σ(1−σ)(1−2t)]
/// KlDiv           ℓ = t (ln t − p), 0 where t = 0           ∂ℓ/∂p = −t
///   log_target    ℓ = e^t (t − p)                           ∂ℓ/∂p = −e^t
/// ```
///
/// `w` is the optional weight and `q` the optional `pos_weight` of [`crate::LossArgs`]. BCE's clamps
/// are PyTorch's: a log never below −100 and a gradient denominator never below 1e-12, so
/// `p = 0` and `p = 1` give finite values. BCE with logits never evaluates `exp` of a positive
/// number, so no logit overflows, and is evaluated without cancellation as
/// `w[(1+(q−1)t) ln(1+e^(−|x|)) + ((1−t)x if x ≥ 0, else −qtx)]`. Every per-element loss is
/// within a few f32 ulp of the f64 reference for every argument: `ln p`, `ln(1 − p)` and
/// `ln(1 + e^(−|x|))` are accurate near 1 and for subnormal `p`, on every adapter (WGSL's `log`
/// is not, and some adapters flush subnormals).
///
/// Row-wise family: the prediction is `[B, C]` in row-major order (leading dimensions flatten
/// into `B` rows, the last one holds the `C` classes or features); one loss ℓ_r per row.
/// `s = softmax(x_r)`, `lse = ln Σ_j exp x_rj`, `w` the optional class weights `[C]`,
/// `W = Σ_j w_j`.
///
/// ```text
/// CategoricalCrossEntropy   ℓ_r = −Σ_j t_rj·max(ln p_rj, −100)     ∂ℓ_r/∂p_rj = −t_rj / max(p_rj, 1e-12)
/// SoftmaxCrossEntropy, probability targets t_r [B, C], t' = (1 − ε) t + ε/C:
///                           ℓ_r = −Σ_j w_j t'_rj ln s_rj           ∂ℓ_r/∂x_rj = (Σ_k w_k t'_rk) s_rj − w_j t'_rj
/// SoftmaxCrossEntropy, class-index targets c_r [B]:
///     ℓ_r = (1 − ε) w_c (lse − x_rc) + (ε/C) Σ_j w_j (lse − x_rj)
///     ∂ℓ_r/∂x_rj = (1 − ε) w_c (s_rj − [j = c]) + (ε/C)(W s_rj − w_j)
///   plus z-loss λ: ℓ_r += λ lse², ∂ℓ_r/∂x_rj += 2λ lse s_rj
///   softcap c > 0: every formula above on y = c·tanh(x/c), then ∂ℓ_r/∂x_rj = ∂ℓ_r/∂y_rj (1 − tanh²(x_rj/c))
/// Distill { T }, student logits s, teacher logits u [B, C], P = softmax(u/T), Q = softmax(s/T):
///                           ℓ_r = T² Σ_j P_rj (ln P_rj − ln Q_rj)   ∂ℓ_r/∂s_rj = T (Q_rj − P_rj)
/// Jsd { β, T }, the same P, Q (no T² factor), M = β P + (1 − β) Q:
///     ℓ_r = β KL(P_r ‖ M_r) + (1 − β) KL(Q_r ‖ M_r)
///     ∂ℓ_r/∂s_rj = (1 − β)/T · Q_rj (ln(Q_rj/M_rj) − KL(Q_r ‖ M_r))
///   β = 0: ℓ_r = KL(P_r ‖ Q_r), ∂ℓ_r/∂s_rj = (Q_rj − P_rj)/T
///   β = 1: ℓ_r = KL(Q_r ‖ P_r), ∂ℓ_r/∂s_rj = Q_rj (ln Q_rj − ln P_rj − KL(Q_r ‖ P_r))/T
/// CosineProximity { ε }     cos_r = p_r·t_r / (max(‖p_r‖, ε) max(‖t_r‖, ε)),  ℓ_r = −cos_r
///     ∂ℓ_r/∂p_rj = −t_rj / (max(‖p_r‖, ε) max(‖t_r‖, ε)) + cos_r p_rj / ‖p_r‖²   if ‖p_r‖ > ε
///                = −t_rj / (ε max(‖t_r‖, ε))                                 otherwise
/// ```
///
/// Softmax cross entropy always works through `lse` with the row maximum subtracted, never
/// `ln(softmax)`, each `lse − x_j` as `(m − x_j) + ln S`; a target weight of 0 contributes 0
/// even where `x = −∞` (PyTorch gives NaN for `0 · −∞` with probability targets). A row with a
/// NaN or `+∞` logit, or only `−∞` logits, has loss NaN and a NaN gradient (as PyTorch's
/// `log_softmax`). A class-index row whose target is `ignore_index` has loss 0 and gradient 0
/// and does not count in the mean's divisor `D`; see [`crate::Reduction`]. Cosine proximity's sums
/// are scaled by powers of two, so no row of finite elements overflows or underflows them.
///
/// # Errors
/// [`crate::Error::InvalidOption`] from [`Loss::validate`] when `delta` is not finite and positive,
/// `beta` is negative or not finite,
/// `label_smoothing` is outside [0, 1), `z_loss` or `softcap` is negative or not finite, `eps`
/// is not finite and positive, a distillation or JSD `temperature` is not finite and positive,
/// or a JSD `beta` is outside [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Loss {
    /// Squared error, PyTorch `mse_loss`.
    Mse,
    /// Absolute error, PyTorch `l1_loss`.
    Mae,
    /// Huber loss with threshold `delta > 0`, PyTorch `huber_loss`.
    #[non_exhaustive]
    Huber {
        /// The threshold δ between the quadratic and the linear part.
        delta: f32,
    },
    /// Smooth L1 loss with threshold `beta ≥ 0`, PyTorch `smooth_l1_loss`
    /// ([`crate::losses::smooth_l1`]).
    #[non_exhaustive]
    SmoothL1 {
        /// The threshold β between the quadratic and the linear part (0: the L1 loss).
        beta: f32,
    },
    /// Poisson negative log likelihood, PyTorch `poisson_nll_loss`
    /// ([`crate::losses::poisson_nll`]; built by [`Loss::poisson_nll`]).
    #[non_exhaustive]
    PoissonNll {
        /// The prediction is the log of the rate (PyTorch's `log_input`, default true).
        log_input: bool,
        /// Stirling's term added where `t > 1` (PyTorch's `full`, default false).
        full: bool,
        /// Added to the rate before its log without `log_input` (default 1e-8).
        eps: f32,
    },
    /// Sigmoid focal loss on logits, torchvision `sigmoid_focal_loss`
    /// ([`crate::losses::focal`]; built by [`Loss::focal`]).
    #[non_exhaustive]
    Focal {
        /// The positive class's weight α in [0, 1]; negative: no weighting (default 0.25).
        alpha: f32,
        /// The focusing exponent γ ≥ 0 (default 2).
        gamma: f32,
    },
    /// KL divergence of log-probabilities against probabilities (or log-probabilities),
    /// PyTorch `kl_div` ([`crate::losses::kl_div`]; built by [`Loss::kl_div`]).
    #[non_exhaustive]
    KlDiv {
        /// The target holds log-probabilities (PyTorch's `log_target`, default false).
        log_target: bool,
    },
    /// Binary cross entropy on probabilities in [0, 1], PyTorch `binary_cross_entropy`.
    Bce,
    /// Binary cross entropy on logits, PyTorch `binary_cross_entropy_with_logits`.
    BceWithLogits,
    /// Categorical cross entropy on probabilities `[B, C]` against probability targets
    /// `[B, C]` (Keras `categorical_crossentropy` without its renormalisation of each row).
    CategoricalCrossEntropy,
    /// Softmax cross entropy from logits `[B, C]` against probability targets `[B, C]` or
    /// class indices `[B]` (PyTorch `cross_entropy`), with optional class weights `[C]`
    /// (the `weight` of [`crate::LossArgs`]).
    #[non_exhaustive]
    SoftmaxCrossEntropy {
        /// Label smoothing ε in [0, 1) (PyTorch's `label_smoothing`; default 0).
        label_smoothing: f32,
        /// z-loss coefficient λ ≥ 0: adds `λ lse²` per row (PaLM's auxiliary loss; default 0).
        z_loss: f32,
        /// Class-index targets equal to this are ignored (PyTorch's `ignore_index`; default −100).
        ignore_index: i64,
        /// Logit soft-capping `c > 0` (Gemma 2): each logit becomes `c·tanh(x/c)` before the
        /// softmax, and the gradient goes through the cap; 0 (the default) for none.
        softcap: f32,
    },
    /// Distillation from logits: `T² KL(softmax(u/T) ‖ softmax(s/T))` per row of student
    /// logits `s` (the prediction) and teacher logits `u` (the target)
    /// ([`crate::losses::distill`]; built by [`Loss::distill`]).
    #[non_exhaustive]
    Distill {
        /// The temperature `T > 0` (default 1).
        temperature: f32,
    },
    /// The generalised Jensen–Shannon divergence from logits,
    /// `β KL(P ‖ M) + (1 − β) KL(Q ‖ M)` with `P = softmax(u/T)`, `Q = softmax(s/T)`,
    /// `M = β P + (1 − β) Q`, per row of student logits `s` (the prediction) and teacher logits
    /// `u` (the target), Liger-Kernel's `LigerJSD` with a temperature
    /// ([`crate::losses::jsd`]; built by [`Loss::jsd`]).
    #[non_exhaustive]
    Jsd {
        /// The teacher's weight β in [0, 1] in `M` (default 0.5; 0: `KL(P ‖ Q)`, 1: `KL(Q ‖ P)`).
        beta: f32,
        /// The temperature `T > 0` (default 1).
        temperature: f32,
    },
    /// Cosine proximity, the negative cosine similarity of each row of `p` and `t`
    /// (Keras `CosineSimilarity`).
    #[non_exhaustive]
    CosineProximity {
        /// The floor ε > 0 of each row's norm (default 1e-8).
        eps: f32,
    },
}

impl Loss {
    /// Every loss with default options, in the order the CLI's table lists them (the
    /// registry's, [`crate::losses`]).
    pub fn all_default() -> Vec<Loss> {
        REGISTRY.iter().map(|d| d.build(&|_| None)).collect()
    }

    /// The loss's name in the CLI (`mse`, `mae`, `huber`, `smooth-l1`, `bce`,
    /// `bce-with-logits`, `cce`, `softmax-ce`, `cosine`).
    pub fn name(&self) -> &'static str {
        def(self).name()
    }

    /// Whether the loss is row-wise (one loss per row of `[B, C]`) rather than elementwise.
    pub fn is_row_wise(&self) -> bool {
        matches!(def(self).family(), Family::Rows(_))
    }

    /// Checks the loss's own options.
    ///
    /// # Errors
    /// [`crate::Error::InvalidOption`] for a Huber `delta` that is not finite and positive, a smooth
    /// L1 `beta` that is negative or not finite, a `label_smoothing` outside [0, 1), a
    /// `z_loss` that is negative or not finite, or a cosine `eps` that is not finite and
    /// positive.
    pub fn validate(&self) -> Result<()> {
        def(self).validate(self)
    }

    /// Whether the loss takes a `weight`: per element (broadcast) for the BCE losses, per
    /// class (`[C]`) for softmax cross entropy.
    pub fn takes_weight(&self) -> bool {
        def(self).takes_weight()
    }

    /// Whether the loss accepts class-index targets ([`crate::Target::ClassesI32`],
    /// [`crate::Target::ClassesI64`], [`crate::Target::ClassesU32`]).
    pub fn takes_classes(&self) -> bool {
        def(self).takes_classes()
    }

    /// Whether the loss has a per-row log-sum-exp output ([`crate::LossArgs::want_lse`]):
    /// softmax cross entropy.
    pub fn has_lse(&self) -> bool {
        def(self).has_lse()
    }

    /// Whether the loss takes a `pos_weight`.
    pub fn takes_pos_weight(&self) -> bool {
        def(self).takes_pos_weight()
    }

    /// Class ids equal to this are ignored (losses that take class-index targets).
    pub fn ignore_index(&self) -> Option<i64> {
        def(self).ignore_index(self)
    }

    /// Whether the predictions are probabilities that must lie in [0, 1].
    pub fn checks_domain(&self) -> bool {
        def(self).checks_domain()
    }
}

/// The target of one row of a row-wise loss.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum RowTarget<'a> {
    /// Float (probability) targets `t`, one per class (`C` values).
    Probs(&'a [f64]),
    /// A class index `c` in `[0, C)` (ignored rows never reach a loss).
    Class(usize),
}

/// Whether any value of a row is NaN.
pub(crate) fn has_nan(v: &[f64]) -> bool {
    v.iter().any(|x| x.is_nan())
}

/// The result for a row with NaN in its inputs: loss NaN and `c` NaN gradient entries.
pub(crate) fn nan_row(c: usize) -> (f64, Vec<f64>) {
    (f64::NAN, vec![f64::NAN; c])
}

/// The descriptor of `loss`.
pub(crate) fn def(loss: &Loss) -> &'static dyn LossDef {
    REGISTRY
        .iter()
        .copied()
        .find(|d| d.is(loss))
        .unwrap_or(REGISTRY[0])
}

/// One option of a loss, as a command line takes it (`--<name>`), with its default.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct LossOption {
    /// The option's name: the CLI's flag without `--` (`delta`, `label-smoothing`).
    pub name: &'static str,
    /// One line for the CLI's help.
    pub help: &'static str,
    /// The value when the option is not given.
    pub default: f64,
    /// Whether the value is an integer (read exactly as an i64), else a float.
    pub integer: bool,
    /// Whether it is a switch: an integer that must be 0 (off) or 1 (on).
    pub flag: bool,
}

/// An option's value, as [`LossInfo::build`] is given it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum OptionValue {
    /// A float option's value.
    Float(f64),
    /// An integer option's value.
    Int(i64),
}

impl OptionValue {
    /// The value as an f64 (an integer converted).
    pub fn float(self) -> f64 {
        match self {
            OptionValue::Float(v) => v,
            OptionValue::Int(v) => v as f64,
        }
    }

    /// The value as an i64 (a float truncated).
    pub fn int(self) -> i64 {
        match self {
            OptionValue::Float(v) => v as i64,
            OptionValue::Int(v) => v,
        }
    }
}

/// Option values by name, as [`LossInfo::build`] reads them.
pub type Options<'a> = dyn Fn(&str) -> Option<OptionValue> + 'a;

/// A loss as the registry describes it: what a command line, a benchmark or a test needs to
/// list the losses and build one from its options, without naming any.
#[derive(Clone, Copy)]
pub struct LossInfo(&'static dyn LossDef);

impl std::fmt::Debug for LossInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LossInfo").field(&self.0.name()).finish()
    }
}

impl LossInfo {
    /// Every loss, in the registry's order.
    pub fn all() -> impl Iterator<Item = LossInfo> {
        REGISTRY.iter().map(|&d| LossInfo(d))
    }

    /// The loss named `name`: its name ([`Loss::name`]) or one of its [`LossInfo::aliases`].
    pub fn named(name: &str) -> Option<LossInfo> {
        Self::all().find(|i| i.name() == name || i.aliases().contains(&name))
    }

    /// `loss`'s entry.
    pub fn of(loss: &Loss) -> LossInfo {
        LossInfo(def(loss))
    }

    /// The name (`mse`, `softmax-ce`).
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// One line describing it.
    pub fn about(&self) -> &'static str {
        self.0.about()
    }

    /// Other names it is known by (PyTorch's functional names: `cross-entropy`, `l1`), which
    /// [`LossInfo::named`] accepts; outputs print [`LossInfo::name`].
    pub fn aliases(&self) -> &'static [&'static str] {
        self.0.aliases()
    }

    /// Its options.
    pub fn options(&self) -> &'static [LossOption] {
        self.0.options()
    }

    /// The loss with its default options.
    pub fn default_loss(&self) -> Loss {
        self.0.build(&|_| None)
    }

    /// The loss with the options `value` gives (by [`LossOption::name`]; the others take
    /// their defaults), validated.
    ///
    /// # Errors
    /// [`crate::Error::InvalidOption`] for an option out of its range, or a switch
    /// ([`LossOption::flag`]) given neither 0 nor 1.
    pub fn build(&self, value: &Options<'_>) -> Result<Loss> {
        for o in self.0.options().iter().filter(|o| o.flag) {
            if let Some(v) = value(o.name)
                && !matches!(v.int(), 0 | 1)
            {
                return Err(crate::Error::InvalidOption {
                    option: o.name,
                    reason: format!("a switch: 0 (off) or 1 (on), got {}", v.int()),
                });
            }
        }
        let loss = self.0.build(value);
        self.0.validate(&loss)?;
        Ok(loss)
    }

    /// Whether it is row-wise (one loss per row of `[B, C]`).
    pub fn is_row_wise(&self) -> bool {
        matches!(self.0.family(), Family::Rows(_))
    }

    /// Whether it takes a `weight`.
    pub fn takes_weight(&self) -> bool {
        self.0.takes_weight()
    }

    /// Whether it takes a `pos_weight`.
    pub fn takes_pos_weight(&self) -> bool {
        self.0.takes_pos_weight()
    }

    /// Whether it takes class-index targets.
    pub fn takes_classes(&self) -> bool {
        self.0.takes_classes()
    }

    /// Whether it has a per-row log-sum-exp output ([`crate::LossArgs::want_lse`]).
    pub fn has_lse(&self) -> bool {
        self.0.has_lse()
    }

    /// The gradient tolerance of the main job and the bench (max |f32 − f64 reference| over
    /// max |reference gradient|): 1e-6 (about 8 f32 ulps of the largest element) for every loss
    /// but `jsd`, whose gradient is a difference of logs of the logits' size (4e-6; see
    /// [`crate::losses::jsd`]).
    pub fn grad_rtol(&self) -> f64 {
        self.0.grad_rtol()
    }

    /// The row length of the main job's batch for a row-wise loss (`None` for the
    /// elementwise family).
    pub fn main_job_cols(&self) -> Option<usize> {
        match self.0.family() {
            Family::Rows(r) => Some(r.main_job_cols()),
            Family::Elementwise(_) => None,
        }
    }
}

/// The value ranges of a loss's synthetic batch ([`crate::synthetic::batch`]): uniform
/// predictions and targets, each row normalised to sum to 1 where asked.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "synthetic"), allow(dead_code))]
pub(crate) struct Synthetic {
    pub pred: (f32, f32),
    pub target: (f32, f32),
    pub normalise_pred: bool,
    pub normalise_target: bool,
}

#[cfg_attr(not(feature = "synthetic"), allow(dead_code))]
impl Synthetic {
    /// U(−3, 3) for both, not normalised.
    pub(crate) const SIGNED: Synthetic = Synthetic {
        pred: (-3.0, 3.0),
        target: (-3.0, 3.0),
        normalise_pred: false,
        normalise_target: false,
    };
}

/// What a loss is, for every path.
pub(crate) trait LossDef: Sync {
    /// Whether `loss` is this one.
    fn is(&self, loss: &Loss) -> bool;
    /// The name in the CLI and in JSON output (`mse`, `softmax-ce`).
    fn name(&self) -> &'static str;
    /// One line for the CLI's help.
    fn about(&self) -> &'static str;
    /// Other names the CLI accepts for it (PyTorch's: `cross-entropy`, `l1`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// The options it takes, as the CLI's flags.
    fn options(&self) -> &'static [LossOption] {
        &[]
    }
    /// The loss with the given option values (by [`LossOption::name`]; a missing one takes
    /// its default).
    fn build(&self, value: &Options<'_>) -> Loss;
    /// Checks the loss's own options.
    ///
    /// # Errors
    /// [`crate::Error::InvalidOption`] for an option out of its range.
    fn validate(&self, _loss: &Loss) -> Result<()> {
        Ok(())
    }
    /// Whether it takes a `weight` (per element for the BCE losses, per class for softmax
    /// cross entropy).
    fn takes_weight(&self) -> bool {
        false
    }
    /// Whether it takes a `pos_weight`.
    fn takes_pos_weight(&self) -> bool {
        false
    }
    /// Whether it takes class-index targets.
    fn takes_classes(&self) -> bool {
        false
    }
    /// Whether it has a per-row log-sum-exp output (a row-wise loss whose
    /// [`Rows::reference_lse`] gives one, and whose shader's `ROW_LSE` is true).
    fn has_lse(&self) -> bool {
        false
    }
    /// Class ids equal to this are ignored (with class-index targets).
    fn ignore_index(&self, _loss: &Loss) -> Option<i64> {
        None
    }
    /// Whether its predictions are probabilities checked against [0, 1] (on the GPU through a
    /// domain-error atomic).
    fn checks_domain(&self) -> bool {
        false
    }
    /// Its shader: the path from the crate root (`shaders/<stem>.wgsl`) and the text,
    /// compiled in (`include_str!`).
    fn shader(&self) -> (&'static str, &'static str);
    /// Its shader's file stem, the kernel's name (`mse`, `bce_with_logits`).
    fn stem(&self) -> &'static str {
        let path = self.shader().0;
        path.strip_prefix("shaders/")
            .and_then(|p| p.strip_suffix(".wgsl"))
            .unwrap_or(path)
    }
    /// Its kernel's bindings: by default its family driver's; a loss with bindings of its
    /// own (weights, a domain-error atomic) lists them all.
    fn bindings(&self) -> &'static [Binding] {
        match self.family() {
            Family::Elementwise(_) => &crate::bindings::ELEMENTWISE_BINDINGS,
            Family::Rows(_) => &crate::bindings::ROWS_BINDINGS,
        }
    }
    /// Its `LossParams` uniform, as the words its shader's struct holds (the driver's
    /// `params.loss`), and their names, for the mirror test.
    fn params(&self, _loss: &Loss) -> [f32; 4] {
        [0.0; 4]
    }
    /// Its shader's `override` switches for `loss` (name, on), set when its pipeline is built
    /// and part of the pipeline's cache key: work a software adapter would pay for behind a
    /// uniform branch (llvmpipe runs both sides of a per-element branch it cannot prove
    /// uniform). None by default.
    fn switches(&self, _loss: &Loss) -> &'static [(&'static str, bool)] {
        &[]
    }
    /// The member names of its WGSL `LossParams`, in order, each an f32 (`_` for padding).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "read by the mirror test (kernels/mirror.rs)")
    )]
    fn param_names(&self) -> &'static [&'static str] {
        &[]
    }
    /// The ranges of its synthetic batch.
    #[cfg_attr(not(feature = "synthetic"), allow(dead_code))]
    fn synthetic(&self) -> Synthetic {
        Synthetic::SIGNED
    }
    /// Its family, with the family's hooks.
    fn family(&self) -> Family<'_>;
    /// The main job's gradient tolerance ([`LossInfo::grad_rtol`]).
    fn grad_rtol(&self) -> f64 {
        1e-6
    }
}

/// A loss's family and the hooks that family's drivers call.
#[derive(Clone, Copy)]
pub(crate) enum Family<'a> {
    /// One loss per element of same-shaped `p` and `t`.
    Elementwise(&'a dyn Elementwise),
    /// One loss per row of `[B, C]`.
    Rows(&'a dyn Rows),
}

/// The hooks of an elementwise loss.
pub(crate) trait Elementwise: Sync {
    /// `(ℓ, ∂ℓ/∂p)` of one element in f64: prediction `p`, target `t`, weight `w` and
    /// `pos_weight` `q` (1 where absent).
    fn reference(&self, loss: &Loss, p: f64, t: f64, w: f64, q: f64) -> (f64, f64);
    /// The fast CPU path over `inputs`: each block's sum, or its first out-of-domain index
    /// (`crate::simd::elementwise::dispatch` with the loss's element kernel).
    fn cpu(
        &self,
        loss: &Loss,
        inputs: &crate::simd::elementwise::Inputs<'_>,
        out: crate::simd::elementwise::Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>>;
}

/// The hooks of a row-wise loss.
pub(crate) trait Rows: Sync {
    /// `(ℓ_r, ∂ℓ_r/∂x_r)` of one row in f64: the row `x`, its target, the class weights.
    fn reference(
        &self,
        loss: &Loss,
        x: &[f64],
        target: RowTarget<'_>,
        weight: Option<&[f64]>,
    ) -> (f64, Vec<f64>);
    /// The fast CPU path over every row (`crate::simd::rows::groups` with the loss's row
    /// kernel).
    fn cpu(
        &self,
        loss: &Loss,
        setup: &crate::simd::rows::Setup<'_>,
        data: &crate::simd::rows::Data<'_>,
        out: crate::simd::rows::Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>>;
    /// The row length of the main job's batch (its `--classes` for a loss that takes class
    /// indices).
    fn main_job_cols(&self) -> usize;
    /// The row's log-sum-exp output in f64, for a loss that has one (softmax cross entropy:
    /// `ln Σ_j exp y_j` of the logits its softmax sees); `None` for the others, the default.
    fn reference_lse(&self, _loss: &Loss, _x: &[f64]) -> Option<f64> {
        None
    }
    /// The statistics sweeps its kernel makes over a row before the gradient's: 1, the
    /// default, or 2 for a shader with `ROW_SECOND` (jsd.wgsl; a test checks they agree).
    /// Each re-reads the part of a long row its lanes do not hold.
    fn sweeps(&self) -> u64 {
        1
    }
    /// Whether its long rows may be split across workgroups
    /// ([`crate::ContextOptions::split_rows`]): a shader with `ROW_SPLIT` (softmax cross
    /// entropy; a test checks they agree). The default is no.
    fn splits(&self) -> bool {
        false
    }
    /// Whether an element's gradient needs nothing of its finished row, so that the kernel
    /// writes it in the statistics sweep and a long row is read once (a row whose loss is
    /// NaN is read again, to be written NaN): a shader with `ROW_GRAD_EARLY` (categorical
    /// cross entropy; a test checks they agree). The default is no.
    fn grad_early(&self) -> bool {
        false
    }
}
