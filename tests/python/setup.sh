#!/usr/bin/env bash
# Installs the Python gRPC client the interop test uses (requirements.txt) into a venv,
# once (again when requirements.txt changes), and prints the venv's python.
#
#   tests/python/setup.sh            # venv at tests/python/.venv (WEIR_PY_VENV overrides)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${WEIR_PY_VENV:-$here/.venv}"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.txt"
command -v python3 >/dev/null || { echo "setup.sh: python3 is needed" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
    echo "setup.sh: installing the Python gRPC client into $venv" >&2
    rm -rf "$venv"
    timeout 300 python3 -m venv "$venv" >&2 ||
        { echo "setup.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
    timeout 600 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$requirements" >&2
    cp "$requirements" "$stamp"
fi
echo "$venv/bin/python"
