#!/usr/bin/env bash
# Fuzzes the CLI's `.npy` reader (target `npy`) and its argument and output handling (target
# `cli`) with cargo-fuzz, then re-runs every input of each final corpus one by one to check
# that none takes over 100 ms. See docs/fuzzing.md.
#
# Needs nightly Rust and cargo-fuzz (`cargo install cargo-fuzz`). Builds into fuzz/target.
#
#   scripts/fuzz.sh                 # both targets, 10^6 executions each
#   FUZZ_RUNS=20000 scripts/fuzz.sh # a quick pass
#   FUZZ_TARGETS=cli scripts/fuzz.sh
#
# Each target runs over its committed seeds (fuzz/corpus/<target>, read only) plus a scratch
# corpus (fuzz/corpus-scratch/<target>, ignored by git, kept between runs), where new inputs
# go; crashes, OOMs, timeouts and slow units go to fuzz/artifacts/<target>/, and libFuzzer's
# log to fuzz/artifacts/<target>/fuzz.log. Limits: -rss_limit_mb=256, -malloc_limit_mb=64
# (one allocation), -timeout=1 (s), -report_slow_units=1 (s, libFuzzer's smallest). ASan's
# quarantine is held to 8 MiB (its default of 256 MiB alone would pass the RSS limit).
# Exits 1 if any target found anything or any input took over FUZZ_SLOW_MS.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${FUZZ_RUNS:-1000000}"
TARGETS="${FUZZ_TARGETS:-npy cli}"
SLOW_MS="${FUZZ_SLOW_MS:-100}"
SCRATCH=fuzz/corpus-scratch
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=8}"

# -O: optimised; -a: debug assertions and overflow checks, so that an arithmetic overflow is
# a crash. (Builds of both targets share every dependency.)
BUILD=(-O -a)
cargo +nightly fuzz build "${BUILD[@]}"
TRIPLE="$(rustc +nightly -vV | sed -n 's/^host: //p')"
BIN_DIR="fuzz/target/$TRIPLE/release"

# The CLI target's fixture folders (wgpu-loss-fuzz-cli-PID, one per process, in the
# temporary folder) of processes that have ended; a live one (another run's) is left alone.
clean_fixtures() {
    local d pid
    for d in "${TMPDIR:-/tmp}"/wgpu-loss-fuzz-cli-*; do
        [ -e "$d" ] || continue
        pid="${d##*-}"
        if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            continue
        fi
        chmod -R u+w "$d" 2>/dev/null || true
        rm -rf "$d"
    done
}

status=0
summary=()
for t in $TARGETS; do
    case "$t" in
    npy) max_len=16384 ;;
    cli) max_len=4096 ;;
    *)
        echo "fuzz: unknown target $t" >&2
        exit 2
        ;;
    esac
    mkdir -p "$SCRATCH/$t" "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t/fuzz.log"
    before=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'slow-unit-*' -o -name 'leak-*' \) | wc -l)
    echo "== $t: $RUNS executions (log: $log)"
    start=$(date +%s)
    set +e
    cargo +nightly fuzz run "${BUILD[@]}" "$t" "$SCRATCH/$t" "fuzz/corpus/$t" -- \
        -runs="$RUNS" -rss_limit_mb=256 -malloc_limit_mb=64 -timeout=1 \
        -report_slow_units=1 -max_len="$max_len" -dict="fuzz/$t.dict" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    secs=$(($(date +%s) - start))
    clean_fixtures
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    slowest_s=$(sed -n 's/^stat::slowest_unit_time_sec: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/\1 \2/p' <<<"$last")
    after=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'slow-unit-*' -o -name 'leak-*' \) | wc -l)
    found=$((after - before))
    if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
        status=1
        echo "fuzz: $t: libFuzzer exit $rc, $found new artifacts:" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|artifact' "$log" | head -n 20 >&2 || true
    fi

    # Every input of the final corpus (seeds and scratch), one at a time: libFuzzer prints
    # "Executed FILE in N ms" for each file it is given.
    timing="fuzz/artifacts/$t/timing.log"
    find "$SCRATCH/$t" "fuzz/corpus/$t" -type f -print0 |
        xargs -0 -r -n 256 "$BIN_DIR/$t" -rss_limit_mb=256 -malloc_limit_mb=64 -timeout=1 \
            >"$timing" 2>&1 || status=1
    clean_fixtures
    corpus=$(find "$SCRATCH/$t" "fuzz/corpus/$t" -type f | wc -l)
    timed=$(grep -c '^Executed ' "$timing" || true)
    slowest=$(sed -n 's/^Executed \(.*\) in \([0-9]*\) ms$/\2 \1/p' "$timing" | sort -n | tail -n 1)
    slow_ms=${slowest%% *}
    if [ "$timed" -ne "$corpus" ]; then
        status=1
        echo "fuzz: $t: $timed of $corpus corpus inputs re-ran (see $timing)" >&2
    fi
    if [ -n "$slow_ms" ] && [ "$slow_ms" -gt "$SLOW_MS" ]; then
        status=1
        echo "fuzz: $t: an input took $slowest ms (over $SLOW_MS ms)" >&2
    fi
    summary+=("$t: ${execs:-?} executions in ${secs} s (${eps:-?} exec/s), cov/ft ${cov:-? ?}, corpus $corpus (seeds $(find "fuzz/corpus/$t" -type f | wc -l)), peak RSS ${rss:-?} MB, slowest unit while fuzzing ${slowest_s:-?} s, slowest corpus input ${slow_ms:-?} ms ($timed re-run), new artifacts (crashes/OOMs/timeouts/slow) $found, libFuzzer exit $rc")
    echo "   last: $last"
done

echo "== summary"
for s in "${summary[@]}"; do
    echo "$s"
done
exit "$status"
