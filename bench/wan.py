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
    """Chromium over the link (clean, WAN, clean again); needs chromium + chromium-driver,
    which run.sh does not install (the browser tests do): without them this row fails with
    the reason and the others stand."""
    why = wan_playout.missing()
    if why:
        raise RuntimeError(why)
    lan, wan_, clean = (10, 20, 20) if smoke else (30, 60, 60)
    r = wan_playout.measure(lan, wan_, clean, daemon=daemon, logdir=logdir)
    r.pop("samples", None)
    return r


def playout_rows(p):
    L = ["| phase | module's latencyMs median | its targetMs median | underruns a minute |",
         "|---|---|---|---|"]
    lan, w, c = p["lan"], p["wan"], p["clean_again"]
    L.append(f"| clean link ({p['lan_s']:g} s, first {lan.get('settle_s', 10):g} s left out) | "
             f"{lan['latency_ms_median']} "
             f"| {lan['target_ms_median']} | {lan['underruns_per_min']} |")
    L.append(f"| WAN ({p['wan_s']:g} s) | {w['latency_ms_median']} (first half "
             f"{w['latency_ms_median_first_half']}, second {w['latency_ms_median_second_half']}) "
             f"| {w['target_ms_median']} | {w['underruns_per_min']} (second half "
             f"{w['underruns_per_min_second_half']}) |")
    L.append(f"| clean again ({p['clean_s']:g} s) | {c['latency_ms_median_last_20s']} (last 20 s) "
             f"| - | {c['underruns_per_min']} |")
    L.append("")
    L.append(f"Back within 10 ms of the clean-link latency (5 s in a row) "
             f"{c['back_to_lan_s']} s after the link turned clean. Decoder "
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
        f"{link['seconds']:g} s after a 2 s warm-up: the rows are paired. \"baseline\" is "
        f"what every socket got before (TCP_NODELAY, small SO_SNDBUF). Excess delay: one-way "
        f"delay above the smallest of the last 10 s, i.e. what a playout buffer must hold; "
        f"\"late at N\": share of frames a buffer of N ms would play late; lost: timestamps "
        f"that never came (the same count in every row means the capture skipped them while "
        f"the machine stalled; TCP itself loses nothing).\n")
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
             "PulseAudio's null sink; `window.novncAudio.stats` sampled every second while the "
             "link is clean, then WAN as above, then clean again. latencyMs is the module's own "
             "estimate, not measured at the sound card.\n")
    L.extend(playout_rows(p))
    L.append("")
    return L
