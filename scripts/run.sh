#!/bin/sh
# Sets up and runs the daemon in the foreground. If no PulseAudio server is reachable,
# starts a private one first (and stops it again on exit), so that
#   PULSE_SERVER=<printed address> paplay some.wav
# is heard by every client of ws://HOST:6090/audio. Extra arguments go to novnc-audio.
set -eu
cd "$(dirname "$0")/.."
# shellcheck disable=SC2046
scripts/deps.sh $(cat scripts/build-deps.txt)
cargo build --release --locked
bin=target/release/novnc-audio
extra=""
[ "$(id -u)" -eq 0 ] && extra="--allow-root"

pa_pid=""
cleanup() { [ -n "$pa_pid" ] && kill "$pa_pid" 2>/dev/null; true; }
trap cleanup EXIT INT TERM

if ! pactl info >/dev/null 2>&1; then
    runtime="${XDG_RUNTIME_DIR:-/tmp/novnc-audio-$(id -u)}"
    mkdir -p "$runtime" && chmod 700 "$runtime"
    echo "no PulseAudio reachable: starting a private one in $runtime" >&2
    XDG_RUNTIME_DIR="$runtime" pulseaudio -n -F /dev/null --exit-idle-time=-1 \
        --daemonize=no --log-target=stderr --log-level=error \
        -L module-native-protocol-unix &
    pa_pid=$!
    export PULSE_SERVER="unix:$runtime/pulse/native"
    i=0
    until pactl info >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "PulseAudio did not start" >&2; exit 1; }
        sleep 0.1
    done
    echo "play into it with: PULSE_SERVER=$PULSE_SERVER paplay some.wav" >&2
fi
# shellcheck disable=SC2086
"$bin" $extra "$@"
