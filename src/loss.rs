//! The losses, their options, and the arguments and results shared by the GPU path
//! ([`crate::GpuContext::compute`]) and the CPU reference ([`crate::reference::compute`]).
//! The formulas are in [`Loss`]'s documentation and each loss's file, `src/losses/<loss>.rs`.

use ndarray::{
    ArrayBase, ArrayD, ArrayView, ArrayViewD, ArrayViewMutD, AsArray, Data, Dimension, IxDyn,
};

use crate::error::{Error, Result};
use crate::simd::contiguous;

/// How per-element losses ℓ_k become the loss value.
///
/// | reduction | value | gradient returned |
/// |---|---|---|
/// | `Mean` | `Σ ℓ_k / D` | `g · ∂(Σ ℓ / D)/∂p` |
/// | `Sum` | `Σ ℓ_k` | `g · ∂(Σ ℓ)/∂p` |
/// | `None` | the per-element losses | `g_k · ∂ℓ_k/∂p` |
/// | `BatchMean` | `Σ ℓ_k / B₀` | `g · ∂(Σ ℓ / B₀)/∂p` |
///
/// `D = N`, the number of elements, for the elementwise family; `D = B`, the number of rows,
/// for the row-wise family, except softmax cross entropy with class-index targets, where `D` is
/// the sum of the class weights `w_{c_r}` of the rows that are not ignored (their count without
/// weights), as in PyTorch. If `D = 0` (every row ignored) the value is 0 and the gradient 0,
/// where PyTorch gives NaN. `g` is the upstream gradient ([`Upstream`]). `B₀` is the size of the
/// prediction's first dimension (1 for a scalar), PyTorch `kl_div`'s `batchmean`; a row-wise
/// `Mean` may divide by the caller's `D'` instead ([`LossArgs::divisor`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reduction {
    /// Average over the elements (PyTorch's default).
    #[default]
    Mean,
    /// Sum over the elements.
    Sum,
    /// No reduction: one loss per element.
    None,
    /// The sum divided by the size of the prediction's first dimension (PyTorch `kl_div`'s
    /// `batchmean`; 1 for a scalar prediction, and value 0, gradient 0 when it is 0).
    BatchMean,
}

impl Reduction {
    /// Every reduction, in the order the CLI lists them.
    pub const ALL: [Reduction; 4] = [
        Reduction::Mean,
        Reduction::Sum,
        Reduction::None,
        Reduction::BatchMean,
    ];

    /// The name used by the CLI and in JSON output (`mean`, `sum`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::None => "none",
            Reduction::BatchMean => "batchmean",
        }
    }

    /// Whether the value is the sum divided by a divisor (`Mean`, `BatchMean`).
    pub fn divides(self) -> bool {
        matches!(self, Reduction::Mean | Reduction::BatchMean)
    }
}

/// The divisor of the value where the call fixes it: the first dimension's size for
/// `BatchMean` (1 for a scalar), the caller's `divisor` for `Mean`; `None` where the loss's own
/// `D` applies (or nothing is divided).
pub(crate) fn fixed_divisor(
    reduction: Reduction,
    shape: &[usize],
    divisor: Option<f32>,
) -> Option<f64> {
    match reduction {
        Reduction::BatchMean => Some(shape.first().map_or(1.0, |&b| b as f64)),
        Reduction::Mean => divisor.map(f64::from),
        Reduction::Sum | Reduction::None => None,
    }
}

/// A device's `compute_into` that writes the gradient into a contiguous slice itself.
pub(crate) type DirectInto<'f> = &'f mut dyn FnMut(&mut [f32]) -> Result<LossOutput<f32>>;

