#!/usr/bin/env bash
# Browser tests: headless Debian Chromium plays the daemon's stream of a 440 Hz tone.
#
#   tests/browser/run.sh            # WINDOW_S=20 (jitter-buffer window), NO_BUILD=1 skips cargo,
#                                   # ONLY=regex runs the tests whose names match
#
# Installs what it needs (chromium, pulseaudio, pacat, sox, node modules) idempotently, builds
# the daemon, starts a private PulseAudio and the daemon on a free loopback port, plays the tone
# into PulseAudio and runs tests/browser/test.mjs with node's test runner, after the node-only
# tests of web/'s parts (arrival-jitter, splice, jitter-buffer, scheduled-output). It stops only
# what it started, by pid.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
t_start=$(date +%s)
say() { echo "run.sh: $*" >&2; }

# ------------------------------------------------------------------------------ dependencies
apt_updated=
need_pkg() {  # need_pkg COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  say "installing $2"
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need_pkg chromium chromium
need_pkg pulseaudio pulseaudio
need_pkg pacat pulseaudio-utils
need_pkg pactl pulseaudio-utils
need_pkg sox sox
need_pkg opusenc opus-tools   # the mock server's Opus: PLC and click-free tests need it
need_pkg node nodejs
need_pkg npm npm

# npm ci only when package-lock.json changed since the last install.
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

# ------------------------------------------------------------------------------ processes
state=$(mktemp -d /tmp/novnc-audio-browser.XXXXXX)
pulse_pid=
tone_pid=
daemon_pidfile="$state/daemon.pid"

cleanup() {
  local rc=$?
  set +e
  if [ -n "$tone_pid" ]; then kill -TERM -- "-$tone_pid" 2>/dev/null; fi   # the tone loop's group
  if [ -s "$daemon_pidfile" ]; then
    local dpid; dpid=$(cat "$daemon_pidfile")
    kill -TERM "$dpid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dpid" 2>/dev/null
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
daemon_cmd=("$bin" -H 127.0.0.1 -p "$port" --allow-root)
"${daemon_cmd[@]}" >"$state/daemon.log" 2>&1 &
echo $! >"$daemon_pidfile"
disown  # the tests kill and restart it; no job notices from bash
for _ in $(seq 150); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$(cat "$daemon_pidfile")" 2>/dev/null || { say "the daemon exited"; exit 1; }
  sleep 0.1
done
# The daemon makes a null sink when the server has none; wait for a default sink to play to.
for _ in $(seq 100); do
  [ -n "$(pactl get-default-sink 2>/dev/null)" ] && [ "$(pactl get-default-sink)" != "@DEFAULT_SINK@" ] && break
  sleep 0.1
done
say "PulseAudio default sink: $(pactl get-default-sink 2>/dev/null || echo none)"

# The tone, in a loop in its own process group (a restarted daemon may recreate the sink, which
# ends pacat's stream).
setsid bash -c '
  while :; do
    sox -q -n -t raw -r 48000 -c 2 -e signed -b 16 - synth 600 sine 440 vol 0.5 2>/dev/null \
      | pacat --raw --format=s16le --rate=48000 --channels=2 --latency-msec=20 2>/dev/null
    sleep 0.2
  done' >/dev/null 2>&1 &
tone_pid=$!

json_argv=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${daemon_cmd[@]}")
say "daemon on http://127.0.0.1:$port/ (pid $(cat "$daemon_pidfile")), running the browser tests"
cd "$here"
NOVNC_AUDIO_URL="http://127.0.0.1:$port/" \
NOVNC_AUDIO_CMD="$json_argv" \
NOVNC_AUDIO_PIDFILE="$daemon_pidfile" \
WINDOW_S="${WINDOW_S:-20}" \
  node --test --test-concurrency=1 ${ONLY:+--test-name-pattern="$ONLY"} arrival-jitter.mjs splice.mjs jitter-buffer.mjs scheduled-output.mjs test.mjs
