#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's `chromium` and `chromium-driver`)
# for the console's browser test, when they are missing and apt-get can be run (as root),
# and prints the chromedriver's path. Exits 3, printing why, when they are missing and
# cannot be installed: the test then says it is skipped.
#
#   tests/browser/setup.sh
#
# Two tests may call it at once: an exclusive flock makes the second wait for the first.
set -euo pipefail
find_driver() {
    for d in chromedriver /usr/bin/chromedriver /usr/lib/chromium/chromedriver; do
        if command -v "$d" >/dev/null 2>&1; then command -v "$d"; return 0; fi
    done
    return 1
}
find_browser() {
    for b in chromium chromium-browser /usr/bin/chromium; do
        if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
    done
    return 1
}
if driver="$(find_driver)" && find_browser >/dev/null; then
    echo "$driver"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup.sh: chromium and chromium-driver are not installed, and apt-get cannot be run here (not root, or no apt-get)" >&2
    exit 3
fi
command -v flock >/dev/null || { echo "setup.sh: flock is needed (util-linux)" >&2; exit 3; }
exec 9>/tmp/weir-browser-setup.lock
flock --wait 1200 9 || { echo "setup.sh: another install held the lock for 20 minutes" >&2; exit 3; }
if ! { find_driver >/dev/null && find_browser >/dev/null; }; then
    echo "setup.sh: installing chromium and chromium-driver (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update >&2 || { echo "setup.sh: apt-get update failed" >&2; exit 3; }
    timeout 900 apt-get install -y --no-install-recommends chromium chromium-driver >&2 ||
        { echo "setup.sh: apt-get install chromium chromium-driver failed" >&2; exit 3; }
fi
driver="$(find_driver)" || { echo "setup.sh: chromedriver not found after the install" >&2; exit 3; }
find_browser >/dev/null || { echo "setup.sh: chromium not found after the install" >&2; exit 3; }
echo "$driver"
