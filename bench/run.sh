#!/usr/bin/env bash
# make bench / make bench-smoke: install what the benchmark needs (idempotent), build the
# daemon, the bench crate and the floor program, then run bench/bench.py.
# Output: target/bench/report.json and docs/PERFORMANCE.md (smoke: report-smoke.json and
# PERFORMANCE.smoke.md there instead), logs in
# target/bench/logs. Usage: bench/run.sh [--smoke] [--seconds N]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/bench
mkdir -p "$OUT"

CHILD=
cleanup() {
    # Only the orchestrator we started; it ends its own children in its finally block.
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "[bench] $*" >&2; }

# System packages (apt waits for a lock held by another installer instead of failing).
PKGS="pulseaudio pulseaudio-utils libpulse-dev libopus-dev ffmpeg gcc pkg-config iproute2"
missing=$(dpkg-query -W -f='${Package} ${Status}\n' $PKGS 2>/dev/null \
    | awk '$NF!="installed"{print $1}'; for p in $PKGS; do
        dpkg-query -W "$p" >/dev/null 2>&1 || echo "$p"; done)
missing=$(echo "$missing" | sort -u | xargs)
if [ -n "$missing" ]; then
    say "installing $missing"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq $missing
fi

# pcmflux in its own venv.
VENV=$OUT/venv
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("pcmflux") != "2.2.0")' 2>/dev/null; then
    say "installing pcmflux==2.2.0 into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check pcmflux==2.2.0
fi

say "building"
cargo build --release --quiet || say "building the daemon failed: its measurements will fail"
cargo build --release --quiet --manifest-path bench/Cargo.toml
cc -O2 -Wall -Wextra -o "$OUT/floor" bench/floor.c \
    $(pkg-config --cflags --libs libpulse libpulse-mainloop-glib opus)

python3 bench/bench.py "$@" &
CHILD=$!
wait "$CHILD"
