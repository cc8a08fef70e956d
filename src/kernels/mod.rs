//! The kernel registry: every WGSL shader the crate runs, compiled in with `include_str!`
//! (never read at run time), and the bindings each kernel expects.
//!
//! A kernel's source is composed from pieces, because WGSL has no `#include`:
//! a reduction prelude ([`ReduceFlavor`]: `shaders/common/reduce.wgsl` or
//! `shaders/common/reduce_subgroup.wgsl`), then [`Kernel::parts`]. `tests/shaders.rs` validates
//! every composition with naga, without a GPU, and checks it against [`WORKGROUP_SIZE`],
//! [`ENTRY_POINT`] and [`Kernel::bindings`].

pub(crate) mod copy;
pub(crate) mod elementwise;
pub(crate) mod rows;
pub(crate) mod staging;

pub use copy::CopyTiming;
pub use rows::{ELEMENTS_PER_LANE, ROW_REGS, group_for};

use crate::loss::Loss;

/// Invocations per workgroup of every kernel; mirrors `const WG` in the reduction preludes.
pub const WORKGROUP_SIZE: u32 = 256;

/// The entry point of every kernel.
pub const ENTRY_POINT: &str = "main";

/// The shader files, compiled in.
pub mod source {
    /// `shaders/common/reduce.wgsl`: workgroup sum through shared memory.
    pub const REDUCE: &str = include_str!("../../shaders/common/reduce.wgsl");
    /// `shaders/common/reduce_subgroup.wgsl`: workgroup sum through subgroup operations.
    pub const REDUCE_SUBGROUP: &str = include_str!("../../shaders/common/reduce_subgroup.wgsl");
    /// `shaders/common/elementwise.wgsl`: the driver of the elementwise family.
    pub const ELEMENTWISE: &str = include_str!("../../shaders/common/elementwise.wgsl");
    /// `shaders/common/weight.wgsl`: the optional per-element weight of the BCE kernels.
    pub const WEIGHT: &str = include_str!("../../shaders/common/weight.wgsl");
    /// `shaders/mse.wgsl`.
    pub const MSE: &str = include_str!("../../shaders/mse.wgsl");
    /// `shaders/mae.wgsl`.
    pub const MAE: &str = include_str!("../../shaders/mae.wgsl");
    /// `shaders/huber.wgsl`.
    pub const HUBER: &str = include_str!("../../shaders/huber.wgsl");
    /// `shaders/bce.wgsl`.
    pub const BCE: &str = include_str!("../../shaders/bce.wgsl");
    /// `shaders/bce_with_logits.wgsl`.
    pub const BCE_WITH_LOGITS: &str = include_str!("../../shaders/bce_with_logits.wgsl");
    /// `shaders/common/rows.wgsl`: the driver of the row-wise family.
    pub const ROWS: &str = include_str!("../../shaders/common/rows.wgsl");
    /// `shaders/categorical_cross_entropy.wgsl`.
    pub const CATEGORICAL_CROSS_ENTROPY: &str =
        include_str!("../../shaders/categorical_cross_entropy.wgsl");
    /// `shaders/softmax_cross_entropy.wgsl`.
    pub const SOFTMAX_CROSS_ENTROPY: &str =
        include_str!("../../shaders/softmax_cross_entropy.wgsl");
    /// `shaders/cosine_proximity.wgsl`.
    pub const COSINE_PROXIMITY: &str = include_str!("../../shaders/cosine_proximity.wgsl");
    /// `shaders/class_count.wgsl`: checks class indices and sums the weights of counted rows.
    pub const CLASS_COUNT: &str = include_str!("../../shaders/class_count.wgsl");
    /// `shaders/row_divisor.wgsl`: turns the counted weight into the mean's scales.
    pub const ROW_DIVISOR: &str = include_str!("../../shaders/row_divisor.wgsl");
    /// `shaders/reduce_partials.wgsl`: the second pass of every reduction.
    pub const REDUCE_PARTIALS: &str = include_str!("../../shaders/reduce_partials.wgsl");
    /// `shaders/copy.wgsl`: a vec4 copy, the bandwidth ceiling of `wgpu-loss bench`.
    pub const COPY: &str = include_str!("../../shaders/copy.wgsl");
}

