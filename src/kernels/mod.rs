//! The kernel registry: every WGSL shader the crate runs, compiled in with `include_str!`
//! (never read at run time), how each kernel's source is composed, and the bindings each
//! kernel expects.
//!
//! WGSL has no `#include`, so the shader files say what they are made of: a line
//! `#import common/nan.wgsl` names another file (relative to `shaders/`), and `#import
//! <reduce>`, `#import <io>` and `#import <grad>` name the variant slots the host fills: the
//! workgroup-sum prelude ([`ReduceFlavor`]), the storage of the prediction and target and the
//! store of the gradient ([`Io`]). A kernel's source is its own file ([`Kernel::root`]) and
//! everything it imports, each file once, every file after the files it imports
//! ([`Kernel::files`]); the `#import` lines become comments. `tests/shaders.rs` validates every
//! composition with naga, without a GPU, and checks it against [`WORKGROUP_SIZE`],
//! [`ENTRY_POINT`], [`Kernel::bindings`], and the Rust mirrors of every `Params` struct and
//! flag.

pub(crate) mod elementwise;
pub(crate) mod host;
pub(crate) mod pipeline;
pub(crate) mod plan;
pub(crate) mod rows;
pub(crate) mod staging;

#[cfg(test)]
pub(crate) mod mirror;
#[cfg(test)]
mod shader_tests;

