#!/usr/bin/env bash
# Installs the pinned AMQP clients of the AMQP listener's tests (requirements.txt: pika)
# into a venv of their own, once (again when requirements.txt changes), and prints the
# venv's python.
#
#   tests/amqp/setup.sh            # venv at tests/amqp/.venv (WEIR_AMQP_PY_VENV overrides)
#
# Tests running at once: an exclusive flock on a lock file beside the venv makes the
# second wait for the first's install, then find the venv ready.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${WEIR_AMQP_PY_VENV:-$here/.venv}"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.txt"
lock="$venv.lock"
command -v python3 >/dev/null || { echo "setup.sh: python3 is needed" >&2; exit 1; }
command -v flock >/dev/null || { echo "setup.sh: flock is needed (util-linux)" >&2; exit 1; }
mkdir -p "$(dirname "$venv")"
exec 9>"$lock"
# The install below is bounded by 300 + 300 s; a waiter gives up a little after that.
timeout_s=660
flock --wait "$timeout_s" 9 ||
    { echo "setup.sh: another setup.sh held $lock for over ${timeout_s}s" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
    echo "setup.sh: installing the pinned AMQP clients into $venv" >&2
    rm -rf "$venv"
    timeout 300 python3 -m venv "$venv" >&2 ||
        { echo "setup.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
    timeout 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$requirements" >&2
    # The stamp is written last: a venv without it is reinstalled by the next call.
    cp "$requirements" "$stamp"
fi
echo "$venv/bin/python"