/// Which workgroup-sum prelude a kernel is composed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceFlavor {
    /// Shared-memory tree (`shaders/common/reduce.wgsl`); runs everywhere.
    Plain,
    /// `subgroupAdd` (`shaders/common/reduce_subgroup.wgsl`); needs `Features::SUBGROUP`.
    Subgroup,
}

impl ReduceFlavor {
    /// The prelude's file (relative to the crate root) and text.
    pub fn prelude(self) -> (&'static str, &'static str) {
        match self {
            ReduceFlavor::Plain => ("shaders/common/reduce.wgsl", source::REDUCE),
            ReduceFlavor::Subgroup => (
                "shaders/common/reduce_subgroup.wgsl",
                source::REDUCE_SUBGROUP,
            ),
        }
    }
}

/// Every compute kernel of the crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Mean squared error, value and gradient.
    Mse,
    /// Mean absolute error.
    Mae,
    /// Huber loss.
    Huber,
    /// Binary cross entropy on probabilities.
    Bce,
    /// Binary cross entropy with logits.
    BceWithLogits,
    /// Adds the per-workgroup partial sums into the loss value.
    ReducePartials,
    /// Categorical cross entropy on probabilities (row-wise).
    CategoricalCrossEntropy,
    /// Softmax cross entropy from logits, probability or class-index targets (row-wise).
    SoftmaxCrossEntropy,
    /// Cosine proximity (row-wise).
    CosineProximity,
    /// Class-index pre-pass: range check, count and weight sum of the rows that count.
    ClassCount,
    /// Turns the weight sum of the counted rows into the mean's divisor and scales.
    RowDivisor,
    /// Copies a buffer (vec4 at a time): the adapter's bandwidth ceiling for benchmarks.
    Copy,
}

/// What a binding holds; the host fills each slot with a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The kernel's uniform parameter block.
    Params,
    /// `[n]` prediction.
    Pred,
    /// `[n]` target (the row-wise family binds it as `u32` words: f32 targets or i32 classes).
    Target,
    /// `[n]` upstream gradient (or a dummy).
    Upstream,
    /// `[n]` gradient out (or a dummy).
    Grad,
    /// `[n]` per-element losses out (or a dummy).
    Losses,
    /// Per-workgroup partial sums (written by the loss kernels, read by `ReducePartials`).
    Partials,
    /// Broadcast per-element weight (or a dummy).
    Weight,
    /// Broadcast `pos_weight` (or a dummy).
    PosWeight,
    /// `[1]` the first offending index, as `u32::MAX − index` kept with an atomic maximum.
    DomainError,
    /// `[1]` the loss value.
    Value,
    /// `vec4<f32>` `(D, gradient scale, value scale, 0)` of a row-wise call: written by
    /// `RowDivisor` (or the host), read as a uniform by the row kernels and `ReducePartials`.
    Norm,
    /// `[2]` atomics of the class pre-pass: first out-of-range row (min), rows counted (sum).
    ClassStats,
}

/// How a binding is declared in WGSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// One `@group(0) @binding(index)` of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The binding number.
    pub index: u32,
    /// What it holds.
    pub slot: Slot,
    /// How it is declared.
    pub access: Access,
}

const fn b(index: u32, slot: Slot, access: Access) -> Binding {
    Binding {
        index,
        slot,
        access,
    }
}

const ELEMENTWISE_BINDINGS: [Binding; 7] = [
    b(0, Slot::Params, Access::Uniform),
    b(1, Slot::Pred, Access::Read),
    b(2, Slot::Target, Access::Read),
    b(3, Slot::Upstream, Access::Read),
    b(4, Slot::Grad, Access::ReadWrite),
    b(5, Slot::Losses, Access::ReadWrite),
    b(6, Slot::Partials, Access::ReadWrite),
];

