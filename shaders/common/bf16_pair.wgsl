// Two bfloat16 (the top 16 bits of an f32) elements in a 32-bit word, element 2k in the low
// half of word k (the little-endian layout of a `[bf16]` array): the conversions the bf16
// storage files (io_bf16.wgsl, io_bf16x8.wgsl) build their units from. Unpacking is exact (a
// shift); packing rounds to nearest, ties to even, in integer arithmetic, so it gives the same
// bits on every device: overflow rounds to ±∞, NaN stays a quiet NaN of the same sign.

fn unpack_pair(w: u32) -> vec2<f32> {
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

fn pack_pair(x: vec2<f32>) -> u32 {
    return bf16_bits(x.x) | (bf16_bits(x.y) << 16u);
}
