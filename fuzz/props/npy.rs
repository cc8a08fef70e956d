//! The properties of the `npy` fuzz target, shared with `tests/fuzz_regressions.rs` (which
//! includes this file by path, as the target does): whatever the bytes, `npy::parse_f32` and
//! `npy::parse_target` never panic; an error is one line (no newline, no control character)
//! of at most [`MAX_MESSAGE_CHARS`] characters; an array parsed has as many elements as the
//! product of its shape, and no more than the input's bytes can hold; the two entry points
//! agree (floats are read alike by both, integers and bool only by `parse_target`); and
//! where `ndarray-npy` also reads the bytes as f32, i32, i64, u8 or bool, it reads the same
//! values.
//!
//! The includer provides `crate::npy` (`#[path = ".../cli/src/npy.rs"] mod npy;`).
//! Allocation limits are the fuzzer's (`-malloc_limit_mb=64`); here, the element count is
//! checked against the input's size, so an array is never larger than its input.

use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;

use crate::npy::{self, TargetData};

/// The longest error message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// Panics unless `msg` is one line of at most [`MAX_MESSAGE_CHARS`] characters without any
/// control character.
pub fn check_message(what: &str, msg: &str) {
    assert!(
        !msg.chars().any(char::is_control),
        "{what}: the error has a control character: {msg:?}"
    );
    let n = msg.chars().count();
    assert!(
        n <= MAX_MESSAGE_CHARS,
        "{what}: the error is {n} characters long: {msg:?}"
    );
    assert!(!msg.is_empty(), "{what}: an empty error");
}

/// Panics unless `a` has as many elements as its shape's product, and no more than `len`
/// bytes of input at `item` bytes each (the smallest item size it may come from) can hold.
fn check_array<T>(what: &str, a: &ArrayD<T>, item: usize, len: usize) {
    let product = a
        .shape()
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .expect("the shape's product fits usize");
    assert_eq!(a.len(), product, "{what}: element count against shape");
    assert!(
        a.len().saturating_mul(item) <= len,
        "{what}: {} elements of at least {item} bytes from {len} bytes of input",
        a.len()
    );
    assert!(
        a.is_standard_layout(),
        "{what}: the array is not in C order"
    );
}

/// `a` and `b` hold the same values in the same shape (f32 compared by bits).
fn same_f32(a: &ArrayD<f32>, b: &ArrayD<f32>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Runs both entry points over `data` and checks every property; panics on a violation.
pub fn check(data: &[u8]) {
    let floats = npy::parse_f32(data);
    let target = npy::parse_target(data);
    match &floats {
        Ok(a) => check_array("parse_f32", a, 2, data.len()),
        Err(e) => check_message("parse_f32", e),
    }
    match &target {
        Ok(TargetData::F32(a)) => check_array("parse_target f32", a, 2, data.len()),
        Ok(TargetData::I32(a)) => check_array("parse_target i32", a, 1, data.len()),
        Ok(TargetData::I64(a)) => check_array("parse_target i64", a, 4, data.len()),
        Ok(TargetData::U8(a)) => check_array("parse_target u8", a, 1, data.len()),
        Ok(TargetData::Bool(a)) => check_array("parse_target bool", a, 1, data.len()),
        Err(e) => check_message("parse_target", e),
    }
    // The two entry points agree: floats are floats for both; integers only for targets.
    match (&floats, &target) {
        (Ok(a), Ok(TargetData::F32(b))) => {
            assert!(
                same_f32(a, b),
                "parse_f32 and parse_target read different floats"
            );
        }
        (Ok(_), other) => panic!("parse_f32 read floats, parse_target gave {other:?}"),
        (Err(e), Ok(TargetData::F32(_))) => {
            panic!("parse_target read floats, parse_f32 refused them: {e}")
        }
        (Err(_), _) => {}
    }
    // Differential: where ndarray-npy reads the same bytes, it reads the same values. Only
    // once our reader has accepted them, so that their sizes are known to be real (ndarray-npy
    // allocates what a header claims).
    match &target {
        Ok(TargetData::F32(a)) => {
            if let Ok(b) = ArrayD::<f32>::read_npy(data) {
                assert!(same_f32(a, &b), "ndarray-npy reads other f32 values");
            }
        }
        Ok(TargetData::I32(a)) => {
            if let Ok(b) = ArrayD::<i32>::read_npy(data) {
                assert_eq!(a, &b, "ndarray-npy reads other i32 values");
            }
        }
        Ok(TargetData::I64(a)) => {
            if let Ok(b) = ArrayD::<i64>::read_npy(data) {
                assert_eq!(a, &b, "ndarray-npy reads other i64 values");
            }
        }
        Ok(TargetData::U8(a)) => {
            if let Ok(b) = ArrayD::<u8>::read_npy(data) {
                assert_eq!(a, &b, "ndarray-npy reads other u8 values");
            }
        }
        Ok(TargetData::Bool(a)) => {
            if let Ok(b) = ArrayD::<bool>::read_npy(data) {
                assert_eq!(a, &b, "ndarray-npy reads other bool values");
            }
        }
        Err(_) => {}
    }
}