/// The checks and the fallback of every `compute_into`: `args` validated, a gradient asked
/// for and `grad` shaped like the prediction, in that order and before any work; then
/// `direct` writes into `grad`'s elements where they are contiguous in row-major order (and
/// `direct` is given), and otherwise `fresh`'s gradient is copied in.
///
/// The direct path is a [`DirectInto`] rather than a generic parameter so that `None` needs
/// no type.
pub(crate) fn into_checked(
    loss: &Loss,
    args: &LossArgs<'_>,
    mut grad: ArrayViewMutD<'_, f32>,
    fresh: impl FnOnce() -> Result<LossOutput<f32>>,
    direct: Option<DirectInto<'_>>,
) -> Result<LossOutput<f32>> {
    args.validate(loss)?;
    if !args.want_grad {
        return Err(Error::InvalidOption {
            option: "grad",
            reason: "loss-only arguments compute no gradient to write; call compute".into(),
        });
    }
    if grad.shape() != args.pred.shape() {
        return Err(Error::ShapeMismatch {
            what: "grad",
            expected: args.pred.shape().to_vec(),
            got: grad.shape().to_vec(),
        });
    }
    if let (Some(direct), Some(slice)) = (direct, grad.as_slice_mut()) {
        return direct(slice);
    }
    let mut out = fresh()?;
    if let Some(g) = out.grad.take() {
        grad.assign(&g);
    }
    Ok(out)
}

/// A caller's divisor `D'` ([`LossArgs::divisor`]): a row-wise loss, `Mean`, finite and `≥ 0`.
pub(crate) fn check_divisor(loss: &Loss, reduction: Reduction, divisor: Option<f32>) -> Result<()> {
    let Some(d) = divisor else { return Ok(()) };
    let reason = if !loss.is_row_wise() {
        format!(
            "a divisor divides a row-wise mean; the {} loss is elementwise (use sum with an \
             upstream gradient of 1/D)",
            loss.name()
        )
    } else if reduction != Reduction::Mean {
        format!(
            "a divisor replaces the mean's; the reduction is {}",
            reduction.name()
        )
    } else if !(d.is_finite() && d >= 0.0) {
        format!("the divisor must be finite and >= 0, got {d}")
    } else {
        return Ok(());
    };
    Err(Error::InvalidOption {
        option: "divisor",
        reason,
    })
}

/// A per-row log-sum-exp asked of a loss: one that has it ([`Loss::has_lse`]).
pub(crate) fn check_lse(loss: &Loss, want_lse: bool) -> Result<()> {
    if want_lse && !loss.has_lse() {
        return Err(Error::InvalidOption {
            option: "lse",
            reason: format!(
                "the per-row log-sum-exp is an output of softmax-ce; the {} loss has none",
                loss.name()
            ),
        });
    }
    Ok(())
}

/// `(gradient scale, value scale)` of a value divided by `d`: `(g / d, 1 / d)`, or `(0, 0)`
/// for `d = 0`.
pub(crate) fn divided_scales(g: f64, d: f64) -> (f64, f64) {
    if d == 0.0 {
        (0.0, 0.0)
    } else {
        (g / d, 1.0 / d)
    }
}

pub use crate::losses::Loss;

