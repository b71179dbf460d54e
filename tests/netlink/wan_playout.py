#!/usr/bin/env python3
"""Chromium's playout over the emulated WAN link, then after it turns clean again.

    tests/netlink/wan_playout.py [--lan-s 30 --wan-s 300 --clean-s 60] [--json OUT]

A daemon (its own PulseAudio playing a tone) in namespace A; in namespace B, Chromium
(wan_browser.py) plays the daemon's listen page from http://ADDR_A:PORT/ (plain HTTP, not
localhost: not a secure context, so the WebAssembly decoder and the scheduled output path),
into a second PulseAudio's null sink as its sound card. The link is clean for --lan-s (the
LAN figure), then 40 ± 20 ms each way with 1 % loss each way for --wan-s, then clean again
for --clean-s.

At the sound card (wan_clicks.py, the click method of tests/browser/engines): a click every
second is written into the daemon's sink over the tone, timed on that sink's monitor and on the
monitor of the browser's null sink. Per phase: clicks written, seen in the sink, heard at the
card, lost; sink -> card latency median / p90 / p99 / max; the module's latencyMs when each
click played minus the card figure; the WAN phase's halves (growth); and how long after the
link turns clean the card latency is back within ±10 ms (BACK_TOL_MS) of the clean link's.

From `window.novncAudio.stats`, sampled every second: underruns a minute, latencyMs (the
module's own estimate) and the median of each of its terms per phase (stats.latencyTerms, and
the buffer's fill), targetMs, and how long after the link turns clean latencyMs is back
within ±10 ms of the clean-link median of the 10 s before the WAN phase.
Skips (exit 0, says so) only when chromium/chromedriver are missing and CI is unset.
"""
import argparse
import json
import os
import shutil
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
import wan_browser  # noqa: E402
import wan_clicks  # noqa: E402
import wan_stalls  # noqa: E402

WAN = dict(delay_ms=40, jitter_ms=20, loss_pct=1)
CLEAN = dict(delay_ms=0, jitter_ms=0, loss_pct=0)
BACK_TOL_MS = 10


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
    def dropped(w):
        """Drops of audio for latency (events, ms): each one a crossfaded skip."""
        if len(w) < 2:
            return None
        return [w[-1].get("droppedForLatency", 0) - w[0].get("droppedForLatency", 0),
                round(w[-1].get("droppedMs", 0) - w[0].get("droppedMs", 0))]

    def terms(w):
        """Median of each term of latencyMs (stats.latencyTerms) and of the buffer's fill: which
        term moves when the estimate misses the card."""
        t = [s["latencyTerms"] for s in w if s.get("latencyTerms")]
        out = {k: round(statistics.median(x[k] for x in t), 1) for k in (t[0] if t else {})}
        if t:
            out["bufferedMs"] = med(w, "bufferedMs")
        return out
    lan_ms = med(lan, "latencyMs")
    half = lan_s + wan_s / 2
    out = {
        "lan": {"settle_s": settle, "latency_ms_median": lan_ms, "target_ms_median": med(lan, "targetMs"),
                "underruns_per_min": underruns_per_min(lan), "dropped": dropped(lan),
                "terms_ms_median": terms(lan)},
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
                # The stall rule needs two stalls in its 20 s window before it acts.
                "underruns_per_min_after_20s": underruns_per_min(
                    [s for s in wan if s["t"] >= lan_s + 20]),
                "dropped": dropped(wan),
                "terms_ms_median": terms(wan),
                "concealed_frames": (wan[-1].get("concealedFrames", 0) -
                                     wan[0].get("concealedFrames", 0)) if wan else None},
        "clean_again": {"latency_ms_median_last_20s": med(
            [s for s in after if s["t"] >= lan_s + wan_s + clean_s - 20], "latencyMs"),
            "underruns_per_min": underruns_per_min(after), "dropped": dropped(after),
            "terms_ms_median": terms(after)},
    }
    # Back to the clean-link figure: the first second after which latencyMs stays within
    # ±BACK_TOL_MS of the median of the last 10 s of clean link before the WAN phase (the
    # settled figure the link left, not the whole LAN window with its start) for 5 s in a
    # row. Two-sided: a buffer that drained below it (and then underruns) is not "back".
    before_ms = med(window(samples, max(settle, lan_s - 10), lan_s), "latencyMs")
    out["lan"]["latency_ms_median_before_wan"] = before_ms
    back = None
    if before_ms is not None:
        ok = [abs(s["latencyMs"] - before_ms) <= BACK_TOL_MS for s in after]
        for i in range(len(after)):
            if all(ok[i:i + 5]) and len(ok[i:i + 5]) == 5:
                back = round(after[i]["t"] - (lan_s + wan_s), 1)
                break
    out["clean_again"]["back_to_lan_s"] = back
    return out