/// `a` followed by `x`, as one array of `M = N + K` bindings (checked at compile time).
const fn concat<const N: usize, const K: usize, const M: usize>(
    a: [Binding; N],
    x: [Binding; K],
) -> [Binding; M] {
    assert!(N + K == M, "M must be N + K");
    let mut out = [a[0]; M];
    let mut i = 0;
    while i < K {
        out[N + i] = x[i];
        i += 1;
    }
    let mut i = 0;
    while i < N {
        out[i] = a[i];
        i += 1;
    }
    out
}

const BCE_BINDINGS: [Binding; 9] = concat(
    ELEMENTWISE_BINDINGS,
    [
        b(7, Slot::Weight, Access::Read),
        b(8, Slot::DomainError, Access::ReadWrite),
    ],
);
const BCE_WITH_LOGITS_BINDINGS: [Binding; 9] = concat(
    ELEMENTWISE_BINDINGS,
    [
        b(7, Slot::Weight, Access::Read),
        b(8, Slot::PosWeight, Access::Read),
    ],
);
const REDUCE_PARTIALS_BINDINGS: [Binding; 4] = [
    b(0, Slot::Params, Access::Uniform),
    b(1, Slot::Partials, Access::Read),
    b(2, Slot::Value, Access::ReadWrite),
    b(3, Slot::Norm, Access::Uniform),
];
/// The row driver's bindings 0..=6 are the elementwise driver's, with `Losses` holding one
/// loss per row; then the class weights and the scales.
const ROWS_BINDINGS: [Binding; 9] = concat(
    ELEMENTWISE_BINDINGS,
    [
        b(7, Slot::Weight, Access::Read),
        b(8, Slot::Norm, Access::Uniform),
    ],
);
const CCE_BINDINGS: [Binding; 10] =
    concat(ROWS_BINDINGS, [b(9, Slot::DomainError, Access::ReadWrite)]);