pub use rows::group_for;

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
    /// `shaders/common/io_f32.wgsl`: f32 prediction and target storage.
    pub const IO_F32: &str = include_str!("../../shaders/common/io_f32.wgsl");
    /// `shaders/common/io_f16.wgsl`: f16 prediction and target storage (packed pairs).
    pub const IO_F16: &str = include_str!("../../shaders/common/io_f16.wgsl");
    /// `shaders/common/io_bf16.wgsl`: bf16 prediction and target storage (packed pairs).
    pub const IO_BF16: &str = include_str!("../../shaders/common/io_bf16.wgsl");
    /// `shaders/common/io_f16x8.wgsl`: f16 storage, eight elements (a vec4 of words) at a time.
    pub const IO_F16X8: &str = include_str!("../../shaders/common/io_f16x8.wgsl");
    /// `shaders/common/io_bf16x8.wgsl`: bf16 storage, eight elements at a time.
    pub const IO_BF16X8: &str = include_str!("../../shaders/common/io_bf16x8.wgsl");
    /// `shaders/common/f16_pair.wgsl`: two f16 in a word, unpacked and packed.
    pub const F16_PAIR: &str = include_str!("../../shaders/common/f16_pair.wgsl");
    /// `shaders/common/bf16_pair.wgsl`: two bf16 in a word, unpacked and packed.
    pub const BF16_PAIR: &str = include_str!("../../shaders/common/bf16_pair.wgsl");
    /// `shaders/common/unit_pair.wgsl`: the 16-bit unit of one word (two elements).
    pub const UNIT_PAIR: &str = include_str!("../../shaders/common/unit_pair.wgsl");
    /// `shaders/common/unit_octet.wgsl`: the 16-bit unit of a vec4 of words (eight elements).
    pub const UNIT_OCTET: &str = include_str!("../../shaders/common/unit_octet.wgsl");
    /// `shaders/common/io_vector.wgsl`: element access of the vector units (f16, bf16, f32×4).
    pub const IO_VECTOR: &str = include_str!("../../shaders/common/io_vector.wgsl");
    /// `shaders/common/io_f32x4.wgsl`: f32 prediction and target storage, vec4 at a time.
    pub const IO_F32X4: &str = include_str!("../../shaders/common/io_f32x4.wgsl");
    /// `shaders/common/grad_f32x4.wgsl`: an f32 gradient stored a vec4 at a time.
    pub const GRAD_F32X4: &str = include_str!("../../shaders/common/grad_f32x4.wgsl");
    /// `shaders/common/grad_f32.wgsl`: an f32 gradient.
    pub const GRAD_F32: &str = include_str!("../../shaders/common/grad_f32.wgsl");
    /// `shaders/common/grad_packed.wgsl`: a gradient stored like a 16-bit input.
    pub const GRAD_PACKED: &str = include_str!("../../shaders/common/grad_packed.wgsl");
    /// `shaders/common/grad_packed_x8.wgsl`: a 16-bit gradient stored a vec4 of words at a time.
    pub const GRAD_PACKED_X8: &str = include_str!("../../shaders/common/grad_packed_x8.wgsl");
    /// `shaders/common/elementwise.wgsl`: the driver of the elementwise family.
    pub const ELEMENTWISE: &str = include_str!("../../shaders/common/elementwise.wgsl");
    /// `shaders/common/weight.wgsl`: the optional per-element weight of the BCE kernels.
    pub const WEIGHT: &str = include_str!("../../shaders/common/weight.wgsl");
    /// `shaders/common/nan.wgsl`: NaN tests by bits, for the drivers and the loss files that
    /// clamp, and the probability-domain test by bits.
    pub const NAN: &str = include_str!("../../shaders/common/nan.wgsl");
    /// `shaders/common/log.wgsl`: `ln`, `ln(1 − p)`, `ln(1 + y)` and `exp` accurate to about
    /// 1 ulp relative, from the argument's bits (subnormals included).
    pub const LOG: &str = include_str!("../../shaders/common/log.wgsl");
    /// `shaders/common/running_softmax.wgsl`: a softmax's running maximum and sum, pushed
    /// and combined (distill, jsd).
    pub const RUNNING_SOFTMAX: &str = include_str!("../../shaders/common/running_softmax.wgsl");
    /// `shaders/common/softcap.wgsl`: logit soft-capping `c·tanh(x/c)` and its derivative.
    pub const SOFTCAP: &str = include_str!("../../shaders/common/softcap.wgsl");
    /// `shaders/common/classes.wgsl`: class-index targets (i32, u32, i64) decoded and
    /// range-checked exactly.
    pub const CLASSES: &str = include_str!("../../shaders/common/classes.wgsl");
    /// `shaders/common/preds_read.wgsl`: the row driver's prediction, read only.
    pub const PREDS_READ: &str = include_str!("../../shaders/common/preds_read.wgsl");
    /// `shaders/common/preds_in_place.wgsl`: the row driver's prediction, overwritten by the
    /// gradient.
    pub const PREDS_IN_PLACE: &str = include_str!("../../shaders/common/preds_in_place.wgsl");
    /// `shaders/common/rows.wgsl`: the driver of the row-wise family.
    pub const ROWS: &str = include_str!("../../shaders/common/rows.wgsl");
    /// `shaders/common/rows_single.wgsl`: the row-wise driver's second sweep switched off,
    /// for the losses of one statistics sweep.
    pub const ROWS_SINGLE: &str = include_str!("../../shaders/common/rows_single.wgsl");
    /// `shaders/common/rows_no_lse.wgsl`: the row-wise driver's log-sum-exp output switched
    /// off, for the losses without one.
    pub const ROWS_NO_LSE: &str = include_str!("../../shaders/common/rows_no_lse.wgsl");
    pub const ROWS_NO_SPLIT: &str = include_str!("../../shaders/common/rows_no_split.wgsl");
    /// `shaders/class_count.wgsl`: checks class indices and sums the weights of counted rows.
    pub const CLASS_COUNT: &str = include_str!("../../shaders/class_count.wgsl");
    /// `shaders/row_divisor.wgsl`: turns the counted weight into the mean's scales.
    pub const ROW_DIVISOR: &str = include_str!("../../shaders/row_divisor.wgsl");
    /// `shaders/reduce_partials.wgsl`: the second pass of every reduction.
    pub const REDUCE_PARTIALS: &str = include_str!("../../shaders/reduce_partials.wgsl");
    /// `shaders/clear_words.wgsl`: zeroes a step's atomics inside a compute pass.
    pub const CLEAR_WORDS: &str = include_str!("../../shaders/clear_words.wgsl");
    /// `shaders/common/shard_layout.wgsl`: the layout of the sharded loss's per-row sums.
    pub const SHARD_LAYOUT: &str = include_str!("../../shaders/common/shard_layout.wgsl");
    /// `shaders/common/shard.wgsl`: what the three steps of the sharded loss share.
    pub const SHARD: &str = include_str!("../../shaders/common/shard.wgsl");
    /// `shaders/sharded_max.wgsl`: sharded softmax cross entropy, step 1 (row maxima).
    pub const SHARDED_MAX: &str = include_str!("../../shaders/sharded_max.wgsl");
    /// `shaders/sharded_sums.wgsl`: sharded softmax cross entropy, step 2 (row sums).
    pub const SHARDED_SUMS: &str = include_str!("../../shaders/sharded_sums.wgsl");
    /// `shaders/sharded_loss.wgsl`: sharded softmax cross entropy, step 3 (loss, gradient).
    pub const SHARDED_LOSS: &str = include_str!("../../shaders/sharded_loss.wgsl");
    /// `shaders/sharded_divisor.wgsl`: the sharded loss's mean divisor from its sums.
    pub const SHARDED_DIVISOR: &str = include_str!("../../shaders/sharded_divisor.wgsl");
}

