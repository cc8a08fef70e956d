// The row driver's prediction (common/rows.wgsl's `<preds>` slot), read only: the gradient
// goes to its own binding. The other variant is preds_in_place.wgsl.

// [rows · cols] prediction (probabilities for cce, logits for the others), in units.
@group(0) @binding(1) var<storage, read> preds: array<Word>;

// Whether the gradient overwrites `preds` (it does not here).
const IN_PLACE: bool = false;
