// Storage of the prediction and target arrays: IEEE binary16 (f16), two elements per 32-bit
// word, one word per unit (any length). The conversions are f16_pair.wgsl's, the unit
// unit_pair.wgsl's; together they define the items listed in io_f32.wgsl. io_f16x8.wgsl
// moves four words at a time where the lengths allow.

#import common/f16_pair.wgsl
#import common/unit_pair.wgsl