/// Every shader file other than the losses' own (which their descriptors compile in,
/// `src/losses/<loss>.rs`), by its path from the crate root, with its text: what `#import`
/// lines resolve against.
pub const SHADER_FILES: [(&str, &str); 40] = [
    ("shaders/common/reduce.wgsl", source::REDUCE),
    (
        "shaders/common/reduce_subgroup.wgsl",
        source::REDUCE_SUBGROUP,
    ),
    ("shaders/common/io_f32.wgsl", source::IO_F32),
    ("shaders/common/io_f16.wgsl", source::IO_F16),
    ("shaders/common/io_bf16.wgsl", source::IO_BF16),
    ("shaders/common/io_f16x8.wgsl", source::IO_F16X8),
    ("shaders/common/io_bf16x8.wgsl", source::IO_BF16X8),
    ("shaders/common/f16_pair.wgsl", source::F16_PAIR),
    ("shaders/common/bf16_pair.wgsl", source::BF16_PAIR),
    ("shaders/common/unit_pair.wgsl", source::UNIT_PAIR),
    ("shaders/common/unit_octet.wgsl", source::UNIT_OCTET),
    ("shaders/common/io_vector.wgsl", source::IO_VECTOR),
    ("shaders/common/io_f32x4.wgsl", source::IO_F32X4),
    ("shaders/common/grad_f32x4.wgsl", source::GRAD_F32X4),
    ("shaders/common/grad_f32.wgsl", source::GRAD_F32),
    ("shaders/common/grad_packed.wgsl", source::GRAD_PACKED),
    ("shaders/common/grad_packed_x8.wgsl", source::GRAD_PACKED_X8),
    ("shaders/common/elementwise.wgsl", source::ELEMENTWISE),
    ("shaders/common/weight.wgsl", source::WEIGHT),
    ("shaders/common/nan.wgsl", source::NAN),
    ("shaders/common/log.wgsl", source::LOG),
    ("shaders/common/softcap.wgsl", source::SOFTCAP),
    (
        "shaders/common/running_softmax.wgsl",
        source::RUNNING_SOFTMAX,
    ),
    ("shaders/common/classes.wgsl", source::CLASSES),
    ("shaders/common/preds_read.wgsl", source::PREDS_READ),
    ("shaders/common/preds_in_place.wgsl", source::PREDS_IN_PLACE),
    ("shaders/common/rows.wgsl", source::ROWS),
    ("shaders/common/rows_single.wgsl", source::ROWS_SINGLE),
    ("shaders/common/rows_no_lse.wgsl", source::ROWS_NO_LSE),
    ("shaders/common/rows_no_split.wgsl", source::ROWS_NO_SPLIT),
    ("shaders/class_count.wgsl", source::CLASS_COUNT),
    ("shaders/row_divisor.wgsl", source::ROW_DIVISOR),
    ("shaders/reduce_partials.wgsl", source::REDUCE_PARTIALS),
    ("shaders/clear_words.wgsl", source::CLEAR_WORDS),
    ("shaders/common/shard_layout.wgsl", source::SHARD_LAYOUT),
    ("shaders/common/shard.wgsl", source::SHARD),
    ("shaders/sharded_max.wgsl", source::SHARDED_MAX),
    ("shaders/sharded_sums.wgsl", source::SHARDED_SUMS),
    ("shaders/sharded_loss.wgsl", source::SHARDED_LOSS),
    ("shaders/sharded_divisor.wgsl", source::SHARDED_DIVISOR),
];

