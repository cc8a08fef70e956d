// Storage of the prediction and target arrays: IEEE binary16 (f16), two elements per 32-bit
// word, element 2k in the low half of word k (the little-endian layout of a `[f16]` array).
// Defines the items listed in io_f32.wgsl, with io_vector.wgsl (imported). WGSL's
// core pack2x16float/unpack2x16float do the conversions, so no `enable f16` (wgpu's
// SHADER_F16 shader arithmetic) is needed.
//
// Writing: each half is rounded by the device's conversion (round to nearest even on the
// GPUs we know; a truncating one is within the tests' one-ulp tolerance). WGSL leaves an
// out-of-range or NaN input to pack2x16float undefined, so those are written here explicitly:
// NaN → the quiet NaN 0x7e00, |x| ≥ 65520 (which rounds past the largest f16, 65504) → ±∞.

#import common/io_vector.wgsl

const EPU: u32 = 2u;

alias Word = u32;
alias Unit = vec2<f32>;
alias Mask = vec2<bool>;

fn unpack_unit(w: u32) -> Unit {
    return unpack2x16float(w);
}

// The f16 bits of x when the conversion cannot be trusted with it (NaN, beyond the range),
// else 0xffffffff.
fn f16_special(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let mag = b & 0x7fffffffu;
    if (mag > 0x7f800000u) {
        return 0x7e00u;
    }
    if (mag >= 0x477ff000u) { // 65520.0
        return ((b >> 16u) & 0x8000u) | 0x7c00u;
    }
    return 0xffffffffu;
}

fn pack_unit(x: Unit) -> u32 {
    let lo = f16_special(x.x);
    let hi = f16_special(x.y);
    // In-range values (NaN and ±∞ replaced by 0 first, so the conversion never sees them).
    let safe = select(x, vec2<f32>(0.0), vec2<bool>(lo != 0xffffffffu, hi != 0xffffffffu));
    var w = pack2x16float(safe);
    if (lo != 0xffffffffu) {
        w = (w & 0xffff0000u) | lo;
    }
    if (hi != 0xffffffffu) {
        w = (w & 0x0000ffffu) | (hi << 16u);
    }
    return w;
}

// The row driver's dense targets are bound as `array<u32>` (the same binding holds class ids
// otherwise): a Word is WORD_U32S of those, and unit_of_u32s makes a unit from them (the
// first WORD_U32S components of `w`).
const WORD_U32S: u32 = 1u;

fn unit_of_u32s(w: vec4<u32>) -> Unit {
    return unpack_unit(w.x);
}
