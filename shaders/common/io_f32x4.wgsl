// Storage of the prediction and target arrays: f32, read and written four at a time (vec4
// loads and stores). Defines the items listed in io_f32.wgsl, with io_vector.wgsl (imported).
// Used only where every bound length is a multiple of 4 (the host checks; `Io::F32X4`), so
// every unit is whole: each lane moves 16 contiguous bytes per array per trip. The row driver
// uses it for rows of a multiple of 4 elements, so no unit straddles two rows.

#import common/io_vector.wgsl

const EPU: u32 = 4u;

alias Word = vec4<u32>;
alias Unit = vec4<f32>;

fn unpack_unit(w: Word) -> Unit {
    return bitcast<vec4<f32>>(w);
}

fn pack_unit(x: Unit) -> Word {
    return bitcast<vec4<u32>>(x);
}

// The row driver's dense targets are bound as `array<u32>` (the same binding holds class ids
// otherwise): a Word is WORD_U32S of those, and unit_of_u32s makes a unit from them (the
// first WORD_U32S components of `w`).
const WORD_U32S: u32 = 4u;

fn unit_of_u32s(w: vec4<u32>) -> Unit {
    return unpack_unit(w);
}
