// Gradient storage: packed like the input (f16 or bf16), eight elements per vec4 of words,
// for io_f16x8.wgsl and io_bf16x8.wgsl. See grad_f32.wgsl for what this file defines. The
// host uses it only where every length is a multiple of 8, so a unit is always whole (all
// eight bits of `ok` set) and no two invocations share a word: a plain store, no atomics.

alias GradSlot = vec4<u32>;

fn write_grad(u: u32, g: Unit, ok: u32) {
    if (ok == 0xffu) {
        grad[u] = pack_unit(g);
    }
}
