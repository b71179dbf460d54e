#!/bin/sh
# The shipped nginx location block (contrib/nginx/novnc-audio.conf) in a real
# nginx: a private PulseAudio playing a tone, the daemon against it, a private
# nginx on a loopback port including the snippet, and a WebSocket client
# through nginx that must receive Opus (and, with ?codec=pcm, PCM) frames.
# Everything it starts is stopped by pid at the end.
#
#   tests/packaging/nginx.sh          NOVNC_AUDIO=path/to/binary skips cargo build
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)
fail=0
bad() { printf 'FAIL: %s\n' "$*" >&2; fail=1; }
ok() { printf 'ok: %s\n' "$*"; }
say() { printf 'nginx.sh: %s\n' "$*"; }
start=$(date +%s)

need=
for p in nginx pulseaudio pulseaudio-utils python3; do
	dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || need="$need $p"
done
if [ -n "$need" ]; then
	say "installing$need"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need >/dev/null; }
fi

if [ -z "${NOVNC_AUDIO:-}" ]; then
	[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
	cargo build --quiet --bin novnc-audio
	NOVNC_AUDIO=$top/target/debug/novnc-audio
fi

tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx workers run as nobody
pids=
cleanup() {
	[ -f "$tmp/nginx.pid" ] && pids="$(cat "$tmp/nginx.pid") $pids"
	for pid in $pids; do kill "$pid" 2>/dev/null || true; done
	for pid in $pids; do
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		kill -9 "$pid" 2>/dev/null || true
	done
	if [ "$fail" != 0 ]; then
		for log in daemon.log pulse.log error.log; do
			[ -s "$tmp/$log" ] && { echo "--- $log"; tail -20 "$tmp/$log"; }
		done
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_free() {
	python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
wait_for() { # seconds command...
	n=$(($1 * 10))
	shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ $n -gt 0 ] || return 1
		sleep 0.1
	done
}

# --- PulseAudio ----------------------------------------------------------------------
export XDG_RUNTIME_DIR="$tmp/xdg"
mkdir -m 700 "$XDG_RUNTIME_DIR"
unset PULSE_SERVER
pulseaudio -n -F /dev/null --exit-idle-time=-1 --daemonize=no -L module-native-protocol-unix \
	>"$tmp/pulse.log" 2>&1 &
pids="$! $pids"
wait_for 10 pactl info || { bad "private PulseAudio did not start"; exit 1; }
ok "private PulseAudio (pid ${pids%% *}), no sinks"

# --- daemon ----------------------------------------------------------------------------
# The snippet proxies to 127.0.0.1:6090; use another port only if 6090 is taken.
dport=6090
port_free $dport || dport=$(free_port)
sed "s|127.0.0.1:6090|127.0.0.1:$dport|" contrib/nginx/novnc-audio.conf >"$tmp/novnc-audio.conf"
: >"$tmp/empty.conf"
"$NOVNC_AUDIO" --config "$tmp/empty.conf" --allow-root -H 127.0.0.1 -p "$dport" \
	--microphone --log-level debug >"$tmp/daemon.log" 2>&1 &
pids="$! $pids"
wait_for 10 grep -q 'listening on' "$tmp/daemon.log" || { bad "daemon did not start listening"; exit 1; }
ok "daemon listening on 127.0.0.1:$dport"
wait_for 10 sh -c 'pactl list short sinks | grep -q novnc_audio' &&
	ok "daemon created the novnc_audio sink" || bad "no novnc_audio sink"

# A 440 Hz tone into the default sink, so the frames carry sound.
python3 -c '
import math, struct, sys
frame = b"".join(struct.pack("<hh", v, v) for v in
                 (int(8000 * math.sin(2 * math.pi * 440 * i / 48000)) for i in range(48000)))
out = sys.stdout.buffer
while True:
    out.write(frame)
' 2>/dev/null | pacat --playback --format=s16le --rate=48000 --channels=2 --latency-msec=100 &
pids="$! $pids"

# --- nginx ------------------------------------------------------------------------------
nport=$(free_port)
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log info;
events { worker_connections 64; }
http {
    access_log $tmp/access.log;
    client_body_temp_path $tmp/client_body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    server {
        listen 127.0.0.1:$nport;
        server_name localhost;
        include $tmp/novnc-audio.conf;
    }
}
EOF
nginx -t -q -c "$tmp/nginx.conf" -g 'daemon off;' 2>"$tmp/nginx-t.log" &&
	ok "nginx -t accepts the snippet" || { bad "nginx -t: $(cat "$tmp/nginx-t.log")"; exit 1; }
nginx -c "$tmp/nginx.conf" -g 'daemon off;' &
pids="$! $pids"
wait_for 10 test -s "$tmp/nginx.pid" || { bad "nginx did not start"; exit 1; }
wait_for 10 python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])))' "$nport"
ok "nginx (pid $(cat "$tmp/nginx.pid")) on 127.0.0.1:$nport"

# --- through nginx -------------------------------------------------------------------------
if out=$(tests/packaging/ws-frames.sh "ws://127.0.0.1:$nport/audio" 25 1); then
	ok "Opus through nginx: $out"
else
	bad "Opus through nginx: $out"
fi
if out=$(tests/packaging/ws-frames.sh "ws://127.0.0.1:$nport/audio?codec=pcm" 10 0); then
	ok "PCM through nginx: $out"
else
	bad "PCM through nginx: $out"
fi
code=$(python3 - "$nport" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/audio")
print(c.getresponse().status)
EOF
)
[ "$code" = 426 ] && ok "plain GET /audio through nginx: 426" || bad "plain GET /audio through nginx: $code"
# The microphone: a speaker upgrades on /mic through nginx and sends 1 s of 660 Hz PCM;
# the daemon creates its source.
mic=$(python3 - "$nport" <<'EOF'
import base64, math, os, socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /mic HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
status = head.split(b" ")[1].decode()
if status != "101":
    print(status)
    sys.exit(0)
for k in range(50):
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 660 * (k * 960 + i) / 48000)))
                   for i in range(960))
    payload = struct.pack(">Q", k * 20) + b"\x00" + pcm
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(b"\x82" + bytes([0x80 | 126]) + struct.pack(">H", len(payload)) + mask + masked)
    time.sleep(0.02)
print(status)
EOF
)
[ "$mic" = 101 ] && ok "a speaker upgrades on /mic through nginx" || bad "/mic through nginx: $mic"
wait_for 10 sh -c 'pactl list short sources | grep -q novnc_mic' &&
	ok "the daemon created the novnc_mic source" || bad "no novnc_mic source"
grep -q '/audio\|/mic' "$tmp/access.log" 2>/dev/null && bad "the stream or the microphone appears in the access log (token leak)" ||
	ok "neither the stream nor the microphone is in nginx's access log"

say "took $(($(date +%s) - start)) s"
[ "$fail" = 0 ] && echo "nginx.sh: all checks passed" || echo "nginx.sh: FAILED" >&2
exit "$fail"
