// Storage of the prediction and target arrays: bfloat16 (bf16), two elements per 32-bit
// word, read and written a vec4 of words (eight elements) at a time, where every bound
// length is a multiple of 8 (`Io::vec4`; io_bf16.wgsl otherwise). The conversions are
// bf16_pair.wgsl's, the unit unit_octet.wgsl's; together they define the items listed in
// io_f32.wgsl.

#import common/bf16_pair.wgsl
#import common/unit_octet.wgsl
