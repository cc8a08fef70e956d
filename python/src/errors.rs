//! The library's errors as Python exceptions, with the library's one-line messages.

use pyo3::PyErr;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use wgpu_loss::Error;

/// `ValueError` for bad input (shapes, empty input, options, weights, domains, class ids, and
/// inputs beyond what the device takes); `RuntimeError` for the device (no adapter, a device
/// that cannot be created, a GPU failure) and anything else.
pub fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::ShapeMismatch { .. }
        | Error::Empty { .. }
        | Error::InvalidOption { .. }
        | Error::OutOfDomain { .. }
        | Error::ClassOutOfRange { .. }
        | Error::Buffer { .. }
        | Error::DeviceLimit { .. } => PyValueError::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}

/// A panic caught at the boundary (there should be none: the library returns errors), as a
/// `RuntimeError` instead of PyO3's `PanicException`, which escapes `except Exception`.
pub fn panicked(payload: &(dyn std::any::Any + Send)) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string());
    PyRuntimeError::new_err(format!(
        "internal error in wgpu-loss (please report): {what}"
    ))
}
