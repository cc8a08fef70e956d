// Gradient storage: packed like the input (f16 or bf16, two elements per word), with f32
// arithmetic before the final rounding. See grad_f32.wgsl for what this file defines.
//
// A word is written whole by the one invocation that owns both its elements. Only a word
// shared by two rows (odd row lengths put a row boundary inside a word) is written by two
// invocations, each setting its own half: atomicAnd clears the half, atomicOr sets it. The
// halves' bits are disjoint, so either order gives the same word, and no clearing pass is
// needed. The elementwise driver never shares a word, so its tail word keeps the other half
// (padding) as it was.

alias GradSlot = atomic<u32>;

fn write_grad(u: u32, g: Unit, ok: u32) {
    let w = pack_unit(g);
    if (ok == 3u) {
        atomicStore(&grad[u], w);
    } else if (ok == 1u) {
        atomicAnd(&grad[u], 0xffff0000u);
        atomicOr(&grad[u], w & 0x0000ffffu);
    } else if (ok == 2u) {
        atomicAnd(&grad[u], 0x0000ffffu);
        atomicOr(&grad[u], w & 0xffff0000u);
    }
}
