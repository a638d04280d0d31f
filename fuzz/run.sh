#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another, from the
# committed seeds (fuzz/seeds/<target>) and regressions (fuzz/regressions/<target>) plus
# the working corpus it grows (fuzz/corpus/<target>, not committed). Prints one summary
# line per target for the table in docs/fuzzing.md; a crash leaves its input in
# fuzz/artifacts/<target>/ (copy it to fuzz/regressions/<target>/ with the fix). Installs
# cargo-fuzz into fuzz/.tools when it is not on PATH; on a stable toolchain
# RUSTC_BOOTSTRAP=1 enables the nightly flags it passes.
#
#   fuzz/run.sh [seconds-per-target] [target...]
#
# WEIR_FUZZ_CI=1 is the short run `.ci/run` makes: a dev build (debug assertions,
# unoptimised, without ASan: it compiles in a fraction of the time), and a throwaway
# corpus, so a CI run grows nothing in the checkout.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
# The cargo-fuzz this script installs when none is on PATH (the one these runs used).
CARGO_FUZZ_VERSION=0.13.2
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(batch produce offsets_records log_files cluster_files segment_recovery kafka_frame kafka_request sasl_scram sasl_credentials)
fi
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz into fuzz/.tools" >&2
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root .tools
    export PATH="$PWD/.tools/bin:$PATH"
fi
profile=()
corpus_root=corpus
if [ "${WEIR_FUZZ_CI:-}" = 1 ]; then
    # ASan costs the build 1.5-2 minutes of CI's two cores; five seconds of each target
    # find panics and overflows with or without it, and the long runs keep it.
    profile=(--dev --sanitizer none)
    corpus_root=$(mktemp -d)
    trap 'rm -rf "$corpus_root"' EXIT
fi
cargo fuzz build "${profile[@]}"
mkdir -p logs
status=0
for t in "${targets[@]}"; do
    mkdir -p "$corpus_root/$t"
    log="logs/$t.log"
    inputs=("$corpus_root/$t" "seeds/$t")
    if [ -d "regressions/$t" ]; then
        inputs+=("regressions/$t")
    fi
    if cargo fuzz run "${profile[@]}" "$t" "${inputs[@]}" -- \
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
