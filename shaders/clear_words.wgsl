// Zeroes a small buffer of 32-bit words (a step's first-offender and count atomics) from inside
// a compute pass, where `encoder.clear_buffer` cannot be recorded. Used by
// `ResidentLoss::record_in_pass` (src/resident.rs) as the step's first dispatch; wgpu orders it
// before the dispatches that update the atomics. One workgroup; the buffers hold ≤ WG words.

#import <reduce>

@group(0) @binding(0) var<storage, read_write> words: array<u32>;

@compute @workgroup_size(WG)
fn main(lane: Lane) {
    if (lane.index < arrayLength(&words)) {
        words[lane.index] = 0u;
    }
}
