// Gradient storage: f32, one element per word, whatever the input's storage.
// Defines, for the drivers (elementwise.wgsl, rows.wgsl), which declare
// `grad: array<GradSlot>`:
//     alias GradSlot
//     fn write_grad(u: u32, g: Unit, ok: u32)   // the gradient of unit u (a word of the
//                                               // input); element e only if ok's bit e is set
// grad_packed.wgsl defines the same for a gradient stored like the input (f16, bf16).

alias GradSlot = f32;

fn write_grad(u: u32, g: Unit, ok: u32) {
    for (var e = 0u; e < EPU; e = e + 1u) {
        if (((ok >> e) & 1u) != 0u) {
            grad[u * EPU + e] = unit_elem(g, e);
        }
    }
}
