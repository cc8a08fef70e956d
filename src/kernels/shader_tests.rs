//! Every shader, in every composition the host builds, is validated by naga without a GPU,
//! and checked against what the host assumes: entry point, workgroup size, bindings.
//! Failures are collected and reported together, with naga's own diagnostics.
//! (`cargo test --lib kernels::shader_tests`; no GPU needed.)

use std::collections::BTreeSet;

use crate::Dtype;
use crate::kernels::{Access, ENTRY_POINT, Io, Kernel, ReduceFlavor, WORKGROUP_SIZE};
use naga::valid::{Capabilities, ValidationFlags, Validator};

const FLAVORS: [ReduceFlavor; 2] = [ReduceFlavor::Plain, ReduceFlavor::Subgroup];

fn check(kernel: Kernel, flavor: ReduceFlavor, io: Io) -> Result<(), String> {
    let src = kernel
        .source_io(flavor, io)
        .map_err(|e| format!("{}: {e}", kernel.name()))?;
    let path = format!(
        "{} + {:?} prelude, {} in, {} grad",
        kernel.name(),
        flavor,
        io.input.name(),
        io.grad.name()
    );
    let module =
        naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string_with_path(&src, &path))?;
    let mut caps = match flavor {
        ReduceFlavor::Plain => Capabilities::empty(),
        ReduceFlavor::Subgroup => Capabilities::SUBGROUP,
    };
    // f16 storage uses pack2x16float/unpack2x16float (wgpu: DownlevelFlags::SHADER_F16_IN_F32,
    // checked by GpuContext::supports_f16); nothing else needs a capability.
    if io.input == Dtype::F16 {
        caps |= Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    }
    Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| e.emit_to_string_with_path(&src, &path))?;

    let eps: Vec<_> = module.entry_points.iter().collect();
    if eps.len() != 1 || eps[0].name != ENTRY_POINT || eps[0].stage != naga::ShaderStage::Compute {
        return Err(format!(
            "{path}: expected one compute entry point `{ENTRY_POINT}`"
        ));
    }
    if eps[0].workgroup_size != [WORKGROUP_SIZE, 1, 1] {
        return Err(format!(
            "{path}: workgroup size {:?}, host assumes [{WORKGROUP_SIZE}, 1, 1]",
            eps[0].workgroup_size
        ));
    }
    // The bindings the shader declares must be exactly those the host builds layouts from.
    let mut declared = BTreeSet::new();
    for (_, var) in module.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        let access = match var.space {
            naga::AddressSpace::Uniform => Access::Uniform,
            naga::AddressSpace::Storage { access }
                if access.contains(naga::StorageAccess::STORE) =>
            {
                Access::ReadWrite
            }
            naga::AddressSpace::Storage { .. } => Access::Read,
            other => {
                return Err(format!(
                    "{path}: binding {} in unexpected space {other:?}",
                    rb.binding
                ));
            }
        };
        if rb.group != 0 {
            return Err(format!(
                "{path}: binding {} in group {}, host uses group 0",
                rb.binding, rb.group
            ));
        }
        declared.insert((rb.binding, format!("{access:?}")));
    }
    let host: BTreeSet<_> = kernel
        .bindings_io(io)
        .iter()
        .map(|b| (b.index, format!("{:?}", b.access)))
        .collect();
    if declared != host {
        return Err(format!(
            "{path}: shader bindings {declared:?} != host bindings {host:?}"
        ));
    }
    Ok(())
}

