// Storage of the prediction and target arrays: IEEE binary16 (f16), two elements per 32-bit
// word, read and written a vec4 of words (eight elements) at a time, where every bound
// length is a multiple of 8 (`Io::vec4`; io_f16.wgsl otherwise). The conversions are
// f16_pair.wgsl's, the unit unit_octet.wgsl's; together they define the items listed in
// io_f32.wgsl.

#import common/f16_pair.wgsl
#import common/unit_octet.wgsl