/// The target of a loss: floats shaped like the prediction, or class indices (softmax cross
/// entropy), one per row.
///
/// [`LossArgs::new`] takes anything [`IntoTarget`]: an array, a view or a slice of `f32`
/// (floats) or of `i32`, `i64` or `u32` (class indices), of any dimension.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Target<'a> {
    /// Float targets, the prediction's shape (probabilities for the cross entropies).
    Dense(ArrayViewD<'a, f32>),
    /// Class indices in `[0, C)` or `ignore_index`, shaped like the prediction without its last
    /// dimension (`[B]` for a `[B, C]` prediction).
    ClassesI32(ArrayViewD<'a, i32>),
    /// As [`Target::ClassesI32`], in i64 (PyTorch's `long`).
    ClassesI64(ArrayViewD<'a, i64>),
    /// As [`Target::ClassesI32`], in u32 (a negative `ignore_index` matches no id).
    ClassesU32(ArrayViewD<'a, u32>),
}

impl<'a> Target<'a> {
    /// The target's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Target::Dense(a) => a.shape(),
            Target::ClassesI32(a) => a.shape(),
            Target::ClassesI64(a) => a.shape(),
            Target::ClassesU32(a) => a.shape(),
        }
    }

    /// The float targets, or `None` for class indices.
    pub fn dense(&self) -> Option<&ArrayViewD<'a, f32>> {
        match self {
            Target::Dense(a) => Some(a),
            _ => None,
        }
    }

    /// Whether the targets are class indices.
    pub fn is_classes(&self) -> bool {
        !matches!(self, Target::Dense(_))
    }

    /// The class indices in row-major order, widened to i64 (empty for float targets).
    pub fn classes(&self) -> Vec<i64> {
        match self {
            Target::Dense(_) => Vec::new(),
            Target::ClassesI32(a) => a.iter().map(|&c| i64::from(c)).collect(),
            Target::ClassesI64(a) => a.iter().copied().collect(),
            Target::ClassesU32(a) => a.iter().map(|&c| i64::from(c)).collect(),
        }
    }

    /// The class index of flat row `row`, widened to i64 (`None` for float targets or a row
    /// beyond the end).
    pub fn class_at(&self, row: usize) -> Option<i64> {
        match self {
            Target::Dense(_) => None,
            Target::ClassesI32(a) => a.iter().nth(row).map(|&c| i64::from(c)),
            Target::ClassesI64(a) => a.iter().nth(row).copied(),
            Target::ClassesU32(a) => a.iter().nth(row).map(|&c| i64::from(c)),
        }
    }

    /// The integer type of class-index targets (`None` for float targets).
    pub fn class_type(&self) -> Option<crate::ClassType> {
        match self {
            Target::Dense(_) => None,
            Target::ClassesI32(_) => Some(crate::ClassType::I32),
            Target::ClassesI64(_) => Some(crate::ClassType::I64),
            Target::ClassesU32(_) => Some(crate::ClassType::U32),
        }
    }

    /// The element type's name, for messages (`f32`, `i32`, `i64`).
    pub fn dtype(&self) -> &'static str {
        match self {
            Target::Dense(_) => "f32",
            Target::ClassesI32(_) => "i32",
            Target::ClassesI64(_) => "i64",
            Target::ClassesU32(_) => "u32",
        }
    }
}

impl<'a> From<ArrayViewD<'a, f32>> for Target<'a> {
    fn from(a: ArrayViewD<'a, f32>) -> Self {
        Target::Dense(a)
    }
}

impl<'a> From<ArrayViewD<'a, i32>> for Target<'a> {
    fn from(a: ArrayViewD<'a, i32>) -> Self {
        Target::ClassesI32(a)
    }
}

impl<'a> From<ArrayViewD<'a, i64>> for Target<'a> {
    fn from(a: ArrayViewD<'a, i64>) -> Self {
        Target::ClassesI64(a)
    }
}

impl<'a> From<ArrayViewD<'a, u32>> for Target<'a> {
    fn from(a: ArrayViewD<'a, u32>) -> Self {
        Target::ClassesU32(a)
    }
}

/// An element type a target can hold: `f32` (float targets) or `i32`, `i64`, `u32` (class
/// indices). Sealed: implemented for these four only.
pub trait TargetElem: Copy + sealed::Sealed + 'static {
    /// The target over a view of this type.
    fn target(view: ArrayViewD<'_, Self>) -> Target<'_>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
    impl Sealed for u32 {}
}

impl TargetElem for f32 {
    fn target(view: ArrayViewD<'_, f32>) -> Target<'_> {
        Target::Dense(view)
    }
}

impl TargetElem for i32 {
    fn target(view: ArrayViewD<'_, i32>) -> Target<'_> {
        Target::ClassesI32(view)
    }
}

impl TargetElem for i64 {
    fn target(view: ArrayViewD<'_, i64>) -> Target<'_> {
        Target::ClassesI64(view)
    }
}

impl TargetElem for u32 {
    fn target(view: ArrayViewD<'_, u32>) -> Target<'_> {
        Target::ClassesU32(view)
    }
}

/// What [`LossArgs::new`] takes as the target: a [`Target`], or an array, view, `Vec` or
/// slice of a [`TargetElem`] (`f32`, `i32`, `i64`, `u32`) of any dimension; a `Vec` or slice
/// is one-dimensional.
pub trait IntoTarget<'a> {
    /// The target.
    fn into_target(self) -> Target<'a>;
}

impl<'a> IntoTarget<'a> for Target<'a> {
    fn into_target(self) -> Target<'a> {
        self
    }
}

impl<'a, T: TargetElem, D: Dimension> IntoTarget<'a> for ArrayView<'a, T, D> {
    fn into_target(self) -> Target<'a> {
        T::target(self.into_dyn())
    }
}

