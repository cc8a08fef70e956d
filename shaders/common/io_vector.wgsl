// The element access of a vector `Unit` (unit_pair.wgsl: vec2<f32>; io_f32x4.wgsl:
// vec4<f32>), imported by the storage file that defines `Unit`. io_f32.wgsl, whose Unit is a
// scalar, and unit_octet.wgsl, whose Unit is an array, define these themselves.

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
