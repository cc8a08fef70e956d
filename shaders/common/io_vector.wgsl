// The element access of a vector `Unit` (io_f16.wgsl, io_bf16.wgsl: vec2<f32>; io_f32x4.wgsl:
// vec4<f32>), imported by the storage file that defines `Unit`. io_f32.wgsl, whose
// Unit is a scalar, defines these itself.

fn unit_elem(x: Unit, e: u32) -> f32 {
    return x[e];
}

fn unit_with(x: Unit, e: u32, v: f32) -> Unit {
    var y = x;
    y[e] = v;
    return y;
}

fn unit_zero() -> Unit {
    return Unit(0.0);
}