impl<'a, T: TargetElem, S: Data<Elem = T>, D: Dimension> IntoTarget<'a> for &'a ArrayBase<S, D> {
    fn into_target(self) -> Target<'a> {
        T::target(self.view().into_dyn())
    }
}

impl<'a, T: TargetElem> IntoTarget<'a> for &'a [T] {
    fn into_target(self) -> Target<'a> {
        T::target(ArrayView::from(self).into_dyn())
    }
}

impl<'a, T: TargetElem> IntoTarget<'a> for &'a Vec<T> {
    fn into_target(self) -> Target<'a> {
        self.as_slice().into_target()
    }
}

impl<'a, T: TargetElem, const N: usize> IntoTarget<'a> for &'a [T; N] {
    fn into_target(self) -> Target<'a> {
        self.as_slice().into_target()
    }
}

/// The upstream gradient `g` that the returned gradient is multiplied by (the chain rule).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Upstream<'a> {
    /// `g = 1`: the gradient of the loss itself.
    #[default]
    Ones,
    /// A scalar `g` (for `None`, the same `g` for every element).
    Scalar(f32),
    /// One `g_k` per loss; only with [`Reduction::None`], shaped like the per-element losses
    /// (the prediction's shape) or the per-row losses (the prediction's shape without its last
    /// dimension).
    Array(ArrayViewD<'a, f32>),
}

impl<'a> Upstream<'a> {
    /// [`Upstream::Array`] from an array, view or slice of any dimension.
    pub fn array<D: Dimension>(g: impl AsArray<'a, f32, D>) -> Self {
        Upstream::Array(g.into().into_dyn())
    }
}

/// The inputs of one loss call: prediction, target, optional weights, reduction, upstream
/// gradient, and whether to compute the gradient at all.
///
/// # Shapes
/// Elementwise family:
/// - `pred`, `target`: the same shape, any rank, at least one element.
/// - `weight` (BCE and BCE with logits): the prediction's shape, or a trailing part of it
///   (`[C]` for a `[B, C]` prediction), broadcast over the leading dimensions; `≥ 0`.
/// - `pos_weight` (BCE with logits): a trailing part of the prediction's shape, usually `[C]`; `≥ 0`.
/// - `upstream`: [`Upstream::Array`] shaped like the prediction, only with [`Reduction::None`].
///
/// Row-wise family (`pred` of rank ≥ 1, `[..., C]`, rows = the leading dimensions):
/// - `target`: float, the prediction's shape; or (softmax cross entropy) class indices shaped
///   like the rows, `[B]` for `[B, C]`.
/// - `weight` (softmax cross entropy): class weights `[C]`, `≥ 0`.
/// - `upstream`: [`Upstream::Array`] shaped like the rows, only with [`Reduction::None`].
///
/// Built by [`LossArgs::new`] (or [`LossArgs::from_slices`]) and its setters; fields may be
/// added, so it cannot be written as a struct literal.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LossArgs<'a> {
    /// Prediction `p` (probabilities for `Bce`, logits for `BceWithLogits`).
    pub pred: ArrayViewD<'a, f32>,
    /// Target `t`: floats, or class indices for softmax cross entropy.
    pub target: Target<'a>,
    /// Optional weight `w`: per element (BCE losses) or per class (softmax cross entropy).
    pub weight: Option<ArrayViewD<'a, f32>>,
    /// Optional positive-class weight `q` (BCE with logits).
    pub pos_weight: Option<ArrayViewD<'a, f32>>,
    /// The reduction (default `Mean`).
    pub reduction: Reduction,
    /// The upstream gradient (default ones).
    pub upstream: Upstream<'a>,
    /// `false` for loss-only mode: no gradient is computed or written.
    pub want_grad: bool,
    /// The divisor `D'` of a row-wise `Mean` in place of the batch's own `D` (default `None`).
    pub divisor: Option<f32>,
    /// Whether each row's log-sum-exp is returned ([`LossOutput::lse`]; default `false`).
    pub want_lse: bool,
}

