// The unit of 16-bit storage one word at a time: a u32 word holds two elements (a vec2<f32>
// unit), converted by `unpack_pair`/`pack_pair`, which the storage file that imports this one
// defines (by importing f16_pair.wgsl or bf16_pair.wgsl). Defines the items listed in
// io_f32.wgsl, with io_vector.wgsl (imported). Any length: with n odd the last unit is partial
// (its upper half padding), and a row of odd length may start inside a word.

#import common/io_vector.wgsl

const EPU: u32 = 2u;

alias Word = u32;
alias Unit = vec2<f32>;

fn unpack_unit(w: u32) -> Unit {
    return unpack_pair(w);
}

fn pack_unit(x: Unit) -> u32 {
    return pack_pair(x);
}

// The row driver's dense targets are bound as `array<u32>` (the same binding holds class ids
// otherwise): a Word is WORD_U32S of those, and unit_of_u32s makes a unit from them (the
// first WORD_U32S components of `w`).
const WORD_U32S: u32 = 1u;

fn unit_of_u32s(w: vec4<u32>) -> Unit {
    return unpack_unit(w.x);
}
