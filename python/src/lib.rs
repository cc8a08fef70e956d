//! `wgpu_loss._native`, the extension module of the Python package `wgpu_loss`: the
//! library's three devices ([`Context`]), its registry ([`losses`]), and the conversion of
//! Python arrays to the library's views (`arrays`) and of keyword arguments to a loss and its
//! options (`options`).
//!
//! Nothing here names a loss: the loss and its options come from the library's registry
//! (`wgpu_loss::losses::LossInfo`), so a loss added there is available from Python as it is.
//! The work runs with the GIL released; a panic (there should be none) is caught at the
//! boundary and raised as `RuntimeError`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use wgpu_loss::cpu::Cpu;
use wgpu_loss::losses::LossInfo;
use wgpu_loss::ndarray::ArrayViewMutD;
use wgpu_loss::reference::Reference;
use wgpu_loss::{Compute, ContextOptions, GpuContext, Loss, LossArgs, LossOutput, Reduction};

mod arrays;
mod errors;
mod options;

use arrays::{TargetArray, UpstreamArg};
use errors::{panicked, to_py};

/// Where a context computes.
enum Engine {
    /// The GPU, through wgpu.
    Gpu(Box<GpuContext>),
    /// The fast f32 CPU path, on every core.
    Cpu,
    /// The f64 reference, rounded once to f32.
    Reference,
}

impl Engine {
    fn device(&self) -> &(dyn Compute + Sync) {
        match self {
            Engine::Gpu(ctx) => ctx.as_ref(),
            Engine::Cpu => &Cpu,
            Engine::Reference => &Reference,
        }
    }

    /// The loss with its gradient written into `grad` (shaped like the prediction): by the
    /// GPU and the fast CPU path directly, by the reference copied from its result
    /// (`Compute::compute_into`).
    fn compute_into(
        &self,
        loss: &Loss,
        args: &LossArgs<'_>,
        grad: ArrayViewMutD<'_, f32>,
    ) -> wgpu_loss::Result<LossOutput<f32>> {
        self.device().compute_into(loss, args, grad)
    }

    fn name(&self) -> &'static str {
        match self {
            Engine::Gpu(_) => "gpu",
            Engine::Cpu => "cpu",
            Engine::Reference => "reference",
        }
    }
}

/// Runs `f` with the GIL released; the library's errors become Python exceptions and a
/// panic a `RuntimeError`.
fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> wgpu_loss::Result<T> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py(e)),
        Err(payload) => Err(panicked(&*payload)),
    }
}

/// One call's inputs, read from Python: the arrays borrowed (read-only) for the call.
struct Call<'py> {
    loss: Loss,
    pred: PyReadonlyArrayDyn<'py, f32>,
    target: TargetArray<'py>,
    weight: Option<PyReadonlyArrayDyn<'py, f32>>,
    pos_weight: Option<PyReadonlyArrayDyn<'py, f32>>,
    upstream: UpstreamArg<'py>,
    reduction: Reduction,
    divisor: Option<f32>,
    want_grad: bool,
    want_lse: bool,
}

/// The keyword arguments of a call, as Python gives them.
struct Keywords<'a, 'py> {
    reduction: &'a str,
    divisor: Option<f32>,
    weight: Option<&'a Bound<'py, PyAny>>,
    pos_weight: Option<&'a Bound<'py, PyAny>>,
    upstream: Option<&'a Bound<'py, PyAny>>,
    want_grad: bool,
    want_lse: bool,
    options: Option<&'a Bound<'py, PyDict>>,
}

impl<'py> Call<'py> {
    /// The loss (by the registry, with its options), then the arrays.
    fn read(
        loss: &str,
        pred: &Bound<'py, PyAny>,
        target: &Bound<'py, PyAny>,
        kw: Keywords<'_, 'py>,
    ) -> PyResult<Self> {
        let info = options::info(loss)?;
        let loss = options::build(&info, kw.options)?;
        let reduction = options::reduction(kw.reduction)?;
        let optional = |what: &str, a: Option<&Bound<'py, PyAny>>| {
            a.filter(|a| !a.is_none())
                .map(|a| arrays::floats(what, a))
                .transpose()
        };
        Ok(Call {
            loss,
            pred: arrays::floats("pred", pred)?,
            target: arrays::target(target, &info)?,
            weight: optional("weight", kw.weight)?,
            pos_weight: optional("pos_weight", kw.pos_weight)?,
            upstream: arrays::upstream(kw.upstream)?,
            reduction,
            divisor: kw.divisor,
            want_grad: kw.want_grad,
            want_lse: kw.want_lse,
        })
    }

    /// The library's arguments: views of the arrays, nothing copied.
    fn args(&self) -> LossArgs<'_> {
        let mut args = LossArgs::new(self.pred.as_array(), self.target.target())
            .reduction(self.reduction)
            .upstream(self.upstream.upstream())
            .want_grad(self.want_grad)
            .want_lse(self.want_lse);
        if let Some(w) = &self.weight {
            args = args.weight(w.as_array());
        }
        if let Some(q) = &self.pos_weight {
            args = args.pos_weight(q.as_array());
        }
        if let Some(d) = self.divisor {
            args = args.divisor(d);
        }
        args
    }
}

