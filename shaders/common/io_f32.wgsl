// Storage of the prediction and target arrays: f32, one element per 32-bit word.
//
// Every loss kernel's driver (elementwise.wgsl, rows.wgsl) reads its prediction and dense
// target as `array<Word>` and works on *units*: the elements of one Word. This file and
// io_f32x4.wgsl / io_f16.wgsl / io_bf16.wgsl / io_f16x8.wgsl / io_bf16x8.wgsl define the same
// items, one per storage type and unit:
//     const EPU: u32                                   // elements per unit (Word)
//     alias Word                                       // what a binding's element is
//     alias Unit                                       // a unit's values, widened to f32
//     fn unpack_unit(w: Word) -> Unit
//     fn unit_elem(x: Unit, e: u32) -> f32             // element e < EPU of a unit
//     fn unit_with(x: Unit, e: u32, v: f32) -> Unit    // x with element e set to v
//     fn unit_zero() -> Unit
//     fn pack_unit(x: Unit) -> Word                     // the word that stores x
// Host side: `Dtype` in src/kernels/mod.rs picks the file.

const EPU: u32 = 1u;

alias Word = u32;
alias Unit = f32;

fn unpack_unit(w: Word) -> Unit {
    return bitcast<f32>(w);
}

fn unit_elem(x: Unit, e: u32) -> f32 {
    return x;
}

fn unit_with(x: Unit, e: u32, v: f32) -> Unit {
    return v;
}

fn unit_zero() -> Unit {
    return 0.0;
}

fn pack_unit(x: Unit) -> Word {
    return bitcast<u32>(x);
}

// The row driver's dense targets are bound as `array<u32>` (the same binding holds class ids
// otherwise): a Word is WORD_U32S of those, and unit_of_u32s makes a unit from them (the
// first WORD_U32S components of `w`).
const WORD_U32S: u32 = 1u;

fn unit_of_u32s(w: vec4<u32>) -> Unit {
    return unpack_unit(w.x);
}