/// The `#import` lines of a shader file's text, in order: what each names (a path relative to
/// `shaders/`, or a slot `<reduce>`, `<io>`, `<grad>`).
pub fn imports(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("#import "))
        .map(str::trim)
}

/// The file (path from the crate root) and text an import names, for `flavor` and `io`.
fn resolve(name: &str, flavor: ReduceFlavor, io: Io) -> Option<(&'static str, &'static str)> {
    match name {
        "<reduce>" => Some(flavor.prelude()),
        "<io>" => Some(io.input_prelude()),
        "<grad>" => Some(io.grad_prelude()),
        "<preds>" => Some(io.preds_prelude()),
        _ => SHADER_FILES
            .iter()
            .find(|(p, _)| p.strip_prefix("shaders/") == Some(name))
            .copied(),
    }
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
    /// The flavour `ctx` reduces with ([`crate::GpuContext::uses_subgroups`]).
    pub fn of(ctx: &crate::GpuContext) -> ReduceFlavor {
        if ctx.uses_subgroups() {
            ReduceFlavor::Subgroup
        } else {
            ReduceFlavor::Plain
        }
    }

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

/// How the elements of a prediction, dense target or gradient array are stored.
///
/// 16-bit types are stored as in a `[half::f16]` / `[half::bf16]` array: two elements per
/// 32-bit word, element `2k` in the low half of word `k`. A buffer of `n` such elements
/// therefore spans `⌈n / 2⌉` words ([`Dtype::bytes`]); for odd `n` the upper half of the last
/// word is padding, never read as data and never written. The kernels widen to f32, compute
/// and accumulate in f32, and round once when they store a 16-bit gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// IEEE binary32.
    #[default]
    F32,
    /// IEEE binary16: 11 significant bits, largest finite 65504. Converted with WGSL's core
    /// `pack2x16float`/`unpack2x16float`, so no `SHADER_F16` feature is needed.
    F16,
    /// bfloat16, the top half of an f32: 8 significant bits, the f32 range. Rounded to
    /// nearest even by the kernels' own integer code (the same bits on every device).
    Bf16,
}

