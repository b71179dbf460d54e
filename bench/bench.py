#!/usr/bin/env python3
"""novnc-audio benchmark orchestration (run through bench/run.sh, which installs and builds).

Starts a private PulseAudio with a null sink `bench` (48 kHz) playing a continuous tone,
then measures, each over one window of --seconds (30; --smoke: 3):
  PulseAudio alone; one client vs. the floor with everything running at the same time
  (two floors as an A/A control, the floor sending to one client, the same on a GLib main
  loop, the daemon with one client, the transport floor for one client; 8 rounds, --smoke:
  2); the floor program (bench/floor.c, lowdelay and audio); pcmflux 2.2.0;
  ffmpeg; novnc-audio with 0, 1, 100 and 1000 clients (bench/target/release/loadgen);
  click latency through novnc-audio at several frame sizes / Opus applications next to a
  bare libpulse recorder (bench/target/release/latency); time to first frame while sound
  plays and after a minute of silence; startup to accepting TCP (median of 10);
  LAN per engine in real browsers (bench/browser_lan.py, tests/browser/engines/run.sh);
  the cost of listening (issue 11): nothing playing and a stream of digital silence,
  with 0, 1 and 100 clients in paired rounds (CPU, bytes/s per client), and a 100 ms
  burst by a fresh player after silence (time to the first sound at a client, how much
  of it arrives; bench/target/release/burst); the stream over an emulated WAN link, one
  row per set of TCP options (bench/wan.py, tests/netlink; 3 x 60 s, --smoke: 10 s), and
  Chromium playing over it when chromium + chromium-driver are installed.
CPU is % of one core: utime+stime deltas of /proc/PID/stat over the window / wall time
(also the median of 1 s samples taken from /proc/PID/task/*/schedstat, ns resolution).
Writes target/bench/report.json and docs/PERFORMANCE.md and prints the Markdown.
Every process started here is tracked by pid and ended in a finally block.
"""
import argparse
import urllib.request
import datetime
import json
import math
import os
import queue
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import browser_lan  # bench/browser_lan.py: LAN per engine, real browsers
import wan

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
LOGS = OUT / "logs"
# NOVNC_AUDIO_BENCH_DAEMON: another build to measure (A/B runs of a change by hand).
DAEMON = Path(os.environ.get("NOVNC_AUDIO_BENCH_DAEMON")
              or ROOT / "target" / "release" / "novnc-audio")
# NOVNC_AUDIO_BENCH_DAEMON_B: a second build, run next to DAEMON in every pair round (A/B of a
# change in the same windows; its ratio to DAEMON is in report.json).
DAEMON_B = os.environ.get("NOVNC_AUDIO_BENCH_DAEMON_B")
LOADGEN = ROOT / "bench" / "target" / "release" / "loadgen"
LATENCY = ROOT / "bench" / "target" / "release" / "latency"
FANOUT = ROOT / "bench" / "target" / "release" / "fanout"
BURST = ROOT / "bench" / "target" / "release" / "burst"
FLOOR = OUT / "floor"
VENV_PY = OUT / "venv" / "bin" / "python"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SINK = "bench"
MONITOR = "bench.monitor"
TONE_HZ, TONE_AMP = 440, 0.1
# libopus encoder lookahead at 48 kHz (OPUS_GET_LOOKAHEAD): 120 samples for
# RESTRICTED_LOWDELAY, 312 for AUDIO. A click at the end of a frame comes out of the decoder
# that much later, whatever the daemon does.
LOOKAHEAD_MS = {"lowdelay": 2.5, "audio": 6.5}

# ----------------------------------------------------------------------------- processes


class Procs:
    """Every child started here, ended by pid (SIGTERM, then SIGKILL) and never by name."""

    def __init__(self):
        self.live = []

    def start(self, name, cmd, env, stdout=None, stdin=None, **kw):
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{name}.log", "ab")
        log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(map(str, cmd))}\n".encode())
        log.flush()
        p = subprocess.Popen([str(c) for c in cmd], env=env, stdin=stdin or subprocess.DEVNULL,
                             stdout=stdout or log, stderr=log, **kw)
        p.bench_name = name
        self.live.append(p)
        return p

    def stop(self, p, timeout=5.0):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.live:
            self.live.remove(p)
        return p.returncode

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p)


def log_tail(name, n=5):
    try:
        lines = (LOGS / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-n:])
    except OSError:
        return ""


