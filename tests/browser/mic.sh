#!/usr/bin/env bash
# Browser test of the microphone: headless Debian Chromium with a fake microphone (a WAV of
# 660 Hz) speaks through the daemon's listen page, and through noVNC's own vnc.html (served by
# the daemon with --novnc-dir, its Sound panel), into the daemon's /mic; a recorder on the
# server's default source must hear 660 Hz. Prints the latency from the browser's capture to
# the source (median, p99).
#
#   tests/browser/mic.sh            # NO_BUILD=1 skips cargo
#
# Installs what it needs (chromium, pulseaudio, pulseaudio-utils, sox, novnc, node modules)
# idempotently, builds the daemon, starts a private PulseAudio and the daemon with
# --microphone on a free loopback port, and runs tests/browser/mic.mjs with node's test
# runner. It stops only what it started, by pid.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
t_start=$(date +%s)
say() { echo "mic.sh: $*" >&2; }

apt_updated=
need_pkg() {  # need_pkg COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  say "installing $2"
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need_pkg chromium chromium
need_pkg pulseaudio pulseaudio
need_pkg parec pulseaudio-utils
need_pkg pactl pulseaudio-utils
need_pkg sox sox
need_pkg node nodejs
need_pkg npm npm
if [ ! -f /usr/share/novnc/vnc.html ]; then  # noVNC itself, served by the daemon (--novnc-dir)
  say "installing novnc"
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends novnc >/dev/null
fi

lock_sum=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$here/node_modules/.lock-sha256" 2>/dev/null || true)" != "$lock_sum" ]; then
  say "npm ci"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$here/node_modules/.lock-sha256"
fi

if [ -z "${NO_BUILD:-}" ]; then
  say "cargo build"
  (cd "$repo" && cargo build --quiet --bin novnc-audio)
fi
bin="${NOVNC_AUDIO_BIN:-$repo/target/debug/novnc-audio}"
[ -x "$bin" ] || { say "no daemon binary at $bin"; exit 1; }

state=$(mktemp -d /tmp/novnc-audio-mic.XXXXXX)
pulse_pid=
daemon_pid=

cleanup() {
  local rc=$?
  set +e
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon_pid" 2>/dev/null
  fi
  if [ -n "$pulse_pid" ]; then kill -TERM "$pulse_pid" 2>/dev/null; wait "$pulse_pid" 2>/dev/null; fi
  if [ "$rc" -ne 0 ]; then
    for f in "$state"/*.log; do [ -f "$f" ] && { echo "----- $(basename "$f") (tail)" >&2; tail -n 30 "$f" >&2; }; done
  fi
  rm -rf "$state"
  say "finished in $(( $(date +%s) - t_start )) s (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export XDG_RUNTIME_DIR="$state/xdg"
mkdir -m 700 -p "$XDG_RUNTIME_DIR"
HOME="$XDG_RUNTIME_DIR" pulseaudio -n -F /dev/null --exit-idle-time=-1 --daemonize=no \
  -L module-native-protocol-unix >"$state/pulseaudio.log" 2>&1 &
pulse_pid=$!
export PULSE_SERVER="unix:$XDG_RUNTIME_DIR/pulse/native"
for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
pactl info >/dev/null || { say "PulseAudio did not start"; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" -H 127.0.0.1 -p "$port" --allow-root --microphone --novnc-dir /usr/share/novnc \
  >"$state/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 150); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$daemon_pid" 2>/dev/null || { say "the daemon exited"; exit 1; }
  sleep 0.1
done

# The fake microphone: 2 s of steady 660 Hz, then bursts (100 ms on, 140 ms off) for the
# latency; Chromium loops the file.
wav="$state/voice.wav"
sox -q -n -r 48000 -c 1 -b 16 "$state/steady.wav" synth 2 sine 660 vol 0.5
sox -q -n -r 48000 -c 1 -b 16 "$state/on.wav" synth 0.1 sine 660 vol 0.5
sox -q -n -r 48000 -c 1 -b 16 "$state/off.wav" trim 0 0.14
bursts=()
for _ in $(seq 60); do bursts+=("$state/on.wav" "$state/off.wav"); done
sox -q "$state/steady.wav" "${bursts[@]}" "$wav"

say "daemon on http://127.0.0.1:$port/ (pid $daemon_pid), running the microphone test"
cd "$here"
NOVNC_AUDIO_URL="http://127.0.0.1:$port/" \
MIC_WAV="$wav" \
  node --test --test-concurrency=1 mic.mjs
