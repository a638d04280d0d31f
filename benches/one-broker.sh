# Shared by the bench scripts that run one `weir serve` of their own (sourced, not run):
# compare-idempotence.sh, compare-transactions.sh, compare-direct.sh, partition-spread.sh and
# idle-connections.sh.
#
# start_broker WEIR DATA_DIR ADDRESS LOG [SERVE_ARGS...]
#     Starts `WEIR serve` on DATA_DIR with its gRPC listener on ADDRESS and its output in
#     LOG, sets BROKER to its pid, and waits up to 10 s for its health check; if it does
#     not answer, says so with the log's tail and exits the script. The caller's EXIT
#     trap stops it (kill "$BROKER").
# stop_broker
#     Stops the broker start_broker started, if any, and waits for it (an EXIT trap's
#     action, or before starting a fresh one).
# broker_ticks
#     The broker's user + system CPU so far, in clock ticks (TICK of them a second).
# shellcheck shell=bash

TICK="$(getconf CLK_TCK)"

start_broker() {
    local weir="$1" data="$2" address="$3" log="$4"
    shift 4
    "$weir" serve --data-dir "$data" --listen "$address" "$@" >"$log" 2>&1 &
    BROKER=$!
    for _ in $(seq 1 100); do
        "$weir" healthcheck --address "$address" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the broker did not answer its health check within 10 s; $log ends:" >&2
    tail -n 5 "$log" >&2
    exit 1
}

stop_broker() {
    if [ -n "${BROKER:-}" ]; then
        kill "$BROKER" 2>/dev/null || true
        wait "$BROKER" 2>/dev/null || true
        BROKER=
    fi
}

broker_ticks() { awk '{ print $14 + $15 }' "/proc/$BROKER/stat"; }