#[test]
fn every_kernel_validates_with_naga_and_matches_the_host() {
    let mut compositions = Vec::new();
    for k in Kernel::all() {
        for &f in &FLAVORS {
            for &io in k.ios() {
                compositions.push((k, f, io));
            }
        }
    }
    // (each elementwise loss × 10 storages (`Io::ALL`) + each row-wise loss × 16 (those 10,
    // and f32, f16, bf16 in place by words and by vec4s) + 4 shared passes) × 2
    // flavours, counted from the registry so a new loss needs no edit here (the copy kernel of
    // the benchmarks is validated by the CLI's own test).
    let row_wise = crate::losses::REGISTRY
        .iter()
        .filter(|d| matches!(d.family(), crate::losses::Family::Rows(_)))
        .count();
    let elementwise = crate::losses::REGISTRY.len() - row_wise;
    assert!(
        elementwise >= 8 && row_wise >= 3,
        "{elementwise} + {row_wise}"
    );
    // The sharded loss: three steps × 5 storages, and its divisor.
    let sharded = 3 * Io::SHARDED.len() + 1;
    assert_eq!(
        compositions.len(),
        (elementwise * Io::ALL.len() + row_wise * 16 + 4 + sharded) * 2
    );
    let failures: Vec<String> = compositions
        .iter()
        .filter_map(|&(k, f, io)| check(k, f, io).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn workgroup_size_constant_matches_the_preludes() {
    for f in FLAVORS {
        let (file, text) = f.prelude();
        let line = format!("const WG: u32 = {WORKGROUP_SIZE}u;");
        assert!(text.contains(&line), "{file} does not declare `{line}`");
    }
}

/// Every `.wgsl` file under shaders/ is part of some kernel (no dead or unvalidated shader).
#[test]
fn every_shader_file_is_used_by_a_kernel() {
    let mut used: BTreeSet<String> = BTreeSet::new();
    for k in Kernel::all() {
        for &io in k.ios() {
            for f in FLAVORS {
                for (p, _) in k.files(f, io).expect("the kernel composes") {
                    used.insert(p.to_string());
                }
            }
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let mut on_disk = BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from(root).join("shaders")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("shaders/ is readable") {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "wgsl") {
                let rel = p.strip_prefix(root).expect("under the crate root");
                on_disk.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    assert_eq!(
        on_disk, used,
        "shader files on disk vs. files the registry composes"
    );
}

/// The validator really rejects a broken shader (this test would catch a no-op `check`).
#[test]
fn a_broken_shader_is_reported() {
    let src = "@compute @workgroup_size(64) fn main() { let x: f32 = 1u; }";
    let module = naga::front::wgsl::parse_str(src);
    assert!(module.is_err(), "a type error must be rejected");
}

/// The host's register count per lane matches the row driver's.
#[test]
fn row_regs_constant_matches_the_row_driver() {
    let text = include_str!("../../shaders/common/rows.wgsl");
    let line = format!("const ROW_REGS: u32 = {}u;", crate::kernels::rows::ROW_REGS);
    assert!(text.contains(&line), "rows.wgsl does not declare `{line}`");
}

/// Each row-wise loss's statistics sweeps (`Rows::sweeps`, counted by
/// `ResidentLoss::pass_bytes`) are its shader's: two exactly where it runs `ROW_SECOND`.
#[test]
fn row_sweeps_match_the_shaders() {
    for def in crate::losses::REGISTRY {
        if let crate::losses::Family::Rows(hooks) = def.family() {
            let second = def.shader().1.contains("const ROW_SECOND: bool = true;");
            assert_eq!(hooks.sweeps(), if second { 2 } else { 1 }, "{}", def.name());
        }
    }
}

/// Each row-wise loss's split rows (`Rows::splits`, which lets `RowPlan` run the split
/// passes) are its shader's: exactly where it declares `ROW_SPLIT` true.
#[test]
fn row_splits_match_the_shaders() {
    for def in crate::losses::REGISTRY {
        if let crate::losses::Family::Rows(hooks) = def.family() {
            let split = def.shader().1.contains("const ROW_SPLIT: bool = true;");
            assert_eq!(hooks.splits(), split, "{}", def.name());
        }
    }
}

/// Each row-wise loss's early gradient (`Rows::grad_early`, counted by
/// `ResidentLoss::pass_bytes`) is its shader's: exactly where it declares `ROW_GRAD_EARLY`
/// true, and every row-wise shader declares it.
#[test]
fn row_early_gradients_match_the_shaders() {
    for def in crate::losses::REGISTRY {
        if let crate::losses::Family::Rows(hooks) = def.family() {
            let text = def.shader().1;
            let early = text.contains("const ROW_GRAD_EARLY: bool = true;");
            let late = text.contains("const ROW_GRAD_EARLY: bool = false;");
            assert!(
                early != late,
                "{} must declare ROW_GRAD_EARLY once",
                def.name()
            );
            assert_eq!(hooks.grad_early(), early, "{}", def.name());
        }
    }
}

/// Every `#import` of every shader file names a file or a slot, and every file's own imports
/// come before it in every composition (the order [`Kernel::files`] promises), with no file
/// twice.
#[test]
fn imports_resolve_and_come_first() {
    use crate::kernels::{SHADER_FILES, imports};
    for (path, text) in SHADER_FILES {
        for name in imports(text) {
            let known = matches!(name, "<reduce>" | "<io>" | "<grad>" | "<preds>")
                || SHADER_FILES
                    .iter()
                    .any(|(p, _)| p.strip_prefix("shaders/") == Some(name));
            assert!(known, "{path}: `#import {name}` names no file");
        }
    }
    for k in Kernel::all() {
        for &io in k.ios() {
            for f in FLAVORS {
                let files = k.files(f, io).expect("the kernel composes");
                let paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
                assert_eq!(
                    paths.last().copied(),
                    Some(k.root().0),
                    "{}: its own file comes last",
                    k.name()
                );
                let unique: BTreeSet<&str> = paths.iter().copied().collect();
                assert_eq!(unique.len(), paths.len(), "{}: a file twice", k.name());
                for (i, (_, text)) in files.iter().enumerate() {
                    for name in imports(text).filter(|n| !n.starts_with('<')) {
                        let at = paths
                            .iter()
                            .position(|p| p.strip_prefix("shaders/") == Some(name))
                            .expect("imported file composed");
                        assert!(at < i, "{}: {name} after its importer", k.name());
                    }
                }
            }
        }
    }
}

/// The slots resolve by variant: the subgroup prelude only in the subgroup flavour, a 16-bit
/// store only for 16-bit gradients, vec4 storage only for vec4.
#[test]
fn slots_follow_the_variant() {
    let has = |k: Kernel, f: ReduceFlavor, io: Io, file: &str| {
        k.files(f, io)
            .expect("the kernel composes")
            .iter()
            .any(|(p, _)| p.ends_with(file))
    };
    assert!(has(
        Kernel::Loss("mse"),
        ReduceFlavor::Subgroup,
        Io::F32,
        "reduce_subgroup.wgsl"
    ));
    assert!(!has(
        Kernel::Loss("mse"),
        ReduceFlavor::Plain,
        Io::F32,
        "reduce_subgroup.wgsl"
    ));
    assert!(has(
        Kernel::Loss("mse"),
        ReduceFlavor::Plain,
        Io::F32X4,
        "io_f32x4.wgsl"
    ));
    assert!(has(
        Kernel::Loss("mse"),
        ReduceFlavor::Plain,
        Io::F32X4,
        "io_vector.wgsl"
    ));
    assert!(!has(
        Kernel::Loss("mse"),
        ReduceFlavor::Plain,
        Io::F32,
        "io_vector.wgsl"
    ));
    let bf16 = Io::same(Dtype::Bf16);
    assert!(has(
        Kernel::Loss("softmax_cross_entropy"),
        ReduceFlavor::Plain,
        bf16,
        "grad_packed.wgsl"
    ));
    assert!(has(
        Kernel::Loss("softmax_cross_entropy"),
        ReduceFlavor::Plain,
        Io::with_f32_grad(Dtype::Bf16),
        "grad_f32.wgsl"
    ));
    for (io, file) in [
        (Io::in_place(Dtype::F32), "preds_in_place.wgsl"),
        (Io::F32, "preds_read.wgsl"),
    ] {
        assert!(has(
            Kernel::Loss("softmax_cross_entropy"),
            ReduceFlavor::Plain,
            io,
            file
        ));
    }
    // 16-bit storage a vec4 of words at a time: the octet unit, its gradient store (f32
    // element by element), the same conversions as a word at a time.
    for (io, files, not) in [
        (
            Io::same(Dtype::F16).with_vec4(),
            &[
                "io_f16x8.wgsl",
                "f16_pair.wgsl",
                "unit_octet.wgsl",
                "grad_packed_x8.wgsl",
            ][..],
            &["unit_pair.wgsl", "io_vector.wgsl", "grad_packed.wgsl"][..],
        ),
        (
            Io::with_f32_grad(Dtype::Bf16).with_vec4(),
            &[
                "io_bf16x8.wgsl",
                "bf16_pair.wgsl",
                "unit_octet.wgsl",
                "grad_f32.wgsl",
            ][..],
            &["grad_packed_x8.wgsl", "grad_f32x4.wgsl"][..],
        ),
        (
            Io::same(Dtype::Bf16),
            &[
                "io_bf16.wgsl",
                "bf16_pair.wgsl",
                "unit_pair.wgsl",
                "grad_packed.wgsl",
            ][..],
            &["unit_octet.wgsl", "/f16_pair.wgsl"][..],
        ),
    ] {
        for k in [Kernel::Loss("mse"), Kernel::Loss("softmax_cross_entropy")] {
            for f in files {
                assert!(has(k, ReduceFlavor::Plain, io, f), "{k:?} {io:?}: {f}");
            }
            for f in not {
                assert!(!has(k, ReduceFlavor::Plain, io, f), "{k:?} {io:?}: not {f}");
            }
        }
    }
    assert_eq!(Io::F32X4.per_unit(), 4);
    assert_eq!(Io::same(Dtype::Bf16).with_vec4().per_unit(), 8);
    assert_eq!(Io::same(Dtype::F16).per_unit(), 2);
    assert_eq!(
        Io::same(Dtype::F16).with_vec4_if_whole(&[16, 12]),
        Io::same(Dtype::F16)
    );
    assert_eq!(Io::F32.with_vec4_if_whole(&[16, 12]), Io::F32X4);
    assert!(Kernel::Loss("cosine_proximity").takes_io());
}
