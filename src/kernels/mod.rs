//! The kernel registry: every WGSL shader the crate runs, compiled in with `include_str!`
//! (never read at run time), and the bindings each kernel expects.
//!
//! A kernel's source is composed from pieces, because WGSL has no `#include`:
//! a reduction prelude ([`ReduceFlavor`]: `shaders/common/reduce.wgsl` or
//! `shaders/common/reduce_subgroup.wgsl`), then [`Kernel::parts`]. `tests/shaders.rs` validates
//! every composition with naga, without a GPU, and checks it against [`WORKGROUP_SIZE`],
//! [`ENTRY_POINT`] and [`Kernel::bindings`].

pub(crate) mod elementwise;

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
    /// `shaders/reduce_partials.wgsl`: the second pass of every reduction.
    pub const REDUCE_PARTIALS: &str = include_str!("../../shaders/reduce_partials.wgsl");
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
}

/// What a binding holds; the host fills each slot with a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The kernel's uniform parameter block.
    Params,
    /// `[n]` prediction.
    Pred,
    /// `[n]` target.
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
    /// `[1]` atomic minimum of offending indices.
    DomainError,
    /// `[1]` the loss value.
    Value,
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

const fn elementwise_plus(extra: [Binding; 2]) -> [Binding; 9] {
    let e = ELEMENTWISE_BINDINGS;
    [e[0], e[1], e[2], e[3], e[4], e[5], e[6], extra[0], extra[1]]
}

const BCE_BINDINGS: [Binding; 9] = elementwise_plus([
    b(7, Slot::Weight, Access::Read),
    b(8, Slot::DomainError, Access::ReadWrite),
]);
const BCE_WITH_LOGITS_BINDINGS: [Binding; 9] = elementwise_plus([
    b(7, Slot::Weight, Access::Read),
    b(8, Slot::PosWeight, Access::Read),
]);
const REDUCE_PARTIALS_BINDINGS: [Binding; 3] = [
    b(0, Slot::Params, Access::Uniform),
    b(1, Slot::Partials, Access::Read),
    b(2, Slot::Value, Access::ReadWrite),
];

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 6] = [
        Kernel::Mse,
        Kernel::Mae,
        Kernel::Huber,
        Kernel::Bce,
        Kernel::BceWithLogits,
        Kernel::ReducePartials,
    ];

    /// The kernel that computes `loss`.
    pub fn for_loss(loss: &Loss) -> Kernel {
        match loss {
            Loss::Mse => Kernel::Mse,
            Loss::Mae => Kernel::Mae,
            Loss::Huber { .. } => Kernel::Huber,
            Loss::Bce => Kernel::Bce,
            Loss::BceWithLogits => Kernel::BceWithLogits,
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
        }
    }

    /// The files (relative to the crate root) and texts composed after the reduction prelude.
    pub fn parts(self) -> &'static [(&'static str, &'static str)] {
        const EW: (&str, &str) = ("shaders/common/elementwise.wgsl", source::ELEMENTWISE);
        const W: (&str, &str) = ("shaders/common/weight.wgsl", source::WEIGHT);
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
        }
    }
}
