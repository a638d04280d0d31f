#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another, from the
# committed seeds (fuzz/seeds/<target>) plus the working corpus it grows
# (fuzz/corpus/<target>, not committed). Prints one summary line per target for the
# table in docs/fuzzing.md; a crash leaves its input in fuzz/artifacts/<target>/ (copy it
# to fuzz/regressions/<target>/ with the fix). Needs cargo-fuzz (`cargo install
# cargo-fuzz --locked`); on a stable toolchain RUSTC_BOOTSTRAP=1 enables the nightly
# flags it passes.
#
#   fuzz/run.sh [seconds-per-target] [target...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(batch produce offsets_records log_files cluster_files segment_recovery)
fi
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
cargo fuzz build
mkdir -p logs
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="logs/$t.log"
    if cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (see fuzz/$log and fuzz/artifacts/$t/)"
        status=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -oE '#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || echo '?')
    echo "$t: ${seconds}s, $execs execs, $cov, $result"
done
exit $status
