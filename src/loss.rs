//! The losses, their options, and the arguments and results shared by the GPU path
//! ([`crate::GpuContext::compute`]) and the CPU reference ([`crate::reference::compute`]).
//! The formulas are in `shaders/<loss>.wgsl` and `src/reference/<loss>.rs`, and in the README.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::error::{Error, Result};

/// How per-element losses ℓ_k become the loss value.
///
/// | reduction | value | gradient returned |
/// |---|---|---|
/// | `Mean` | `Σ ℓ_k / D` | `g · ∂(Σ ℓ / D)/∂p` |
/// | `Sum` | `Σ ℓ_k` | `g · ∂(Σ ℓ)/∂p` |
/// | `None` | the per-element losses | `g_k · ∂ℓ_k/∂p` |
///
/// `D = N`, the number of elements, for the elementwise family; `g` is the upstream gradient
/// ([`Upstream`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// Average over the elements (PyTorch's default).
    #[default]
    Mean,
    /// Sum over the elements.
    Sum,
    /// No reduction: one loss per element.
    None,
}

impl Reduction {
    /// The name used by the CLI and in JSON output (`mean`, `sum`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::None => "none",
        }
    }
}

/// A loss and its options.
///
/// Elementwise family: `p` and `t` have the same shape (any rank), `d = p − t`.
///
/// ```text
/// Mse             ℓ = d²                                    ∂ℓ/∂p = 2d
/// Mae             ℓ = |d|                                   ∂ℓ/∂p = sign(d), 0 at 0
/// Huber { δ }     ℓ = ½d² if |d| ≤ δ, else δ(|d| − ½δ)      ∂ℓ/∂p = d if |d| ≤ δ, else δ·sign(d)
/// Bce             ℓ = −w[t·max(ln p, −100) + (1−t)·max(ln(1−p), −100)]
///                                                           ∂ℓ/∂p = w(p − t) / max(p(1−p), 1e-12)
/// BceWithLogits   ℓ = w[(1−t)x + (1+(q−1)t)(ln(1+e^(−|x|)) + max(−x, 0))]
///                                                           ∂ℓ/∂x = w[(1+(q−1)t)σ(x) − qt]
/// ```
///
/// `w` is the optional weight and `q` the optional `pos_weight` of [`LossArgs`]. BCE's clamps
/// are PyTorch's: a log never below −100 and a gradient denominator never below 1e-12, so
/// `p = 0` and `p = 1` give finite values. BCE with logits never evaluates `exp` of a positive
/// number, so no logit overflows.
///
/// # Errors
/// [`Error::InvalidOption`] from [`Loss::validate`] when `delta` is not finite and positive.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Loss {
    /// Squared error, PyTorch `mse_loss`.
    Mse,
    /// Absolute error, PyTorch `l1_loss`.
    Mae,
    /// Huber loss with threshold `delta > 0`, PyTorch `huber_loss`.
    Huber {
        /// The threshold δ between the quadratic and the linear part.
        delta: f32,
    },
    /// Binary cross entropy on probabilities in [0, 1], PyTorch `binary_cross_entropy`.
    Bce,
    /// Binary cross entropy on logits, PyTorch `binary_cross_entropy_with_logits`.
    BceWithLogits,
}

impl Loss {
    /// Every loss with default options, in the order the CLI's table lists them.
    pub const ALL_DEFAULT: [Loss; 5] = [
        Loss::Mse,
        Loss::Mae,
        Loss::Huber { delta: 1.0 },
        Loss::Bce,
        Loss::BceWithLogits,
    ];

    /// Huber loss with threshold `delta`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] unless `delta` is finite and `> 0`.
    pub fn huber(delta: f32) -> Result<Loss> {
        let loss = Loss::Huber { delta };
        loss.validate()?;
        Ok(loss)
    }

    /// The loss's name in the CLI (`mse`, `mae`, `huber`, `bce`, `bce-with-logits`).
    pub fn name(&self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::Mae => "mae",
            Loss::Huber { .. } => "huber",
            Loss::Bce => "bce",
            Loss::BceWithLogits => "bce-with-logits",
        }
    }

    /// Checks the loss's own options.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a Huber `delta` that is not finite and positive.
    pub fn validate(&self) -> Result<()> {
        if let Loss::Huber { delta } = *self {
            if !(delta.is_finite() && delta > 0.0) {
                return Err(Error::InvalidOption {
                    option: "delta",
                    reason: format!("Huber's delta must be finite and > 0, got {delta}"),
                });
            }
        }
        Ok(())
    }

    /// Whether the loss takes a per-element `weight`.
    pub fn takes_weight(&self) -> bool {
        matches!(self, Loss::Bce | Loss::BceWithLogits)
    }

    /// Whether the loss takes a `pos_weight`.
    pub fn takes_pos_weight(&self) -> bool {
        matches!(self, Loss::BceWithLogits)
    }
}