def pct(v, p):
    v = sorted(v)
    return round(v[min(len(v) - 1, int(p * len(v)))], 1) if v else None


def module_at(samples, wall_ms, within_ms=1000):
    """The module's latencyMs in the stats sample nearest to wall_ms (None if none is near)."""
    best = min(samples, key=lambda s: abs(s.get("wall", -1e18) - wall_ms), default=None)
    if best is None or abs(best.get("wall", -1e18) - wall_ms) > within_ms:
        return None
    return best.get("latencyMs")


def card_phase(clicks, samples):
    """Clicks of one phase: how many were written, seen in the sink, heard at the card; the
    sink -> card latency; the module's latencyMs when each click played, minus the card's."""
    ms = [c["ms"] for c in clicks if c["ms"] is not None]
    diffs = []
    for c in clicks:
        if c["ms"] is None:
            continue
        m = module_at(samples, c["card"])
        if m is not None:
            diffs.append(m - c["ms"])
    in_sink = sum(1 for c in clicks if c["sink"] is not None)
    return {"sent": len(clicks), "in_sink": in_sink, "at_card": len(ms),
            "lost": in_sink - len(ms),
            "card_ms_median": round(statistics.median(ms), 1) if ms else None,
            "card_ms_p90": pct(ms, 0.9), "card_ms_p99": pct(ms, 0.99),
            "card_ms_max": max(ms) if ms else None,
            "module_minus_card_ms_median": round(statistics.median(diffs), 1) if diffs else None,
            "module_minus_card_ms_abs_median": round(statistics.median(
                abs(d) for d in diffs), 1) if diffs else None}


def card_summary(clicks, samples, t0_wall, wan_wall, clean_wall, end_wall, settle_s):
    """The click figures per phase (by the time each click was written), growth over the WAN
    phase (its halves) and how long after the link turned clean the card latency was back
    within BACK_TOL_MS of the clean-link median (5 detected clicks in a row)."""
    def between(a, b):
        return [c for c in clicks if a <= c["written"] < b]
    lan = between(t0_wall + settle_s * 1000, wan_wall)
    wan = between(wan_wall, clean_wall)
    half = (wan_wall + clean_wall) / 2
    # The browser stops right after its last sample: a click written in the last 1.5 s may
    # not have reached the card yet, and is left out rather than counted as lost.
    after = between(clean_wall, end_wall - 1500)
    out = {"lan": card_phase(lan, samples), "wan": card_phase(wan, samples),
           "clean_again": card_phase(after, samples)}
    out["wan"]["card_ms_median_first_half"] = card_phase(between(wan_wall, half),
                                                         samples)["card_ms_median"]
    out["wan"]["card_ms_median_second_half"] = card_phase(between(half, clean_wall),
                                                          samples)["card_ms_median"]
    heard = [c for c in after if c["ms"] is not None]

    def back_to(ref):
        if ref is None:
            return None
        for i in range(len(heard) - 4):
            if all(abs(c["ms"] - ref) <= BACK_TOL_MS for c in heard[i:i + 5]):
                return round((heard[i]["written"] - clean_wall) / 1000, 1)
        return None
    tail = [c for c in after if c["written"] >= end_wall - 21500]
    settled = card_phase(tail, samples)["card_ms_median"]
    out["clean_again"]["card_ms_median_last_20s"] = settled
    # Against the clean link before the WAN, and (that phase is short, and a stall of the
    # machine there moves its median) against the figure the clean link settles at after it.
    out["clean_again"]["back_to_lan_s"] = back_to(out["lan"]["card_ms_median"])
    out["clean_again"]["back_to_settled_s"] = back_to(settled)
    return out


