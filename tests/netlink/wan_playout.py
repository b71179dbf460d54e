#!/usr/bin/env python3
"""Chromium's playout over the emulated WAN link, then after it turns clean again.

    tests/netlink/wan_playout.py [--lan-s 30 --wan-s 60 --clean-s 60] [--json OUT]

A daemon (its own PulseAudio playing a tone) in namespace A; in namespace B, Chromium
(wan_browser.py) plays the daemon's listen page from http://ADDR_A:PORT/ (plain HTTP, not
localhost: not a secure context, so the WebAssembly decoder and the scheduled output path),
into a second PulseAudio's null sink as its sound card. The link is clean for --lan-s (the
LAN figure), then 40 ± 20 ms each way with 1 % loss each way for --wan-s, then clean again
for --clean-s. From `window.novncAudio.stats`, sampled every second: underruns a minute,
latencyMs (the module's own estimate, not measured at the sound card), targetMs, and how
long after the link turns clean latencyMs is back within 10 ms of the LAN figure.
Skips (exit 0, says so) only when chromium/chromedriver are missing and CI is unset.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import linkemu  # noqa: E402
import wan_stalls  # noqa: E402

WAN = dict(delay_ms=40, jitter_ms=20, loss_pct=1)
CLEAN = dict(delay_ms=0, jitter_ms=0, loss_pct=0)


def window(samples, t0, t1):
    return [s for s in samples if t0 <= s["t"] < t1 and "latencyMs" in s]


def summary(samples, lan_s, wan_s, clean_s):
    settle = min(10, lan_s / 2)  # the start settles (10 s; half of a short smoke window)
    lan = window(samples, settle, lan_s)
    wan = window(samples, lan_s, lan_s + wan_s)
    after = window(samples, lan_s + wan_s, lan_s + wan_s + clean_s)

    def med(w, k):
        v = [s[k] for s in w if s.get(k) is not None]
        return round(statistics.median(v), 1) if v else None

    def underruns_per_min(w):
        if len(w) < 2:
            return None
        return round((w[-1]["underruns"] - w[0]["underruns"]) * 60 / (w[-1]["t"] - w[0]["t"]), 2)
    lan_ms = med(lan, "latencyMs")
    half = lan_s + wan_s / 2
    out = {
        "lan": {"settle_s": settle, "latency_ms_median": lan_ms, "target_ms_median": med(lan, "targetMs"),
                "underruns_per_min": underruns_per_min(lan)},
        "wan": {"latency_ms_median": med(wan, "latencyMs"),
                "latency_ms_median_first_half": med([s for s in wan if s["t"] < half],
                                                    "latencyMs"),
                "latency_ms_median_second_half": med([s for s in wan if s["t"] >= half],
                                                     "latencyMs"),
                "target_ms_median": med(wan, "targetMs"),
                "jitter_ms_median": med(wan, "jitterMs"),
                "underruns_per_min": underruns_per_min(wan),
                "underruns_per_min_second_half": underruns_per_min(
                    [s for s in wan if s["t"] >= half]),
                "concealed_frames": (wan[-1].get("concealedFrames", 0) -
                                     wan[0].get("concealedFrames", 0)) if wan else None},
        "clean_again": {"latency_ms_median_last_20s": med(
            [s for s in after if s["t"] >= lan_s + wan_s + clean_s - 20], "latencyMs"),
            "underruns_per_min": underruns_per_min(after)},
    }
    # Back to the LAN figure: the first second after which latencyMs stays within 10 ms of
    # the LAN median for 5 s in a row.
    back = None
    if lan_ms is not None:
        ok = [s["latencyMs"] <= lan_ms + 10 for s in after]
        for i in range(len(after)):
            if all(ok[i:i + 5]) and len(ok[i:i + 5]) == 5:
                back = round(after[i]["t"] - (lan_s + wan_s), 1)
                break
    out["clean_again"]["back_to_lan_s"] = back
    return out


def measure(lan_s=30, wan_s=60, clean_s=60, daemon=None, logdir=None):
    daemon = Path(daemon or ROOT / "target" / "release" / "novnc-audio")
    why = linkemu.check_host()
    if why:
        raise RuntimeError(f"cannot emulate a link here: {why}")
    logdir = Path(logdir or ROOT / "target" / "netlink")
    logdir.mkdir(parents=True, exist_ok=True)
    log = open(logdir / "wan_playout.log", "ab")
    tmp = Path(tempfile.mkdtemp(prefix="novnc-audio-wanplay-"))
    (tmp / "d").mkdir()
    (tmp / "b").mkdir()
    server_pa, card = wan_stalls.Pulse(tmp / "d"), wan_stalls.Pulse(tmp / "b")
    samples, events = [], []
    try:
        server_pa.start(log)
        card.start(log, tone=False)
        with linkemu.Link(**CLEAN) as link:
            port = 6090
            d = link.run_a([daemon, "-H", link.addr_a, "-p", port, "--allow-root"],
                           env=server_pa.env, stdout=log, stderr=log)
            wan_stalls.wait_listening(link, port, d)
            benv = dict(card.env)
            benv.pop("XDG_RUNTIME_DIR", None)
            total = lan_s + wan_s + clean_s
            b = link.run_b([sys.executable, HERE / "wan_browser.py",
                            f"http://{link.addr_a}:{port}/", total],
                           env=benv, stdout=subprocess.PIPE, stderr=log, text=True)
            first = b.stdout.readline().strip()
            if first != "playing":
                raise RuntimeError(f"Chromium did not play: {first}")
            t0 = time.monotonic()
            phase = 0
            for line in b.stdout:
                s = json.loads(line)
                if "error" in s and "t" not in s:
                    raise RuntimeError(f"Chromium: {s['error']}")
                samples.append(s)
                el = time.monotonic() - t0
                if phase == 0 and el >= lan_s:
                    link.set(**WAN)
                    events.append(("wan", round(el, 2)))
                    phase = 1
                elif phase == 1 and el >= lan_s + wan_s:
                    link.set(**CLEAN)
                    events.append(("clean", round(el, 2)))
                    phase = 2
            b.wait(30)
    finally:
        card.close()
        server_pa.close()
        shutil.rmtree(tmp, ignore_errors=True)
        log.close()
    out = summary(samples, lan_s, wan_s, clean_s)
    out.update(link=WAN, lan_s=lan_s, wan_s=wan_s, clean_s=clean_s, events=events,
               decoder=samples[-1].get("decoder") if samples else None,
               output=samples[-1].get("output") if samples else None, samples=samples)
    return out


def missing():
    miss = [c for c in ("chromium", "chromedriver") if not shutil.which(c)]
    return f"not installed: {', '.join(miss)} (apt-get install chromium chromium-driver)" \
        if miss else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lan-s", type=float, default=30)
    ap.add_argument("--wan-s", type=float, default=60)
    ap.add_argument("--clean-s", type=float, default=60)
    ap.add_argument("--daemon")
    ap.add_argument("--json")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    why = missing()
    if why:
        print(f"SKIP: {why}", file=sys.stderr)
        return 1 if os.environ.get("CI") else 0
    r = measure(a.lan_s, a.wan_s, a.clean_s, a.daemon)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))
    r.pop("samples")
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
