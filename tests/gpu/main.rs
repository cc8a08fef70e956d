//! GPU tests: every GPU result is compared with the f64 CPU reference (`wgpu_loss::reference`).
//! `<loss>.rs` holds a loss's tests; the other modules cut across losses.
//!
//! These tests need an adapter (on a machine without a GPU: `apt-get install
//! mesa-vulkan-drivers`). Without one they fail with that advice; with
//! `WGPU_LOSS_SKIP_GPU_TESTS=1` at build time they show as ignored instead.

#[macro_use]
mod common;

mod accuracy;
mod bce;
mod bce_with_logits;
mod buffers;
mod categorical_cross_entropy;
mod chunks;
mod cosine_proximity;
mod determinism;
mod distill;
mod divisor;
mod edges;
mod errors;
mod focal;
mod half;
mod huber;
mod into;
mod jsd;
mod kl_div;
mod lse;
mod mae;
mod mse;
mod poisson_nll;
mod resident;
mod rows;
mod sharded;
mod smooth_l1;
mod softmax_cross_entropy;
mod split;
mod streaming;
mod threads;
mod upstream;

/// Prints the adapter the GPU tests run on (shown with `--show-output`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn adapter_in_use() {
    let ctx = common::ctx();
    println!("GPU tests run on: {}", ctx.adapter_summary());
    println!("max elements per binding: {}", ctx.max_chunk_elements());
    assert!(!ctx.adapter_info().name.is_empty());
}

/// `ContextOptions::adapter_name` picks an adapter by part of its name, as
/// `WGPU_ADAPTER_NAME` does, and a name that matches none is a `NoAdapter` naming the option.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn adapter_name_option_picks_the_adapter() {
    let name = common::ctx().adapter_info().name.clone();
    let part = name.to_uppercase();
    let picked = wgpu_loss::GpuContext::with_options(wgpu_loss::ContextOptions {
        adapter_name: Some(part),
        ..Default::default()
    })
    .expect("the adapter in use, by its name in capitals");
    assert_eq!(picked.adapter_info().name, name);
    let err = wgpu_loss::GpuContext::with_options(wgpu_loss::ContextOptions {
        adapter_name: Some("no-such-adapter-anywhere-42".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, wgpu_loss::Error::NoAdapter { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("ContextOptions::adapter_name") && msg.contains(&name),
        "{msg}"
    );
}
