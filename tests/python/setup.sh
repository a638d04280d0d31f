#!/usr/bin/env bash
# Installs the pinned Python clients of the interop tests (requirements.txt: grpcio and the
# Kafka clients) into one venv shared by every test, once (again when requirements.txt
# changes), and prints the venv's python.
#
#   tests/python/setup.sh            # venv at tests/python/.venv (WEIR_PY_VENV overrides)
#
# Two tests may call it at once (cargo runs test binaries in parallel): an exclusive flock
# on a lock file beside the venv makes the second wait for the first's install and then
# find the venv ready, instead of deleting it under the first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${WEIR_PY_VENV:-$here/.venv}"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.txt"
lock="$venv.lock"
command -v python3 >/dev/null || { echo "setup.sh: python3 is needed" >&2; exit 1; }
command -v flock >/dev/null || { echo "setup.sh: flock is needed (util-linux)" >&2; exit 1; }
mkdir -p "$(dirname "$venv")"
exec 9>"$lock"
# The install below is bounded by 300 + 900 s; a waiter gives up a little after that.
timeout_s=1260
flock --wait "$timeout_s" 9 ||
    { echo "setup.sh: another setup.sh held $lock for over ${timeout_s}s" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
    echo "setup.sh: installing the pinned Python clients into $venv" >&2
    rm -rf "$venv"
    timeout 300 python3 -m venv "$venv" >&2 ||
        { echo "setup.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
    timeout 900 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$requirements" >&2
    # The stamp is written last: a venv without it is reinstalled by the next call.
    cp "$requirements" "$stamp"
fi
echo "$venv/bin/python"
