//! With `WGPU_ADAPTER_NAME` matching no adapter, context creation fails with `NoAdapter`, and
//! the message says how to get one. (Its own test binary: it sets an environment variable,
//! which must not race with other tests creating contexts.)

#[test]
fn no_matching_adapter_gives_a_helpful_error() {
    // SAFETY: this binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var("WGPU_ADAPTER_NAME", "no-such-adapter-anywhere-42") };
    let err = wgpu_loss::GpuContext::new().unwrap_err();
    assert!(matches!(err, wgpu_loss::Error::NoAdapter { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("mesa-vulkan-drivers"), "{msg}");
    // On a machine with adapters, the message names the variable and lists what was seen;
    // on one without, it is the plain "no adapter" advice.
    assert!(
        msg.contains("WGPU_ADAPTER_NAME") || msg.starts_with("no GPU adapter found."),
        "{msg}"
    );
}
