//! Arbitrary bytes into the CLI's `.npy` reader (`parse_f32`, `parse_target`); the
//! properties are in `props/npy.rs` (shared with tests/fuzz_regressions.rs).

#![no_main]

#[allow(dead_code)]
#[path = "../../cli/src/npy.rs"]
mod npy;

#[path = "../props/npy.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::check(data));
