#!/usr/bin/env python3
"""Firefox and the stream's Worker (web/stream-worker.js): does the tone reach the audio graph?

    tests/browser/engines/ff_transport_probe.py [SESSIONS] [QUERY ...]

Per session: a fresh headless firefox-esr through geckodriver (its sound card a private
PulseAudio null sink), the daemon's listen page on 127.0.0.1 (a secure context: worklet,
WebCodecs) with ?QUERY (e.g. transport=worker, transport=main, transport=worker&decoder=wasm),
the daemon recording a second private PulseAudio that plays a 440 Hz tone. After the click it
reads window.novncAudio's stats and the analyser's RMS every 500 ms for 20 s and prints one JSON
line: the first and last readings, the slowest WebDriver answer, and whether the tone was heard.
Written for issue 10, when the engines harness saw Firefox pages with the worker stop rendering
and stop answering WebDriver (2026-12-03).

Needs root or a user that may start PulseAudio; reuses tests/netlink's PulseAudio and WebDriver
helpers. Ends everything it started, by process group.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from firefox_session import firefox, firefox_env, wan_browser, wan_stalls

REPO = Path(__file__).resolve().parents[3]
# As the engines harness runs Firefox: sound waits for a gesture (the click on #play is one).
PREFS = {"media.autoplay.default": 1, "media.autoplay.block-webaudio": True,
         "privacy.reduceTimerPrecision": False}
READ = """const a = window.novncAudio; if (!a) return null;
const an = a.analyser; let rms = 0;
if (an) { const t = new Float32Array(an.fftSize); an.getFloatTimeDomainData(t);
  let s = 0; for (const v of t) s += v * v; rms = Math.sqrt(s / t.length); }
const s = a.stats;
return { state: a.state, frames: s.frames, renderedMs: Math.round(s.renderedMs), bufferedMs: s.bufferedMs,
  underruns: s.underruns, transport: s.transport, decoder: s.decoder, output: s.output,
  err: s.lastError, rms: Math.round(rms * 1000) / 1000 };"""


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def session(env, page):
    out = {"page": page}
    with firefox(env, PREFS, "ff-transport-") as d:
        d.s("POST", "/url", {"url": page})
        el = d.s("POST", "/element", {"using": "css selector", "value": "#play"})
        d.s("POST", f"/element/{list(el.values())[0]}/click", {})
        reads, slowest = [], 0.0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            t = time.monotonic()
            try:
                s = d.call("POST", f"/session/{d.sid}/execute/sync", {"script": READ, "args": []},
                           timeout=10)
            except Exception as e:  # noqa: BLE001 - a hung page is the finding
                out["hung"] = f"{type(e).__name__}: {e}"[:200]
                out["hungAt"] = round(t - t0, 1)
                break
            slowest = max(slowest, time.monotonic() - t)
            if s:
                s["t"] = round(t - t0, 1)
                reads.append(s)
            time.sleep(0.5)
        out["slowestReadS"] = round(slowest, 2)
        out["first"] = reads[0] if reads else None
        out["last"] = reads[-1] if reads else None
        out["heard"] = sum(1 for s in reads if s.get("rms", 0) > 0.01)
        out["reads"] = len(reads)
        return out


def main():
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    queries = sys.argv[2:] or ["transport=worker", "transport=main"]
    tmp = Path(tempfile.mkdtemp(prefix="ff-transport-pa-"))
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    desk, card = wan_stalls.Pulse(tmp / "a"), wan_stalls.Pulse(tmp / "b")
    daemon = None
    try:
        with open(tmp / "log", "ab") as log:
            desk.start(log, tone=True)
            card.start(log, tone=False)
            dport = wan_browser.free_port()
            daemon = subprocess.Popen(
                [os.environ.get("NOVNC_AUDIO_BIN", str(REPO / "target/release/novnc-audio")),
                 "--host", "127.0.0.1", "--port", str(dport), "--allow-root"],
                env=desk.env, stdout=log, stderr=log, start_new_session=True)
            end = time.monotonic() + 15
            while not port_open(dport):
                if time.monotonic() > end or daemon.poll() is not None:
                    raise RuntimeError("the daemon did not listen: " + (tmp / "log").read_text()[-500:])
                time.sleep(0.2)
            env = firefox_env(card)
            for i in range(sessions):
                for q in queries:
                    r = session(env, f"http://127.0.0.1:{dport}/?autostart=0&{q}")
                    r["session"] = i
                    print(json.dumps(r), flush=True)
    finally:
        if daemon:
            wan_browser.end_group(daemon, 5)
        for p in desk.procs + card.procs:
            p.terminate()
        for p in desk.procs + card.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
