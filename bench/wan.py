"""The WAN rows of `make bench`: the audio stream over an emulated bad link (tests/netlink).

Kept apart from bench.py so the harness lives with its tests; bench.py calls `measure` as the
`wan` group and puts `section` into docs/PERFORMANCE.md.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "netlink"))
import wan_stalls  # noqa: E402

KEY = "wan_stalls"


def measure(smoke, daemon, logdir):
    # 3 runs of 60 s (the rows differ by little: pooled, with the A/A row to show the noise);
    # the smoke run still sees a few losses each way in 10 s.
    return wan_stalls.measure(10 if smoke else 60, daemon=daemon, logdir=logdir,
                              runs=1 if smoke else 3)


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
        f"delay above the run's smallest, i.e. what a playout buffer must hold; \"late at N\": "
        f"share of frames a buffer of N ms would play late; lost: frames the daemon dropped.\n")
    L.append(wan_stalls.table(r))
    L.append("")
    return L
