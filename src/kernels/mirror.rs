//! The test behind every `Params` struct and `FLAG_*` constant that Rust mirrors from WGSL:
//! naga reflects the composed shader's uniform (member names, byte offsets, size) and its
//! constants, and [`check`] compares them with the Rust side, so the two cannot drift apart.
//! Each host module calls it from its own tests, where its private mirrors are visible.

use super::{Io, Kernel, ReduceFlavor};

/// Asserts that `kernel`'s `params` uniform has exactly the named members of `members`
/// (`(name, offset)`, padding members excepted) at those offsets and is `size` bytes, and
/// that each of `flags` is a WGSL `const` of that value in the kernel's composition.
pub(crate) fn check(kernel: Kernel, members: &[(&str, usize)], size: usize, flags: &[(&str, u32)]) {
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
    assert_eq!(
        *span as usize,
        size,
        "{}: WGSL Params size vs the Rust mirror",
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

/// A kernel that drifted is caught: a wrong offset, a wrong size and a wrong flag each fail.
#[test]
fn a_wrong_mirror_fails() {
    for bad in [
        (vec![("count", 0usize), ("scale", 8)], 16usize, vec![]),
        (vec![("count", 0), ("scale", 4), ("flags", 8)], 32, vec![]),
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