impl<'a> LossArgs<'a> {
    /// Prediction and target, with `Mean` reduction, no weights, upstream gradient 1.
    ///
    /// The prediction is any `f32` array, view, `Vec` or slice (`&pred`, `pred.view()`,
    /// `&vec`) of any dimension; the target is [`IntoTarget`]: floats of the prediction's
    /// shape, or class indices (`i32`, `i64`, `u32`) shaped like its rows. Nothing is checked
    /// or copied here: the call that takes the arguments validates them
    /// ([`LossArgs::validate`]).
    pub fn new<D: Dimension>(pred: impl AsArray<'a, f32, D>, target: impl IntoTarget<'a>) -> Self {
        LossArgs {
            pred: pred.into().into_dyn(),
            target: target.into_target(),
            weight: None,
            pos_weight: None,
            reduction: Reduction::Mean,
            upstream: Upstream::Ones,
            want_grad: true,
            divisor: None,
            want_lse: false,
        }
    }

    /// Prediction and target from flat slices in row-major order, the prediction of shape
    /// `shape`: a target with as many elements as the prediction takes its shape (float
    /// targets), one with as many as it has rows takes the shape without the last dimension
    /// (class indices of a row-wise loss); any other target is left as given, for the call's
    /// validation to report.
    ///
    /// ```
    /// # use wgpu_loss::LossArgs;
    /// let logits = vec![0.0f32; 2 * 3];
    /// let classes: Vec<i64> = vec![2, 0];
    /// let args = LossArgs::from_slices(&logits, &[2, 3], &classes)?;
    /// assert_eq!(args.pred.shape(), &[2, 3]);
    /// assert_eq!(args.target.shape(), &[2]);
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `pred`'s length is not the product of `shape`.
    pub fn from_slices(
        pred: &'a [f32],
        shape: &[usize],
        target: impl IntoTarget<'a>,
    ) -> Result<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let bad = || Error::ShapeMismatch {
            what: "prediction (slice length against the shape given)",
            expected: shape.to_vec(),
            got: vec![pred.len()],
        };
        if n != Some(pred.len()) {
            return Err(bad());
        }
        let pred = ArrayViewD::from_shape(IxDyn(shape), pred).map_err(|_| bad())?;
        let rows = &shape[..shape.len().saturating_sub(1)];
        let target = match target.into_target() {
            t if t.shape().len() == 1 => reshape_target(t, shape, rows),
            t => t,
        };
        Ok(LossArgs::new(pred, target))
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets the weight: per element (BCE losses) or per class (softmax cross entropy); any
    /// `f32` array, view or slice.
    pub fn weight<D: Dimension>(mut self, weight: impl AsArray<'a, f32, D>) -> Self {
        self.weight = Some(weight.into().into_dyn());
        self
    }

    /// Sets `pos_weight` (BCE with logits); any `f32` array, view or slice.
    pub fn pos_weight<D: Dimension>(mut self, pos_weight: impl AsArray<'a, f32, D>) -> Self {
        self.pos_weight = Some(pos_weight.into().into_dyn());
        self
    }

    /// Sets the upstream gradient.
    pub fn upstream(mut self, upstream: Upstream<'a>) -> Self {
        self.upstream = upstream;
        self
    }

    /// A row-wise `Mean` divides by `divisor` (`D' ≥ 0`, finite) instead of this batch's `D`:
    /// the global count of counted rows (or their class-weight sum) over micro-batches or
    /// ranks, so that gradients accumulated over them add up to the gradient of the whole
    /// batch's mean. `D' = 0` gives value 0 and gradient 0, as `D = 0` does. [`LossOutput::counted`]
    /// still counts this batch's rows.
    pub fn divisor(mut self, divisor: f32) -> Self {
        self.divisor = Some(divisor);
        self
    }

    /// The divisor of the value where the arguments fix it ([`fixed_divisor`]).
    pub(crate) fn fixed_divisor(&self) -> Option<f64> {
        fixed_divisor(self.reduction, self.pred.shape(), self.divisor)
    }

    /// Loss-only mode: the value (or per-element losses) without the gradient.
    pub fn loss_only(mut self) -> Self {
        self.want_grad = false;
        self
    }

