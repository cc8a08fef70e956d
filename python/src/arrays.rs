//! Python objects as the library's array views: numpy arrays read in place, everything else
//! (`__dlpack__`, `__array__`, sequences) through numpy first, converted only where the
//! library cannot take the dtype as it is.

use numpy::{
    Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyReadwriteArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt};
use wgpu_loss::losses::LossInfo;
use wgpu_loss::{Target, Upstream};

/// The most axes the numpy crate's views take.
const MAX_AXES: usize = 32;

/// `obj` as a numpy array: itself when it is one (or a subclass), else
/// `numpy.from_dlpack(obj)` when it has `__dlpack__` (a CPU `torch.Tensor`: a view, no copy),
/// else `numpy.asarray(obj)` (`__array__`, the buffer protocol, nested sequences).
///
/// # Errors
/// `ValueError` naming `what` when numpy cannot read it (a CUDA tensor, a tensor that
/// requires grad, a ragged list), with numpy's (or the exporter's) reason.
pub fn ndarray<'py>(what: &str, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    static FROM_DLPACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = obj.py();
    let mut first = None;
    if obj.hasattr(intern!(py, "__dlpack__"))? {
        match FROM_DLPACK
            .import(py, "numpy", "from_dlpack")
            .and_then(|f| f.call1((obj,)))
        {
            Ok(a) => return as_untyped(what, a),
            Err(e) => first = Some(e),
        }
    }
    let converted = ASARRAY
        .import(py, "numpy", "asarray")
        .and_then(|f| f.call1((obj,)))
        .and_then(|a| as_untyped(what, a));
    let refused =
        |e: &PyErr| PyValueError::new_err(format!("{what}: cannot be read as an array: {e}"));
    match (converted, first) {
        // An exporter that refused (`__dlpack__` raised) and that numpy then wrapped whole, as
        // an object array: the exporter's reason is the one to give.
        (Ok(a), Some(e)) if a.dtype().kind() == b'O' => Err(refused(&e)),
        (Ok(a), _) => Ok(a),
        (Err(e), first) => Err(refused(first.as_ref().unwrap_or(&e))),
    }
}

fn as_untyped<'py>(what: &str, a: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    a.cast_into::<PyUntypedArray>().map_err(|e| {
        PyValueError::new_err(format!("{what}: numpy gave something not an array: {e}"))
    })
}

/// `a.astype(dtype)`: a converted copy.
fn astype<'py>(
    a: &Bound<'py, PyUntypedArray>,
    dtype: &str,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let py = a.py();
    a.call_method1(intern!(py, "astype"), (dtype,))?
        .cast_into::<PyUntypedArray>()
        .map_err(PyErr::from)
}

/// `a` read as `T` in place, or converted to `T` (`name`, numpy's name of `T`) where its
/// dtype is only equivalent up to byte order.
fn exact<'py, T: Element>(
    what: &str,
    a: Bound<'py, PyUntypedArray>,
    name: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let py = a.py();
    let a = if a.dtype().is_equiv_to(&numpy::dtype::<T>(py)) {
        a
    } else {
        astype(&a, name)?
    };
    typed(what, a)
}

/// `a` (whose dtype is `T`'s) as a read-only view. An array the numpy crate could not view
/// (unaligned data, strides that are not multiples of the element size, as in a view of a
/// structured array) is copied with `numpy.ascontiguousarray` first.
fn typed<'py, T: Element>(
    what: &str,
    a: Bound<'py, PyUntypedArray>,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let py = a.py();
    if a.ndim() > MAX_AXES {
        return Err(PyValueError::new_err(format!(
            "{what}: {} axes; at most {MAX_AXES} are taken",
            a.ndim()
        )));
    }
    let size = std::mem::size_of::<T>() as isize;
    let odd_strides = a
        .shape()
        .iter()
        .zip(a.strides())
        .any(|(&n, &s)| n > 1 && s % size != 0);
    let a = if !a.is_aligned() || odd_strides {
        static ASCONTIGUOUS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let f = ASCONTIGUOUS.import(py, "numpy", "ascontiguousarray")?;
        as_untyped(what, f.call1((a,))?)?
    } else {
        a
    };
    let a = a.cast_into::<PyArrayDyn<T>>().map_err(|e| {
        PyValueError::new_err(format!("{what}: not an array of the expected type: {e}"))
    })?;
    a.try_readonly()
        .map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// A float array as f32: float32 in place; any other float dtype (float64, float16, longdouble,
/// or float32 in the other byte order) converted.
///
/// # Errors
/// `ValueError` for a dtype that is not a float (integers, bool, complex, strings, objects).
pub fn floats<'py>(what: &str, obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    floats_of(what, ndarray(what, obj)?)
}

fn floats_of<'py>(
    what: &str,
    a: Bound<'py, PyUntypedArray>,
) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    let dtype = a.dtype();
    if dtype.kind() != b'f' {
        return Err(PyValueError::new_err(format!(
            "{what} must hold floats (float32; float64 and float16 are converted to float32), \
             got dtype {dtype}"
        )));
    }
    exact(what, a, "float32")
}

