// Storage of the prediction and target arrays: bfloat16 (bf16), two elements per 32-bit
// word, one word per unit (any length). The conversions are bf16_pair.wgsl's, the unit
// unit_pair.wgsl's; together they define the items listed in io_f32.wgsl. io_bf16x8.wgsl
// moves four words at a time where the lengths allow.

#import common/bf16_pair.wgsl
#import common/unit_pair.wgsl