    /// Sets whether the gradient is computed (`false` is [`LossArgs::loss_only`]).
    pub fn want_grad(mut self, want_grad: bool) -> Self {
        self.want_grad = want_grad;
        self
    }

    /// Sets whether each row's log-sum-exp is returned as [`LossOutput::lse`], `[B]` shaped
    /// like the rows: `lse_r = ln Σ_j exp y_rj` over the logits the softmax sees (after the
    /// soft cap, if any), for every row, ignored ones included, whatever the reduction; with
    /// `s = softmax(y)`, `ln s_rj = y_rj − lse_r` (per-token log-probabilities), and the
    /// z-loss is `λ lse_r²`. NaN for a row with a NaN or a `+∞` logit (as its loss), `−∞` for a
    /// row of `−∞` logits. Only for a loss with [`Loss::has_lse`] (softmax cross entropy);
    /// the others are refused by [`LossArgs::validate`].
    pub fn want_lse(mut self, want_lse: bool) -> Self {
        self.want_lse = want_lse;
        self
    }

    /// Number of elements of the prediction.
    pub fn len(&self) -> usize {
        self.pred.len()
    }

    /// Whether the prediction has no elements.
    pub fn is_empty(&self) -> bool {
        self.pred.is_empty()
    }

    /// For a row-wise loss: the shape of the rows, the prediction's shape without its last
    /// dimension (`[]` for a rank-1 prediction, which is one row). Empty for rank 0.
    pub fn row_shape(&self) -> &[usize] {
        let s = self.pred.shape();
        &s[..s.len().saturating_sub(1)]
    }

    /// For a row-wise loss: `(B, C)`, the number of rows and the row length.
    pub fn rows_cols(&self) -> (usize, usize) {
        let c = self.pred.shape().last().copied().unwrap_or(1);
        (self.row_shape().iter().product(), c)
    }

    /// Checks the arguments against the loss, before any work is done. Both the GPU path and
    /// the CPU reference call it, so both reject the same inputs with the same errors.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] (loss options, a weight the loss does not take, a negative or
    /// non-finite weight, class weights whose total or whose mean's divisor over the rows'
    /// targets exceeds the largest f32, a non-finite scalar upstream, a log-sum-exp asked of a
    /// loss without one: `option: "lse"`),
    /// [`Error::ShapeMismatch`], [`Error::Empty`].
    pub fn validate(&self, loss: &Loss) -> Result<()> {
        loss.validate()?;
        check_divisor(loss, self.reduction, self.divisor)?;
        check_lse(loss, self.want_lse)?;
        if loss.is_row_wise() {
            return self.validate_rows(loss);
        }
        let shape = self.pred.shape();
        let Target::Dense(target) = &self.target else {
            return Err(wrong_target_type(loss, &self.target));
        };
        if target.shape() != shape {
            return Err(Error::ShapeMismatch {
                what: "target",
                expected: shape.to_vec(),
                got: target.shape().to_vec(),
            });
        }
        if self.pred.is_empty() {
            return Err(Error::Empty {
                shape: shape.to_vec(),
            });
        }
        check_broadcast_weight(
            "weight",
            self.weight.as_ref(),
            shape,
            loss.takes_weight(),
            loss,
        )?;
        check_broadcast_weight(
            "pos_weight",
            self.pos_weight.as_ref(),
            shape,
            loss.takes_pos_weight(),
            loss,
        )?;
        self.validate_upstream(shape)
    }

