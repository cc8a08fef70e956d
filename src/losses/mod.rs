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

use crate::error::Result;
use crate::kernels::Binding;
use crate::loss::Loss;

/// Declares the loss modules and lists their descriptors, in the order the CLI lists them.
macro_rules! register {
    ($($m:ident),* $(,)?) => {
        $(pub mod $m;)*
        /// Every loss's descriptor, in the order the CLI and the main job list them.
        pub(crate) const REGISTRY: &[&dyn LossDef] = &[$(&$m::Def),*];
    };
}

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
);

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
pub struct LossOption {
    /// The option's name: the CLI's flag without `--` (`delta`, `label-smoothing`).
    pub name: &'static str,
    /// One line for the CLI's help.
    pub help: &'static str,
    /// The value when the option is not given.
    pub default: f64,
    /// Whether the value is an integer (read exactly as an i64), else a float.
    pub integer: bool,
}

/// An option's value, as [`LossInfo::build`] is given it.
#[derive(Clone, Copy, Debug, PartialEq)]
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

    /// The loss named `name` (the CLI's name, [`Loss::name`]).
    pub fn named(name: &str) -> Option<LossInfo> {
        Self::all().find(|i| i.name() == name)
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
    /// [`crate::Error::InvalidOption`] for an option out of its range.
    pub fn build(&self, value: &Options<'_>) -> Result<Loss> {
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
pub(crate) struct Synthetic {
    pub pred: (f32, f32),
    pub target: (f32, f32),
    pub normalise_pred: bool,
    pub normalise_target: bool,
}

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
            Family::Elementwise(_) => &crate::kernels::ELEMENTWISE_BINDINGS,
            Family::Rows(_) => &crate::kernels::ROWS_BINDINGS,
        }
    }
    /// Its `LossParams` uniform, as the words its shader's struct holds (the driver's
    /// `params.loss`), and their names, for the mirror test.
    fn params(&self, _loss: &Loss) -> [f32; 4] {
        [0.0; 4]
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
    fn synthetic(&self) -> Synthetic {
        Synthetic::SIGNED
    }
    /// Its family, with the family's hooks.
    fn family(&self) -> Family<'_>;
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
    /// (`crate::cpu::elementwise::dispatch` with the loss's element kernel).
    fn cpu(
        &self,
        loss: &Loss,
        inputs: &crate::cpu::elementwise::Inputs<'_>,
        out: crate::cpu::elementwise::Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>>;
}

/// The hooks of a row-wise loss.
pub(crate) trait Rows: Sync {
    /// `(ℓ_r, ∂ℓ_r/∂x_r)` of one row in f64: the row `x`, its target, the class weights.
    fn reference(
        &self,
        loss: &Loss,
        x: &[f64],
        target: crate::reference::RowTarget<'_>,
        weight: Option<&[f64]>,
    ) -> (f64, Vec<f64>);
    /// The fast CPU path over every row (`crate::cpu::rows::groups` with the loss's row
    /// kernel).
    fn cpu(
        &self,
        loss: &Loss,
        setup: &crate::cpu::rows::Setup<'_>,
        data: &crate::cpu::rows::Data<'_>,
        out: crate::cpu::rows::Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>>;
    /// The row length of the main job's batch (its `--classes` for a loss that takes class
    /// indices).
    fn main_job_cols(&self) -> usize;
}
