// The row driver's prediction (common/rows.wgsl's `<preds>` slot) for a gradient written in
// place over it (`ResidentSpec::grad_in_place`): declared read_write, and the host binds the
// same range as the gradient (wgpu allows one buffer in two read_write bindings). Each lane
// overwrites only the units it has read, so the one read another lane may still need, the
// target logit that softmax_cross_entropy.wgsl's `row_finish` reads, is ordered by the
// barrier rows.wgsl puts after `row_finish` when IN_PLACE. 16-bit rows must not share words
// (even C: the host checks), so no word holds two rows' elements.

// [rows · cols] prediction, overwritten by the gradient, in units.
@group(0) @binding(1) var<storage, read_write> preds: array<Word>;

// Whether the gradient overwrites `preds`.
const IN_PLACE: bool = true;
