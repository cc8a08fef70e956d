// Gradient storage: f32, four elements per vec4 store, for io_f32x4.wgsl. See grad_f32.wgsl for
// what this file defines. The host uses it only where every length is a multiple of 4, so a
// unit is always whole (all four bits of `ok` set).

alias GradSlot = vec4<f32>;

fn write_grad(u: u32, g: Unit, ok: u32) {
    if (ok == 0xfu) {
        grad[u] = g;
    }
}
