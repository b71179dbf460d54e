#!/bin/sh
# Installs Debian packages that are missing, and only those (idempotent, quiet when
# everything is there). Usage: scripts/deps.sh PACKAGE...
set -eu
missing=""
for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing:$missing" >&2
# Update the package lists once if they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
# env after sudo: sudo's env_reset would drop a DEBIAN_FRONTEND set before it. The lock
# timeout waits for apt-daily on a freshly booted VM instead of failing.
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends $missing >/dev/null
