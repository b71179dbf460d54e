"""The WAN rows of `make bench`: the audio stream over an emulated bad link (tests/netlink).

Kept apart from bench.py so the harness lives with its tests; bench.py calls `measure` as the
`wan` group and puts `section` into docs/PERFORMANCE.md.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "netlink"))
import wan_playout  # noqa: E402
import wan_stalls  # noqa: E402

KEY = "wan_stalls"
KEY_PLAYOUT = "wan_playout"


def measure(smoke, daemon, logdir):
    # 3 runs of 60 s (the rows differ by little: pooled, with the A/A row to show the noise);
    # the smoke run still sees a few losses each way in 10 s.
    return wan_stalls.measure(10 if smoke else 60, daemon=daemon, logdir=logdir,
                              runs=1 if smoke else 3)


def measure_playout(smoke, daemon, logdir):
    """Chromium over the link (clean 30 s, WAN 5 min, clean 60 s; smoke 10/20/20 s), timed by
    clicks at the sound card; needs chromium + chromium-driver, which run.sh does not install
    (the browser tests do): without them this row fails with the reason and the others stand."""
    why = wan_playout.missing()
    if why:
        raise RuntimeError(why)
    lan, wan_, clean = (10, 20, 20) if smoke else (30, 300, 60)
    r = wan_playout.measure(lan, wan_, clean, daemon=daemon, logdir=logdir)
    r.pop("samples", None)
    r.pop("clicks", None)
    return r


def card_rows(p):
    """The issue's WAN table: clicks at the sound card, per phase."""
    c, m = p["card"], p
    L = ["| phase | clicks written / in the sink / at the card (lost) | at the card: median / "
         "p90 / p99 / max ms | module's latencyMs − card, median ms | underruns a minute "
         "(module's stats) |", "|---|---|---|---|---|"]
    settle = m["lan"].get("settle_s", 10)
    names = [("lan", f"clean link ({m['lan_s']:g} s, first {settle:g} s left out)", "lan"),
             ("wan", f"WAN ({m['wan_s']:g} s)", "wan"),
             ("clean_again", f"clean again ({m['clean_s']:g} s)", "clean_again")]
    for key, label, mk in names:
        x = c[key]
        ur = m[mk]["underruns_per_min"]
        x = {k: ("-" if v is None else v) for k, v in x.items()}
        if key == "wan":
            a20 = m["wan"].get("underruns_per_min_after_20s")
            ur = (f"{ur} (after its first 20 s {'-' if a20 is None else a20}, "
                  f"second half {m['wan']['underruns_per_min_second_half']})")
        L.append(f"| {label} | {x['sent']} / {x['in_sink']} / {x['at_card']} ({x['lost']}) | "
                 f"{x['card_ms_median']} / {x['card_ms_p90']} / {x['card_ms_p99']} / "
                 f"{x['card_ms_max']} | {x['module_minus_card_ms_median']} | {ur} |")
    w, a = c["wan"], c["clean_again"]
    def after(k):
        return (f"after {a[k]} s" if a.get(k) is not None
                else f"not within the {m['clean_s']:g} s")
    L.append("")
    L.append(f"Growth on the WAN: card median {w['card_ms_median_first_half']} ms in the first "
             f"half, {w['card_ms_median_second_half']} ms in the second. After the link turned "
             f"clean, the card latency was back within ±{wan_playout.BACK_TOL_MS} ms of the "
             f"clean link's {c['lan']['card_ms_median']} ms (5 heard clicks in a row) "
             f"{after('back_to_lan_s')}, and within ±{wan_playout.BACK_TOL_MS} ms of the "
             f"figure it settled at (the median of its last 20 s, "
             f"{a['card_ms_median_last_20s']} ms) {after('back_to_settled_s')}. "
             f"Load average (1 min) at the start, the WAN's start and end, the end: "
             f"{', '.join(str(v) for v in m.get('loadavg_1min', {}).values())} (2 cores).")
    return L