/// The result of `Context.compute`.
///
/// - `value`: the loss value (a float) for reduction `mean` or `sum`; `None` for `none`.
/// - `grad`: the gradient with respect to the prediction, a float32 array of its shape,
///   times the upstream gradient; `None` when `want_grad=False`.
/// - `losses`: for reduction `none`, the per-element losses (the prediction's shape) or the
///   per-row losses of a row-wise loss (its shape without the last axis); else `None`.
/// - `counted`: the elements (elementwise losses) or the rows that are not ignored (row-wise).
/// - `lse`: with `want_lse=True` (softmax-ce), each row's log-sum-exp of the logits the softmax
///   sees (after `softcap`), ignored rows included, a float32 array shaped like the rows;
///   else `None`.
#[pyclass(frozen, name = "LossOutput", module = "wgpu_loss")]
struct PyLossOutput {
    #[pyo3(get)]
    value: Option<f32>,
    #[pyo3(get)]
    grad: Option<Py<PyArrayDyn<f32>>>,
    #[pyo3(get)]
    losses: Option<Py<PyArrayDyn<f32>>>,
    #[pyo3(get)]
    counted: usize,
    #[pyo3(get)]
    lse: Option<Py<PyArrayDyn<f32>>>,
}

#[pymethods]
impl PyLossOutput {
    fn __repr__(&self, py: Python<'_>) -> String {
        use numpy::PyUntypedArrayMethods;
        let shape = |a: &Option<Py<PyArrayDyn<f32>>>| {
            a.as_ref().map_or("None".to_string(), |a| {
                format!("array{:?}", a.bind(py).shape())
            })
        };
        let lse = match &self.lse {
            Some(_) => format!(", lse={}", shape(&self.lse)),
            None => String::new(),
        };
        format!(
            "LossOutput(value={}, grad={}, losses={}, counted={}{lse})",
            self.value.map_or("None".to_string(), |v| v.to_string()),
            shape(&self.grad),
            shape(&self.losses),
            self.counted
        )
    }
}

/// Where losses are computed: `device="gpu"` (through wgpu, on the adapter found or the one
/// `adapter` names), `"cpu"` (the fast f32 path on every core) or `"reference"` (the f64
/// reference, rounded once to f32).
///
/// A context is safe to share between threads; each call releases the GIL while it computes.
/// `adapter` (part of an adapter's name, any case), `backend` (`"vulkan"`, `"metal"`,
/// `"dx12"`, `"gl"`) and `memory_budget` (bytes of chunk buffers a call holds, default 256 MiB)
/// apply to the GPU only.
///
/// Raises `RuntimeError` when no adapter is found or the device cannot be created, and
/// `ValueError` for an unknown device or backend.
#[pyclass(frozen, name = "Context", module = "wgpu_loss")]
struct Context {
    engine: Engine,
}

#[pymethods]
impl Context {
    #[new]
    #[pyo3(signature = (device = "gpu", *, adapter = None, backend = None, memory_budget = None))]
    fn new(
        py: Python<'_>,
        device: &str,
        adapter: Option<String>,
        backend: Option<&str>,
        memory_budget: Option<i64>,
    ) -> PyResult<Self> {
        let gpu_only = [
            ("adapter", adapter.is_some()),
            ("backend", backend.is_some()),
            ("memory_budget", memory_budget.is_some()),
        ];
        let engine = match device {
            "gpu" => {
                let backends = backend.map(backend_of).transpose()?;
                let memory_budget = memory_budget
                    .map(|b| {
                        u64::try_from(b).map_err(|_| {
                            PyValueError::new_err(format!(
                                "memory_budget must be >= 0 bytes, got {b}"
                            ))
                        })
                    })
                    .transpose()?;
                let options = ContextOptions {
                    adapter_name: adapter,
                    backends,
                    memory_budget,
                    ..Default::default()
                };
                Engine::Gpu(Box::new(detached(py, || {
                    GpuContext::with_options(options)
                })?))
            }
            "cpu" | "reference" => {
                if let Some((name, _)) = gpu_only.iter().find(|(_, given)| *given) {
                    return Err(PyValueError::new_err(format!(
                        "{name} applies to device=\"gpu\" only, not {device:?}"
                    )));
                }
                if device == "cpu" {
                    Engine::Cpu
                } else {
                    Engine::Reference
                }
            }
            _ => {
                return Err(PyValueError::new_err(format!(
                    "device must be \"gpu\", \"cpu\" or \"reference\", got {device:?}"
                )));
            }
        };
        Ok(Context { engine })
    }