impl Dtype {
    /// Elements stored per 32-bit word.
    pub const fn per_word(self) -> usize {
        match self {
            Dtype::F32 => 1,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }

    /// Bytes that hold `n` elements: `4 · ⌈n / per_word⌉` (a whole number of words, as storage
    /// bindings need).
    pub fn bytes(self, n: usize) -> u64 {
        4 * n.div_ceil(self.per_word()) as u64
    }

    /// A short name: `"f32"`, `"f16"`, `"bf16"`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }

    /// `values` rounded to this type (nearest, ties to even; `half`'s conversions) and packed
    /// into the words a buffer of it holds: `⌈n / per_word⌉` words, the padding half zero.
    /// Upload these (`bytemuck::cast_slice`) to fill a prediction or target buffer.
    pub fn pack(self, values: &[f32]) -> Vec<u32> {
        match self {
            Dtype::F32 => values.iter().map(|v| v.to_bits()).collect(),
            Dtype::F16 => pack_pairs(values, |v| half::f16::from_f32(v).to_bits()),
            Dtype::Bf16 => pack_pairs(values, |v| half::bf16::from_f32(v).to_bits()),
        }
    }

    /// The first `n` elements of `words` (a buffer of this type read back), widened to f32.
    ///
    /// # Panics
    /// If `words` holds fewer than `n` elements.
    pub fn unpack(self, words: &[u32], n: usize) -> Vec<f32> {
        assert!(
            words.len() * self.per_word() >= n,
            "{} words hold fewer than {n} {} elements",
            words.len(),
            self.name()
        );
        let half_at = |k: usize| (words[k / 2] >> (16 * (k % 2))) as u16;
        match self {
            Dtype::F32 => words[..n].iter().map(|&w| f32::from_bits(w)).collect(),
            Dtype::F16 => (0..n)
                .map(|k| half::f16::from_bits(half_at(k)).to_f32())
                .collect(),
            Dtype::Bf16 => (0..n)
                .map(|k| half::bf16::from_bits(half_at(k)).to_f32())
                .collect(),
        }
    }

    /// `v` rounded to this type and widened back (what a buffer of it would hold).
    pub fn round(self, v: f32) -> f32 {
        match self {
            Dtype::F32 => v,
            Dtype::F16 => half::f16::from_f32(v).to_f32(),
            Dtype::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// The storage prelude's file and text (`shaders/common/io_*.wgsl`).
    pub fn prelude(self) -> (&'static str, &'static str) {
        match self {
            Dtype::F32 => ("shaders/common/io_f32.wgsl", source::IO_F32),
            Dtype::F16 => ("shaders/common/io_f16.wgsl", source::IO_F16),
            Dtype::Bf16 => ("shaders/common/io_bf16.wgsl", source::IO_BF16),
        }
    }
}

/// The integer type of class-index targets, as a GPU buffer holds them (little-endian): part of
/// a plan ([`crate::resident::ResidentSpec::classes`]), since a buffer's contents have no type
/// the kernels could see. Every id is compared exactly, as the integer it is, with
/// `ignore_index` and with `[0, C)`: an i64 id of 2^32 + 3 is out of range, not class 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClassType {
    /// `i32`, one word per id.
    I32,
    /// `i64` (PyTorch's `long`), two words per id, low word first.
    I64,
    /// `u32`, one word per id. A negative `ignore_index` (the default −100) matches no u32 id.
    U32,
}

impl ClassType {
    /// Bytes of `n` ids.
    pub fn bytes(self, n: usize) -> u64 {
        n as u64 * self.words_per_id() * 4
    }

    /// 32-bit words per id: 2 for i64, else 1.
    pub fn words_per_id(self) -> u64 {
        match self {
            ClassType::I64 => 2,
            ClassType::I32 | ClassType::U32 => 1,
        }
    }

    /// `"i32"`, `"i64"` or `"u32"`.
    pub fn name(self) -> &'static str {
        match self {
            ClassType::I32 => "i32",
            ClassType::I64 => "i64",
            ClassType::U32 => "u32",
        }
    }
}

/// 16-bit values packed two to a word, element 2k in the low half of word k.
fn pack_pairs(values: &[f32], bits: impl Fn(f32) -> u16) -> Vec<u32> {
    values
        .chunks(2)
        .map(|p| u32::from(bits(p[0])) | p.get(1).map_or(0, |&v| u32::from(bits(v)) << 16))
        .collect()
}

/// The storage of a loss kernel's arrays: prediction and dense target in `input`, the
/// gradient in `grad` (either `input` or [`Dtype::F32`]). Everything else (class indices,
/// weights, upstream gradients, losses, the value) is 32-bit. `vec4`: the arrays moved 16
/// bytes per lane at a time, four f32 or eight 16-bit elements ([`Io::per_unit`]; the
/// elementwise family where every length is a multiple of that, and on software adapters the
/// row-wise family where the row length is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Io {
    /// Prediction and dense target.
    pub input: Dtype,
    /// Gradient.
    pub grad: Dtype,
    /// vec4 loads and stores (a vec4<f32>, or a vec4 of 16-bit pairs; every length a multiple
    /// of [`Io::per_unit`]).
    pub vec4: bool,
    /// The gradient written over the prediction (the row-wise family; `grad` is `input`).
    pub in_place: bool,
}

impl Io {
    /// Everything f32.
    pub const F32: Io = Io::same(Dtype::F32);

    /// Everything f32, moved a vec4 at a time.
    #[cfg(test)]
    pub const F32X4: Io = Io::F32.with_vec4();

    /// Every storage combination the kernels are built for: the gradient as the input, or f32,
    /// each a word or a vec4 at a time.
    #[cfg(test)]
    pub const ALL: [Io; 10] = [
        Io::F32,
        Io::F32X4,
        Io::same(Dtype::F16),
        Io::with_f32_grad(Dtype::F16),
        Io::same(Dtype::Bf16),
        Io::with_f32_grad(Dtype::Bf16),
        Io::same(Dtype::F16).with_vec4(),
        Io::with_f32_grad(Dtype::F16).with_vec4(),
        Io::same(Dtype::Bf16).with_vec4(),
        Io::with_f32_grad(Dtype::Bf16).with_vec4(),
    ];

    /// The storages of the sharded loss's steps (`crate::sharded`): f32, f16 and bf16 logits
    /// with the gradient stored like them or as f32; no vec4, never in place.
    #[cfg(test)]
    pub const SHARDED: [Io; 5] = [
        Io::F32,
        Io::same(Dtype::F16),
        Io::with_f32_grad(Dtype::F16),
        Io::same(Dtype::Bf16),
        Io::with_f32_grad(Dtype::Bf16),
    ];