const CLASS_COUNT_BINDINGS: [Binding; 5] = [
    b(0, Slot::Params, Access::Uniform),
    b(1, Slot::Target, Access::Read),
    b(2, Slot::Weight, Access::Read),
    b(3, Slot::Partials, Access::ReadWrite),
    b(4, Slot::ClassStats, Access::ReadWrite),
];
/// The copy kernel reads the `Pred` slot (source) and writes the `Grad` slot (destination).
const COPY_BINDINGS: [Binding; 3] = [
    b(0, Slot::Params, Access::Uniform),
    b(1, Slot::Pred, Access::Read),
    b(2, Slot::Grad, Access::ReadWrite),
];
const ROW_DIVISOR_BINDINGS: [Binding; 3] = [
    b(0, Slot::Params, Access::Uniform),
    b(1, Slot::Partials, Access::Read),
    b(2, Slot::Norm, Access::ReadWrite),
];

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 12] = [
        Kernel::Mse,
        Kernel::Mae,
        Kernel::Huber,
        Kernel::Bce,
        Kernel::BceWithLogits,
        Kernel::ReducePartials,
        Kernel::CategoricalCrossEntropy,
        Kernel::SoftmaxCrossEntropy,
        Kernel::CosineProximity,
        Kernel::ClassCount,
        Kernel::RowDivisor,
        Kernel::Copy,
    ];

    /// The kernel that computes `loss`.
    pub fn for_loss(loss: &Loss) -> Kernel {
        match loss {
            Loss::Mse => Kernel::Mse,
            Loss::Mae => Kernel::Mae,
            Loss::Huber { .. } => Kernel::Huber,
            Loss::Bce => Kernel::Bce,
            Loss::BceWithLogits => Kernel::BceWithLogits,
            Loss::CategoricalCrossEntropy => Kernel::CategoricalCrossEntropy,
            Loss::SoftmaxCrossEntropy { .. } => Kernel::SoftmaxCrossEntropy,
            Loss::CosineProximity { .. } => Kernel::CosineProximity,
        }
    }

    /// A short name, used in labels.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Mse => "mse",
            Kernel::Mae => "mae",
            Kernel::Huber => "huber",
            Kernel::Bce => "bce",
            Kernel::BceWithLogits => "bce_with_logits",
            Kernel::ReducePartials => "reduce_partials",
            Kernel::CategoricalCrossEntropy => "categorical_cross_entropy",
            Kernel::SoftmaxCrossEntropy => "softmax_cross_entropy",
            Kernel::CosineProximity => "cosine_proximity",
            Kernel::ClassCount => "class_count",
            Kernel::RowDivisor => "row_divisor",
            Kernel::Copy => "copy",
        }
    }

    /// The files (relative to the crate root) and texts composed after the reduction prelude.
    pub fn parts(self) -> &'static [(&'static str, &'static str)] {
        const EW: (&str, &str) = ("shaders/common/elementwise.wgsl", source::ELEMENTWISE);
        const W: (&str, &str) = ("shaders/common/weight.wgsl", source::WEIGHT);
        const ROWS: (&str, &str) = ("shaders/common/rows.wgsl", source::ROWS);
        match self {
            Kernel::Mse => &[EW, ("shaders/mse.wgsl", source::MSE)],
            Kernel::Mae => &[EW, ("shaders/mae.wgsl", source::MAE)],
            Kernel::Huber => &[EW, ("shaders/huber.wgsl", source::HUBER)],
            Kernel::Bce => &[EW, W, ("shaders/bce.wgsl", source::BCE)],
            Kernel::BceWithLogits => &[
                EW,
                W,
                ("shaders/bce_with_logits.wgsl", source::BCE_WITH_LOGITS),
            ],
            Kernel::ReducePartials => &[("shaders/reduce_partials.wgsl", source::REDUCE_PARTIALS)],
            Kernel::CategoricalCrossEntropy => &[
                ROWS,
                (
                    "shaders/categorical_cross_entropy.wgsl",
                    source::CATEGORICAL_CROSS_ENTROPY,
                ),
            ],
            Kernel::SoftmaxCrossEntropy => &[
                ROWS,
                (
                    "shaders/softmax_cross_entropy.wgsl",
                    source::SOFTMAX_CROSS_ENTROPY,
                ),
            ],
            Kernel::CosineProximity => &[
                ROWS,
                ("shaders/cosine_proximity.wgsl", source::COSINE_PROXIMITY),
            ],
            Kernel::ClassCount => &[("shaders/class_count.wgsl", source::CLASS_COUNT)],
            Kernel::RowDivisor => &[("shaders/row_divisor.wgsl", source::ROW_DIVISOR)],
            Kernel::Copy => &[("shaders/copy.wgsl", source::COPY)],
        }
    }

    /// The full WGSL source with the given reduction prelude.
    pub fn source(self, flavor: ReduceFlavor) -> String {
        let mut s = String::from(flavor.prelude().1);
        for (_, text) in self.parts() {
            s.push('\n');
            s.push_str(text);
        }
        s
    }

    /// The kernel's bindings, all in `@group(0)`.
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Kernel::Mse | Kernel::Mae | Kernel::Huber => &ELEMENTWISE_BINDINGS,
            Kernel::Bce => &BCE_BINDINGS,
            Kernel::BceWithLogits => &BCE_WITH_LOGITS_BINDINGS,
            Kernel::ReducePartials => &REDUCE_PARTIALS_BINDINGS,
            Kernel::CategoricalCrossEntropy => &CCE_BINDINGS,
            Kernel::SoftmaxCrossEntropy | Kernel::CosineProximity => &ROWS_BINDINGS,
            Kernel::ClassCount => &CLASS_COUNT_BINDINGS,
            Kernel::RowDivisor => &ROW_DIVISOR_BINDINGS,
            Kernel::Copy => &COPY_BINDINGS,
        }
    }
}
