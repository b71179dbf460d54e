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
daemon_pid=""
private_dir=""
# The daemon runs in the background and the script waits for it, so a plain `kill` of this
# script (not only Ctrl-C) reaches the trap, which ends the daemon and then the private
# PulseAudio, each by the pid this script started, and removes the private directory.
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$daemon_pid" ]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [ -n "$pa_pid" ]; then
        kill "$pa_pid" 2>/dev/null || true
        wait "$pa_pid" 2>/dev/null || true
    fi
    [ -n "$private_dir" ] && rm -rf "$private_dir"
    true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! pactl info >/dev/null 2>&1; then
    # A fresh directory of our own (not a predictable /tmp name another user could create
    # first), unless the session already has a runtime directory.
    if [ -n "${XDG_RUNTIME_DIR:-}" ]; then
        runtime="$XDG_RUNTIME_DIR"
    else
        private_dir=$(mktemp -d /tmp/novnc-audio-run.XXXXXX)
        runtime="$private_dir"
    fi
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
"$bin" $extra "$@" &
daemon_pid=$!
status=0
wait "$daemon_pid" || status=$?
daemon_pid=""
exit "$status"
