//! A loss from its name and keyword arguments, through the library's registry
//! ([`LossInfo`]): no loss is named here, so a loss added to the registry is taken as it is.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};
use wgpu_loss::Reduction;
use wgpu_loss::losses::{LossInfo, LossOption, OptionValue};

use crate::errors::to_py;

/// The keyword arguments every loss takes besides its options.
pub const COMMON: &str = "reduction, weight, pos_weight, upstream, want_grad";

/// An option's Python keyword: the registry's name with `_` for `-` (`label_smoothing`).
pub fn keyword(o: &LossOption) -> String {
    o.name.replace('-', "_")
}

/// The kind of an option's value in Python: `bool` (a switch), `int` or `float`.
pub fn kind(o: &LossOption) -> &'static str {
    if o.flag {
        "bool"
    } else if o.integer {
        "int"
    } else {
        "float"
    }
}

/// The loss named `name`: a registry name or alias (`softmax-ce`, `cross-entropy`), or the
/// same with `_` for `-` (`cross_entropy`, PyTorch's spelling).
///
/// # Errors
/// `ValueError` listing every loss and alias.
pub fn info(name: &str) -> PyResult<LossInfo> {
    LossInfo::named(name)
        .or_else(|| LossInfo::named(&name.replace('_', "-")))
        .ok_or_else(|| {
            let known: Vec<String> = LossInfo::all()
                .map(|i| match i.aliases() {
                    [] => i.name().to_string(),
                    a => format!("{} (or {})", i.name(), a.join(", ")),
                })
                .collect();
            PyValueError::new_err(format!(
                "no loss named {name:?}; the losses: {}",
                known.join(", ")
            ))
        })
}

/// The options of `info` as a list of keywords, for messages.
fn listed(info: &LossInfo) -> String {
    let names: Vec<String> = info.options().iter().map(keyword).collect();
    if names.is_empty() {
        format!("the {} loss has no options", info.name())
    } else {
        format!("the options of {}: {}", info.name(), names.join(", "))
    }
}

/// One option's value from Python: a switch takes a bool, an integer option an int (anything
/// with `__index__`, not a bool), a float option an int or a float (not a bool).
fn value(o: &LossOption, key: &str, v: &Bound<'_, PyAny>) -> PyResult<OptionValue> {
    let wrong = |want: &str| {
        let got = v
            .get_type()
            .name()
            .map_or_else(|_| "?".to_string(), |n| n.to_string());
        PyValueError::new_err(format!(
            "option {key} takes {want}, got {} of type {got}",
            v.repr().map_or_else(|_| "?".to_string(), |r| r.to_string())
        ))
    };
    // Python's bool, and numpy's (`numpy.bool_`, called `numpy.bool` since numpy 2).
    let type_name = v.get_type().name()?.to_string();
    let is_bool = v.is_instance_of::<PyBool>() || matches!(type_name.as_str(), "bool" | "bool_");
    if o.flag {
        if !is_bool {
            return Err(wrong("a bool (a switch)"));
        }
        let on: bool = v.extract().map_err(|_| wrong("a bool (a switch)"))?;
        return Ok(OptionValue::Int(i64::from(on)));
    }
    if is_bool {
        return Err(wrong(if o.integer { "an int" } else { "a float" }));
    }
    if o.integer {
        let n: i64 = v.extract().map_err(|_| wrong("an int"))?;
        Ok(OptionValue::Int(n))
    } else {
        let x: f64 = v.extract().map_err(|_| wrong("a float"))?;
        Ok(OptionValue::Float(x))
    }
}

/// The loss `info` with the options in `kwargs` (Python keywords, `_` or `-` alike), the
/// others at their defaults, validated by the library.
///
/// # Errors
/// `ValueError` for a keyword that is not one of the loss's options (naming the losses that
/// have it, and the loss's own options), an option given twice, a value of the wrong kind, or
/// a value the library refuses (its message).
pub fn build(info: &LossInfo, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<wgpu_loss::Loss> {
    let mut given: Vec<(&'static str, OptionValue)> = Vec::new();
    for (k, v) in kwargs.into_iter().flat_map(|d| d.iter()) {
        let key: String = k.extract()?;
        let name = key.replace('_', "-");
        let Some(o) = info.options().iter().find(|o| o.name == name) else {
            let others: Vec<&str> = LossInfo::all()
                .filter(|i| i.options().iter().any(|o| o.name == name))
                .map(|i| i.name())
                .collect();
            let elsewhere = if others.is_empty() {
                String::new()
            } else {
                format!(" ({key} is an option of {})", others.join(", "))
            };
            return Err(PyValueError::new_err(format!(
                "the {} loss takes no keyword {key:?}{elsewhere}; {}; every loss takes {COMMON}",
                info.name(),
                listed(info)
            )));
        };
        if given.iter().any(|(n, _)| *n == o.name) {
            return Err(PyValueError::new_err(format!(
                "option {} given twice",
                keyword(o)
            )));
        }
        given.push((o.name, value(o, &key, &v)?));
    }
    let lookup = |n: &str| given.iter().find(|(k, _)| *k == n).map(|&(_, v)| v);
    info.build(&lookup).map_err(to_py)
}

/// `mean`, `sum` or `none`.
///
/// # Errors
/// `ValueError` for anything else.
pub fn reduction(name: &str) -> PyResult<Reduction> {
    Reduction::ALL
        .into_iter()
        .find(|r| r.name() == name)
        .ok_or_else(|| {
            let names: Vec<String> = Reduction::ALL
                .iter()
                .map(|r| format!("{:?}", r.name()))
                .collect();
            PyValueError::new_err(format!(
                "reduction must be one of {}, got {name:?}",
                names.join(", ")
            ))
        })
}
