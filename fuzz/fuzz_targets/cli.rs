//! Bytes into a `wgpu-loss` command line, parsed and checked by the CLI's checking half only
//! (`cli::check_only`: no GPU, no work); the encoding, the fixtures and the properties are in
//! `props/cli.rs` (shared with tests/fuzz_regressions.rs).

#![no_main]

use wgpu_loss_cli as cli;

#[path = "../props/cli.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::check(data));