    /// Input and gradient both of `dtype`.
    pub const fn same(dtype: Dtype) -> Io {
        Io {
            input: dtype,
            grad: dtype,
            vec4: false,
            in_place: false,
        }
    }

    /// Input of `dtype`, f32 gradient.
    #[cfg(test)]
    pub const fn with_f32_grad(dtype: Dtype) -> Io {
        Io {
            input: dtype,
            grad: Dtype::F32,
            vec4: false,
            in_place: false,
        }
    }

    /// Input and gradient both of `dtype`, the gradient written over the prediction.
    #[cfg(test)]
    pub const fn in_place(dtype: Dtype) -> Io {
        Io {
            in_place: true,
            ..Io::same(dtype)
        }
    }

    /// Whether the kernels are built for this combination: `grad` is `input`, or f32 where
    /// the gradient has its own buffer.
    pub fn is_supported(self) -> bool {
        self.grad == self.input || (self.grad == Dtype::F32 && !self.in_place)
    }

    /// This storage moved a vec4 (16 bytes) per lane at a time.
    pub const fn with_vec4(self) -> Io {
        Io { vec4: true, ..self }
    }

    /// Elements of the prediction per unit, what one invocation loads at a time: a word's
    /// ([`Dtype::per_word`]), four times that with `vec4`. Every length bound with `vec4`
    /// must be a multiple of it.
    pub const fn per_unit(self) -> usize {
        let per_word = self.input.per_word();
        if self.vec4 { 4 * per_word } else { per_word }
    }

    /// This storage with `vec4` where `lens` are all multiples of its vec4 unit (four f32 or
    /// eight 16-bit elements), else itself.
    pub fn with_vec4_if_whole(self, lens: &[usize]) -> Io {
        let v = self.with_vec4();
        if lens.iter().all(|l| l.is_multiple_of(v.per_unit())) {
            v
        } else {
            self
        }
    }

    /// The row driver's prediction binding's file and text (`shaders/common/preds_*.wgsl`).
    pub fn preds_prelude(self) -> (&'static str, &'static str) {
        if self.in_place {
            ("shaders/common/preds_in_place.wgsl", source::PREDS_IN_PLACE)
        } else {
            ("shaders/common/preds_read.wgsl", source::PREDS_READ)
        }
    }

    /// The input-storage prelude's file and text (`shaders/common/io_*.wgsl`).
    pub fn input_prelude(self) -> (&'static str, &'static str) {
        match (self.vec4, self.input) {
            (false, dtype) => dtype.prelude(),
            (true, Dtype::F32) => ("shaders/common/io_f32x4.wgsl", source::IO_F32X4),
            (true, Dtype::F16) => ("shaders/common/io_f16x8.wgsl", source::IO_F16X8),
            (true, Dtype::Bf16) => ("shaders/common/io_bf16x8.wgsl", source::IO_BF16X8),
        }
    }

    /// The gradient-store prelude's file and text (`shaders/common/grad_*.wgsl`); a 16-bit
    /// input's f32 gradient is stored an element at a time, whatever its unit.
    pub fn grad_prelude(self) -> (&'static str, &'static str) {
        match (self.vec4, self.input, self.grad) {
            (true, Dtype::F32, _) => ("shaders/common/grad_f32x4.wgsl", source::GRAD_F32X4),
            (_, _, Dtype::F32) => ("shaders/common/grad_f32.wgsl", source::GRAD_F32),
            (true, _, _) => ("shaders/common/grad_packed_x8.wgsl", source::GRAD_PACKED_X8),
            (false, _, _) => ("shaders/common/grad_packed.wgsl", source::GRAD_PACKED),
        }
    }
}