def playout_rows(p):
    L = ["| phase | module's latencyMs median | its targetMs median | underruns a minute | "
         "dropped for latency (times, ms) |", "|---|---|---|---|---|"]

    def dr(x):
        d = x.get("dropped")
        return f"{d[0]}, {d[1]}" if d else "-"
    lan, w, c = p["lan"], p["wan"], p["clean_again"]
    L.append(f"| clean link ({p['lan_s']:g} s, first {lan.get('settle_s', 10):g} s left out) | "
             f"{lan['latency_ms_median']} "
             f"| {lan['target_ms_median']} | {lan['underruns_per_min']} | {dr(lan)} |")
    L.append(f"| WAN ({p['wan_s']:g} s) | {w['latency_ms_median']} (first half "
             f"{w['latency_ms_median_first_half']}, second {w['latency_ms_median_second_half']}) "
             f"| {w['target_ms_median']} | {w['underruns_per_min']} (second half "
             f"{w['underruns_per_min_second_half']}) | {dr(w)} |")
    L.append(f"| clean again ({p['clean_s']:g} s) | {c['latency_ms_median_last_20s']} (last 20 s) "
             f"| - | {c['underruns_per_min']} | {dr(c)} |")
    L.append("")
    L.append(f"Back within ±{wan_playout.BACK_TOL_MS} ms of the clean-link latency of the "
             f"10 s before the WAN phase ({lan.get('latency_ms_median_before_wan')} ms; 5 s in "
             f"a row) " + (f"{c['back_to_lan_s']} s after the link turned clean"
                           if c["back_to_lan_s"] is not None else
                           f"not within the {p['clean_s']:g} s of clean link") + ". Decoder "
             f"`{p.get('decoder')}`, output `{p.get('output')}`.")
    return L


def section(results, errors):
    r = results.get(KEY)
    L = ["## WAN: the stream over a lossy, jittery link\n"]
    if not r:
        L.append(f"Not measured: {errors.get(KEY, 'the wan group did not run')}\n")
        return L
    link = r["link"]
    s = link["stats"]
    L.append(
        f"tests/netlink/wan_stalls.py: two network namespaces joined by TUN devices and a "
        f"user-space forwarder (tests/netlink/linkemu.py; this kernel has no sch_netem): "
        f"{link['delay_ms']:g} ms ± {link['jitter_ms']:g} ms (uniform) each way, "
        f"{link['loss_pct']:g} % loss each way, packets of a flow kept in order (actual "
        f"one-way delay p50 / p99 {s['a_to_b']['delay_ms_p50']} / "
        f"{s['a_to_b']['delay_ms_p99']} ms server to client), congestion control "
        f"{link['tcp_congestion_control']}. One daemon per row of TCP options "
        f"(`NOVNC_AUDIO_TCP_OPTIONS`, src/transport/socket_options.rs) runs at the same "
        f"time over the same link, 20 ms Opus frames of a tone, one client each "
        f"(tests/netlink/wanprobe.py, which records each frame's arrival), "
        f"{link.get('runs', 1)} run(s) of {link['seconds']:g} s each after a 2 s warm-up "
        f"(a fresh link and fresh daemons each run; the table pools them): the rows are "
        f"paired. \"baseline\" is "
        f"what every socket got before (TCP_NODELAY, small SO_SNDBUF). Excess delay: one-way "
        f"delay above the smallest of the last 10 s, i.e. what a playout buffer must hold; "
        f"\"late at N\": share of frames a buffer of N ms would play late; lost: timestamps "
        f"that never came; in brackets, the frames the daemon itself dropped for that client "
        f"(its /stats `frames_dropped.slow_client`, read at the end of each run): the rest of "
        f"`lost` is the capture skipping while the machine stalled (then every row loses "
        f"about the same).\n")
    L.append(wan_stalls.table(r))
    L.append("")
    L.append("### Chromium over the same link\n")
    p = results.get(KEY_PLAYOUT)
    if not p:
        L.append(f"Not measured: {errors.get(KEY_PLAYOUT, 'the wan group did not run')}\n")
        return L
    L.append("tests/netlink/wan_playout.py: headless Chromium (chromedriver) in the client "
             "namespace plays the daemon's listen page from `http://10.201.X.1:6090/` (plain "
             "HTTP, not localhost: WebAssembly decoder, scheduled output) into a second "
             "PulseAudio's null sink, its sound card; the link is clean, then WAN as above, then "
             "clean again. At the sound card (tests/netlink/wan_clicks.py, the click method of "
             "tests/browser/engines): a 1 ms click a second is written into the daemon's sink "
             "over a 440 Hz tone bed at 0.1 of full scale (so the daemon, which skips digital "
             "silence, sends every frame, as for a listener of continuous sound), timed on the "
             "sink's monitor and on the monitor of the browser's null sink (CLOCK_REALTIME, one "
             "machine; times from the sample count, so a late read does not move them). "
             "\"Lost\": in the sink, never at the card. The module's latencyMs is read from "
             "`window.novncAudio.stats` (sampled every second) nearest each click's arrival at "
             "the card.\n")
    L.extend(card_rows(p))
    L.append("")
    L.append("The module's own figures (`window.novncAudio.stats`, every second):\n")
    L.extend(playout_rows(p))
    L.append("")
    return L
