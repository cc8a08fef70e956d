// Class-index targets, decoded the same way by the row driver (rows.wgsl) and the class
// pre-pass (class_count.wgsl), each of which defines `fn class_word(i: u32) -> u32`, word i of
// its class-id binding. Class ids are i32, u32, or i64 stored as two words (low first, the
// little-endian layout of an `[i64]` array), as the flags say (FLAG_CLASSES_I64,
// FLAG_CLASSES_U32 of the importing file). Every id is compared exactly, as the 64-bit
// integer it is, with `ignore_index` (an i64, given as its two words) and with [0, C): an id
// that is neither, 2^32 + 3 or −1 say, is out of range, never wrapped or clamped into it.
// Host side: `ClassType` in src/kernels/mod.rs, `RowPlan` in src/kernels/rows.rs.

// What `class_of` returns for an ignored row, and for an id outside [0, C).
const CLASS_IGNORED: i32 = -1;
const CLASS_OUT_OF_RANGE: i32 = -2;

// The class of row r (of this chunk): in [0, C), CLASS_IGNORED or CLASS_OUT_OF_RANGE.
fn class_of(r: u32, flags: u32, cols: u32, ignore: vec2<u32>) -> i32 {
    var lo: u32;
    var hi: u32;
    if ((flags & FLAG_CLASSES_I64) != 0u) {
        lo = class_word(2u * r);
        hi = class_word(2u * r + 1u);
    } else {
        lo = class_word(r);
        // i32 ids sign-extend to 64 bits; u32 ids zero-extend.
        hi = select(0u, 0xffffffffu, (flags & FLAG_CLASSES_U32) == 0u && (lo >> 31u) != 0u);
    }
    if (lo == ignore.x && hi == ignore.y) {
        return CLASS_IGNORED;
    }
    if (hi != 0u || lo >= cols) {
        return CLASS_OUT_OF_RANGE;
    }
    return i32(lo);
}
