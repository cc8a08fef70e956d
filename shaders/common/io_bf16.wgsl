// Storage of the prediction and target arrays: bfloat16 (the top 16 bits of an f32), two
// elements per 32-bit word, element 2k in the low half of word k (the little-endian layout of
// a `[bf16]` array). Defines the items listed in io_f32.wgsl, with io_vector.wgsl (imported). Unpacking is exact (a shift); packing rounds to nearest, ties to even, in
// integer arithmetic, so it gives the same bits on every device: overflow rounds to ±∞, NaN
// stays a quiet NaN of the same sign.

#import common/io_vector.wgsl

const EPU: u32 = 2u;

alias Word = u32;
alias Unit = vec2<f32>;
alias Mask = vec2<bool>;

fn unpack_unit(w: u32) -> Unit {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

// The bf16 bits of x, rounded to nearest even.
fn bf16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x0040u; // NaN: keep sign and payload top, force quiet
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

fn pack_unit(x: Unit) -> u32 {
    return bf16_bits(x.x) | (bf16_bits(x.y) << 16u);
}

// The row driver's dense targets are bound as `array<u32>` (the same binding holds class ids
// otherwise): a Word is WORD_U32S of those, and unit_of_u32s makes a unit from them (the
// first WORD_U32S components of `w`).
const WORD_U32S: u32 = 1u;

fn unit_of_u32s(w: vec4<u32>) -> Unit {
    return unpack_unit(w.x);
}