    /// `"gpu"`, `"cpu"` or `"reference"`.
    #[getter]
    fn device(&self) -> &'static str {
        self.engine.name()
    }

    /// The GPU adapter in use (name, backend, type), or `None` off the GPU.
    #[getter]
    fn adapter(&self) -> Option<String> {
        match &self.engine {
            Engine::Gpu(ctx) => Some(ctx.adapter_summary()),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        match self.adapter() {
            Some(a) => format!("Context(device='gpu', adapter='{a}')"),
            None => format!("Context(device='{}')", self.engine.name()),
        }
    }

    /// The loss `loss` (a registry name or alias, `_` or `-` alike) of `pred` against
    /// `target`: a `LossOutput` with the value (or per-element losses for `reduction="none"`)
    /// and, unless `want_grad=False`, the gradient with respect to `pred`. The loss's options
    /// are keyword arguments (`delta=1.5`, `label_smoothing=0.1`; `wgpu_loss.losses()` lists
    /// them).
    ///
    /// `grad_out`, a float32 array of `pred`'s shape, receives the gradient instead of a new
    /// array (and is `r.grad`): on `device="cpu"` the library writes into it directly, so a
    /// loop that reuses it allocates nothing; elsewhere the gradient is copied into it.
    /// `want_lse=True` (softmax-ce) also returns each row's log-sum-exp as `r.lse`.
    #[pyo3(signature = (loss, pred, target, *, reduction = "mean", divisor = None, weight = None, pos_weight = None, upstream = None, want_grad = true, grad_out = None, want_lse = false, **options))]
    #[allow(clippy::too_many_arguments)]
    fn compute<'py>(
        &self,
        py: Python<'py>,
        loss: &str,
        pred: &Bound<'py, PyAny>,
        target: &Bound<'py, PyAny>,
        reduction: &str,
        divisor: Option<f32>,
        weight: Option<&Bound<'py, PyAny>>,
        pos_weight: Option<&Bound<'py, PyAny>>,
        upstream: Option<&Bound<'py, PyAny>>,
        want_grad: bool,
        grad_out: Option<&Bound<'py, PyAny>>,
        want_lse: bool,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<PyLossOutput> {
        let kw = Keywords {
            reduction,
            divisor,
            weight,
            pos_weight,
            upstream,
            want_grad,
            want_lse,
            options,
        };
        let call = Call::read(loss, pred, target, kw)?;
        let args = call.args();
        let Some(grad_out) = grad_out.filter(|g| !g.is_none()) else {
            let device = self.engine.device();
            let out = detached(py, || device.compute(&call.loss, &args))?;
            return Ok(PyLossOutput {
                value: out.value,
                grad: out.grad.map(|g| g.into_pyarray(py).unbind()),
                losses: out.losses.map(|l| l.into_pyarray(py).unbind()),
                counted: out.counted,
                lse: out.lse.map(|l| l.into_pyarray(py).unbind()),
            });
        };
        if !want_grad {
            return Err(PyValueError::new_err(
                "grad_out: want_grad=False computes no gradient to write",
            ));
        }
        let mut written = arrays::grad_out(grad_out)?;
        let view = written.as_array_mut();
        if view.shape() != args.pred.shape() {
            return Err(to_py(wgpu_loss::Error::ShapeMismatch {
                what: "grad_out",
                expected: args.pred.shape().to_vec(),
                got: view.shape().to_vec(),
            }));
        }
        let engine = &self.engine;
        let out = detached(py, move || engine.compute_into(&call.loss, &args, view))?;
        let grad = written.as_unbound().clone_ref(py);
        Ok(PyLossOutput {
            value: out.value,
            grad: Some(grad),
            losses: out.losses.map(|l| l.into_pyarray(py).unbind()),
            counted: out.counted,
            lse: out.lse.map(|l| l.into_pyarray(py).unbind()),
        })
    }

    /// The value and the gradient, as a tuple `(value, grad)`: `compute` for reduction `mean`
    /// or `sum` (`"none"` is a `ValueError`: use `compute`).
    #[pyo3(signature = (loss, pred, target, *, reduction = "mean", divisor = None, weight = None, pos_weight = None, upstream = None, **options))]
    #[allow(clippy::too_many_arguments)]
    fn value_and_grad<'py>(
        &self,
        py: Python<'py>,
        loss: &str,
        pred: &Bound<'py, PyAny>,
        target: &Bound<'py, PyAny>,
        reduction: &str,
        divisor: Option<f32>,
        weight: Option<&Bound<'py, PyAny>>,
        pos_weight: Option<&Bound<'py, PyAny>>,
        upstream: Option<&Bound<'py, PyAny>>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(f32, Bound<'py, PyArrayDyn<f32>>)> {
        let kw = Keywords {
            reduction,
            divisor,
            weight,
            pos_weight,
            upstream,
            want_grad: true,
            want_lse: false,
            options,
        };
        let call = Call::read(loss, pred, target, kw)?;
        let (args, device) = (call.args(), self.engine.device());
        let out = detached(py, || device.value_and_grad(&call.loss, args))?;
        Ok((out.value, out.grad.into_pyarray(py)))
    }

    /// The value alone, without computing the gradient: reduction `mean` or `sum` (`"none"`
    /// is a `ValueError`: use `compute`).
    #[pyo3(signature = (loss, pred, target, *, reduction = "mean", divisor = None, weight = None, pos_weight = None, **options))]
    #[allow(clippy::too_many_arguments)]
    fn value<'py>(
        &self,
        py: Python<'py>,
        loss: &str,
        pred: &Bound<'py, PyAny>,
        target: &Bound<'py, PyAny>,
        reduction: &str,
        divisor: Option<f32>,
        weight: Option<&Bound<'py, PyAny>>,
        pos_weight: Option<&Bound<'py, PyAny>>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<f32> {
        let kw = Keywords {
            reduction,
            divisor,
            weight,
            pos_weight,
            upstream: None,
            want_grad: false,
            want_lse: false,
            options,
        };
        let call = Call::read(loss, pred, target, kw)?;
        let (args, device) = (call.args(), self.engine.device());
        detached(py, || device.value(&call.loss, args))
    }
}