/// Every compute kernel of the crate: one per loss (its shader composed with its family's
/// driver), and the shared passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// A loss's kernel, by its shader's file stem (`shaders/<stem>.wgsl`; the losses'
    /// registry, `src/losses/mod.rs`, lists them).
    Loss(&'static str),
    /// Adds the per-workgroup partial sums into the loss value.
    ReducePartials,
    /// Class-index pre-pass: range check, count and weight sum of the rows that count.
    ClassCount,
    /// Turns the weight sum of the counted rows into the mean's divisor and scales.
    RowDivisor,
    /// Zeroes a step's atomics inside a compute pass (`ResidentLoss::record_in_pass`).
    ClearWords,
    /// Vocabulary-sharded softmax cross entropy, step 1: the shard's row maxima.
    ShardMax,
    /// Step 2: the shard's row sums against the all-reduced maxima.
    ShardSums,
    /// Step 3: the loss and the shard's gradient from the all-reduced sums.
    ShardLoss,
    /// The sharded mean's divisor and scales from the all-reduced sums.
    ShardDivisor,
}

pub use crate::bindings::{Access, Binding, Slot};
use crate::bindings::{
    CLASS_COUNT_BINDINGS, CLEAR_WORDS_BINDINGS, REDUCE_PARTIALS_BINDINGS, ROW_DIVISOR_BINDINGS,
    SHARD_DIVISOR_BINDINGS, SHARD_LOSS_BINDINGS, SHARD_MAX_BINDINGS, SHARD_SUMS_BINDINGS,
};

impl Kernel {
    /// Every kernel: each registered loss's, then the shared passes.
    #[cfg(test)]
    pub fn all() -> Vec<Kernel> {
        crate::losses::REGISTRY
            .iter()
            .map(|d| Kernel::Loss(d.stem()))
            .chain([
                Kernel::ReducePartials,
                Kernel::ClassCount,
                Kernel::RowDivisor,
                Kernel::ClearWords,
                Kernel::ShardMax,
                Kernel::ShardSums,
                Kernel::ShardLoss,
                Kernel::ShardDivisor,
            ])
            .collect()
    }

    /// The kernel that computes `loss`.
    pub fn for_loss(loss: &Loss) -> Kernel {
        Kernel::Loss(crate::losses::def(loss).stem())
    }

