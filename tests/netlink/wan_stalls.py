#!/usr/bin/env python3
"""TCP stalls of the audio stream over an emulated WAN link, per TCP option, paired.

    tests/netlink/wan_stalls.py [--seconds 60] [--delay-ms 40 --jitter-ms 20 --loss-pct 1]
                                [--daemon target/release/novnc-audio] [--json OUT]

Starts a private PulseAudio (own XDG_RUNTIME_DIR) with a null sink playing a 440 Hz tone, a
link (linkemu.Link: namespace A = the server side, B = the client side), and one daemon per
variant of NOVNC_AUDIO_TCP_OPTIONS in namespace A, all at once, each on its own port, each
with one wanprobe.py client in namespace B. Every variant therefore sees the same link, the
same machine load and the same time: a paired comparison, not absolute times.

Per variant, from the frames' arrival times and server timestamps (after a warm-up):
  gap_*      time between consecutive frame arrivals (p50 / p99 / max), stalls = gaps > 100 ms
  excess_*   one-way delay above the smallest of the last 10 s (the clocks' offset cancels):
             what a playout buffer must hold to play the frame in time
  late_N     share of frames a buffer of N ms would have played late (excess > N)
  lost       server timestamps that never came (the daemon dropped the frame, or the capture
             skipped it while the machine stalled: then every row loses the same)
Prints a Markdown table; --json writes everything. Exits non-zero if a variant has no frames.
Everything started here is ended by pid; the namespaces are deleted on exit, even on failure.
"""
import argparse
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import linkemu  # noqa: E402

# The options compared; the first is the baseline (what every client socket got before).
# "baseline again" is the same as the baseline: how far two identical rows fall apart in one
# run is the noise any other row must beat.
VARIANTS = [
    ("baseline", "none"),
    ("baseline again", "none"),
    ("nodelay=0", "nodelay=0"),
    ("thin_linear=1", "thin_linear=1"),
    ("notsent_lowat=16384", "notsent_lowat=16384"),
    ("notsent_lowat=2048", "notsent_lowat=2048"),
    ("thin_linear=1,notsent_lowat=16384", "thin_linear=1,notsent_lowat=16384"),
]
FRAME_MS = 20
STALL_MS = 100
LATE_AT = (100, 200, 400)
BASE_WINDOW_MS = 10_000


def q(v, p):
    if not v:
        return None
    s = sorted(v)
    return s[min(len(s) - 1, int(math.ceil(p * len(s))) - 1 if p > 0 else 0)]


def raw(t, ts, warm_ms):
    """Gaps, excess delays and lost frames of one client's recording, after the warm-up.

    Excess is measured against the smallest one-way delay of the last BASE_WINDOW_MS (as a
    playout buffer sees it), not of the whole run: when the machine stalls the capture, the
    timestamps step against the arrivals once, and a whole-run minimum would count every
    later frame as late."""
    keep = [i for i in range(len(t)) if t[i] >= warm_ms]
    t = [t[i] for i in keep]
    ts = [ts[i] for i in keep]
    if len(t) < 2:
        return {"t": [], "gaps": [], "excess": [], "lost": 0, "seconds": 0.0}
    rel = [a - b for a, b in zip(t, ts)]
    excess, window = [], deque()  # (t, rel) with increasing rel: a sliding minimum
    for ti, ri in zip(t, rel):
        while window and window[-1][1] >= ri:
            window.pop()
        window.append((ti, ri))
        while ti - window[0][0] > BASE_WINDOW_MS:
            window.popleft()
        excess.append(ri - window[0][1])
    return {"t": t, "gaps": [b - a for a, b in zip(t, t[1:])],
            "excess": excess,
            "lost": sum(max(0, round((b - a) / FRAME_MS) - 1) for a, b in zip(ts, ts[1:])),
            "seconds": (t[-1] - t[0]) / 1000}


def summarise(runs):
    """The figures of one variant, pooled over its runs."""
    gaps = [g for r in runs for g in r["gaps"]]
    excess = [e for r in runs for e in r["excess"]]
    if len(gaps) < 1:
        return {"frames": len(excess)}
    out = {
        "frames": len(excess), "lost": sum(r["lost"] for r in runs),
        "seconds": round(sum(r["seconds"] for r in runs), 1), "runs": len(runs),
        "gap_ms_p50": q(gaps, 0.5), "gap_ms_p99": q(gaps, 0.99), "gap_ms_max": max(gaps),
        "stalls": sum(g > STALL_MS for g in gaps),
        "stall_ms_total": round(sum(g for g in gaps if g > STALL_MS), 1),
        "excess_ms_p50": q(excess, 0.5), "excess_ms_p99": q(excess, 0.99),
        "excess_ms_p999": q(excess, 0.999), "excess_ms_max": max(excess),
        "max_gap_ms_per_run": [max(r["gaps"]) if r["gaps"] else None for r in runs],
    }
    for n in LATE_AT:
        out[f"late_{n}_pct"] = round(100 * sum(e > n for e in excess) / len(excess), 3)
    return out


