// The layout of the per-row sums of vocabulary-sharded softmax cross entropy
// (src/sharded.rs, docs/SHARDS.md): `sums` is [B, SHARD_SUMS] f32, row-major, written by
// sharded_sums.wgsl (step 2) on each shard, all-reduced with SUM by the caller, read by
// sharded_divisor.wgsl and sharded_loss.wgsl (step 3). Host mirror: `SHARD_SUMS` and the
// `SUM_*` constants of src/sharded.rs (checked by its unit test). Needs no other file.

const SHARD_SUMS: u32 = 6u;
// Σ_j exp(y_j − M) over the shard's logits below the row maximum M (those equal to M are
// counted in SUM_TIES instead, so that S − 1 is formed without rounding a 1 into it).
const SUM_REST: u32 = 0u;
// How many of the shard's logits equal M (≥ 1 on some shard for a row with a finite maximum).
const SUM_TIES: u32 = 1u;
// M − y_c on the shard that holds the target class c (≥ 0), else 0.
const SUM_TARGET_GAP: u32 = 2u;
// w_c (1 without class weights) on the shard that holds c, else 0.
const SUM_TARGET_WEIGHT: u32 = 3u;
// Σ_j w_j (M − y_j) ≥ 0 over the shard (label smoothing only; else 0).
const SUM_SMOOTH_GAP: u32 = 4u;
// Σ_j w_j over the shard (label smoothing only; else 0).
const SUM_WEIGHT: u32 = 5u;
