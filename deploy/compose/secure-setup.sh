#!/usr/bin/env bash
# Makes what docker-compose.secure.yml mounts, in DIR (default: secure/ beside this
# script):
#   DIR/certs/   `weir dev certs` run in the broker image as the broker's user (uid
#                10001), so the keys are 0600 and readable by the brokers: a CA, a node
#                certificate valid for weir-1..weir-4, localhost and 127.0.0.1, and client
#                certificates. Kept if DIR/certs/ca.pem exists (FORCE=1 makes new ones).
#   DIR/admin.env  WEIR_ADMIN_USER=admin and a random WEIR_ADMIN_PASSWORD (0600, yours).
#                Kept if it exists.
# Then prints the settings a client on the host needs.
#
# Usage: deploy/compose/secure-setup.sh [DIR]
#   WEIR_IMAGE  the broker image [weir:latest] (deploy/docker/build-image.sh)
#   FORCE=1     replace the certificates (every client must then trust the new CA)
# For development and tests: the CA's key is written beside the certificates.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/secure}"
image="${WEIR_IMAGE:-weir:latest}"
# The broker image's user (deploy/docker/build-image.sh).
weir_uid=10001
# Every name a node is reached by: the compose services' and the host's loopback.
hosts=(weir-1 weir-2 weir-3 weir-4)

mkdir -p "$dir/certs"
dir="$(cd "$dir" && pwd)"
if [ ! -e "$dir/certs/ca.pem" ] || [ "${FORCE:-0}" = 1 ]; then
    # The broker's user writes the files, so it owns the keys. It needs to write the
    # directory meanwhile: owned by it if we are root, else open to all for the run.
    if [ "$(id -u)" = 0 ]; then
        chown "$weir_uid:$weir_uid" "$dir/certs"
    else
        chmod 1777 "$dir/certs"
    fi
    host_args=()
    for h in "${hosts[@]}"; do host_args+=(--host "$h"); done
    force=()
    [ "${FORCE:-0}" = 1 ] && force=(--force)
    docker run --rm --user "$weir_uid:$weir_uid" --network none \
        -v "$dir/certs:/certs" "$image" \
        dev certs --out /certs "${host_args[@]}" "${force[@]}" >/dev/null
    [ "$(id -u)" = 0 ] || chmod 0755 "$dir/certs"
    echo "certificates: $dir/certs (node valid for ${hosts[*]}, localhost, 127.0.0.1)" >&2
else
    echo "certificates: $dir/certs (kept; FORCE=1 replaces them)" >&2
fi

if [ ! -e "$dir/admin.env" ]; then
    password="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
    (umask 077 && printf 'WEIR_ADMIN_USER=admin\nWEIR_ADMIN_PASSWORD=%s\n' "$password" \
        >"$dir/admin.env")
    echo "admin: $dir/admin.env (new)" >&2
else
    echo "admin: $dir/admin.env (kept)" >&2
fi

user="$(sed -n 's/^WEIR_ADMIN_USER=//p' "$dir/admin.env")"
password="$(sed -n 's/^WEIR_ADMIN_PASSWORD=//p' "$dir/admin.env")"
cat <<EOF
# docker-compose -f $here/docker-compose.yml -f $here/docker-compose.secure.yml up -d
export WEIR_BROKERS=127.0.0.1:19292,127.0.0.1:29292,127.0.0.1:39292
export WEIR_TLS_CA=$dir/certs/ca.pem
export WEIR_USER=$user
export WEIR_PASSWORD=$password
# Kafka clients on the host: bootstrap 127.0.0.1:19092, security.protocol SASL_SSL,
# sasl.mechanism SCRAM-SHA-512, the user and password above, ssl.ca.location (kafka-python:
# ssl_cafile) $dir/certs/ca.pem
EOF
