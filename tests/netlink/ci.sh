#!/usr/bin/env bash
# Short WAN-link check for CI (.ci/run may call it): installs its Debian packages
# idempotently, builds the release daemon, runs tests/netlink/wan_stalls.py for 10 s and
# asserts that the emulated link delayed and dropped packets, that every client still got
# its frames, and that a TCP option set through NOVNC_AUDIO_TCP_OPTIONS changes the
# stream. Never skips: a machine without network namespaces or /dev/net/tun fails here.
#   tests/netlink/ci.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
say() { echo "netlink/ci.sh: $*" >&2; }

missing=
for pair in ip:iproute2 ss:iproute2 python3:python3 pulseaudio:pulseaudio pacat:pulseaudio-utils \
    pactl:pulseaudio-utils pkg-config:pkg-config; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
dpkg-query -W libpulse-dev libopus-dev >/dev/null 2>&1 || missing="$missing libpulse-dev libopus-dev"
if [ -n "$missing" ]; then
  say "installing$missing"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends $(echo "$missing" | xargs -n1 | sort -u) >/dev/null
fi
python3 tests/netlink/linkemu.py check >/dev/null || {
  say "this machine cannot emulate a link: $(python3 tests/netlink/linkemu.py check)"; exit 1; }

cargo build --release --locked --quiet --bin novnc-audio
mkdir -p target/netlink
out=target/netlink/wan_stalls_ci.json
python3 tests/netlink/wan_stalls.py --seconds "$seconds" --json "$out"
python3 - "$out" "$seconds" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); seconds = float(sys.argv[2])
s = r["link"]["stats"]
bad = []
for d in ("a_to_b", "b_to_a"):
    if s[d]["dropped"] == 0:
        bad.append(f"the link dropped nothing {d} (1 % loss asked)")
    if not 30 <= (s[d]["delay_ms_p50"] or 0) <= 80:
        bad.append(f"median one-way delay {d} {s[d]['delay_ms_p50']} ms, asked 40 ± 20 ms")
for name, v in r["variants"].items():
    want = seconds * 1000 / 20
    # 0.8: a loaded machine may stall the capture for a second; the link itself loses none.
    if v.get("frames", 0) < 0.8 * want:
        bad.append(f"{name}: {v.get('frames', 0)} frames in {seconds:g} s, want {want:.0f} "
                   f"({v.get('error')})")
# NOVNC_AUDIO_TCP_OPTIONS reaches the daemon's client sockets: with TCP_NODELAY turned off
# there, Nagle holds each frame until the previous one is acknowledged (one round trip), so
# frames arrive in bunches: the median gap between arrivals is ~0 ms instead of ~20 ms (0.0 vs
# 17-19 ms in every run so far).
v = r["variants"]
if "nodelay=0" in v and "baseline" in v:
    g0, gb = v["nodelay=0"].get("gap_ms_p50"), v["baseline"].get("gap_ms_p50")
    if g0 is None or gb is None or not (g0 < 5 and gb > 10):
        bad.append(f"median arrival gap {g0} ms with nodelay=0, {gb} ms in the baseline: "
                   "the option did not reach the daemon's sockets")
for b in bad:
    print(f"netlink/ci.sh: FAIL: {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
say "ok"
