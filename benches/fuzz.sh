#!/usr/bin/env bash
# Runs every cargo-fuzz target for a given time on the stable toolchain, merges the inputs that
# add coverage into the committed seed corpus (data-fixtures/fuzz/<target>/, which `cargo test`
# replays), and prints one line per target: executions, executions per second, coverage,
# corpus size and crashes. A crash is left in fuzz/artifacts/<target>/ (tracked by git: commit
# it with the fix, and `cargo test` replays it for good); the script exits non-zero when any
# target crashed.
#
# usage: benches/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 600 s, every target)
#        NICE=19 benches/fuzz.sh 600                       (yield the CPU to other work)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-600}
shift || true
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs nightly flags; stable accepts them with this
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
nice=${NICE:-0}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^pfai-fuzz$')
fi

# What each target needs beyond the defaults. storage_model's inputs are transactions of 16
# bytes: without -len_control=0 libFuzzer keeps them short and the model never sees long
# histories.
extra_args() {
    case "$1" in
    manifest) echo "-max_len=65536" ;;
    storage_model) echo "-max_len=16384 -len_control=0" ;;
    push_commands) echo "-max_len=8192" ;;
    bundle_reader) echo "-max_len=65536" ;;
    *) echo "-max_len=4096" ;;
    esac
}

# `-s none`: no sanitizer (stable has none); --release with debug assertions is cargo-fuzz's
# default build.
nice -n "$nice" cargo fuzz build -s none
mkdir -p fuzz/logs
failed=0
printf '%-14s %6s %12s %8s %7s %8s %9s %10s %6s %8s\n' \
    target seconds executions exec/s cov features corpus corpus_KiB seeds+ crashes
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t seeds=data-fixtures/fuzz/$t log=fuzz/logs/$t.log
    mkdir -p "$corpus" "$seeds" "fuzz/artifacts/$t"
    crashes_before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    seeds_before=$(find "$seeds" -type f | wc -l)
    # shellcheck disable=SC2046
    nice -n "$nice" cargo fuzz run -s none "$t" "$corpus" "$seeds" -- \
        -max_total_time="$secs" -print_final_stats=1 $(extra_args "$t") >"$log" 2>&1 || failed=1
    # Keep only what adds edges to the committed seeds: a set-cover merge on edge coverage
    # (without hit counters) keeps the committed corpus to hundreds of small files.
    # shellcheck disable=SC2046
    nice -n "$nice" cargo fuzz run -s none "$t" "$seeds" "$corpus" -- -set_cover_merge=1 \
        -use_counters=0 $(extra_args "$t") >"fuzz/logs/$t.merge.log" 2>&1 || true
    last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-14s %6s %12s %8s %7s %8s %9s %10s %6s %8s\n' "$t" "$secs" "${execs:-?}" \
        "${rate:-?}" "${cov:-?}" "${ft:-?}" "$(find "$corpus" -type f | wc -l)" \
        "$(du -sk "$corpus" | cut -f1)" \
        "$(($(find "$seeds" -type f | wc -l) - seeds_before))" \
        "$(($(find "fuzz/artifacts/$t" -type f | wc -l) - crashes_before))"
done
exit "$failed"