class LineReader:
    """Reads a child's stdout lines on a thread so the caller can wait with a timeout."""

    def __init__(self, p):
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, args=(p,), daemon=True)
        self.t.start()

    def _run(self, p):
        for line in p.stdout:
            self.q.put(line.decode(errors="replace").rstrip("\n"))
        self.q.put(None)

    def wait_for(self, prefix, timeout):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no '{prefix}' line within {timeout:.0f} s")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"exited before printing '{prefix}'")
            if line.startswith(prefix):
                return line[len(prefix):].strip()


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listen(port, p, name, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited with {p.returncode}: {log_tail(name)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(f"{name} not listening on {port} after {timeout:.0f} s: {log_tail(name)}")

# ----------------------------------------------------------------------------- /proc sampling


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime, stime (fields 14, 15)


def proc_sched_ns(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def proc_ctxt(pid):
    """Context switches of all the process's threads (a count of its wakeups)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    return out


def window(pids, seconds):
    """CPU % of one core and memory of each named pid over `seconds` of wall time."""
    t0 = time.monotonic()
    ticks0 = {n: proc_ticks(p) for n, p in pids.items()}
    ns_prev = {n: proc_sched_ns(p) for n, p in pids.items()}
    ns0 = dict(ns_prev)
    ctxt0 = {n: proc_ctxt(p) for n, p in pids.items()}
    samples = {n: [] for n in pids}
    t_prev = t0
    while True:
        left = t0 + seconds - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(1.0, left))
        now = time.monotonic()
        for n, p in pids.items():
            ns = proc_sched_ns(p)
            samples[n].append(100.0 * (ns - ns_prev[n]) / 1e9 / (now - t_prev))
            ns_prev[n] = ns
        t_prev = now
    wall = time.monotonic() - t0
    res = {}
    for n, p in pids.items():
        st = proc_status(p)
        res[n] = {
            "cpu_pct": 100.0 * (proc_ticks(p) - ticks0[n]) / CLK_TCK / wall,
            "cpu_pct_sched": 100.0 * (proc_sched_ns(p) - ns0[n]) / 1e9 / wall,
            "wakeups_per_s": (proc_ctxt(p) - ctxt0[n]) / wall,
            "cpu_pct_median_1s": statistics.median(samples[n]) if samples[n] else None,
            "rss_peak_kib": st.get("VmHWM"),
            "rss_kib": st.get("VmRSS"),
            "threads": st.get("Threads"),
            "window_s": wall,
            "samples_1s": samples[n],
        }
    return res


def combine(windows):
    """Several equal windows of the same processes as one: mean CPU, median of all 1 s
    samples, largest RSS."""
    out = {}
    for n in windows[0]:
        ws = [w[n] for w in windows]
        samples = [x for w in ws for x in w["samples_1s"]]
        out[n] = {
            "cpu_pct": statistics.mean(w["cpu_pct"] for w in ws),
            "cpu_pct_sched": statistics.mean(w["cpu_pct_sched"] for w in ws),
            "wakeups_per_s": statistics.mean(w["wakeups_per_s"] for w in ws),
            "cpu_pct_median_1s": statistics.median(samples) if samples else None,
            "rss_peak_kib": max(w["rss_peak_kib"] or 0 for w in ws),
            "rss_kib": ws[-1]["rss_kib"],
            "threads": ws[-1]["threads"],
            "window_s": sum(w["window_s"] for w in ws),
            "per_window_cpu_pct": [w["cpu_pct"] for w in ws],
            "samples_1s": samples,
        }
    return out

# ----------------------------------------------------------------------------- the bench


def pct(v, q):
    """Nearest-rank percentile, as bench/src/lib.rs computes it."""
    s = sorted(v)
    return s[min(len(s), max(1, math.ceil(q / 100 * len(s)))) - 1]


class Bench:
    def __init__(self, args):
        self.a = args
        self.T = 3.0 if args.smoke else args.seconds
        self.warm = 0.5 if args.smoke else 2.0
        self.procs = Procs()
        self.tmp = Path(tempfile.mkdtemp(prefix="novnc-audio-bench-"))
        rt, home = self.tmp / "run", self.tmp / "home"
        rt.mkdir(mode=0o700)
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PULSE_", "DBUS_", "XDG_RUNTIME"))}
        self.env.update(XDG_RUNTIME_DIR=str(rt), HOME=str(home),
                        PULSE_SERVER=f"unix:{rt}/pulse/native")
        self.pa = None
        self.tone = None
        self.tone_stop = threading.Event()
        self.results = {}
        self.errors = {}
        self.pulse_restarts = []

    # -- PulseAudio and the tone
    def pactl(self, *args):
        return subprocess.run(["pactl", *args], env=self.env, check=True, capture_output=True,
                              text=True, timeout=10).stdout.strip()

    def start_pulse(self):
        self.pa = self.procs.start("pulseaudio", [
            "pulseaudio", "-n", "-F", "/dev/null", "--exit-idle-time=-1", "--daemonize=no",
            "-L", "module-native-protocol-unix", "--log-target=stderr"], self.env)
        end = time.monotonic() + 10
        while True:
            if self.pa.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {log_tail('pulseaudio')}")
            try:
                self.pactl("info")
                break
            except subprocess.SubprocessError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
        # 48 kHz like every recorder here, so PulseAudio does not resample for any of them.
        self.pactl("load-module", "module-null-sink", f"sink_name={SINK}", "rate=48000",
                   "channels=2", "format=s16le")
        self.pactl("set-default-sink", SINK)

    def start_tone(self):
        one_s = b"".join(struct.pack("<hh", v, v) for v in (
            int(TONE_AMP * 32767 * math.sin(2 * math.pi * TONE_HZ * i / 48000))
            for i in range(48000)))
        self.tone_stop.clear()
        self.tone = self.procs.start("tone", [
            "pacat", "--raw", "--format=s16le", "--rate=48000", "--channels=2", "-d", SINK,
            "--latency-msec=50", "--client-name=bench-tone"], self.env, stdin=subprocess.PIPE)
        tone, stop = self.tone, self.tone_stop

        def feed():
            try:
                while not stop.is_set():
                    tone.stdin.write(one_s)
                    tone.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass
        threading.Thread(target=feed, daemon=True).start()
        time.sleep(0.5)

    def stop_tone(self):
        self.tone_stop.set()
        if self.tone:
            try:
                self.tone.stdin.close()
            except OSError:
                pass
            self.procs.stop(self.tone)
            self.tone = None

    # -- helpers
    def daemon(self, name, port, extra=(), binary=None):
        binary = Path(binary or DAEMON)
        if not binary.exists():
            raise RuntimeError(f"{binary} is not built")
        p = self.procs.start(name, [binary, "-H", "127.0.0.1", "-p", port, "--allow-root",
                                    "--max-clients", "1100", *extra], self.env,
                             preexec_fn=raise_nofile)
        wait_listen(port, p, name)
        return p

    def ensure_pulse(self):
        """If our PulseAudio died (another process's broad kill, a crash), say so, count it
        in the report, and start a fresh one with its tone before the next measurement."""
        if self.pa is not None and self.pa.poll() is None:
            return
        rc = self.pa.returncode if self.pa is not None else None
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
        print(f"[bench] PulseAudio (pid {self.pa.pid}) went away ({how}); restarting it",
              file=sys.stderr, flush=True)
        self.pulse_restarts.append(how)
        self.procs.stop(self.pa)
        self.stop_tone()
        self.start_pulse()
        self.start_tone()
        time.sleep(self.warm)

    def measure(self, key, fn):
        self.ensure_pulse()
        print(f"[bench] {key} ...", file=sys.stderr, flush=True)
        t = time.monotonic()
        try:
            self.results[key] = fn()
        except Exception as e:  # a failed measurement is reported, the others still run
            self.errors[key] = f"{type(e).__name__}: {e}"
            print(f"[bench] {key} FAILED: {self.errors[key]}", file=sys.stderr, flush=True)
        print(f"[bench] {key} done in {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)

    # -- measurements
    def m_idle_ab(self):
        """PulseAudio alone and with an idle daemon, alternated in three rounds so that
        the machine's background load hits both alike."""
        alone, idle = [], []
        rounds = 6
        for i in range(rounds):
            alone.append(window({"pulseaudio": self.pa.pid}, self.T / rounds))
            port = free_port()
            d = self.daemon("novnc-audio-idle", port)
            time.sleep(self.warm)
            idle.append(window({"novnc-audio": d.pid, "pulseaudio": self.pa.pid},
                               self.T / rounds))
            self.procs.stop(d)
            time.sleep(0.5)
        self.results["pulse_alone"] = combine(alone)
        out = combine(idle)
        # Paired differences, round by round: the median is what the target is judged on.
        out["pulse_extra_pp_per_round"] = [
            b["pulseaudio"]["cpu_pct_sched"] - a["pulseaudio"]["cpu_pct_sched"]
            for a, b in zip(alone, idle)]
        out["pulse_extra_wakeups_per_round"] = [
            b["pulseaudio"]["wakeups_per_s"] - a["pulseaudio"]["wakeups_per_s"]
            for a, b in zip(alone, idle)]
        return out

    def m_floor(self, app, T=None):
        p = self.procs.start(f"floor-{app}", [FLOOR, "-d", MONITOR, "-a", app], self.env,
                             stdout=subprocess.PIPE)
        t0 = time.monotonic()
        time.sleep(self.warm)
        if p.poll() is not None:
            raise RuntimeError(f"floor exited: {log_tail('floor-' + app)}")
        w = window({"floor": p.pid, "pulseaudio": self.pa.pid}, T or self.T)
        self.procs.stop(p)
        life = time.monotonic() - t0
        line = p.stdout.read().decode().strip()
        kv = dict(x.split("=") for x in line.split())
        w["floor"].update(frames=int(kv["frames"]), fps=int(kv["frames"]) / life,
                          first_frame_ms=float(kv["first_frame_ms"]), holes=int(kv["holes"]))
        return w

    def m_pcmflux(self, T=None):
        if not VENV_PY.exists():
            raise RuntimeError("the pcmflux venv is missing (bench/run.sh creates it)")
        p = self.procs.start("pcmflux", [VENV_PY, ROOT / "bench" / "pcmflux_run.py", MONITOR],
                             self.env, stdout=subprocess.PIPE)
        lr = LineReader(p)
        try:
            lr.wait_for("STARTED", 20)
        except (TimeoutError, RuntimeError) as e:
            raise RuntimeError(f"pcmflux did not start ({e}): {log_tail('pcmflux')}")
        time.sleep(self.warm)
        w = window({"pcmflux": p.pid, "pulseaudio": self.pa.pid}, T or self.T)
        self.procs.stop(p, timeout=10)
        # The JSON line starts with "{": LineReader strips the prefix, so put it back.
        try:
            info = json.loads("{" + lr.wait_for("{", 10))
        except (TimeoutError, RuntimeError, ValueError):
            info = {}
        if info.get("state") == "failed":
            raise RuntimeError(f"pcmflux failed: {info.get('last_error')}")
        w["pcmflux"].update(frames=info.get("frames"), settings=info.get("settings"),
                            first_frame_ms=info.get("first_frame_ms"),
                            fps=(info.get("frames") or 0) / ((T or self.T) + self.warm))
        return w

    def m_ffmpeg(self, T=None):
        p = self.procs.start("ffmpeg", [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "pulse",
            "-sample_rate", "48000", "-channels", "2", "-i", MONITOR, "-c:a", "libopus",
            "-b:a", "64k", "-frame_duration", "20", "-application", "lowdelay", "-f", "ogg",
            "-y", "/dev/null"], self.env)
        time.sleep(self.warm)
        if p.poll() is not None:
            raise RuntimeError(f"ffmpeg exited: {log_tail('ffmpeg')}")
        w = window({"ffmpeg": p.pid, "pulseaudio": self.pa.pid}, T or self.T)
        self.procs.stop(p)
        return w

    def loadgen(self, name, port, clients, duration, warmup, frame_ms=20):
        p = self.procs.start(name, [LOADGEN, "--port", port, "--clients", clients,
                                    "--duration", duration, "--warmup", warmup,
                                    "--frame-ms", frame_ms, "--connect-timeout", 60],
                             self.env, stdout=subprocess.PIPE)
        return p, LineReader(p)

    def m_daemon_clients(self, n, T=None):
        T = T or self.T
        port = free_port()
        d = self.daemon(f"novnc-audio-{n}", port)
        lg, lr = self.loadgen(f"loadgen-{n}", port, n, T, self.warm)
        ready = json.loads(lr.wait_for("READY", 120))
        w = window({"novnc-audio": d.pid, "pulseaudio": self.pa.pid, "loadgen": lg.pid},
                   T - 0.1)
        res = json.loads(lr.wait_for("RESULT", T + 30))
        w["daemon_stats"] = daemon_stats(port)
        self.procs.stop(lg)
        self.procs.stop(d)
        w["clients"] = res
        w["ready"] = ready
        return w

    def m_pair(self, rounds, W):
        """Goal 4 (issue 11) on a loaded, shared machine: two floor.c processes (A and B),
        floor.c -p (sends every packet to one loadgen client), floor.c -p -g (the same on a
        GLib main loop, as the daemon), novnc-audio with one loadgen client and fanout.rs
        with one loadgen client run *at the same time*, the recorders on the same monitor,
        measured over the same window; the start order rotates from round to round. A load
        change then hits all of them alike, and B / A (two identical floors) shows the
        noise of the method in the same table. Per round: the daemon's ratio to the mean of
        the two floors, to the floors that send, and to (floor + fanout's transport floor
        for one client)."""
        warm = max(self.warm, 1.5)  # past the daemon's 1 s short fragment after a newcomer
        rows = []
        for i in range(rounds):
            live, lines, started, floor_out = {}, {}, [], {}

            def floor(tag):
                p = self.procs.start(f"pair-floor-{tag}", [FLOOR, "-d", MONITOR, "-a",
                                                           "lowdelay"], self.env,
                                     stdout=subprocess.PIPE)
                live[f"floor_{tag}"] = p

            def floor_net(tag, *extra):
                port = free_port()
                p = self.procs.start(f"pair-floor-{tag}", [FLOOR, "-d", MONITOR, "-a",
                                                           "lowdelay", "-p", port, *extra],
                                     self.env, stdout=subprocess.PIPE)
                live[f"floor_{tag}"] = p
                lr = LineReader(p)
                lr.wait_for("LISTENING", 10)
                live[f"loadgen_floor_{tag}"], lines[f"floor_{tag}"] = self.loadgen(
                    f"pair-loadgen-floor-{tag}", port, 1, W, warm)
                floor_out[tag] = lr

            def daemon(key="novnc-audio", binary=None):
                port = free_port()
                live[key] = self.daemon(f"pair-{key}", port, binary=binary)
                live[f"loadgen_{key}"], lines[key] = self.loadgen(
                    f"pair-loadgen-{key}", port, 1, W, warm)

            def fanout():
                port = free_port()
                p = self.procs.start("pair-fanout", [FANOUT, "--port", port, "--clients", 1],
                                     self.env, stdout=subprocess.PIPE)
                live["fanout"] = p
                LineReader(p).wait_for("LISTENING", 10)
                live["loadgen_fanout"], lines["fanout"] = self.loadgen(
                    "pair-loadgen-fanout", port, 1, W, warm)

            names = ["floor_a", "floor_b", "floor_net", "floor_glib", "novnc-audio", "fanout"]
            order = [lambda: floor("a"), lambda: floor("b"), lambda: floor_net("net"),
                     lambda: floor_net("glib", "-g"), daemon, fanout]
            if DAEMON_B:
                names.append("novnc-audio-b")
                order.append(lambda: daemon("novnc-audio-b", DAEMON_B))
            k = i % len(order)
            order, names = order[k:] + order[:k], names[k:] + names[:k]
            try:
                for start in order:
                    start()
                    started.append(time.monotonic())
                ready = {k: json.loads(lr.wait_for("READY", 60)) for k, lr in lines.items()}
                time.sleep(max(0.0, started[-1] + warm - time.monotonic()))
                for k, p in live.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"{k} exited: {log_tail('pair-' + k)}")
                pids = {k: p.pid for k, p in live.items()}
                pids["pulseaudio"] = self.pa.pid
                w = window(pids, W - 0.1)
                res = {k: json.loads(lr.wait_for("RESULT", W + 30)) for k, lr in lines.items()}
            finally:
                for p in reversed(list(live.values())):
                    self.procs.stop(p)
            for tag in ("a", "b", "net", "glib"):
                line = (floor_out[tag].wait_for("frames=", 10) if tag in floor_out
                        else live[f"floor_{tag}"].stdout.read().decode().strip()[len("frames="):])
                kv = dict(x.split("=") for x in ("frames=" + line).split())
                w[f"floor_{tag}"].update(frames=int(kv["frames"]), holes=int(kv["holes"]))
            cpu = {k: v["cpu_pct_sched"] for k, v in w.items()}
            fl = (cpu["floor_a"] + cpu["floor_b"]) / 2
            rows.append({
                "start_order": names,
                "cpu_pct_sched": cpu,
                "cpu_pct": {k: v["cpu_pct"] for k, v in w.items()},
                "wakeups_per_s": {k: v["wakeups_per_s"] for k, v in w.items()},
                "aa": cpu["floor_b"] / cpu["floor_a"],
                "daemon_vs_a": cpu["novnc-audio"] / cpu["floor_a"],
                "daemon_vs_floor": cpu["novnc-audio"] / fl,
                "daemon_vs_floor_transport": cpu["novnc-audio"] / (fl + cpu["fanout"]),
                "daemon_vs_floor_net": cpu["novnc-audio"] / cpu["floor_net"],
                "floor_net_vs_floor": cpu["floor_net"] / fl,
                "daemon_vs_floor_glib": cpu["novnc-audio"] / cpu["floor_glib"],
                "floor_glib_vs_net": cpu["floor_glib"] / cpu["floor_net"],
                **({"daemon_b_vs_a": cpu["novnc-audio-b"] / cpu["novnc-audio"],
                    "daemon_b_vs_floor": cpu["novnc-audio-b"] / fl,
                    "daemon_b_vs_floor_net": cpu["novnc-audio-b"] / cpu["floor_net"]}
                   if DAEMON_B else {}),
                "client": {k: {kk: res[k].get(kk) for kk in ("fps", "missing_frames", "gaps")}
                           for k in res},
                "ready": ready,
                "floor_frames": {t: w[f"floor_{t}"]["frames"] for t in ("a", "b", "net", "glib")},
            })
        out = {"rounds": rows, "window_s": W}
        for k in ("aa", "daemon_vs_a", "daemon_vs_floor", "daemon_vs_floor_transport",
                  "daemon_vs_floor_net", "floor_net_vs_floor", "daemon_vs_floor_glib",
                  "floor_glib_vs_net", "daemon_b_vs_a", "daemon_b_vs_floor",
                  "daemon_b_vs_floor_net"):
            if k not in rows[0]:
                continue
            v = [r[k] for r in rows]
            out[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
        for k in rows[0]["cpu_pct_sched"]:
            out.setdefault("cpu_pct_sched", {})[k] = statistics.median(
                r["cpu_pct_sched"][k] for r in rows)
            out.setdefault("wakeups_per_s", {})[k] = statistics.median(
                r["wakeups_per_s"][k] for r in rows)
        return out

    def m_fanout(self, n):
        """The transport floor: bench/src/bin/fanout.rs sending the same-size frames."""
        port = free_port()
        p = self.procs.start(f"fanout-{n}", [FANOUT, "--port", port, "--clients", n],
                             self.env, stdout=subprocess.PIPE)
        LineReader(p).wait_for("LISTENING", 10)
        lg, lr = self.loadgen(f"loadgen-fanout-{n}", port, n, self.T, self.warm)
        ready = json.loads(lr.wait_for("READY", 120))
        w = window({"fanout": p.pid, "loadgen": lg.pid}, self.T - 0.1)
        res = json.loads(lr.wait_for("RESULT", self.T + 30))
        self.procs.stop(lg)
        self.procs.stop(p)
        w["clients"] = res
        w["ready"] = ready
        return w

    def m_latency(self, frame_ms, app):
        extra = []
        if frame_ms is not None:
            port = free_port()
            d = self.daemon(f"novnc-audio-lat-{frame_ms}-{app}", port,
                            ["--frame-ms", str(frame_ms), "--opus-application", app])
            cmd = [LATENCY, "--mode", "ws", "--port", port]
            name = f"latency-{frame_ms}-{app}"
        else:
            d = None
            cmd = [LATENCY, "--mode", "bare", "--source", MONITOR, "--fragsize-us", 1000]
            name = "latency-bare"
        p = self.procs.start(name, [*cmd, "--sink", SINK, "--duration", self.T], self.env,
                             stdout=subprocess.PIPE)
        lr = LineReader(p)
        out = {}
        if d is not None:
            time.sleep(1.5)
            if p.poll() is None:
                out.update(window({"novnc-audio": d.pid}, max(1.0, self.T - 1.0)))
        res = json.loads(lr.wait_for("RESULT", self.T + 30))
        self.procs.stop(p)
        if d is not None:
            self.procs.stop(d)
        if not res["detected"]:
            raise RuntimeError(f"no click detected: {log_tail(name)}")
        out["latency"] = res
        return out

    def m_first_frame_playing(self):
        port = free_port()
        d = self.daemon("novnc-audio-ttff", port)
        times = []
        for i in range(5):
            time.sleep(1.0 if self.a.smoke else 2.0)
            lg, lr = self.loadgen(f"loadgen-ttff-{i}", port, 1, 0.5, 0)
            res = json.loads(lr.wait_for("RESULT", 30))
            self.procs.stop(lg)
            if res["first_frame_ms"]["min"] is None:
                raise RuntimeError(f"no frame received: {res.get('errors')}")
            times.append(res["first_frame_ms"]["min"])
        self.procs.stop(d)
        return {"first_frame_ms": times, "median_ms": statistics.median(times)}

    def m_startup(self):
        times = []
        for i in range(10):
            port = free_port()
            t0 = time.perf_counter()
            p = self.procs.start("novnc-audio-startup", [
                DAEMON, "-H", "127.0.0.1", "-p", port, "--allow-root"], self.env)
            while True:
                if p.poll() is not None:
                    raise RuntimeError(f"exited with {p.returncode}: "
                                       f"{log_tail('novnc-audio-startup')}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.perf_counter() - t0 > 10:
                        raise TimeoutError("not listening after 10 s")
                    time.sleep(0.0002)
            times.append((time.perf_counter() - t0) * 1000)
            self.procs.stop(p)
            time.sleep(0.2)
        return {"startup_ms": times, "median_ms": statistics.median(times)}

    def m_silence(self):
        """Stop the tone; while the silence lasts, measure startup; then a client connects
        and a fresh player starts: player start -> first sound at the client. (Nothing is
        sent while nothing plays, so the first frame waits for the player.)"""
        quiet = 3.0 if self.a.smoke else 60.0
        self.stop_tone()
        t0 = time.monotonic()
        port = free_port()
        d = self.daemon("novnc-audio-silent", port)
        out = {"silence_s": quiet}
        probe = None
        try:
            self.measure("startup", self.m_startup)
            left = quiet - (time.monotonic() - t0)
            if left > 0:
                time.sleep(left)
            out["silence_s"] = time.monotonic() - t0
            probe = self.procs.start("burst-silent", [BURST, "--mode", "ws", "--port", port],
                                     self.env, stdout=subprocess.PIPE, stdin=subprocess.PIPE)
            lr = LineReader(probe)
            lr.wait_for("READY", 20)
            time.sleep(0.5)
            first = self.play_burst(lr)
            if first is None:
                raise RuntimeError(f"no sound received: {log_tail('burst-silent')}")
            out["first_frame_ms"] = first["latency_ms"]
            out["arrived_ms"] = first["active_ms"]
        finally:
            if probe is not None:
                try:
                    probe.stdin.close()
                except OSError:
                    pass
                self.procs.stop(probe)
            self.procs.stop(d)
            self.start_tone()
        return out

    # -- the cost of listening (issue 11): nothing plays, or a stream writes digital zeros
    def clients_window(self, d, port, n, T, name):
        """`n` loadgen clients on daemon `d`, measured over their counting window."""
        lg, lr = self.loadgen(f"loadgen-{name}-{n}", port, n, T, self.warm)
        ready = json.loads(lr.wait_for("READY", 120))
        w = window({"novnc-audio": d.pid, "pulseaudio": self.pa.pid, "loadgen": lg.pid},
                   T - 0.1)
        res = json.loads(lr.wait_for("RESULT", T + 30))
        self.procs.stop(lg)
        opened = max(res.get("opened") or 0, 1)
        wall = res.get("window_s") or T
        res["wire_bytes_per_s_per_client"] = res.get("wire_bytes", 0) / wall / opened
        res["audio_bytes_per_s_per_client"] = res.get("bytes", 0) / wall / opened
        res["frames_per_s_per_client"] = res.get("frames", 0) / wall / opened
        res["pings_per_s_per_client"] = res.get("pings", 0) / wall / opened
        w["clients"] = res
        w["ready"] = ready
        return w

    def m_listening(self, what, counts=(1, 100), rounds=3, extra=()):
        """One daemon; per round a window with no client, then one per count of clients,
        each T/rounds long, so each count is paired with a no-client window of the same
        round. `what`: "nothing" (no stream on the sink) or "zeros" (pacat playing
        /dev/zero, i.e. an application holding a stream open and writing silence)."""
        self.stop_tone()
        player = None
        try:
            if what == "zeros":
                player = self.procs.start("zeros", [
                    "pacat", "--raw", "--format=s16le", "--rate=48000", "--channels=2",
                    "-d", SINK, "--client-name=bench-zeros"], self.env,
                    stdin=open("/dev/zero", "rb"))
            port = free_port()
            d = self.daemon(f"novnc-audio-{what}", port, extra)
            time.sleep(self.warm)
            T = self.T / rounds
            got = {0: [], **{n: [] for n in counts}}
            for i in range(rounds):
                if player is not None and player.poll() is not None:
                    raise RuntimeError(f"the zeros player exited: {log_tail('zeros')}")
                got[0].append(window({"novnc-audio": d.pid, "pulseaudio": self.pa.pid}, T))
                for n in counts:
                    got[n].append(self.clients_window(d, port, n, T, what))
                    time.sleep(0.5)
            self.procs.stop(d)
        finally:
            if player is not None:
                self.procs.stop(player)
            self.start_tone()
        out = {}
        for n, ws in got.items():
            procs = [{k: v for k, v in w.items() if isinstance(v, dict) and "samples_1s" in v}
                     for w in ws]
            o = combine(procs)
            if n:
                cl = [w["clients"] for w in ws]
                keys = ("wire_bytes_per_s_per_client", "audio_bytes_per_s_per_client",
                        "frames_per_s_per_client", "pings_per_s_per_client")
                o["clients"] = {k: statistics.mean(c[k] for c in cl) for k in keys}
                o["clients"].update(opened=min(c["opened"] for c in cl), rounds=cl)
                for who in ("pulseaudio", "novnc-audio"):
                    o[f"{who}_extra_pp_per_round"] = [
                        b[who]["cpu_pct_sched"] - a[who]["cpu_pct_sched"]
                        for a, b in zip(got[0], ws)]
            out[f"clients_{n}"] = o
        return out

    def play_burst(self, lr, out=None):
        """A fresh pacat plays 100 ms of a 1 kHz sine at half scale into the sink; returns
        what the burst detector behind `lr` reported (None if nothing within 2 s)."""
        raw = self.tmp / "burst.raw"
        if not raw.exists():
            raw.write_bytes(b"".join(struct.pack("<hh", v, v) for v in (
                int(0.5 * 32767 * math.sin(2 * math.pi * 1000 * i / 48000))
                for i in range(4800))))
        t0 = time.monotonic_ns()
        with open(raw, "rb") as src:
            player = self.procs.start("burst-player", [
                "pacat", "--raw", "--format=s16le", "--rate=48000", "--channels=2",
                "-d", SINK, "--client-name=bench-burst"], self.env, stdin=src)
            try:
                player.wait(10)
            finally:
                self.procs.stop(player)
        if out is not None:
            out["player_s"].append((time.monotonic_ns() - t0) / 1e9)
        end = time.monotonic() + 2.0
        while True:
            try:
                b = json.loads(lr.wait_for("BURST", max(0.01, end - time.monotonic())))
            except TimeoutError:
                return None
            if b["first_ns"] < t0:
                if out is not None:
                    out["spurious"] += 1
                continue
            b["latency_ms"] = (b["first_ns"] - t0) / 1e6
            return b

    def m_burst(self, mode, bursts=20):
        """A fresh player process per burst (pacat, default buffering, 100 ms of a 1 kHz
        sine at half scale) after 0.8-1.3 s of silence; the detector (a WebSocket client
        of a fresh daemon, or a bare libpulse recorder) reports when the burst's first
        sound arrived and how many ms of it."""
        self.stop_tone()
        probe = d = None
        rng = __import__("random").Random(11)
        out = {"bursts": bursts, "latency_ms": [], "active_ms": [], "span_ms": [],
               "player_s": [], "undetected": 0, "spurious": 0}
        try:
            if mode == "ws":
                port = free_port()
                d = self.daemon("novnc-audio-burst", port)
                cmd = [BURST, "--mode", "ws", "--port", port]
            else:
                cmd = [BURST, "--mode", "bare", "--source", MONITOR]
            probe = self.procs.start(f"burst-{mode}", cmd, self.env, stdout=subprocess.PIPE,
                                     stdin=subprocess.PIPE)
            lr = LineReader(probe)
            lr.wait_for("READY", 20)
            time.sleep(1.5)
            for i in range(bursts):
                time.sleep(rng.uniform(0.8, 1.3))
                b = self.play_burst(lr, out)
                if b is None:
                    out["undetected"] += 1
                    continue
                out["latency_ms"].append(b["latency_ms"])
                out["active_ms"].append(b["active_ms"])
                out["span_ms"].append(b["span_ms"])
        finally:
            if probe is not None:
                try:
                    probe.stdin.close()
                except OSError:
                    pass
                self.procs.stop(probe)
            if d is not None:
                self.procs.stop(d)
            self.start_tone()
        lat, act = out["latency_ms"], out["active_ms"]
        if not lat:
            raise RuntimeError(f"no burst detected: {log_tail('burst-' + mode)}")
        out.update(median_ms=statistics.median(lat), p99_ms=pct(lat, 99), max_ms=max(lat),
                   active_min_ms=min(act), active_median_ms=statistics.median(act))
        return out

    def interleaved(self, subjects, rounds=3):
        """Measure each subject in `rounds` windows of T/rounds, taking turns, so that the
        machine's changing background load falls on all of them alike; then combine."""
        got = {k: [] for k in subjects}
        for i in range(rounds):
            for k, fn in subjects.items():
                if k in self.errors:
                    continue
                self.ensure_pulse()
                print(f"[bench] {k} (round {i + 1}/{rounds}) ...", file=sys.stderr, flush=True)
                try:
                    got[k].append(fn(self.T / rounds))
                except Exception as e:  # reported; the other subjects still run
                    self.errors[k] = f"{type(e).__name__}: {e}"
                    print(f"[bench] {k} FAILED: {self.errors[k]}", file=sys.stderr, flush=True)
        for k, rs in got.items():
            if not rs or k in self.errors:
                continue
            procs = [{n: v for n, v in r.items() if isinstance(v, dict) and "samples_1s" in v}
                     for r in rs]
            out = combine(procs)
            for n in out:  # per-process extras (frames, settings) from the last round
                for kk, vv in rs[-1][n].items():
                    out[n].setdefault(kk, vv)
            for kk, vv in rs[-1].items():
                out.setdefault(kk, vv)
            if "clients" in out:
                cl = dict(rs[-1]["clients"])
                cl["missing_frames"] = sum(r["clients"]["missing_frames"] for r in rs)
                cl["gaps"] = sum(r["clients"]["gaps"] for r in rs)
                cl["fps"] = dict(cl["fps"], min=min(r["clients"]["fps"]["min"] for r in rs))
                cl["rounds"] = [r["clients"] for r in rs]
                out["clients"] = cl
            stats = [r["daemon_stats"] for r in rs if "daemon_stats" in r]
            if stats:  # a fresh daemon per round: its counters add up
                out["daemon_stats"] = {c: sum(s.get(c) or 0 for s in stats)
                                       for c in ("frames_skipped_silence",
                                                 "frames_dropped_slow_client",
                                                 "frames_encoded")}
            out["rounds"] = len(rs)
            self.results[k] = out

    def run(self):
        OUT.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            self.start_pulse()
            self.start_tone()
            time.sleep(self.warm)
            only = set(self.a.only.split(",")) if self.a.only else None

            def want(group):
                return only is None or group in only
            if want("idle"):
                self.measure("daemon_idle", self.m_idle_ab)
            if want("floor") or want("pair"):
                # Goal 4's figure: the floors and the daemon measured at the same time.
                self.measure("pair_1", lambda: self.m_pair(
                    2 if self.a.smoke else 8, 2.0 if self.a.smoke else 12.0))
            if want("floor"):
                self.interleaved({
                    "floor_lowdelay": lambda T: self.m_floor("lowdelay", T),
                    "daemon_1": lambda T: self.m_daemon_clients(1, T),
                    "pcmflux": self.m_pcmflux,
                    "ffmpeg": self.m_ffmpeg,
                    "floor_audio": lambda T: self.m_floor("audio", T),
                })
            if want("clients"):
                for n in (100, 1000):
                    self.measure(f"daemon_{n}", lambda n=n: self.m_daemon_clients(n))
                for n in (100, 1000):
                    self.measure(f"fanout_{n}", lambda n=n: self.m_fanout(n))
            if want("listening"):
                self.measure("listen_nothing", lambda: self.m_listening("nothing"))
                self.measure("listen_zeros", lambda: self.m_listening("zeros"))
                n = 5 if self.a.smoke else 20
                self.measure("burst_bare", lambda: self.m_burst("bare", n))
                self.measure("burst_daemon", lambda: self.m_burst("ws", n))
            if want("latency"):
                self.measure("latency_bare", lambda: self.m_latency(None, None))
                for fm, app in ((20, "lowdelay"), (10, "lowdelay"), (20, "audio"),
                                (10, "audio")):
                    self.measure(f"latency_{fm}_{app}",
                                 lambda fm=fm, app=app: self.m_latency(fm, app))
            if want("first-frame"):
                self.measure("first_frame_playing", self.m_first_frame_playing)
                self.measure("first_frame_silent", self.m_silence)
            if want("wan"):
                self.measure(wan.KEY, lambda: wan.measure(self.a.smoke, DAEMON, LOGS))
                self.measure(wan.KEY_PLAYOUT,
                             lambda: wan.measure_playout(self.a.smoke, DAEMON, LOGS))
            if want("browser"):
                # Real browsers on loopback (bench/browser_lan.py): run.sh starts its own
                # PulseAudio servers and daemon, so the tone here does not matter.
                self.measure("browser_lan", lambda: browser_lan.run(
                    ROOT, OUT, DAEMON, self.a.smoke))
        finally:
            self.stop_tone()
            self.procs.stop_all()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return time.monotonic() - started

# ----------------------------------------------------------------------------- report


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20,
                              shell=isinstance(cmd, str)).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    pcmflux = sh([str(VENV_PY), "-c",
                  "import importlib.metadata as m; print(m.version('pcmflux'))"])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": os.uname().release,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "rustc": sh(["rustc", "--version"]),
        "pulseaudio": sh(["pulseaudio", "--version"]),
        "libopus": sh(["pkg-config", "--modversion", "opus"]),
        "ffmpeg": sh("ffmpeg -version | head -1"),
        "pcmflux": pcmflux,
        "novnc_audio": sh([str(DAEMON), "--version"]) if DAEMON.exists() else "not built",
        "git": sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def get(d, *path):
    for k in path:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def ratio(a, b):
    return a / b if a is not None and b else None


def f(x, nd=2, unit=""):
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return f"{x:.{nd}f}{unit}"


def analyse(r, smoke):
    """Derived figures and the targets table."""
    floor = get(r, "floor_lowdelay", "floor", "cpu_pct")
    pcmf = get(r, "pcmflux", "pcmflux", "cpu_pct")
    # 1-client comparisons are a few % apart: the ns-resolution schedstat totals decide.
    floor_s = get(r, "floor_lowdelay", "floor", "cpu_pct_sched")
    pcmf_s = get(r, "pcmflux", "pcmflux", "cpu_pct_sched")
    one_s = get(r, "daemon_1", "novnc-audio", "cpu_pct_sched")
    ffm = get(r, "ffmpeg", "ffmpeg", "cpu_pct")
    # Idle figures are small: use the ns-resolution schedstat totals of the same windows.
    pa_alone = get(r, "pulse_alone", "pulseaudio", "cpu_pct_sched")
    idle = get(r, "daemon_idle", "novnc-audio", "cpu_pct_sched")
    pa_idle = get(r, "daemon_idle", "pulseaudio", "cpu_pct_sched")
    fan1000 = get(r, "fanout_1000", "fanout", "cpu_pct")
    one = get(r, "daemon_1", "novnc-audio", "cpu_pct")
    k = "daemon_1000"
    big = get(r, k, "novnc-audio", "cpu_pct")
    big_rss = get(r, k, "novnc-audio", "rss_peak_kib")
    big_fps = get(r, k, "clients", "fps", "min")
    big_missing = get(r, k, "clients", "missing_frames")
    big_opened = get(r, k, "clients", "opened")
    bare = get(r, "latency_bare", "latency")
    lat_rows = []
    for fm, app in ((20, "lowdelay"), (10, "lowdelay"), (20, "audio"), (10, "audio")):
        lat = get(r, f"latency_{fm}_{app}", "latency")
        added_med = added_p99 = beyond = None
        if lat and bare:
            added_med = lat["median_ms"] - bare["median_ms"]
            added_p99 = lat["p99_ms"] - bare["p99_ms"]
            beyond = added_p99 - fm
        lat_rows.append((fm, app, lat, added_med, added_p99, beyond))
    ttff_play = get(r, "first_frame_playing", "median_ms")
    ttff_quiet = get(r, "first_frame_silent", "first_frame_ms")
    startup = get(r, "startup", "median_ms")

    def t(name, measured, ok):
        return {"target": name, "measured": measured,
                "met": None if ok is None else bool(ok)}

    def both(*xs):
        return None if any(x is None for x in xs) else True

    per_round = get(r, "daemon_idle", "pulse_extra_pp_per_round")
    pa_extra = statistics.median(per_round) if per_round else None
    wk_round = get(r, "daemon_idle", "pulse_extra_wakeups_per_round")
    wk_extra = statistics.median(wk_round) if wk_round else None
    wk_alone = get(r, "pulse_alone", "pulseaudio", "wakeups_per_s")
    targets = [
        t("idle: daemon CPU <= 0.05 % of a core (schedstat)", f(idle, 4, " %"),
          both(idle) and idle <= 0.05),
        t("idle: no extra PulseAudio CPU vs. no daemon (median of 6 paired A/B rounds "
          "<= +0.05 pp, schedstat)",
          f"{f(pa_idle, 3)} % vs {f(pa_alone, 3)} %, paired median {f(pa_extra, 3, ' pp')} "
          f"(rounds: {', '.join(f(x, 2) for x in per_round or [])}); PulseAudio wakeups "
          f"{f(wk_alone, 0)}/s alone, median extra {f(wk_extra, 1)}/s",
          both(pa_extra) and pa_extra <= 0.05),
        t("1 client <= 1.05 x floor (schedstat, floors and daemon at the same time, median "
          "of per-round ratios)",
          f"{f(get(r, 'pair_1', 'daemon_vs_floor', 'median'), 3)} x floor "
          f"({f(get(r, 'pair_1', 'cpu_pct_sched', 'novnc-audio'), 3)} % vs "
          f"{f(get(r, 'pair_1', 'cpu_pct_sched', 'floor_a'), 3)} %, medians of rounds)",
          both(get(r, "pair_1", "daemon_vs_floor", "median"))
          and r["pair_1"]["daemon_vs_floor"]["median"] <= 1.05),
        t("1 client below pcmflux (schedstat, interleaved rounds)",
          f"{f(one_s, 3)} % vs {f(pcmf_s, 3)} %", both(one_s, pcmf_s) and one_s < pcmf_s),
        t("1000 clients: CPU <= 8 % of a core",
          f"{f(big, 2, ' %')} (transport floor alone: {f(fan1000, 2, ' %')})",
          both(big) and big <= 8.0),
        t("1000 clients: 50 frames/s each (min >= 49.5)",
          f"min {f(big_fps, 2)} fps over {big_opened} clients",
          both(big_fps) and big_fps >= 49.5 and big_opened == 1000),
        t("1000 clients: no dropped frames", f"{big_missing} missing",
          both(big_missing) and big_missing == 0),
        t("1000 clients: peak RSS <= 16 MiB", f(big_rss / 1024 if big_rss else None, 1, " MiB"),
          both(big_rss) and big_rss <= 16 * 1024),
    ]
    for fm, app, lat, am, ap, beyond in lat_rows:
        if app == "lowdelay":
            targets.append(t(f"latency {fm} ms lowdelay: p99 added over bare <= frame + 2 ms",
                             f"+{f(ap, 2)} ms p99 ({f(beyond, 2)} ms beyond {fm} ms; "
                             f"{f(None if beyond is None else beyond - LOOKAHEAD_MS[app], 2)} ms "
                             f"beyond frame + {LOOKAHEAD_MS[app]} ms Opus lookahead)",
                             both(beyond) and beyond <= 2.0))
    # Issue 11: the cost of listening.
    fan1000_c = fan1000
    big_s = get(r, k, "novnc-audio", "cpu_pct")
    pair = get(r, "pair_1")

    def spread(key, nd=3):
        v = get(pair, key)
        return (f"{f(v['median'], nd)} x ({f(v['min'], nd)}-{f(v['max'], nd)})" if v
                else "n/a")
    d_floor = get(pair, "daemon_vs_floor", "median")
    targets += [
        t("1 client while sound plays <= 1.10 x floor (issue 11; floors and daemon measured "
          "at the same time, median of per-round ratios)",
          f"{spread('daemon_vs_floor')} over {len(get(pair, 'rounds') or [])} rounds; A/A "
          f"(floor B / floor A, same rounds) {spread('aa')}; vs floor + the same TCP send "
          f"(floor.c -p) {spread('daemon_vs_floor_net')}; vs the same on glib "
          f"(floor.c -p -g) {spread('daemon_vs_floor_glib')}; vs floor + transport floor "
          f"(fanout, 1 client) {spread('daemon_vs_floor_transport')}; interleaved rounds "
          f"(old method): {f(ratio(one_s, floor_s), 3)} x",
          both(d_floor) and d_floor <= 1.10),
        # Goal 5's accounting applied to one client: the floor sends nothing, and one TCP
        # send a frame over loopback alone costs it 9-11 % (floor.c -p), so this row compares
        # like with like; the row above keeps the stricter wording.
        t("1 client while sound plays <= 1.10 x (floor + transport floor, 1 client), "
          "as goal 5 counts 1000 (issue 11; same concurrent rounds)",
          spread('daemon_vs_floor_transport'),
          both(get(pair, "daemon_vs_floor_transport", "median"))
          and pair["daemon_vs_floor_transport"]["median"] <= 1.10),
        t("1000 clients <= 1.10 x (floor + transport floor) (issue 11)",
          f"{f(ratio(big_s, None if floor is None or fan1000_c is None else floor + fan1000_c), 3)} x",
          both(big_s, floor, fan1000_c) and big_s <= 1.10 * (floor + fan1000_c)),
    ]
    for what, label, cpu_max in (("nothing", "nothing plays", 0.05),
                                 ("zeros", "a stream writes digital silence", 0.3)):
        for n in (1, 100):
            key = f"listen_{what}"
            c = get(r, key, f"clients_{n}", "novnc-audio", "cpu_pct_sched")
            c0 = get(r, key, "clients_0", "novnc-audio", "cpu_pct_sched")
            bps = get(r, key, f"clients_{n}", "clients", "wire_bytes_per_s_per_client")
            targets.append(t(f"{label}, {n} client(s): daemon CPU <= {cpu_max} % of a core",
                             f"{f(c, 4, ' %')} (no client: {f(c0, 4, ' %')})",
                             both(c) and c <= cpu_max))
            targets.append(t(f"{label}, {n} client(s): <= 100 B/s per client (on the wire)",
                             f(bps, 1, " B/s"), both(bps) and bps <= 100))
            if what == "nothing":
                pr = get(r, key, f"clients_{n}", "pulseaudio_extra_pp_per_round")
                pe = statistics.median(pr) if pr else None
                pa_n = get(r, key, f"clients_{n}", "pulseaudio", "cpu_pct_sched")
                pa_0 = get(r, key, "clients_0", "pulseaudio", "cpu_pct_sched")
                targets.append(t(
                    f"{label}, {n} client(s): no extra PulseAudio CPU vs. no client (median "
                    "of paired rounds <= +0.05 pp, schedstat)",
                    f"{f(pa_n, 3)} % vs {f(pa_0, 3)} %, paired median {f(pe, 3, ' pp')} "
                    f"(rounds: {', '.join(f(x, 2) for x in pr or [])})",
                    both(pe) and pe <= 0.05))
    bd = get(r, "burst_daemon")
    bb = get(r, "burst_bare")
    targets += [
        t("sound after silence: first sound at a client <= 50 ms after the player starts "
          "(median of 20 fresh players; p99 reported)",
          f"median {f(get(bd, 'median_ms'), 1, ' ms')}, p99 {f(get(bd, 'p99_ms'), 1, ' ms')} "
          f"(bare recorder: median {f(get(bb, 'median_ms'), 1, ' ms')}, "
          f"p99 {f(get(bb, 'p99_ms'), 1, ' ms')})",
          both(get(bd, "median_ms")) and bd["median_ms"] <= 50),
        t("sound after silence: a 100 ms burst arrives as >= 95 ms (every burst)",
          f"min {f(get(bd, 'active_min_ms'), 0, ' ms')}, median "
          f"{f(get(bd, 'active_median_ms'), 0, ' ms')}, {get(bd, 'undetected')} undetected "
          f"(bare recorder: min {f(get(bb, 'active_min_ms'), 0, ' ms')})",
          both(get(bd, "active_min_ms")) and bd["active_min_ms"] >= 95
          and bd["undetected"] == 0),
    ]
    targets += [
        t("first frame <= 100 ms (sound playing)", f(ttff_play, 1, " ms"),
          both(ttff_play) and ttff_play <= 100),
        t("first sound <= 100 ms after a player starts (after a minute of silence)"
          + (" [smoke: 3 s]" if smoke else ""), f(ttff_quiet, 1, " ms"),
          both(ttff_quiet) and ttff_quiet <= 100),
        t("startup to accepting TCP <= 50 ms (median of 10)", f(startup, 1, " ms"),
          both(startup) and startup <= 50),
    ]
    return {"floor_cpu_pct": floor, "pcmflux_cpu_pct": pcmf, "ffmpeg_cpu_pct": ffm,
            "pulse_alone_cpu_pct": pa_alone, "latency_rows": [
                {"frame_ms": fm, "application": app, "added_median_ms": am,
                 "added_p99_ms": ap, "p99_beyond_frame_ms": b,
                 "p99_beyond_frame_and_lookahead_ms":
                     None if b is None else b - LOOKAHEAD_MS[app]}
                for fm, app, _, am, ap, b in lat_rows],
            "targets": targets}


def markdown(report):
    r, m, an = report["results"], report["machine"], report["analysis"]
    floor, pcmf, ffm = an["floor_cpu_pct"], an["pcmflux_cpu_pct"], an["ffmpeg_cpu_pct"]
    L = []
    L.append("# novnc-audio performance\n")
    L.append(f"Generated by `make bench{'-smoke' if report['smoke'] else ''}` "
             f"(bench/run.sh) on {m['date']}, commit {m['git']}; "
             f"{f(report['window_s'], 0)} s per measurement window. "
             "Do not edit by hand: re-run the benchmark.\n")
    if report["smoke"]:
        L.append("**Smoke run**: 3 s windows, figures are indicative only.\n")
    L.append("## Machine\n")
    L.append("| nproc | CPU | kernel | rustc | PulseAudio | libopus | ffmpeg | pcmflux | daemon |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    L.append(f"| {m['nproc']} | {m['cpu_model']} | {m['kernel']} | {m['rustc']} | "
             f"{m['pulseaudio']} | {m['libopus']} | {m['ffmpeg']} | {m['pcmflux']} | "
             f"{m['novnc_audio']} |\n")
    L.append("The machine is shared (other builds run at the same time): read the ratios, "
             "which compare figures taken minutes apart in the same run, before the "
             "absolute numbers.\n")
    L.append("## CPU and memory\n")
    L.append("CPU in % of one core over the window (utime+stime from /proc/PID/stat / wall, "
             "10 ms ticks; the same from /proc/PID/task/*/schedstat in ns); "
             "\"1 s median\" is the median of 1 s schedstat samples. PulseAudio alone and "
             "the idle daemon alternate in 6 rounds; so do floor, 1 client, pcmflux, ffmpeg "
             "and floor (audio), 3 rounds of a third of the window each. "
             "All recorders take 48 kHz stereo s16 from `bench.monitor`, 20 ms Opus at "
             "64 kbit/s.\n")
    L.append("| process | clients | CPU % | CPU % (schedstat) | 1 s median % | x floor | x pcmflux | x ffmpeg | "
             "x (floor + transport floor) | "
             "peak RSS MiB | PulseAudio CPU % | frames/s min / median | missing frames | "
             "loadgen CPU % |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def row(label, key, proc, clients="-", fps=None, missing=None, lg=None, n=None):
        w = get(r, key, proc)
        if w is None:
            err = report["errors"].get(key, "not measured")
            L.append(f"| {label} | {clients} | n/a ({err[:120]}) |  |  |  |  |  |  |  |  |  |  |  |")
            return
        both_floors = None
        if n == 1:
            both_floors = floor
        elif n:
            fan = get(r, f"fanout_{n}", "fanout", "cpu_pct")
            both_floors = None if floor is None or fan is None else floor + fan
        c = w["cpu_pct"]
        pa = get(r, key, "pulseaudio", "cpu_pct")
        rss = w.get("rss_peak_kib")
        L.append(f"| {label} | {clients} | {f(c, 3)} | {f(w.get('cpu_pct_sched'), 3)} | "
                 f"{f(w.get('cpu_pct_median_1s'), 3)} | "
                 f"{f(ratio(c, floor))} | {f(ratio(c, pcmf))} | {f(ratio(c, ffm))} | "
                 f"{f(ratio(c, both_floors)) if n else '-'} | "
                 f"{f(rss / 1024 if rss else None, 1)} | {f(pa, 3)} | {fps or '-'} | "
                 f"{'-' if missing is None else missing} | {f(lg, 2) if lg is not None else '-'} |")

    row("PulseAudio alone (tone, no recorder)", "pulse_alone", "pulseaudio")
    row("floor (floor.c, lowdelay)", "floor_lowdelay", "floor",
        fps=f(get(r, "floor_lowdelay", "floor", "fps"), 1))
    row("floor (floor.c, audio)", "floor_audio", "floor",
        fps=f(get(r, "floor_audio", "floor", "fps"), 1))
    row("pcmflux 2.2.0 (Python process)", "pcmflux", "pcmflux",
        fps=f(get(r, "pcmflux", "pcmflux", "fps"), 1))
    row("ffmpeg -f pulse ... libopus", "ffmpeg", "ffmpeg")
    row("novnc-audio", "daemon_idle", "novnc-audio", clients=0)
    for n in (1, 100, 1000):
        k = f"daemon_{n}"
        cl = get(r, k, "clients") or {}
        fps = (f"{f(get(cl, 'fps', 'min'), 1)} / {f(get(cl, 'fps', 'median'), 1)}"
               if cl else None)
        missing = cl.get("missing_frames")
        skipped = get(r, k, "daemon_stats", "frames_skipped_silence")
        if missing is not None and skipped is not None:
            # Frames of digital silence (the tone underran on a loaded machine) are not
            # sent: they show as gaps at the clients, and are no loss.
            missing = f"{missing} ({skipped} skipped as silence)"
        row("novnc-audio", k, "novnc-audio", clients=f"{cl.get('opened', '?')}/{n}" if cl else n,
            fps=fps, missing=missing, lg=cl.get("loadgen_cpu_pct"), n=n)
    for n in (100, 1000):
        k = f"fanout_{n}"
        cl = get(r, k, "clients") or {}
        fps = (f"{f(get(cl, 'fps', 'min'), 1)} / {f(get(cl, 'fps', 'median'), 1)}"
               if cl else None)
        row("transport floor (fanout.rs: one write per client per frame)", k, "fanout",
            clients=f"{cl.get('opened', '?')}/{n}" if cl else n, fps=fps,
            missing=cl.get("missing_frames"), lg=cl.get("loadgen_cpu_pct"))
    L.append("")
    L.extend(pair_section(r, report["errors"]))
    L.append("## Latency: click written to the sink -> click detected\n")
    L.append("A probe writes a 1 ms full-scale click through a 5 ms playback stream every "
             "150-200 ms and timestamps the write; the detector is either novnc-audio's "
             "WebSocket stream (Opus decoded) or a bare libpulse recorder on the monitor "
             "with a 1 ms fragment (what PulseAudio itself imposes). Both include the "
             "probe's own playback buffer, so the difference is what the daemon adds "
             "(frame accumulation, encoder lookahead, scheduling, network).\n")
    L.append("| path | frame ms | Opus application | clicks detected | median ms | p90 ms | "
             "p99 ms | added median ms | added p99 ms | p99 beyond frame ms | "
             "p99 beyond frame + Opus lookahead ms | daemon CPU % |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    bare = get(r, "latency_bare", "latency")
    if bare:
        L.append(f"| bare libpulse recorder | - | - | {bare['detected']}/{bare['clicks']} | "
                 f"{f(bare['median_ms'])} | {f(bare['p90_ms'])} | {f(bare['p99_ms'])} | 0 | 0 "
                 "| - | - | - |")
    else:
        L.append(f"| bare libpulse recorder | n/a ({report['errors'].get('latency_bare', '')}) "
                 "|  |  |  |  |  |  |  |  |  |  |")
    for row_ in an["latency_rows"]:
        fm, app = row_["frame_ms"], row_["application"]
        key = f"latency_{fm}_{app}"
        lat = get(r, key, "latency")
        if not lat:
            L.append(f"| novnc-audio | {fm} | {app} | n/a ({report['errors'].get(key, '')[:120]}) "
                     "|  |  |  |  |  |  |  |  |")
            continue
        L.append(f"| novnc-audio | {fm} | {app} | {lat['detected']}/{lat['clicks']} | "
                 f"{f(lat['median_ms'])} | {f(lat['p90_ms'])} | {f(lat['p99_ms'])} | "
                 f"{f(row_['added_median_ms'])} | {f(row_['added_p99_ms'])} | "
                 f"{f(row_['p99_beyond_frame_ms'])} | "
                 f"{f(row_['p99_beyond_frame_and_lookahead_ms'])} | "
                 f"{f(get(r, key, 'novnc-audio', 'cpu_pct'), 3)} |")
    L.append("")
    L.append("## The cost of listening\n")
    L.append("Nothing plays (no stream on the sink), or an application holds a stream open "
             "and writes digital silence (`pacat` fed from /dev/zero). One daemon per "
             "state; 3 rounds, each a window with no client then one with 1 and one with "
             "100 clients (bench/target/release/loadgen), each a third of the window, so "
             "each count is paired with the no-client window of its round. CPU from "
             "schedstat (ns); bytes are everything the client read (frames, WebSocket "
             "headers, pings).\n")
    L.append("| state | clients | daemon CPU % | PulseAudio CPU % | PulseAudio extra vs. "
             "no client, paired median pp | daemon extra pp | bytes/s per client | "
             "frames/s per client | pings/s per client |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for what, label in (("nothing", "nothing plays"), ("zeros", "stream of digital silence")):
        key = f"listen_{what}"
        if key not in r:
            L.append(f"| {label} | - | n/a ({report['errors'].get(key, 'not measured')[:120]}) "
                     "|  |  |  |  |  |  |")
            continue
        for n in (0, 1, 100):
            o = r[key].get(f"clients_{n}") or {}
            pe = o.get("pulseaudio_extra_pp_per_round")
            de = o.get("novnc-audio_extra_pp_per_round")
            cl = o.get("clients") or {}
            L.append(f"| {label} | {cl.get('opened', n) if n else 0} | "
                     f"{f(get(o, 'novnc-audio', 'cpu_pct_sched'), 4)} | "
                     f"{f(get(o, 'pulseaudio', 'cpu_pct_sched'), 3)} | "
                     f"{f(statistics.median(pe), 3) if pe else '-'} | "
                     f"{f(statistics.median(de), 4) if de else '-'} | "
                     f"{f(cl.get('wire_bytes_per_s_per_client'), 1) if n else '-'} | "
                     f"{f(cl.get('frames_per_s_per_client'), 1) if n else '-'} | "
                     f"{f(cl.get('pings_per_s_per_client'), 3) if n else '-'} |")
    L.append("")
    L.append("Sound after silence: 20 times, after 0.8-1.3 s of silence, a fresh `pacat` "
             "(default buffering) plays 100 ms of a 1 kHz sine at half scale. The detector "
             "(bench/src/bin/burst.rs) is a WebSocket client of the daemon (Opus decoded) or, "
             "as a reference, a bare libpulse recorder on the monitor with 1 ms fragments. "
             "\"First sound\" is from just before the player's fork/exec to the arrival of "
             "the audio holding the first 1 ms block above a tenth of the burst's RMS; "
             "\"arrived\" counts such 1 ms blocks.\n")
    L.append("| detector | bursts | detected | first sound median ms | p99 ms | max ms | "
             "arrived min ms | arrived median ms | player run median s |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for key, label in (("burst_bare", "bare libpulse recorder"), ("burst_daemon", "novnc-audio")):
        b = r.get(key)
        if not b:
            L.append(f"| {label} | n/a ({report['errors'].get(key, 'not measured')[:120]}) "
                     "|  |  |  |  |  |  |  |")
            continue
        L.append(f"| {label} | {b['bursts']} | {len(b['latency_ms'])} | {f(b['median_ms'], 1)} | "
                 f"{f(b['p99_ms'], 1)} | {f(b['max_ms'], 1)} | {f(b['active_min_ms'], 0)} | "
                 f"{f(b['active_median_ms'], 0)} | "
                 f"{f(statistics.median(b['player_s']), 2)} |")
    L.append("")
    L.append("## First frame and startup\n")
    L.append("| what | result |")
    L.append("|---|---|")
    ffp = get(r, "first_frame_playing")
    L.append("| first frame, client connects while sound plays (connect() -> first frame, "
             f"median of 5) | {f(get(ffp, 'median_ms'), 1, ' ms')} "
             f"({', '.join(f(x, 1) for x in (get(ffp, 'first_frame_ms') or []))}) |")
    ffs = get(r, "first_frame_silent")
    L.append(f"| first sound after {f(get(ffs, 'silence_s'), 0)} s with nothing playing "
             "(a client connects, then a fresh pacat plays a burst: player start -> first "
             f"sound at the client) | {f(get(ffs, 'first_frame_ms'), 1, ' ms')} |")
    fl = get(r, "floor_lowdelay", "floor", "first_frame_ms")
    L.append(f"| floor.c: process start -> first encoded frame (reference) | {f(fl, 1, ' ms')} |")
    st = get(r, "startup")
    L.append(f"| startup: exec -> listener accepts TCP (median of 10) | "
             f"{f(get(st, 'median_ms'), 1, ' ms')} (min {f(min(st['startup_ms']) if st else None, 1)}, "
             f"max {f(max(st['startup_ms']) if st else None, 1)}) |")
    L.append("")
    L.extend(wan.section(r, report["errors"]))
    if r.get("browser_lan"):
        L.append(browser_lan.markdown(r["browser_lan"]))
    L.append("## Targets\n")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    for t in an["targets"]:
        met = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        L.append(f"| {t['target']} | {t['measured']} | {met} |")
    L.append("")
    notes = ROOT / "bench" / "analysis.md"
    if notes.exists() and not report["smoke"]:
        L.append(notes.read_text().strip() + "\n")
    if report.get("pulse_restarts"):
        L.append("**The benchmark's PulseAudio went away during the run and was restarted "
                 f"({'; '.join(report['pulse_restarts'])}); measurements taken while it was "
                 "gone are listed as failed below.**\n")
    if report["errors"]:
        L.append("## Measurements that failed\n")
        for k, v in report["errors"].items():
            L.append(f"- `{k}`: {v}")
        L.append("")
    pset = get(r, "pcmflux", "pcmflux", "settings")
    L.append("## How it is measured\n")
    L.append(f"""- A private PulseAudio 16 (`pulseaudio -n -F /dev/null --exit-idle-time=-1
  -L module-native-protocol-unix`, own XDG_RUNTIME_DIR and HOME) with
  `module-null-sink sink_name=bench rate=48000 channels=2 format=s16le` as default sink.
  `rate=48000` is set so that no recorder pays a 44.1 -> 48 kHz resampler inside PulseAudio.
- A 440 Hz sine at -20 dBFS plays into it all along (`pacat --latency-msec=50`), except
  for the minute of silence before the second first-frame measurement.
- novnc-audio runs as `novnc-audio -H 127.0.0.1 -p PORT --allow-root --max-clients 1100`
  (plus `--frame-ms` / `--opus-application` for the latency rows), one fresh process per
  row, with RLIMIT_NOFILE raised to its hard limit. Peak RSS is VmHWM of that process.
- Clients: bench/target/release/loadgen, one epoll thread, hand-made WebSocket handshake,
  counts frames per connection and missing frames from timestamp gaps; counting starts
  after all clients are connected and a {f(2.0 if not report['smoke'] else 0.5, 1)} s warm-up.
  Its own CPU is in the last column.
- transport floor: bench/src/bin/fanout.rs accepts the same clients and writes one
  169-byte message (a 160-byte Opus frame with its header) to each with one write() every
  20 ms, on one thread, and does nothing else: the kernel's cost of the fan-out, which any
  daemon sending one TCP write per client per frame pays. On loopback the sender is also
  charged the receiving side's TCP processing (softirq in its own context).
- floor: bench/floor.c, libpulse async API on one thread, `pa_stream_peek/drop`,
  ADJUST_LATENCY, fragsize 20 ms, libopus 64 kbit/s, no network. `floor.c -p PORT` also
  sends each packet to one WebSocket client in the daemon's wire format (one `send()` per
  frame from the read callback); `-g` runs it on a GLib main loop through
  libpulse-mainloop-glib, as the daemon does.
- pcmflux: bench/pcmflux_run.py, a Python process running `pcmflux.AudioCapture` with a
  callback that only counts frames; settings {json.dumps(pset) if pset else 'n/a'}. Its RSS
  includes the Python interpreter; its Opus application is not settable through its API.
- ffmpeg: `ffmpeg -f pulse -i bench.monitor -c:a libopus -b:a 64k -frame_duration 20
  -application lowdelay -f ogg /dev/null`.
- Startup is timed from just before fork/exec (Python `subprocess.Popen`) to the first
  successful TCP connect, polled every 0.2 ms.
""")
    return "\n".join(L)


def pair_section(r, errors):
    """Goal 4's table: every round's figures, the floors and the daemon measured at once."""
    L = ["## One client vs. the floor, measured at the same time\n",
         "Per round, six processes run at once for one window: two identical floors "
         "(floor.c, A and B), the floor with one client it sends every packet to in the "
         "daemon's wire format (floor.c -p, one send() per frame, a loadgen client), the "
         "same on a GLib main loop through libpulse-mainloop-glib as the daemon runs "
         "(floor.c -p -g), "
         "novnc-audio with one loadgen client, and fanout.rs sending 169-byte frames to one "
         "loadgen client (the transport floor). The three recorders read the same monitor; "
         "the start order rotates. CPU from /proc/PID/task/*/schedstat (ns) over the same "
         "window, so a change of the machine's load hits all of them alike; B / A shows what "
         "is left of the method's noise. Ratios are per round, then median (min-max). "
         "Hardware counters (instructions) are not available on this VM.\n"]
    pair = r.get("pair_1")
    if not pair:
        L.append(f"n/a ({errors.get('pair_1', 'not measured')[:200]})\n")
        return L
    L.append("| round | start order | floor A % | floor B % | B / A | floor + send % | "
             "glib floor + send % | novnc-audio % | fanout 1 % | daemon / floor | "
             "daemon / (floor + send) | daemon / (glib floor + send) | "
             "daemon / (floor + fanout) | (floor + send) / floor | glib / pa_mainloop |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    short = {"floor_a": "A", "floor_b": "B", "floor_net": "send", "floor_glib": "glib",
             "novnc-audio": "daemon", "fanout": "fanout"}
    cols = ("aa", "daemon_vs_floor", "daemon_vs_floor_net", "daemon_vs_floor_glib",
            "daemon_vs_floor_transport", "floor_net_vs_floor", "floor_glib_vs_net")
    for i, row in enumerate(pair["rounds"], 1):
        c = row["cpu_pct_sched"]
        L.append(f"| {i} | {' '.join(short.get(k, k) for k in row['start_order'])} | "
                 f"{f(c['floor_a'], 3)} | {f(c['floor_b'], 3)} | {f(row['aa'], 3)} | "
                 f"{f(c['floor_net'], 3)} | {f(c['floor_glib'], 3)} | "
                 f"{f(c['novnc-audio'], 3)} | {f(c['fanout'], 3)} | "
                 + " | ".join(f(row[k], 3) for k in cols[1:]) + " |")

    def sp(k):
        v = pair[k]
        return f"**{f(v['median'], 3)}** ({f(v['min'], 3)}-{f(v['max'], 3)})"
    c, wk = pair["cpu_pct_sched"], pair["wakeups_per_s"]
    L.append(f"| median | - | {f(c['floor_a'], 3)} | {f(c['floor_b'], 3)} | {sp('aa')} | "
             f"{f(c['floor_net'], 3)} | {f(c['floor_glib'], 3)} | "
             f"{f(c['novnc-audio'], 3)} | {f(c['fanout'], 3)} | "
             + " | ".join(sp(k) for k in cols[1:]) + " |")
    L.append("")
    L.append("Context switches per second (median of rounds; voluntary + involuntary, all "
             "threads): " + ", ".join(f"{short.get(k, k)} {f(v, 0)}" for k, v in wk.items()
                                      if k in short) + ".\n")
    if "daemon_b_vs_a" in pair:
        L.append("A/B run: a second build (NOVNC_AUDIO_BENCH_DAEMON_B) with its own client in "
                 f"the same windows: second / first {sp('daemon_b_vs_a')}, second / floor "
                 f"{sp('daemon_b_vs_floor')}, second / (floor + send) "
                 f"{sp('daemon_b_vs_floor_net')}.\n")
    return L


def daemon_stats(port):
    """The daemon's own counters (GET /stats): frames skipped as digital silence and
    dropped for slow clients tell why a client saw timestamp gaps (an underrun of the tone
    on a loaded machine is silence, which is not sent)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
            s = json.loads(r.read())
        return {"frames_skipped_silence": s.get("frames_skipped_silence"),
                "frames_dropped_slow_client": get(s, "frames_dropped", "slow_client"),
                "frames_encoded": s.get("frames_encoded")}
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def on_term(signum, frame):
    # SIGTERM (run.sh's trap) becomes an exception, so Bench.run's finally ends every child.
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, on_term)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="3 s windows, assert numbers only")
    ap.add_argument("--seconds", type=float, default=30.0, help="measurement window (30)")
    ap.add_argument("--only", default="",
                    help="comma-separated groups to run (idle, floor, pair, clients, listening, "
                         "latency, first-frame, wan, browser); writes target/bench/report-only.json and "
                         "leaves docs/PERFORMANCE.md alone")
    ap.add_argument("--render", action="store_true",
                    help="only re-write docs/PERFORMANCE.md from target/bench/report.json")
    args = ap.parse_args()
    if args.render:
        report = json.loads((OUT / "report.json").read_text())
        report["analysis"] = analyse(report["results"], report["smoke"])
        md = markdown(report)
        if not report["smoke"]:
            (ROOT / "docs" / "PERFORMANCE.md").write_text(md + "\n")
        print(md)
        return 0
    b = Bench(args)
    total = b.run()
    report = {
        "smoke": args.smoke,
        "window_s": b.T,
        "total_s": total,
        "machine": machine_info(),
        "results": b.results,
        "errors": b.errors,
        "pulse_restarts": b.pulse_restarts,
    }
    report["analysis"] = analyse(b.results, args.smoke)
    OUT.mkdir(parents=True, exist_ok=True)
    # The smoke run keeps its numbers apart so the last full report.json survives it.
    name = ("report-only.json" if args.only else
            "report-smoke.json" if args.smoke else "report.json")
    (OUT / name).write_text(json.dumps(report, indent=2))
    md = markdown(report)
    print(md)
    if args.only:
        (OUT / "PERFORMANCE.only.md").write_text(md + "\n")
        return 0
    if args.smoke:
        # The smoke run only checks that every measurement produced its numbers; it does not
        # overwrite the committed full report.
        (OUT / "PERFORMANCE.smoke.md").write_text(md + "\n")
    else:
        (ROOT / "docs" / "PERFORMANCE.md").write_text(md + "\n")
    missing = [k for k in EXPECTED if k not in b.results]
    print(f"[bench] total {total:.0f} s; report: {OUT / name}", file=sys.stderr)
    if missing:
        print(f"[bench] no numbers for: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


EXPECTED = ["pulse_alone", "pair_1", "floor_lowdelay", "floor_audio", "pcmflux", "ffmpeg", "daemon_idle",
            "daemon_1", "daemon_100", "daemon_1000", "fanout_100", "fanout_1000", "latency_bare", "latency_20_lowdelay",
            "latency_10_lowdelay", "latency_20_audio", "latency_10_audio",
            "first_frame_playing", "first_frame_silent", "startup",
            "listen_nothing", "listen_zeros", "burst_bare", "burst_daemon", wan.KEY, "browser_lan"]

if __name__ == "__main__":
    sys.exit(main())