/// `"vulkan"`, `"metal"`, `"dx12"` or `"gl"` as wgpu's backends.
fn backend_of(name: &str) -> PyResult<wgpu_loss::wgpu::Backends> {
    use wgpu_loss::wgpu::Backends;
    match name {
        "vulkan" => Ok(Backends::VULKAN),
        "metal" => Ok(Backends::METAL),
        "dx12" => Ok(Backends::DX12),
        "gl" => Ok(Backends::GL),
        _ => Err(PyValueError::new_err(format!(
            "backend must be \"vulkan\", \"metal\", \"dx12\" or \"gl\", got {name:?}"
        ))),
    }
}

/// Every loss of the library's registry, in its order: a list of dicts with `name`,
/// `aliases`, `about`, `row_wise`, `takes_weight`, `takes_pos_weight`, `takes_classes` and
/// `options`, each option a dict with `name` (the Python keyword), `default`, `help` and
/// `kind` (`"float"`, `"int"` or `"bool"`).
#[pyfunction]
fn losses(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    for info in LossInfo::all() {
        let opts = PyList::empty(py);
        for o in info.options() {
            let d = PyDict::new(py);
            d.set_item("name", options::keyword(o))?;
            match options::kind(o) {
                "bool" => d.set_item("default", o.default != 0.0)?,
                "int" => d.set_item("default", o.default as i64)?,
                _ => d.set_item("default", o.default)?,
            }
            d.set_item("help", o.help)?;
            d.set_item("kind", options::kind(o))?;
            opts.append(d)?;
        }
        let d = PyDict::new(py);
        d.set_item("name", info.name())?;
        d.set_item("aliases", info.aliases().to_vec())?;
        d.set_item("about", info.about())?;
        d.set_item("row_wise", info.is_row_wise())?;
        d.set_item("takes_weight", info.takes_weight())?;
        d.set_item("takes_pos_weight", info.takes_pos_weight())?;
        d.set_item("takes_classes", info.takes_classes())?;
        d.set_item("options", opts)?;
        list.append(d)?;
    }
    Ok(list)
}

/// The extension module of `wgpu_loss` (import `wgpu_loss`, not this).
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Context>()?;
    m.add_class::<PyLossOutput>()?;
    m.add_function(wrap_pyfunction!(losses, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
