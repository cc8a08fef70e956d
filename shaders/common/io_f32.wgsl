// Storage of the prediction and target arrays: f32, one element per 32-bit word.
//
// Every loss kernel's driver (elementwise.wgsl, rows.wgsl) reads its prediction and dense
// target as `array<u32>` words and works on *units*: the elements of one word. This file and
// io_f16.wgsl / io_bf16.wgsl define the same items, one per storage type:
//     const EPU: u32                                   // elements per unit (word)
//     alias Unit                                       // a unit's values, widened to f32
//     fn unpack_unit(w: u32) -> Unit
//     fn unit_elem(x: Unit, e: u32) -> f32             // element e < EPU of a unit
//     fn unit_with(x: Unit, e: u32, v: f32) -> Unit    // x with element e set to v
//     fn unit_zero() -> Unit
//     fn pack_unit(x: Unit) -> u32                     // the word that stores x
// Host side: `Dtype` in src/kernels/mod.rs picks the file.

const EPU: u32 = 1u;

alias Unit = f32;

fn unpack_unit(w: u32) -> Unit {
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

fn pack_unit(x: Unit) -> u32 {
    return bitcast<u32>(x);
}
