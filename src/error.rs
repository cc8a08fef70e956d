//! The crate's error type. Every check that can fail runs before anything is dispatched,
//! except the probability-domain checks (BCE, categorical cross entropy) and the class-index
//! range check, which the kernels themselves perform (an integer atomic that keeps the first
//! offender) so that GPU-resident inputs are checked too.

/// Everything that can go wrong in `wgpu-loss`. No call in this crate panics on bad input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two arrays that must agree in shape do not.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Which argument is wrong (for example `"target"`).
        what: &'static str,
        /// The shape it must have (or, for broadcast arguments, the shape it must end like).
        expected: Vec<usize>,
        /// The shape it has.
        got: Vec<usize>,
    },

    /// The prediction has no elements; a loss over nothing is not defined.
    #[error("empty input: the prediction has shape {shape:?}, with no elements")]
    Empty {
        /// The shape of the empty prediction.
        shape: Vec<usize>,
    },

    /// An option is outside its domain (δ ≤ 0, a negative weight, ...).
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name, as in the API and the CLI (`delta`, `weight`, ...).
        option: &'static str,
        /// Why it is rejected.
        reason: String,
    },

    /// An input value is outside the loss's domain (a BCE probability outside [0, 1]).
    #[error("{what} element {index} (flat, row-major) is {value}, outside {domain}")]
    OutOfDomain {
        /// Which input (`"prediction"`).
        what: &'static str,
        /// Flat row-major index of the first offending element.
        index: usize,
        /// Its value.
        value: f32,
        /// The allowed domain, as text (`"[0, 1]"`).
        domain: &'static str,
    },

    /// A class-index target is neither in `[0, C)` nor `ignore_index`.
    #[error(
        "target class {class} of row {row} is outside [0, {classes}) and is not the ignore_index"
    )]
    ClassOutOfRange {
        /// Flat index of the first offending row.
        row: usize,
        /// Its class index.
        class: i64,
        /// The number of classes `C`.
        classes: usize,
    },

    /// A caller's buffer given to the GPU-resident API is unusable (missing, unexpected,
    /// without the usage it needs, misaligned, or too small).
    #[error("buffer {what}: {reason}")]
    Buffer {
        /// Which buffer (`"pred"`, `"target"`, `"grad"`, `"output"`, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// No adapter was found (or none matched `WGPU_ADAPTER_NAME` or
    /// `ContextOptions::adapter_name`).
    #[error(
        "no GPU adapter found{detail}. Install a GPU driver with Vulkan, Metal or DX12 support, \
         or Mesa's software Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`)"
    )]
    NoAdapter {
        /// Extra context, such as the adapters that were seen; starts with ": " when present.
        detail: String,
    },

    /// The adapter refused to create a device.
    #[error("could not create a device on the adapter: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),

    /// The input needs more than the device allows.
    #[error("device limit exceeded: {what} needs {needed}, the device allows {limit}")]
    DeviceLimit {
        /// The limit or quantity concerned.
        what: &'static str,
        /// What this call needs.
        needed: u64,
        /// What the device allows.
        limit: u64,
    },

    /// The device lacks a capability the request needs; `hint` says what to do instead.
    #[error("{what} is not supported on this device: {reason}. {hint}")]
    Unsupported {
        /// What was asked for (`"f16 storage"`).
        what: &'static str,
        /// The capability the device lacks.
        reason: String,
        /// What to do instead.
        hint: &'static str,
    },

    /// Mapping a result buffer for reading failed.
    #[error("reading results back from the GPU failed: {0}")]
    Map(#[from] wgpu::BufferAsyncError),

    /// Waiting for the GPU failed (device lost, or a timeout).
    #[error("waiting for the GPU failed: {0}")]
    Poll(#[from] wgpu::PollError),

    /// wgpu reported an error (validation, out of memory, internal) for this call.
    #[error("GPU error: {0}")]
    Gpu(String),
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
