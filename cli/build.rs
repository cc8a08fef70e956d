//! Sets `cfg(skip_gpu_tests)` when `WGPU_LOSS_SKIP_GPU_TESTS` is set (to anything but "0"),
//! so GPU tests show as *ignored* on machines without an adapter, never as passed.
//! Without the variable, a GPU test on a machine without an adapter fails with a message that
//! says how to get one.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skip_gpu_tests)");
    println!("cargo::rerun-if-env-changed=WGPU_LOSS_SKIP_GPU_TESTS");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("WGPU_LOSS_SKIP_GPU_TESTS").is_ok_and(|v| !v.is_empty() && v != "0") {
        println!("cargo::rustc-cfg=skip_gpu_tests");
    }
}
