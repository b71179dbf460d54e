#!/usr/bin/env bash
# Real noVNC in three real engines, each by its own WebDriver server: Chromium (chromedriver),
# Firefox ESR (geckodriver) and WebKitGTK (WebKitWebDriver + MiniBrowser), from a plain-HTTP
# non-localhost origin (desk.test, mapped to 127.0.0.1 in /etc/hosts) and from a secure one.
#
#   tests/browser/engines/run.sh                      # all engines, origins and page variants
#   ENGINES=firefox tests/browser/engines/run.sh      # one engine only (chromium, firefox, webkit)
#   WEB_DIR=/path/to/web (or WEB_REF=browser: web/ as committed on a branch)  ORIGINS=plain
#   VARIANTS=copied  WINDOW_S=60  CLICKS=0  NO_BUILD=1   (all knobs: novnc.test.mjs header)
#   DAEMON_ARGS='--frame-ms 10'  NOVNC_AUDIO_BIN=target/release/novnc-audio
#
# Installs what it needs idempotently (apt; geckodriver with cargo), builds the daemon, and
# starts, each on a free port and stopped by pid at the end: the daemon's PulseAudio (the tone
# and the latency clicks play there) and the daemon; a second PulseAudio with a null sink that is
# the browsers' sound card; Xvfb + x11vnc + an xterm and an xclock as the remote desktop; an
# Xvfb for MiniBrowser. novnc.test.mjs runs websockify on a copy of Debian's noVNC per variant.
# Then node runs novnc.test.mjs, which prints a summary table (engine x origin x variant).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
t_start=$(date +%s)
say() { echo "engines/run.sh: $*" >&2; }
PLAIN_HOST=${PLAIN_HOST:-desk.test}
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

