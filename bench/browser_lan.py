"""LAN per engine: the shipped web module playing in real browsers on loopback (issue 10).

Runs tests/browser/engines/run.sh (real noVNC in Chromium, Firefox ESR and WebKitGTK, each
from a plain-HTTP page and a secure one; the page variant where the module is copied next to
vnc.html) against the release daemon, once per frame size, and reads its results.json:
  - sink -> rendered: a click written into the daemon's sink (timed at the sink's monitor) to
    the moment the page's audio graph renders it (what the module controls);
  - sink -> sound card: to the moment it reaches the browser's own sound card (a second
    PulseAudio's null sink): the engine's output path included;
  - render -> card: the difference of the medians, the engine's output path alone;
  - underruns per minute over the window, and the module's stats.latencyMs next to the card;
  - drops and jumps of the window's tone at the sound card, per minute (card.mjs): the gaps heard,
    the engine's output path included.
Every process is started and ended by run.sh (by pid); this only starts run.sh, in its own
process group, and ends that group if interrupted.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def run(root, out_dir, daemon, smoke, frame_sizes=None, log=None):
    """Returns {"rows": [...], "window_s": .., "clicks": ..}; raises when no row has figures."""
    window_s = 5 if smoke else 60
    clicks = 5 if smoke else 20
    frame_sizes = frame_sizes or ([20] if smoke else [20, 10])
    engines = os.environ.get("BENCH_ENGINES", "chromium,firefox,webkit")
    rows = []
    for fm in frame_sizes:
        art = Path(out_dir) / f"browser-{fm}ms"
        env = dict(os.environ, ENGINES=engines, VARIANTS="copied", WINDOW_S=str(window_s),
                   CLICKS=str(clicks), NO_BUILD="1", NOVNC_AUDIO_BIN=str(daemon),
                   ARTIFACTS=str(art), DAEMON_ARGS=f"--frame-ms {fm}")
        logf = open(Path(out_dir) / "logs" / f"browser-{fm}ms.log", "w") if log is None else log
        p = subprocess.Popen([str(root / "tests" / "browser" / "engines" / "run.sh")], env=env,
                             stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            p.wait(timeout=3600)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=60)
        results = art / "results.json"
        if not results.exists():
            raise RuntimeError(f"engines run ({fm} ms frames) wrote no results.json (exit {p.returncode})")
        for r in json.loads(results.read_text()):
            rows.append(row(r, fm))
    if not any(r.get("rendered_median") is not None for r in rows):
        raise RuntimeError("no engine produced a latency figure")
    return {"rows": rows, "window_s": window_s, "clicks": clicks, "engines": engines}


def row(r, frame_ms):
    def num(k):
        v = r.get(k)
        return v if isinstance(v, (int, float)) else None
    out = {
        "engine": r["engine"], "origin": r["origin"], "frame_ms": frame_ms,
        "plays": r.get("plays"), "decoder": r.get("decoder"), "output": r.get("output"),
        "sample_rate": r.get("sampleRate"), "output_latency_source": r.get("outputLatencySource"),
        "rendered_median": num("renderedMedian"), "rendered_p99": num("renderedP99"),
        "card_median": num("cardMedian"), "card_p99": num("cardP99"),
        "underruns_per_min": num("underrunsPerMin"), "latency_ms_median": num("latencyMsMedian"),
        "card_drops_per_min": num("cardDropsPerMin"), "card_jumps_per_min": num("cardJumpsPerMin"),
        "clicks": r.get("clicks"), "card_clicks": r.get("cardClicks"), "error": r.get("error"),
        "output_latency_known": (r.get("lastStats") or {}).get("outputLatencyKnown"),
        "latency_terms": (r.get("lastStats") or {}).get("latencyTerms"),
        "user_agent": r.get("userAgent"),
    }
    if out["rendered_median"] is not None and out["card_median"] is not None:
        out["render_to_card"] = out["card_median"] - out["rendered_median"]
    return out


def fmt(x, nd=0):
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(res):
    L = ["## LAN per engine (browsers)\n",
         f"The shipped module in real noVNC pages (tests/browser/engines, `copied` variant), loopback, "
         f"{res['window_s']} s windows, {res['clicks']} clicks per case; engines {res['engines']}. "
         "Clicks are timed at the daemon's sink monitor, in the page's audio graph (rendered) and at "
         "the browser's own sound card (a second PulseAudio's null sink). render -> card is the "
         "engine's output path (difference of the medians). `latencyMs` is the module's own "
         "estimate (stats.latencyMs, median over the window); 'none' or 'baseLatency only' as its "
         "output source means the engine reports no output path and the estimate leaves it out. "
         "Card drops / jumps: the window's 440 Hz tone recorded at the sound card, its gaps (5 ms "
         "under half its level) and clicks (samples a pure tone cannot follow) per minute.\n",
         "| engine | page | frame ms | decoder / output | rate | sink -> rendered med / p99 ms | "
         "sink -> card med / p99 ms | render -> card ms | underruns / min | card drops / jumps per min | "
         "latencyMs (output source) |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if str(r.get("plays") or "").startswith("driver stalled"):
            continue  # geckodriver stopped answering; the case ran again in a new session (next row)
        if r.get("error") and r.get("rendered_median") is None:
            L.append(f"| {r['engine']} | {r['origin']} | {r['frame_ms']} | failed: "
                     f"{str(r['error'])[:80]} | | | | | | | |")
            continue
        L.append(f"| {r['engine']} | {r['origin']} | {r['frame_ms']} | {r['decoder']} / {r['output']} | "
                 f"{r['sample_rate'] or '-'} | {fmt(r['rendered_median'])} / {fmt(r['rendered_p99'])} | "
                 f"{fmt(r['card_median'])} / {fmt(r['card_p99'])} | {fmt(r.get('render_to_card'))} | "
                 f"{fmt(r['underruns_per_min'], 1)} | "
                 f"{fmt(r.get('card_drops_per_min'), 1)} / {fmt(r.get('card_jumps_per_min'), 1)} | "
                 f"{fmt(r['latency_ms_median'])} "
                 f"({r['output_latency_source'] or '-'}"
                 f"{'; output path not reported, left out' if r.get('output_latency_known') is False else ''}) |")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    # bench/browser_lan.py [--smoke]: this section alone, printed (target/bench/browser-*).
    root = Path(__file__).resolve().parent.parent
    out = root / "target" / "bench"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    res = run(root, out, root / "target" / "release" / "novnc-audio", "--smoke" in sys.argv)
    (out / "browser-lan.json").write_text(json.dumps(res, indent=2))
    print(markdown(res))
    print(f"[bench] browser LAN in {time.monotonic() - t:.0f} s", file=sys.stderr)
