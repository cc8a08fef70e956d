// The second statistics sweep of common/rows.wgsl, switched off: what a row-wise loss of one
// sweep (categorical_cross_entropy, softmax_cross_entropy, cosine_proximity, distill.wgsl)
// imports. ROW_SECOND is a constant false, so these stubs are never called and the driver's
// second sweep compiles away; its scratch array is one unused word.

const ROW_SECOND: bool = false;
const ROW_SECOND_SLOTS: u32 = 1u;
alias Second = f32;

fn row_second_identity() -> Second {
    return 0.0;
}

fn row_second_push(s: Second, out: RowOut, row: RowCtx, j: u32, x: f32, t: f32) -> Second {
    return s;
}

fn row_second_combine(a: Second, b: Second) -> Second {
    return a;
}

fn row_second_finish(out: RowOut, s: Second, row: RowCtx) -> RowOut {
    return out;
}
