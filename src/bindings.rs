//! The bindings of the kernels: what each `@group(0) @binding(n)` holds ([`Slot`]) and how it
//! is declared ([`Access`]), the family drivers' bindings, and the shared passes'. The losses
//! (`src/losses/`) add their own to their family's; [`crate::kernels`] builds the layouts.

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
    /// Words zeroed by `ClearWords` (a step's atomics).
    Atomics,
    /// `[rows]` per-row log-sum-exp out of a row-wise loss that has one (or a dummy).
    Lse,
    /// `[B]` row maxima of the sharded loss (its step 1 writes the shard's, steps 2 and 3
    /// read the all-reduced ones).
    Maxima,
    /// `[B, SHARD_SUMS]` per-row sums of the sharded loss (step 2 writes the shard's, step 3
    /// and the divisor read the all-reduced ones).
    Sums,
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

/// A binding of `slot` at `index`, declared with `access`.
pub(crate) const fn binding(index: u32, slot: Slot, access: Access) -> Binding {
    Binding {
        index,
        slot,
        access,
    }
}

/// The elementwise driver's bindings (`shaders/common/elementwise.wgsl`).
pub(crate) const ELEMENTWISE_BINDINGS: [Binding; 7] = [
    binding(0, Slot::Params, Access::Uniform),
    binding(1, Slot::Pred, Access::Read),
    binding(2, Slot::Target, Access::Read),
    binding(3, Slot::Upstream, Access::Read),
    binding(4, Slot::Grad, Access::ReadWrite),
    binding(5, Slot::Losses, Access::ReadWrite),
    binding(6, Slot::Partials, Access::ReadWrite),
];

/// `a` followed by `x`, as one array of `M = N + K` bindings (checked at compile time).
pub(crate) const fn concat<const N: usize, const K: usize, const M: usize>(
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

pub(crate) const REDUCE_PARTIALS_BINDINGS: [Binding; 4] = [
    binding(0, Slot::Params, Access::Uniform),
    binding(1, Slot::Partials, Access::Read),
    binding(2, Slot::Value, Access::ReadWrite),
    binding(3, Slot::Norm, Access::Uniform),
];
/// The row driver's bindings 0..=6 are the elementwise driver's, with `Losses` holding one
/// loss per row; then the class weights, the scales and the per-row log-sum-exp.
pub(crate) const ROWS_BINDINGS: [Binding; 10] = concat(
    ELEMENTWISE_BINDINGS,
    [
        binding(7, Slot::Weight, Access::Read),
        binding(8, Slot::Norm, Access::Uniform),
        binding(9, Slot::Lse, Access::ReadWrite),
    ],
);
pub(crate) const CLASS_COUNT_BINDINGS: [Binding; 5] = [
    binding(0, Slot::Params, Access::Uniform),
    binding(1, Slot::Target, Access::Read),
    binding(2, Slot::Weight, Access::Read),
    binding(3, Slot::Partials, Access::ReadWrite),
    binding(4, Slot::ClassStats, Access::ReadWrite),
];
/// The copy kernel reads the `Pred` slot (source) and writes the `Grad` slot (destination).
pub(crate) const CLEAR_WORDS_BINDINGS: [Binding; 1] =
    [binding(0, Slot::Atomics, Access::ReadWrite)];
pub(crate) const ROW_DIVISOR_BINDINGS: [Binding; 3] = [
    binding(0, Slot::Params, Access::Uniform),
    binding(1, Slot::Partials, Access::Read),
    binding(2, Slot::Norm, Access::ReadWrite),
];

/// What the sharded loss's three steps share (`shaders/common/shard.wgsl`): the parameters,
/// the shard's logits, the class ids, the shard's class weights.
const SHARD_INPUTS: [Binding; 4] = [
    binding(0, Slot::Params, Access::Uniform),
    binding(1, Slot::Pred, Access::Read),
    binding(2, Slot::Target, Access::Read),
    binding(3, Slot::Weight, Access::Read),
];
/// Step 1 (`shaders/sharded_max.wgsl`): writes the shard's row maxima.
pub(crate) const SHARD_MAX_BINDINGS: [Binding; 5] =
    concat(SHARD_INPUTS, [binding(4, Slot::Maxima, Access::ReadWrite)]);
/// Step 2 (`shaders/sharded_sums.wgsl`): reads the maxima, writes the shard's sums and the
/// class-id atomics.
pub(crate) const SHARD_SUMS_BINDINGS: [Binding; 7] = concat(
    SHARD_INPUTS,
    [
        binding(4, Slot::Maxima, Access::Read),
        binding(5, Slot::Sums, Access::ReadWrite),
        binding(6, Slot::ClassStats, Access::ReadWrite),
    ],
);
/// Step 3 (`shaders/sharded_loss.wgsl`): reads the maxima and the sums, writes the gradient
/// and the per-row losses.
pub(crate) const SHARD_LOSS_BINDINGS: [Binding; 9] = concat(
    SHARD_INPUTS,
    [
        binding(4, Slot::Maxima, Access::Read),
        binding(5, Slot::Sums, Access::Read),
        binding(6, Slot::Grad, Access::ReadWrite),
        binding(7, Slot::Losses, Access::ReadWrite),
        binding(8, Slot::Norm, Access::Uniform),
    ],
);
/// The sharded mean's divisor (`shaders/sharded_divisor.wgsl`).
pub(crate) const SHARD_DIVISOR_BINDINGS: [Binding; 3] = [
    binding(0, Slot::Params, Access::Uniform),
    binding(1, Slot::Sums, Access::Read),
    binding(2, Slot::Norm, Access::ReadWrite),
];
