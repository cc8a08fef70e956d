// Storage of the prediction and target arrays: f32, read and written four at a time (vec4
// loads and stores). Defines the items listed in io_f32.wgsl, with io_vector.wgsl (imported). Used by the elementwise driver only, and only where every bound length is a
// multiple of 4 (the host checks; `Io::F32X4`), so every unit is whole: each lane moves 16
// contiguous bytes per array per trip.

#import common/io_vector.wgsl

const EPU: u32 = 4u;

alias Word = vec4<u32>;
alias Unit = vec4<f32>;
alias Mask = vec4<bool>;

fn unpack_unit(w: Word) -> Unit {
    return bitcast<vec4<f32>>(w);
}

fn pack_unit(x: Unit) -> Word {
    return bitcast<vec4<u32>>(x);
}
