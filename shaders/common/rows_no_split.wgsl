// No split rows (common/rows.wgsl's ROW_SPLIT): what cosine_proximity.wgsl (its scan needs a
// lane's held elements) and jsd.wgsl (its second sweep needs the finished row) import. The host never sets SPLIT_STATS or SPLIT_GRAD on such a
// loss (`Rows::splits`, checked against ROW_SPLIT by a test), so these are never called.

const ROW_SPLIT: bool = false;

fn row_stats_words(s: Stats) -> StatsWords {
    return StatsWords(vec4<f32>(0.0), vec4<f32>(0.0));
}

fn row_stats_of(w: StatsWords) -> Stats {
    return row_identity();
}