class Pulse:
    """A private PulseAudio with a null sink `wan` playing a tone; ended by pid."""

    def __init__(self, tmp):
        rt, home = tmp / "run", tmp / "home"
        rt.mkdir(mode=0o700)
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PULSE_", "DBUS_", "XDG_RUNTIME"))}
        self.env.update(XDG_RUNTIME_DIR=str(rt), HOME=str(home),
                        PULSE_SERVER=f"unix:{rt}/pulse/native")
        self.procs = []
        self.stop_feed = threading.Event()

    def pactl(self, *a):
        return subprocess.run(["pactl", *a], env=self.env, check=True, capture_output=True,
                              text=True, timeout=10).stdout.strip()

    def start(self, log, tone=True):
        self.procs.append(subprocess.Popen(
            ["pulseaudio", "-n", "-F", "/dev/null", "--exit-idle-time=-1", "--daemonize=no",
             "-L", "module-native-protocol-unix", "--log-target=stderr"],
            env=self.env, stdout=log, stderr=log))
        end = time.monotonic() + 10
        while True:
            try:
                self.pactl("info")
                break
            except subprocess.SubprocessError:
                if time.monotonic() > end or self.procs[0].poll() is not None:
                    raise RuntimeError("PulseAudio did not start (see its log)")
                time.sleep(0.1)
        self.pactl("load-module", "module-null-sink", "sink_name=wan", "rate=48000",
                   "channels=2", "format=s16le")
        self.pactl("set-default-sink", "wan")
        if tone:
            self.start_tone(log)

    def start_tone(self, log):
        one_s = b"".join(struct.pack("<hh", v, v) for v in (
            int(0.1 * 32767 * math.sin(2 * math.pi * 440 * i / 48000)) for i in range(48000)))
        tone = subprocess.Popen(
            ["pacat", "--raw", "--format=s16le", "--rate=48000", "--channels=2", "-d", "wan",
             "--latency-msec=100", "--client-name=wan-tone"],
            env=self.env, stdin=subprocess.PIPE, stdout=log, stderr=log)
        self.procs.append(tone)
        stop = self.stop_feed

        def feed():
            try:
                while not stop.is_set():
                    tone.stdin.write(one_s)
                    tone.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass
        threading.Thread(target=feed, daemon=True).start()

    def close(self):
        self.stop_feed.set()
        for p in reversed(self.procs):
            if p.stdin:
                try:
                    p.stdin.close()
                except OSError:
                    pass
            linkemu.stop_pid(p)


