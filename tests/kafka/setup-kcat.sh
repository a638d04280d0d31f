#!/usr/bin/env bash
# Installs kcat (the librdkafka command-line client) from Debian, pinned, when it is
# missing or at another version, and prints its path. Non-interactive; needs root (CI and
# the developer machines run as root).
#
#   tests/kafka/setup-kcat.sh
set -euo pipefail
# Debian bookworm's kcat (`apt-cache policy kcat`); it links Debian's librdkafka.
version="1.7.1-2"
installed="$(dpkg-query -W -f='${Version}' kcat 2>/dev/null || true)"
if [ "$installed" != "$version" ]; then
    echo "setup-kcat.sh: installing kcat=$version from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists; an old list may not have the version.
    timeout 300 apt-get update -qq >&2
    timeout 600 apt-get install -y -qq --no-install-recommends "kcat=$version" >&2
fi
command -v kcat
