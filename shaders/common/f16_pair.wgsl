// Two IEEE binary16 (f16) elements in a 32-bit word, element 2k in the low half of word k (the
// little-endian layout of a `[f16]` array): the conversions the f16 storage files
// (io_f16.wgsl, io_f16x8.wgsl) build their units from. WGSL's core
// pack2x16float/unpack2x16float do them, so no `enable f16` (wgpu's SHADER_F16 shader
// arithmetic) is needed.
//
// Writing: each half is rounded by the device's conversion (round to nearest even on the
// GPUs we know; a truncating one is within the tests' one-ulp tolerance). WGSL leaves an
// out-of-range or NaN input to pack2x16float undefined, so those are written here explicitly:
// NaN → the quiet NaN 0x7e00, |x| ≥ 65520 (which rounds past the largest f16, 65504) → ±∞.

fn unpack_pair(w: u32) -> vec2<f32> {
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

fn pack_pair(x: vec2<f32>) -> u32 {
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