/// The target as the loss takes it.
pub enum TargetArray<'py> {
    /// Float targets.
    F32(PyReadonlyArrayDyn<'py, f32>),
    /// Class ids as int32 (also int8, int16, uint16, and uint8 for a loss taking class ids).
    I32(PyReadonlyArrayDyn<'py, i32>),
    /// Class ids as int64.
    I64(PyReadonlyArrayDyn<'py, i64>),
    /// Class ids as uint32.
    U32(PyReadonlyArrayDyn<'py, u32>),
}

impl TargetArray<'_> {
    /// The library's target over the array.
    pub fn target(&self) -> Target<'_> {
        match self {
            TargetArray::F32(a) => a.as_array().into(),
            TargetArray::I32(a) => a.as_array().into(),
            TargetArray::I64(a) => a.as_array().into(),
            TargetArray::U32(a) => a.as_array().into(),
        }
    }
}

/// The target of `loss`: floats as f32 (converted as [`floats`]); int32, int64 and uint32 class
/// ids in place; int8, int16 and uint16 widened to int32. As the command line reads `.npy`
/// targets: bool is 0/1 float targets and uint8 is float targets 0 to 255 for a loss that
/// takes float targets only; for one that takes class ids, uint8 is class ids and bool is
/// refused. Integer targets given to a loss without class ids go through, for the library to
/// refuse with its message.
///
/// # Errors
/// `ValueError` for bool targets of a loss taking class ids, uint64 (ids past 2^63 have no
/// int64) and dtypes that are neither floats nor integers.
pub fn target<'py>(obj: &Bound<'py, PyAny>, info: &LossInfo) -> PyResult<TargetArray<'py>> {
    let what = "target";
    let a = ndarray(what, obj)?;
    let dtype = a.dtype();
    let classes = info.takes_classes();
    Ok(match (dtype.kind(), dtype.itemsize()) {
        (b'f', _) => TargetArray::F32(floats_of(what, a)?),
        (b'b', _) if classes => {
            return Err(PyValueError::new_err(format!(
                "target: a bool target is 0/1 float targets, and the {} loss takes class ids as \
                 integers (int32, int64, uint32, ...) and probabilities as floats",
                info.name()
            )));
        }
        (b'b', _) | (b'u', 1) if !classes => TargetArray::F32(typed(what, astype(&a, "float32")?)?),
        (b'i' | b'u', 1 | 2) => TargetArray::I32(typed(what, astype(&a, "int32")?)?),
        (b'i', 4) => TargetArray::I32(exact(what, a, "int32")?),
        (b'i', 8) => TargetArray::I64(exact(what, a, "int64")?),
        (b'u', 4) => TargetArray::U32(exact(what, a, "uint32")?),
        (b'u', 8) => {
            return Err(PyValueError::new_err(
                "target: uint64 class ids are not read (ids past 2^63 have no int64): pass \
                 int64, int32 or uint32",
            ));
        }
        _ => {
            return Err(PyValueError::new_err(format!(
                "target must hold floats (float targets) or integers (class ids), got dtype \
                 {dtype}"
            )));
        }
    })
}

/// The upstream gradient as given: none, a scalar, or an array.
pub enum UpstreamArg<'py> {
    /// Not given: ones.
    Ones,
    /// A number, or an array of no axes (a 0-d `torch.Tensor`, the `grad_output` of a mean).
    Scalar(f32),
    /// One value per loss (with reduction `none`).
    Array(PyReadonlyArrayDyn<'py, f32>),
}

impl UpstreamArg<'_> {
    /// The library's upstream gradient.
    pub fn upstream(&self) -> Upstream<'_> {
        match self {
            UpstreamArg::Ones => Upstream::Ones,
            UpstreamArg::Scalar(g) => Upstream::Scalar(*g),
            UpstreamArg::Array(a) => Upstream::Array(a.as_array()),
        }
    }
}

/// `upstream`: `None`, a Python number, or anything [`floats`] reads (an array of no axes is
/// a scalar).
///
/// # Errors
/// `ValueError` for a bool, or what [`floats`] refuses.
pub fn upstream<'py>(obj: Option<&Bound<'py, PyAny>>) -> PyResult<UpstreamArg<'py>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(UpstreamArg::Ones);
    };
    if obj.is_instance_of::<PyBool>() {
        return Err(PyValueError::new_err(
            "upstream must be a number or an array of floats, got a bool",
        ));
    }
    if obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>() {
        return Ok(UpstreamArg::Scalar(obj.extract::<f64>()? as f32));
    }
    let a = floats("upstream", obj)?;
    if a.as_array().ndim() == 0 {
        let g = a.as_array().iter().next().copied().unwrap_or(1.0);
        return Ok(UpstreamArg::Scalar(g));
    }
    Ok(UpstreamArg::Array(a))
}

/// `grad_out`: a writable, aligned float32 numpy array, written in place.
///
/// # Errors
/// `ValueError` for anything else (another dtype, a read-only array, an array another
/// argument of the call reads, an unaligned one, one of more than 32 axes).
pub fn grad_out<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadwriteArrayDyn<'py, f32>> {
    let bad = |why: String| PyValueError::new_err(format!("grad_out: {why}"));
    let a = obj
        .cast::<PyArrayDyn<f32>>()
        .map_err(|_| bad("must be a numpy array of float32, written in place".into()))?;
    let size = std::mem::size_of::<f32>() as isize;
    let odd_strides = a
        .shape()
        .iter()
        .zip(a.strides())
        .any(|(&n, &s)| n > 1 && s % size != 0);
    if !a.is_aligned() || odd_strides || a.ndim() > MAX_AXES {
        return Err(bad(
            "must be an aligned float32 array of at most 32 axes (np.empty_like(pred))".into(),
        ));
    }
    a.try_readwrite().map_err(|e| {
        bad(format!(
            "cannot be written: {e} (read-only, or an input of the same call)"
        ))
    })
}