    /// The descriptor of a loss's kernel.
    fn loss_def(self) -> Option<&'static dyn crate::losses::LossDef> {
        match self {
            Kernel::Loss(stem) => crate::losses::REGISTRY
                .iter()
                .copied()
                .find(|d| d.stem() == stem),
            _ => None,
        }
    }

    /// A short name, used in labels: a loss kernel's shader stem.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Loss(stem) => stem,
            Kernel::ReducePartials => "reduce_partials",
            Kernel::ClassCount => "class_count",
            Kernel::RowDivisor => "row_divisor",
            Kernel::ClearWords => "clear_words",
            Kernel::ShardMax => "sharded_max",
            Kernel::ShardSums => "sharded_sums",
            Kernel::ShardLoss => "sharded_loss",
            Kernel::ShardDivisor => "sharded_divisor",
        }
    }

    /// The kernel's own file, relative to the crate root (`shaders/<name>.wgsl`): its entry
    /// point, and the imports its composition follows from.
    pub fn root(self) -> (&'static str, &'static str) {
        if let Some(d) = self.loss_def() {
            return d.shader();
        }
        let want = format!("shaders/{}.wgsl", self.name());
        SHADER_FILES
            .iter()
            .find(|(p, _)| *p == want)
            .copied()
            .unwrap_or(("", ""))
    }

    /// Whether the kernel reads predictions and targets and writes a gradient (its composition
    /// imports `<io>`), and so is built for each [`Io`]; the others ignore it.
    pub fn takes_io(self) -> bool {
        self.files(ReduceFlavor::Plain, Io::F32).is_ok_and(|files| {
            files
                .iter()
                .any(|(_, text)| imports(text).any(|i| i == "<io>"))
        })
    }

    /// The storages the kernel is built for: every [`Io`] for the elementwise family; every
    /// one, and each input type in place by words and by vec4s, for the row-wise family;
    /// [`Io::SHARDED`] for the sharded loss's three steps; f32 for the others.
    #[cfg(test)]
    pub fn ios(self) -> &'static [Io] {
        const ROWS: [Io; 16] = [
            Io::ALL[0],
            Io::ALL[1],
            Io::ALL[2],
            Io::ALL[3],
            Io::ALL[4],
            Io::ALL[5],
            Io::ALL[6],
            Io::ALL[7],
            Io::ALL[8],
            Io::ALL[9],
            Io::in_place(Dtype::F32),
            Io::in_place(Dtype::F32).with_vec4(),
            Io::in_place(Dtype::F16),
            Io::in_place(Dtype::F16).with_vec4(),
            Io::in_place(Dtype::Bf16),
            Io::in_place(Dtype::Bf16).with_vec4(),
        ];
        if matches!(
            self,
            Kernel::ShardMax | Kernel::ShardSums | Kernel::ShardLoss
        ) {
            return &Io::SHARDED;
        }
        match self.loss_def().map(|d| d.family()) {
            Some(crate::losses::Family::Elementwise(_)) => &Io::ALL,
            Some(crate::losses::Family::Rows(_)) => &ROWS,
            None => &[Io::F32],
        }
    }

    /// The files of the kernel's composition for `flavor` and `io`, each once, each after the
    /// files it imports, the kernel's own file last: `(path from the crate root, text)`.
    ///
    /// # Errors
    /// [`crate::Error::Gpu`] for an import that names no file or makes a cycle (a bug in the
    /// shaders, which `tests/shaders.rs` would have caught).
    pub fn files(
        self,
        flavor: ReduceFlavor,
        io: Io,
    ) -> crate::Result<Vec<(&'static str, &'static str)>> {
        fn visit(
            file: (&'static str, &'static str),
            flavor: ReduceFlavor,
            io: Io,
            open: &mut Vec<&'static str>,
            out: &mut Vec<(&'static str, &'static str)>,
        ) -> crate::Result<()> {
            if out.iter().any(|(p, _)| *p == file.0) {
                return Ok(());
            }
            if open.contains(&file.0) {
                return Err(crate::Error::Gpu(format!(
                    "shader imports form a cycle: {} imports {} again",
                    open.join(" -> "),
                    file.0
                )));
            }
            open.push(file.0);
            for name in imports(file.1) {
                let dep = resolve(name, flavor, io).ok_or_else(|| {
                    crate::Error::Gpu(format!("{}: `#import {name}` names no shader file", file.0))
                })?;
                visit(dep, flavor, io, open, out)?;
            }
            open.pop();
            out.push(file);
            Ok(())
        }
        let root = self.root();
        if root.0.is_empty() {
            return Err(crate::Error::Gpu(format!(
                "no shader file shaders/{}.wgsl",
                self.name()
            )));
        }
        let mut out = Vec::new();
        visit(root, flavor, io, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    /// The full WGSL source with the given reduction prelude and storage: [`Kernel::files`]
    /// joined, each `#import` line turned into a comment.
    ///
    /// # Errors
    /// As [`Kernel::files`].
    pub fn source_io(self, flavor: ReduceFlavor, io: Io) -> crate::Result<String> {
        let mut s = String::new();
        for (path, text) in self.files(flavor, io)? {
            s.push_str("// ---- ");
            s.push_str(path);
            s.push('\n');
            for line in text.lines() {
                if line.trim_start().starts_with("#import ") {
                    s.push_str("// ");
                }
                s.push_str(line);
                s.push('\n');
            }
        }
        Ok(s)
    }

    /// The kernel's bindings for `io`: [`Kernel::bindings`], with the prediction
    /// `read_write` where the gradient is written over it ([`Io::in_place`]).
    pub fn bindings_io(self, io: Io) -> Vec<Binding> {
        let mut v = self.bindings().to_vec();
        if io.in_place {
            for b in v.iter_mut().filter(|b| b.slot == Slot::Pred) {
                b.access = Access::ReadWrite;
            }
        }
        v
    }

    /// The kernel's bindings, all in `@group(0)`.
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Kernel::Loss(_) => self.loss_def().map_or(&[], |d| d.bindings()),
            Kernel::ReducePartials => &REDUCE_PARTIALS_BINDINGS,
            Kernel::ClassCount => &CLASS_COUNT_BINDINGS,
            Kernel::RowDivisor => &ROW_DIVISOR_BINDINGS,
            Kernel::ClearWords => &CLEAR_WORDS_BINDINGS,
            Kernel::ShardMax => &SHARD_MAX_BINDINGS,
            Kernel::ShardSums => &SHARD_SUMS_BINDINGS,
            Kernel::ShardLoss => &SHARD_LOSS_BINDINGS,
            Kernel::ShardDivisor => &SHARD_DIVISOR_BINDINGS,
        }
    }
}