/// The upstream gradient `g` that the returned gradient is multiplied by (the chain rule).
#[derive(Clone, Debug, Default)]
pub enum Upstream<'a> {
    /// `g = 1`: the gradient of the loss itself.
    #[default]
    Ones,
    /// A scalar `g` (for `None`, the same `g` for every element).
    Scalar(f32),
    /// One `g_k` per element; only with [`Reduction::None`], shaped like the prediction.
    Array(ArrayViewD<'a, f32>),
}

/// The inputs of one loss call: prediction, target, optional weights, reduction, upstream
/// gradient, and whether to compute the gradient at all.
///
/// # Shapes
/// - `pred`, `target`: the same shape, any rank, at least one element.
/// - `weight` (BCE and BCE with logits): the prediction's shape, or a trailing part of it
///   (`[C]` for a `[B, C]` prediction), broadcast over the leading dimensions; `≥ 0`.
/// - `pos_weight` (BCE with logits): a trailing part of the prediction's shape, usually `[C]`; `≥ 0`.
/// - `upstream`: [`Upstream::Array`] shaped like the prediction, only with [`Reduction::None`].
#[derive(Clone, Debug)]
pub struct LossArgs<'a> {
    /// Prediction `p` (probabilities for `Bce`, logits for `BceWithLogits`).
    pub pred: ArrayViewD<'a, f32>,
    /// Target `t`.
    pub target: ArrayViewD<'a, f32>,
    /// Optional per-element weight `w`.
    pub weight: Option<ArrayViewD<'a, f32>>,
    /// Optional positive-class weight `q` (BCE with logits).
    pub pos_weight: Option<ArrayViewD<'a, f32>>,
    /// The reduction (default `Mean`).
    pub reduction: Reduction,
    /// The upstream gradient (default ones).
    pub upstream: Upstream<'a>,
    /// `false` for loss-only mode: no gradient is computed or written.
    pub want_grad: bool,
}

impl<'a> LossArgs<'a> {
    /// Prediction and target, with `Mean` reduction, no weights, upstream gradient 1.
    pub fn new(pred: ArrayViewD<'a, f32>, target: ArrayViewD<'a, f32>) -> Self {
        LossArgs {
            pred,
            target,
            weight: None,
            pos_weight: None,
            reduction: Reduction::Mean,
            upstream: Upstream::Ones,
            want_grad: true,
        }
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets the per-element weight (BCE losses).
    pub fn weight(mut self, weight: ArrayViewD<'a, f32>) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets `pos_weight` (BCE with logits).
    pub fn pos_weight(mut self, pos_weight: ArrayViewD<'a, f32>) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }

    /// Sets the upstream gradient.
    pub fn upstream(mut self, upstream: Upstream<'a>) -> Self {
        self.upstream = upstream;
        self
    }

    /// Loss-only mode: the value (or per-element losses) without the gradient.
    pub fn loss_only(mut self) -> Self {
        self.want_grad = false;
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

    /// Checks the arguments against the loss, before any work is done. Both the GPU path and
    /// the CPU reference call it, so both reject the same inputs with the same errors.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] (loss options, a weight the loss does not take, a negative or
    /// non-finite weight, a non-finite scalar upstream), [`Error::ShapeMismatch`],
    /// [`Error::Empty`].
    pub fn validate(&self, loss: &Loss) -> Result<()> {
        loss.validate()?;
        let shape = self.pred.shape();
        if self.target.shape() != shape {
            return Err(Error::ShapeMismatch {
                what: "target",
                expected: shape.to_vec(),
                got: self.target.shape().to_vec(),
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
                if g.shape() != shape {
                    return Err(Error::ShapeMismatch {
                        what: "upstream",
                        expected: shape.to_vec(),
                        got: g.shape().to_vec(),
                    });
                }
            }
        }
        Ok(())
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

/// The result of a loss call, on the GPU (`T = f32`) or the CPU reference (`T = f64`).
#[derive(Clone, Debug, PartialEq)]
pub struct LossOutput<T> {
    /// The loss value for `Mean` and `Sum`; `None` for [`Reduction::None`].
    pub value: Option<T>,
    /// The per-element losses for [`Reduction::None`], shaped like the prediction.
    pub losses: Option<ArrayD<T>>,
    /// The gradient with respect to the prediction, shaped like it; `None` in loss-only mode.
    pub grad: Option<ArrayD<T>>,
    /// `D`, the count the mean divides by (the number of elements for the elementwise family).
    pub counted: usize,
}

impl<T> LossOutput<T> {
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