def measure(lan_s=30, wan_s=60, clean_s=60, daemon=None, logdir=None, connect_over_wan=False):
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
    clicks = None
    try:
        server_pa.start(log)
        card.start(log, tone=False)
        with linkemu.Link(**CLEAN) as link:
            port = 6090
            d = link.run_a([daemon, "-H", link.addr_a, "-p", port, "--allow-root"],
                           env=server_pa.env, stdout=log, stderr=log)
            wan_stalls.wait_listening(link, port, d)
            if connect_over_wan:
                # The page and its WebSocket handshake cross the bad link too (its one-way
                # figure is then RTT/2 of the WAN): the first phase is WAN, not clean.
                link.set(**WAN)
            benv = dict(card.env)
            benv.pop("XDG_RUNTIME_DIR", None)
            total = lan_s + wan_s + clean_s
            b = link.run_b([sys.executable, HERE / "wan_browser.py",
                            f"http://{link.addr_a}:{port}/", total],
                           env=benv, stdout=subprocess.PIPE, stderr=log, text=True,
                           stop_timeout=wan_browser.STOP_S + 5)
            first = b.stdout.readline().strip()
            if first != "playing":
                raise RuntimeError(f"Chromium did not play: {first}")
            t0 = time.monotonic()
            t0_wall = time.time() * 1000
            walls = {}
            load = {"start": os.getloadavg()[0]}
            # The clicks' pacat and parecs talk to both PulseAudio servers over their unix
            # sockets: nothing of theirs crosses the link.
            clicks = wan_clicks.Clicks(server_pa.env, "wan", card.env, "wan", log)
            phase = 0
            for line in b.stdout:
                s = json.loads(line)
                if "error" in s and "t" not in s:
                    raise RuntimeError(f"Chromium: {s['error']}")
                samples.append(s)
                el = time.monotonic() - t0
                if phase == 0 and el >= lan_s:
                    link.set(**WAN)
                    walls["wan"] = time.time() * 1000
                    load["wan_start"] = os.getloadavg()[0]
                    events.append(("wan", round(el, 2)))
                    phase = 1
                elif phase == 1 and el >= lan_s + wan_s:
                    link.set(**CLEAN)
                    walls["clean"] = time.time() * 1000
                    load["wan_end"] = os.getloadavg()[0]
                    events.append(("clean", round(el, 2)))
                    phase = 2
            # The last sample's time, not now: the browser's session is already gone here.
            end_wall = samples[-1]["wall"] if samples else time.time() * 1000
            load["end"] = os.getloadavg()[0]
            clicks.close()
            b.wait(30)
    finally:
        if clicks is not None:
            clicks.close()
        card.close()
        server_pa.close()
        shutil.rmtree(tmp, ignore_errors=True)
        log.close()
    out = summary(samples, lan_s, wan_s, clean_s)
    pairs = clicks.pairs()
    if "clean" not in walls:
        raise RuntimeError(f"Chromium stopped reporting after {len(samples)} s")
    out["card"] = card_summary(pairs, samples, t0_wall, walls["wan"], walls["clean"], end_wall,
                               out["lan"]["settle_s"])
    out["clicks"] = pairs
    out["loadavg_1min"] = {k: round(v, 2) for k, v in load.items()}
    out["walls"] = {"start": t0_wall, "wan": walls["wan"], "clean": walls["clean"],
                    "end": end_wall}
    out.update(link=WAN, lan_s=lan_s, wan_s=wan_s, clean_s=clean_s, events=events,
               decoder=samples[-1].get("decoder") if samples else None,
               output=samples[-1].get("output") if samples else None, samples=samples)
    return out


def resummarise(r):
    """The summaries of a saved run (--json) again, from its samples and clicks (after a
    change to the summaries; a run saved before `walls` was kept gets them from `events`)."""
    smp = r["samples"]
    w = r.get("walls")
    if not w:
        t0 = smp[0]["wall"] - smp[0]["t"] * 1000
        ev = dict(r["events"])
        w = {"start": t0, "wan": t0 + ev["wan"] * 1000, "clean": t0 + ev["clean"] * 1000,
             "end": smp[-1]["wall"]}
    out = dict(r)
    out.update(summary(smp, r["lan_s"], r["wan_s"], r["clean_s"]))
    out["card"] = card_summary(r["clicks"], smp, w["start"], w["wan"], w["clean"], w["end"],
                               out["lan"]["settle_s"])
    out["walls"] = w
    return out


def missing():
    miss = [c for c in ("chromium", "chromedriver") if not shutil.which(c)]
    return f"not installed: {', '.join(miss)} (apt-get install chromium chromium-driver)" \
        if miss else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lan-s", type=float, default=30)
    ap.add_argument("--wan-s", type=float, default=300)
    ap.add_argument("--clean-s", type=float, default=60)
    ap.add_argument("--daemon")
    ap.add_argument("--connect-over-wan", action="store_true",
                    help="the link is bad from the start (the first phase is WAN too)")
    ap.add_argument("--json")
    ap.add_argument("--resummarise", metavar="JSON",
                    help="no run: the summaries of a run saved with --json, again")
    a = ap.parse_args()
    if a.resummarise:
        r = resummarise(json.loads(Path(a.resummarise).read_text()))
        Path(a.resummarise).write_text(json.dumps(r, indent=2))
        r.pop("samples")
        r.pop("clicks")
        print(json.dumps(r, indent=2))
        return 0
    linkemu.exit_on_signal()
    why = missing()
    if why:
        print(f"SKIP: {why}", file=sys.stderr)
        return 1 if os.environ.get("CI") else 0
    r = measure(a.lan_s, a.wan_s, a.clean_s, a.daemon, connect_over_wan=a.connect_over_wan)
    r["connect_over_wan"] = a.connect_over_wan
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))
    r.pop("samples")
    r.pop("clicks")
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