    fn validate_rows(&self, loss: &Loss) -> Result<()> {
        let shape = self.pred.shape();
        if shape.is_empty() {
            return Err(Error::InvalidOption {
                option: "pred",
                reason: format!(
                    "the {} loss needs a prediction of rank >= 1 ([B, C]), got a scalar",
                    loss.name()
                ),
            });
        }
        let expected = match &self.target {
            Target::Dense(_) => shape,
            _ if loss.takes_classes() => self.row_shape(),
            _ => return Err(wrong_target_type(loss, &self.target)),
        };
        if self.target.shape() != expected {
            return Err(Error::ShapeMismatch {
                what: "target",
                expected: expected.to_vec(),
                got: self.target.shape().to_vec(),
            });
        }
        if self.pred.is_empty() {
            return Err(Error::Empty {
                shape: shape.to_vec(),
            });
        }
        let classes = &shape[shape.len() - 1..];
        if let Some(w) = &self.weight {
            if !loss.takes_weight() {
                return Err(Error::InvalidOption {
                    option: "weight",
                    reason: format!("the {} loss takes no weight", loss.name()),
                });
            }
            if w.shape() != classes {
                return Err(Error::ShapeMismatch {
                    what: "weight",
                    expected: classes.to_vec(),
                    got: w.shape().to_vec(),
                });
            }
            check_broadcast_weight("weight", Some(w), classes, true, loss)?;
            check_weight_sums(loss, w, &self.target)?;
        }
        check_broadcast_weight("pos_weight", self.pos_weight.as_ref(), shape, false, loss)?;
        self.validate_upstream(self.row_shape())
    }

