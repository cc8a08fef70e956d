// The unit of 16-bit storage a vec4 of words at a time: each lane moves 16 contiguous bytes
// per array per trip, eight elements (a unit of two vec4<f32>), as io_f32x4.wgsl does for f32.
// The four words are converted by `unpack_pair`/`pack_pair`, which the storage file that
// imports this one defines (by importing f16_pair.wgsl or bf16_pair.wgsl). Defines the items
// listed in io_f32.wgsl. Used only where every bound length is a multiple of 8 (the host
// checks; `Io::vec4`), so every unit is whole, and the row driver uses it only for rows of a
// multiple of 8 elements, so no unit straddles two rows.

const EPU: u32 = 8u;

alias Word = vec4<u32>;

// Elements 0–3 in `lo`, 4–7 in `hi`: two vectors rather than an array<f32, 8>, so an element
// picked by a loop counter is a vector component, not an indexed local array (which a
// compiler that does not unroll the unit's loop keeps in memory).
struct Unit {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn unpack_unit(w: Word) -> Unit {
    let a = unpack_pair(w.x);
    let b = unpack_pair(w.y);
    let c = unpack_pair(w.z);
    let d = unpack_pair(w.w);
    return Unit(vec4<f32>(a, b), vec4<f32>(c, d));
}

fn pack_unit(x: Unit) -> Word {
    return vec4<u32>(pack_pair(x.lo.xy), pack_pair(x.lo.zw), pack_pair(x.hi.xy), pack_pair(x.hi.zw));
}

fn unit_elem(x: Unit, e: u32) -> f32 {
    return select(x.hi[e & 3u], x.lo[e & 3u], e < 4u);
}

fn unit_with(x: Unit, e: u32, v: f32) -> Unit {
    let lanes = vec4<u32>(0u, 1u, 2u, 3u);
    return Unit(
        select(x.lo, vec4<f32>(v), lanes == vec4<u32>(e)),
        select(x.hi, vec4<f32>(v), lanes + 4u == vec4<u32>(e)),
    );
}

fn unit_zero() -> Unit {
    return Unit(vec4<f32>(0.0), vec4<f32>(0.0));
}

// The row driver's dense targets are bound as `array<u32>` (the same binding holds class ids
// otherwise): a Word is WORD_U32S of those, and unit_of_u32s makes a unit from them.
const WORD_U32S: u32 = 4u;

fn unit_of_u32s(w: vec4<u32>) -> Unit {
    return unpack_unit(w);
}