def wait_listening(link, port, p, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            raise RuntimeError(f"daemon on port {port} exited with {p.returncode}")
        r = subprocess.run(["ss", "-N", link.ns_a, "-Hltn", f"sport = :{port}"],
                           capture_output=True, text=True)
        if r.stdout.strip():
            return
        time.sleep(0.1)
    raise RuntimeError(f"daemon on port {port} did not listen within {timeout} s")


def measure(seconds, delay_ms=40, jitter_ms=20, loss_pct=1.0, daemon=None, variants=None,
            logdir=None, warm_s=2.0, runs=1, raw_json=None):
    """Runs every variant at once over one link, `runs` times (a fresh link and fresh daemons
    each time), and pools the runs; returns {"link": ..., "variants": {...}}."""
    daemon = Path(daemon or ROOT / "target" / "release" / "novnc-audio")
    if not daemon.exists():
        raise RuntimeError(f"{daemon} is not built")
    why = linkemu.check_host()
    if why:
        raise RuntimeError(f"cannot emulate a link here: {why}")
    variants = variants or VARIANTS
    logdir = Path(logdir or ROOT / "target" / "netlink")
    logdir.mkdir(parents=True, exist_ok=True)
    log = open(logdir / "wan_stalls.log", "ab")
    tmp = Path(tempfile.mkdtemp(prefix="novnc-audio-wan-"))
    pulse = Pulse(tmp)
    recorded = {name: [] for name, _ in variants}
    errors = {}
    try:
        pulse.start(log)
        for _ in range(runs):
            link_stats = one_run(pulse, daemon, variants, seconds, warm_s, delay_ms, jitter_ms,
                                 loss_pct, log, recorded, errors)
    finally:
        pulse.close()
        shutil.rmtree(tmp, ignore_errors=True)
        log.close()
    if raw_json:
        Path(raw_json).write_text(json.dumps(
            {n: [{"t": r["t"], "excess": r["excess"]} for r in rs] for n, rs in recorded.items()}))
    results = {}
    for name, spec in variants:
        results[name] = summarise(recorded[name])
        results[name].update(env=spec, error=errors.get(name))
    return {"link": {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "loss_pct": loss_pct,
                     "in_order": True, "seconds": seconds, "runs": runs, "stats": link_stats,
                     "tcp_congestion_control": sysctl("net.ipv4.tcp_congestion_control")},
            "variants": results}


def one_run(pulse, daemon, variants, seconds, warm_s, delay_ms, jitter_ms, loss_pct, log,
            recorded, errors):
    """One link, one daemon per variant, one client each, all at once; appends each
    client's recording to `recorded` and returns the link's counters."""
    with linkemu.Link(delay_ms, jitter_ms, loss_pct) as link:
        daemons = []
        for i, (name, spec) in enumerate(variants):
            port = 6100 + i
            env = dict(pulse.env, NOVNC_AUDIO_TCP_OPTIONS=spec)
            p = link.run_a([daemon, "-H", link.addr_a, "-p", port, "--allow-root",
                            "--frame-ms", FRAME_MS], env=env, stdout=log, stderr=log)
            daemons.append((name, spec, port, p))
        for name, spec, port, p in daemons:
            wait_listening(link, port, p)
        probes = []
        for name, spec, port, p in daemons:
            probes.append((name, spec, link.run_b(
                [sys.executable, HERE / "wanprobe.py", link.addr_a, port,
                 seconds + warm_s], stdout=subprocess.PIPE, stderr=log)))
        for name, spec, pr in probes:
            out, _ = pr.communicate(timeout=seconds + warm_s + 60)
            rec = json.loads(out.decode().strip().splitlines()[-1])
            recorded[name].append(raw(rec["t"], rec["ts"], warm_s * 1000))
            if rec["error"]:
                errors[name] = rec["error"]
        return link.stats()


def sysctl(name):
    try:
        return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def table(report):
    base = report["variants"].get("baseline", {})
    L = ["| TCP options (`NOVNC_AUDIO_TCP_OPTIONS`) | frames | lost | gap p50 / p99 / max ms "
         "| longest gap of each run ms | stalls > 100 ms | stall time ms "
         "| excess delay p50 / p99 / p99.9 / max ms "
         "| late at 100 / 200 / 400 ms buffer % | p99.9 excess vs baseline |",
         "|---|---|---|---|---|---|---|---|---|---|"]

    def f(x):
        return "-" if x is None else (f"{x:.1f}" if isinstance(x, float) else str(x))
    for name, r in report["variants"].items():
        if r.get("frames", 0) < 2:
            L.append(f"| {name} | {r.get('frames', 0)} | - | - | - | - | - | - | - | "
                     f"{r.get('error') or ''} |")
            continue
        ratio = (f"{r['excess_ms_p999'] / base['excess_ms_p999']:.2f}"
                 if base.get("excess_ms_p999") else "-")
        L.append(
            f"| {name} | {r['frames']} | {r['lost']} | {f(r['gap_ms_p50'])} / "
            f"{f(r['gap_ms_p99'])} / {f(r['gap_ms_max'])} | "
            f"{', '.join(f(x) for x in r['max_gap_ms_per_run'])} | {r['stalls']} | "
            f"{f(r['stall_ms_total'])} | {f(r['excess_ms_p50'])} / {f(r['excess_ms_p99'])} / "
            f"{f(r['excess_ms_p999'])} / {f(r['excess_ms_max'])} | "
            f"{r['late_100_pct']} / {r['late_200_pct']} / {r['late_400_pct']} | {ratio} |")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--delay-ms", type=float, default=40)
    ap.add_argument("--jitter-ms", type=float, default=20)
    ap.add_argument("--loss-pct", type=float, default=1)
    ap.add_argument("--runs", type=int, default=1, help="fresh link and daemons each run, pooled")
    ap.add_argument("--variants", help="NAME=SPEC;NAME=SPEC... instead of the built-in rows "
                    "(SPEC as NOVNC_AUDIO_TCP_OPTIONS; a NAME may repeat with a suffix)")
    ap.add_argument("--daemon")
    ap.add_argument("--json")
    ap.add_argument("--raw-json", help="also write each client's arrival times and excess delays")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    variants = None
    if a.variants:
        variants = [tuple(v.split("=", 1)) for v in a.variants.split(";") if v]
    report = measure(a.seconds, a.delay_ms, a.jitter_ms, a.loss_pct, a.daemon, variants=variants,
                     runs=a.runs,
                     raw_json=a.raw_json)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["link"]))
    print(table(report))
    bad = [n for n, r in report["variants"].items() if r.get("frames", 0) < 2]
    if bad:
        print(f"no frames for: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