# ------------------------------------------------------------------------------ dependencies
apt_updated=
need_pkg() {  # need_pkg FILE-OR-COMMAND PACKAGE
  if [[ $1 == /* ]]; then [ -e "$1" ] && return 0; else command -v "$1" >/dev/null 2>&1 && return 0; fi
  say "installing $2"
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
engines=${ENGINES:-chromium,firefox,webkit}
need_pkg pulseaudio pulseaudio
need_pkg pacat pulseaudio-utils
need_pkg sox sox
need_pkg node nodejs
need_pkg python3 python3
need_pkg Xvfb xvfb
need_pkg x11vnc x11vnc
need_pkg xterm xterm
need_pkg xclock x11-apps
need_pkg websockify websockify
need_pkg /usr/share/novnc/vnc.html novnc
if [[ $engines == *chromium* ]]; then need_pkg chromium chromium; need_pkg chromedriver chromium-driver; fi
if [[ $engines == *firefox* ]]; then
  need_pkg firefox-esr firefox-esr
  if ! command -v geckodriver >/dev/null 2>&1; then
    say "installing geckodriver with cargo (about 5 minutes)"
    cargo install geckodriver --locked --quiet
  fi
fi
if [[ $engines == *webkit* ]]; then need_pkg WebKitWebDriver webkit2gtk-driver; fi

# A non-localhost name for 127.0.0.1: pages from it are plain HTTP, not a secure context.
if ! grep -Eq "^127\.0\.0\.1[[:space:]].*\b$PLAIN_HOST\b" /etc/hosts; then
  if [ -w /etc/hosts ]; then
    echo "127.0.0.1 $PLAIN_HOST  # novnc-audio browser tests" >>/etc/hosts
    say "added '127.0.0.1 $PLAIN_HOST' to /etc/hosts"
  else
    say "cannot map $PLAIN_HOST to 127.0.0.1: /etc/hosts is not writable (run as root, or add it)"
  fi
else
  say "/etc/hosts already maps $PLAIN_HOST to 127.0.0.1"
fi

if [ -z "${NO_BUILD:-}" ]; then
  say "cargo build"
  (cd "$repo" && cargo build --quiet --bin novnc-audio)
fi
bin="${NOVNC_AUDIO_BIN:-$repo/target/debug/novnc-audio}"
[ -x "$bin" ] || { say "no daemon binary at $bin"; exit 1; }

# ------------------------------------------------------------------------------ processes
state=$(mktemp -d /tmp/novnc-audio-engines.XXXXXX)
touch "$state/started"
novnc_src=${NOVNC_SRC:-/usr/share/novnc}
groups=()   # process groups we started (setsid), ended in reverse order

start() {  # start NAME CMD...: in its own process group, output in $state/NAME.log
  local name=$1; shift
  setsid "$@" >"$state/$name.log" 2>&1 &
  groups+=("$!")
}

cleanup() {
  local rc=$?
  set +e
  for ((i = ${#groups[@]} - 1; i >= 0; i--)); do kill -TERM -- "-${groups[i]}" 2>/dev/null; done
  for pid in "${groups[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null
  done
  # The pages are copies: Debian's noVNC must come out as it went in.
  local touched; touched=$(find "$novnc_src" -newer "$state/started" 2>/dev/null | head -n 5)
  if [ -n "$touched" ]; then say "BUG: the test changed files under $novnc_src: $touched"; [ "$rc" -ne 0 ] || rc=1; fi
  if [ "$rc" -ne 0 ]; then
    for f in "$state"/*.log; do [ -f "$f" ] && { echo "----- $(basename "$f") (tail)" >&2; tail -n 20 "$f" >&2; }; done
  fi
  rm -rf "$state"
  say "finished in $(( $(date +%s) - t_start )) s (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {  # a free loopback port P, with P + ${1:-0} free as well
  python3 - "${1:-0}" <<'PY'
import socket, sys
off = int(sys.argv[1])
for _ in range(200):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    if off == 0:
        print(p); break
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + off)); print(p); break
    except OSError:
        pass
    finally:
        b.close(); a.close()
PY
}

# (pulse and xvfb answer in $REPLY: a command substitution would start them in a subshell,
# whose process groups the cleanup would never see.)
pulse() {  # pulse NAME [EXTRA MODULE ARGS...]: a private PulseAudio; REPLY=its server address
  local name=$1; shift
  local dir="$state/$name"
  mkdir -m 700 -p "$dir"
  start "$name" env HOME="$dir" XDG_RUNTIME_DIR="$dir" pulseaudio -n -F /dev/null --exit-idle-time=-1 \
    --daemonize=no -L 'module-native-protocol-unix auth-anonymous=1' "$@"
  local server="unix:$dir/pulse/native"
  for _ in $(seq 100); do PULSE_SERVER=$server pactl info >/dev/null 2>&1 && break; sleep 0.1; done
  PULSE_SERVER=$server pactl info >/dev/null || { say "PulseAudio $name did not start"; exit 1; }
  REPLY=$server
}

xvfb() {  # xvfb NAME: a private X server on a free display; REPLY=":N"
  local name=$1
  start "$name" bash -c "exec Xvfb -displayfd 3 -screen 0 1280x900x24 -nolisten tcp 3>'$state/$name.display'"
  for _ in $(seq 100); do [ -s "$state/$name.display" ] && break; sleep 0.1; done
  [ -s "$state/$name.display" ] || { say "Xvfb $name did not start"; exit 1; }
  REPLY=":$(head -n1 "$state/$name.display")"
}

wait_port() {  # wait_port PORT WHAT
  for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  say "$2 did not open port $1"; exit 1
}

# The daemon's PulseAudio: what the daemon records (the tone and the clicks are played here).
pulse daemon-pulse; daemon_pulse=$REPLY
# The browsers' own sound card, separate, so their output never reaches what the daemon records.
pulse browser-pulse -L 'module-null-sink sink_name=browser_out'; browser_pulse=$REPLY
PULSE_SERVER=$browser_pulse pactl set-default-sink browser_out

# The daemon, on the port fromVncUrl() derives from websockify's: + 10.
ws_port=$(free_port 10)
daemon_port=$((ws_port + 10))
daemon_args=(-H 127.0.0.1 -p "$daemon_port" --allow-root)
# DAEMON_ARGS: more options for the daemon (make bench passes --frame-ms 10), split on spaces.
read -r -a extra_daemon_args <<<"${DAEMON_ARGS:-}"
daemon_args+=("${extra_daemon_args[@]}")
novnc_dir_path=
if "$bin" --help 2>&1 | grep -q -- '--novnc-dir'; then
  daemon_args+=(--novnc-dir /usr/share/novnc)
  novnc_dir_path=/novnc/vnc.html
fi
start daemon env PULSE_SERVER="$daemon_pulse" "$bin" "${daemon_args[@]}"
wait_port "$daemon_port" "the daemon"
for _ in $(seq 100); do
  sink=$(PULSE_SERVER=$daemon_pulse pactl get-default-sink 2>/dev/null || true)
  [ -n "$sink" ] && [ "$sink" != "@DEFAULT_SINK@" ] && break
  sleep 0.1
done
say "daemon on 127.0.0.1:$daemon_port, recording $sink"

# The remote desktop: Xvfb, an xterm and an xclock on it, x11vnc, websockify serving noVNC.
xvfb desk-x; desk=$REPLY
start xterm env DISPLAY="$desk" xterm -geometry 90x20+10+10 -bg '#f0f0e0' -fg black -hold \
  -e bash -c 'echo "novnc-audio engine test desktop"; ls -l /usr/share/novnc; date'
start xclock env DISPLAY="$desk" xclock -geometry 200x200+700+40 -update 1
vnc_port=$(free_port)
start x11vnc x11vnc -display "$desk" -rfbport "$vnc_port" -forever -shared -nopw -localhost -quiet
wait_port "$vnc_port" x11vnc
serve_dir="$state/novnc"   # novnc.test.mjs makes a web root per page variant and runs websockify
mkdir -p "$serve_dir"

# The module under test: WEB_DIR (default the repo's web/), or web/ as committed at WEB_REF (a
# branch or commit of this repository, e.g. WEB_REF=browser), exported with git archive.
web_dir=${WEB_DIR:-$repo/web}
if [ -n "${WEB_REF:-}" ]; then
  mkdir -p "$state/web-ref"
  git -C "$repo" archive "$WEB_REF" web | tar -x -C "$state/web-ref"
  web_dir="$state/web-ref/web"
  say "module under test: web/ at $WEB_REF ($(git -C "$repo" rev-parse --short "$WEB_REF"))"
fi

webkit_display=
if [[ $engines == *webkit* ]]; then xvfb webkit-x; webkit_display=$REPLY; fi

say "noVNC at http://$PLAIN_HOST:$ws_port/vnc.html (desktop $desk, VNC $vnc_port); browsers play into $browser_pulse"
cd "$here"
SERVE_DIR="$serve_dir" WS_PORT="$ws_port" VNC_PORT="$vnc_port" DAEMON_PORT="$daemon_port" NOVNC_DIR_PATH="$novnc_dir_path" \
NOVNC_SRC="$novnc_src" DAEMON_PULSE_SERVER="$daemon_pulse" DAEMON_SINK="$sink" BROWSER_PULSE_SERVER="$browser_pulse" \
WEBKIT_DISPLAY="$webkit_display" PLAIN_HOST="$PLAIN_HOST" ENGINES="$engines" \
WEB_DIR="$web_dir" ARTIFACTS="${ARTIFACTS:-$repo/target/browser-engines}" \
  node --test-reporter=spec novnc.test.mjs
