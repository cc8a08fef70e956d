//! The test behind every `Params` struct and `FLAG_*` constant that Rust mirrors from WGSL:
//! naga reflects the composed shader's uniform (member names, byte offsets, size) and its
//! constants, and [`check`] compares them with the Rust side, so the two cannot drift apart.
//! Each host module calls it from its own tests, where its private mirrors are visible.

use super::{Io, Kernel, ReduceFlavor};

/// Asserts that `kernel`'s `params` uniform has exactly the named members of `members`
/// (`(name, offset)`, padding members excepted) at those offsets and is `size` bytes, and
/// that each of `flags` is a WGSL `const` of that value in the kernel's composition. A loss
/// kernel's `params.loss` (its `LossParams`) must hold the f32 members its descriptor names
/// (`LossDef::param_names`), one word each from offset 0, in at most 16 bytes.
pub(crate) fn check(kernel: Kernel, members: &[(&str, usize)], size: usize, flags: &[(&str, u32)]) {
    check_loss_params(kernel);
    let src = kernel
        .source_io(ReduceFlavor::Plain, Io::F32)
        .expect("the kernel composes");
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{}: {}", kernel.name(), e.emit_to_string(&src)));
    let params = module
        .global_variables
        .iter()
        .find(|(_, v)| v.name.as_deref() == Some("params"))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{}: no `params` uniform", kernel.name()));
    let naga::TypeInner::Struct {
        members: wgsl,
        span,
    } = &module.types[params.ty].inner
    else {
        panic!("{}: `params` is not a struct", kernel.name());
    };
    let named: Vec<(String, usize)> = wgsl
        .iter()
        .filter_map(|m| m.name.clone().map(|n| (n, m.offset as usize)))
        .filter(|(n, _)| !n.starts_with('_'))
        .collect();
    let rust: Vec<(String, usize)> = members
        .iter()
        .filter(|(n, _)| !n.starts_with('_'))
        .map(|&(n, o)| (n.to_string(), o))
        .collect();
    assert_eq!(
        named,
        rust,
        "{}: WGSL Params members (name, offset) vs the Rust mirror",
        kernel.name()
    );
    // A uniform's size counts in 16-byte units (WGSL's uniform layout: naga reports the
    // unpadded size of a struct that ends in a smaller struct, `LossParams`).
    assert_eq!(
        (*span as usize).next_multiple_of(16),
        size,
        "{}: WGSL Params size (rounded to 16 bytes) vs the Rust mirror",
        kernel.name()
    );
    for &(name, value) in flags {
        let wgsl = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(name))
            .map(|(_, c)| &module.global_expressions[c.init])
            .unwrap_or_else(|| panic!("{}: no WGSL const {name}", kernel.name()));
        assert!(
            matches!(wgsl, naga::Expression::Literal(naga::Literal::U32(v)) if *v == value),
            "{}: WGSL {name} is {wgsl:?}, Rust has {value}",
            kernel.name()
        );
    }
}

/// The loss kernel's `params.loss` against its descriptor's names (nothing for the others).
fn check_loss_params(kernel: Kernel) {
    let Kernel::Loss(stem) = kernel else { return };
    let Some(def) = crate::losses::REGISTRY.iter().find(|d| d.stem() == stem) else {
        panic!("{stem}: no descriptor");
    };
    let src = kernel
        .source_io(ReduceFlavor::Plain, Io::F32)
        .expect("the kernel composes");
    let module = naga::front::wgsl::parse_str(&src).expect("the kernel parses");
    let Some((_, ty)) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("LossParams"))
    else {
        panic!("{stem}: no struct LossParams");
    };
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        panic!("{stem}: LossParams is not a struct");
    };
    let named: Vec<(String, u32)> = members
        .iter()
        .filter_map(|m| m.name.clone().map(|n| (n, m.offset)))
        .filter(|(n, _)| !n.starts_with('_'))
        .collect();
    let want: Vec<(String, u32)> = def
        .param_names()
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), 4 * i as u32))
        .collect();
    assert_eq!(
        named, want,
        "{stem}: WGSL LossParams vs the descriptor's param_names"
    );
    assert!(
        *span <= 16,
        "{stem}: LossParams is {span} bytes, the host writes 16"
    );
}

/// A kernel that drifted is caught: a wrong offset, a wrong size and a wrong flag each fail.
#[test]
fn a_wrong_mirror_fails() {
    for bad in [
        (vec![("count", 0usize), ("scale", 8)], 16usize, vec![]),
        (vec![("count", 0), ("scale", 4), ("flags", 8)], 32, vec![]),
        (vec![("count", 0), ("scale", 4), ("flags", 8)], 8, vec![]),
        (
            vec![("count", 0), ("scale", 4), ("flags", 8)],
            16,
            vec![("FLAG_SCALE_FROM_NORM", 2u32)],
        ),
    ] {
        let r = std::panic::catch_unwind(|| check(Kernel::ReducePartials, &bad.0, bad.1, &bad.2));
        assert!(r.is_err(), "{bad:?} passed");
    }
}
