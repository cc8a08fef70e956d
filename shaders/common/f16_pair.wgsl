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

// The f16 bits of each of x's elements where the conversion cannot be trusted with it (NaN,
// beyond the range), else 0xffffffff. Selects, no branches.
fn f16_specials(x: vec2<f32>) -> vec2<u32> {
    let b = bitcast<vec2<u32>>(x);
    let mag = b & vec2<u32>(0x7fffffffu);
    let inf = ((b >> vec2<u32>(16u)) & vec2<u32>(0x8000u)) | vec2<u32>(0x7c00u);
    let big = select(vec2<u32>(0xffffffffu), inf, mag >= vec2<u32>(0x477ff000u)); // 65520.0
    return select(big, vec2<u32>(0x7e00u), mag > vec2<u32>(0x7f800000u));
}

fn pack_pair(x: vec2<f32>) -> u32 {
    let sp = f16_specials(x);
    let special = sp != vec2<u32>(0xffffffffu);
    // In-range values (NaN and ±∞ replaced by 0 first, so the conversion never sees them).
    let w = pack2x16float(select(x, vec2<f32>(0.0), special));
    let halves = select(vec2<u32>(w & 0xffffu, w >> 16u), sp, special);
    return halves.x | (halves.y << 16u);
}
