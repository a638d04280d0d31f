#!/usr/bin/env bash
# The integration tests that RabbitMQ's Python clients ship in their source distributions,
# against a running Weir AMQP listener, as their projects run them against RabbitMQ:
#
#   py-amqp  t/integration/test_rmq.py of amqp's sdist (Celery's and kombu's AMQP client)
#   kombu    t/integration/test_py_amqp.py of kombu's sdist (kombu over py-amqp)
#
# at the versions tests/python/requirements.txt pins (the clients the shared venv holds).
#
#   tests/compat/amqp-suite.sh SUITE PORT [PYTEST_ARGS...]
#
# Fetches the sdist from PyPI once into CACHE (pip download), runs pytest with the shared
# venv's Python (tests/python/setup.sh) against 127.0.0.1:PORT, and exits with pytest's
# status. Left out, by -k: py-amqp's TLS tests (they read certificates its sdist does not
# ship, and two reach badssl.com; Weir's amqps is tested with pika) and kombu's priority
# tests (x-max-priority is refused at declare: docs/amqp.md). py-amqp's take a second,
# kombu's about 40 s.
#
# Environment: CACHE [<repo>/target/compat/amqp-suites], WEIR_PY_VENV (as setup.sh).
set -euo pipefail

if [ $# -lt 2 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    case "${1:-}" in --help|-h) exit 0 ;; *) exit 2 ;; esac
fi
suite="$1"
port="$2"
shift 2
case "$suite" in
    py-amqp) package=amqp; tests=t/integration/test_rmq.py; leave_out="not tls" ;;
    kombu) package=kombu; tests=t/integration/test_py_amqp.py; leave_out="not Priority" ;;
    *) echo "amqp-suite.sh: unknown suite '$suite' (py-amqp or kombu)" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="$("$root/tests/python/setup.sh")"
version="$(sed -n "s/^$package==\(.*\)\$/\1/p" "$root/tests/python/requirements.txt")"
[ -n "$version" ] || { echo "amqp-suite.sh: requirements.txt pins no $package version" >&2; exit 2; }
cache="${CACHE:-$root/target/compat/amqp-suites}"
source="$cache/$package-$version"
mkdir -p "$cache"
exec 9>"$cache.lock"
flock --wait 600 9
if [ ! -f "$source/$tests" ]; then
    rm -rf "$source" "$cache/$package-$version.tar.gz"
    timeout 300 "$python" -m pip download --quiet --disable-pip-version-check --no-input \
        --no-deps --no-binary :all: --dest "$cache" "$package==$version" >&2
    tar -xzf "$cache/$package-$version.tar.gz" -C "$cache"
fi
flock --unlock 9
# The installed client (the same version) is the one tested, not the sdist's copy: run
# from outside the sdist, with pytest's importlib mode, which puts nothing on sys.path.
cd "$cache"
export RABBITMQ_HOST=127.0.0.1 RABBITMQ_5672_TCP="$port"
exec "$python" -m pytest "$source/$tests" --rootdir "$source" --import-mode=importlib \
    -p no:cacheprovider --timeout 60 -k "$leave_out" -q -rA "$@"