    fn validate_upstream(&self, value_shape: &[usize]) -> Result<()> {
        match &self.upstream {
            Upstream::Ones => {}
            Upstream::Scalar(g) => {
                if !g.is_finite() {
                    return Err(Error::InvalidOption {
                        option: "upstream",
                        reason: format!("the upstream gradient must be finite, got {g}"),
                    });
                }
            }
            Upstream::Array(g) => {
                if self.reduction != Reduction::None {
                    return Err(Error::InvalidOption {
                        option: "upstream",
                        reason: format!(
                            "an upstream gradient array needs reduction none; with {} the value \
                             is a scalar, so pass Upstream::Scalar",
                            self.reduction.name()
                        ),
                    });
                }
                if g.shape() != value_shape {
                    return Err(Error::ShapeMismatch {
                        what: "upstream",
                        expected: value_shape.to_vec(),
                        got: g.shape().to_vec(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The error for class-index targets given to a loss that takes float targets.
fn wrong_target_type(loss: &Loss, target: &Target<'_>) -> Error {
    Error::InvalidOption {
        option: "target",
        reason: format!(
            "the {} loss takes f32 targets shaped like the prediction, not {} class indices \
             (class indices are for softmax-ce)",
            loss.name(),
            target.dtype()
        ),
    }
}

/// Checks an optional broadcast weight: allowed for this loss, a trailing part of `shape`,
/// every element finite and `≥ 0`.
fn check_broadcast_weight(
    option: &'static str,
    w: Option<&ArrayViewD<'_, f32>>,
    shape: &[usize],
    allowed: bool,
    loss: &Loss,
) -> Result<()> {
    let Some(w) = w else { return Ok(()) };
    if !allowed {
        return Err(Error::InvalidOption {
            option,
            reason: format!("the {} loss takes no {option}", loss.name()),
        });
    }
    let ws = w.shape();
    if ws.is_empty() || ws.len() > shape.len() || shape[shape.len() - ws.len()..] != *ws {
        return Err(Error::ShapeMismatch {
            what: option,
            expected: shape.to_vec(),
            got: ws.to_vec(),
        });
    }
    if let Some((index, &value)) = w
        .iter()
        .enumerate()
        .find(|(_, v)| !(**v >= 0.0 && v.is_finite()))
    {
        return Err(Error::InvalidOption {
            option,
            reason: format!("{option} element {index} is {value}; weights must be finite and >= 0"),
        });
    }
    Ok(())
}

/// The sums of class weights the kernels form in f32 must be finite: `W = Σ_j w_j` (label
/// smoothing's term) and, for class-index targets, the mean's divisor `D = Σ_r w_{c_r}` over
/// the rows that count (ids outside `[0, C)` are left to the range check). Summed here in f64.
fn check_weight_sums(loss: &Loss, w: &ArrayViewD<'_, f32>, target: &Target<'_>) -> Result<()> {
    let limit = f64::from(f32::MAX);
    let total: f64 = w.iter().map(|&v| f64::from(v)).sum();
    if total > limit {
        return Err(Error::InvalidOption {
            option: "weight",
            reason: format!(
                "the class weights sum to {total:e}, beyond the largest f32 ({limit:e}); the \
                 kernels sum them in f32: scale them down (the mean does not change)"
            ),
        });
    }
    let (Some(ignore_index), Some(_)) = (loss.ignore_index(), target.class_type()) else {
        return Ok(());
    };
    let w = contiguous(w);
    let c = w.len() as i64;
    let mut d = 0.0f64;
    let mut add = |k: i64| {
        if k != ignore_index && (0..c).contains(&k) {
            d += f64::from(w[k as usize]);
        }
    };
    match target {
        Target::ClassesI32(a) => a.iter().for_each(|&k| add(i64::from(k))),
        Target::ClassesI64(a) => a.iter().for_each(|&k| add(k)),
        Target::ClassesU32(a) => a.iter().for_each(|&k| add(i64::from(k))),
        Target::Dense(_) => {}
    }
    if d > limit {
        return Err(Error::InvalidOption {
            option: "weight",
            reason: format!(
                "the class weights of the rows' targets sum to {d:e} (the mean's divisor), \
                 beyond the largest f32 ({limit:e}): scale the weights down (the mean does not \
                 change)"
            ),
        });
    }
    Ok(())
}

/// A one-dimensional target of [`LossArgs::from_slices`] reshaped: float targets to the
/// prediction's `shape` when they have its element count, class indices to its `rows` when
/// they have theirs; unchanged otherwise.
fn reshape_target<'a>(t: Target<'a>, shape: &[usize], rows: &[usize]) -> Target<'a> {
    fn to<'a, T: TargetElem>(v: ArrayViewD<'a, T>, want: &[usize]) -> Target<'a> {
        if v.len() != want.iter().product::<usize>() {
            return T::target(v);
        }
        match v.clone().into_shape_with_order(IxDyn(want)) {
            Ok(r) => T::target(r),
            Err(_) => T::target(v),
        }
    }
    match t {
        Target::Dense(v) => to(v, shape),
        Target::ClassesI32(v) => to(v, rows),
        Target::ClassesI64(v) => to(v, rows),
        Target::ClassesU32(v) => to(v, rows),
    }
}

/// The result of a loss call, on the GPU (`T = f32`) or the CPU reference (`T = f64`), with
/// the parts the call asked for. [`crate::Compute::value_and_grad`] and its siblings return
/// the parts they fix without `Option`s.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LossOutput<T> {
    /// The loss value for `Mean` and `Sum`; `None` for [`Reduction::None`].
    pub value: Option<T>,
    /// The per-element losses for [`Reduction::None`], shaped like the prediction (elementwise
    /// family), or the per-row losses, shaped like the rows (row-wise family).
    pub losses: Option<ArrayD<T>>,
    /// The gradient with respect to the prediction, shaped like it; `None` in loss-only mode.
    pub grad: Option<ArrayD<T>>,
    /// What counted: the number of elements (elementwise family) or of rows that are not
    /// ignored (row-wise family; all `B` rows except for ignored class-index targets). It is
    /// the mean's divisor `D` except with class weights, where `D` is their sum over these rows.
    pub counted: usize,
    /// Each row's log-sum-exp, shaped like the rows, where asked for
    /// ([`LossArgs::want_lse`]).
    pub lse: Option<ArrayD<T>>,
}

impl<T> LossOutput<T> {
    /// A result from its parts (for a [`crate::Compute`] implementation of your own, or to
    /// compare results built elsewhere).
    pub fn new(
        value: Option<T>,
        losses: Option<ArrayD<T>>,
        grad: Option<ArrayD<T>>,
        counted: usize,
    ) -> Self {
        LossOutput {
            value,
            losses,
            grad,
            counted,
            lse: None,
        }
    }

    /// The same, with the per-row log-sum-exp `lse` ([`LossOutput::lse`]).
    pub fn with_lse(mut self, lse: Option<ArrayD<T>>) -> Self {
        self.lse = lse;
        self
    }

    pub(crate) fn shape_arrays(
        shape: &[usize],
        losses: Option<Vec<T>>,
        grad: Option<Vec<T>>,
    ) -> (Option<ArrayD<T>>, Option<ArrayD<T>>) {
        let to =
            |v: Vec<T>| ArrayD::from_shape_vec(IxDyn(shape), v).expect("length = product of shape");
        (losses.map(to), grad.map(to))
    }
}
