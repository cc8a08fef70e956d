//! The `wgpu-loss` command line: with no arguments, the main job (every loss on a built-in
//! batch, GPU against the CPU reference); `compute` for a loss over `.npy` files; `bench` for
//! GPU against CPU timings. Exit codes: 0 success, 1 failure (no adapter, GPU error, GPU and
//! CPU disagree), 2 bad input or usage.

fn main() -> std::process::ExitCode {
    wgpu_loss_cli::main()
}
