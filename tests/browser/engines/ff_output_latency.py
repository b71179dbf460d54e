#!/usr/bin/env python3
"""Firefox's AudioContext.outputLatency: does any reading move?

    tests/browser/engines/ff_output_latency.py [SESSIONS]

For issue 10 (a delay you can trust): Firefox's outputLatency is fixed per session and scattered
over 9.6-50.5 ms in sessions whose measured render -> card path was 29.8-33.5 ms. This looks for
any reading that follows the path: per session (a fresh headless firefox-esr through geckodriver,
its sound card a private PulseAudio null sink at 48 kHz, a quiet 440 Hz oscillator playing) it
prints one JSON line with the distinct readings (ms) of
  first4s      the first context, every 100 ms for 4 s after resume()
  outTs        currentTime - getOutputTimestamp().contextTime on that context
  afterResume  after suspend(), 0.5 s, resume()
  second       a second context at the same rate (the first still open)
  playback     a context with latencyHint 'playback' (and its baseLatency)
  r44100, r32000  contexts at other sample rates
  afterClose   a new context after the first was closed
The answer (2026-12-02, 3 sessions): one number per session for everything at 48 kHz (49.83,
49.50, 48.96 ms; getOutputTimestamp gives the same), baseLatency 0; other rates read anew (36-38
ms). Gecko caches the figure per MediaTrackGraph (cubeb_stream_get_latency at the first query,
reset only when the output device changes), so nothing a page can do reads it again.
It measures no sound card: tests/browser/engines/run.sh does (clicks).
Needs root or a user that may start PulseAudio; reuses tests/netlink's PulseAudio and WebDriver
helpers. Ends everything it started, by process group.
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from firefox_session import firefox, firefox_env, wan_stalls

JS = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = {};
  const mk = async (opts) => {
    const c = new AudioContext(opts);
    const o = c.createOscillator(); const g = c.createGain(); g.gain.value = 0.05;
    o.connect(g).connect(c.destination); o.start();
    await c.resume();
    return c;
  };
  const series = async (c, ms) => { const v = []; const end = performance.now() + ms;
    while (performance.now() < end) { v.push(Math.round(c.outputLatency * 1e5) / 100); await sleep(100); }
    return [...new Set(v)]; };
  const c = await mk({});
  out.rate = c.sampleRate; out.base = c.baseLatency;
  out.first4s = await series(c, 4000);
  const ts = c.getOutputTimestamp(); out.outTs = Math.round((c.currentTime - ts.contextTime) * 1e5) / 100;
  await c.suspend(); await sleep(500); await c.resume(); await sleep(1500);
  out.afterResume = await series(c, 1500);
  const c2 = await mk({}); await sleep(2000); out.second = await series(c2, 1000); await c2.close();
  const c3 = await mk({ latencyHint: 'playback' }); await sleep(2000); out.playback = await series(c3, 1000); out.playbackBase = c3.baseLatency; await c3.close();
  const c4 = await mk({ sampleRate: 44100 }); await sleep(2000); out.r44100 = await series(c4, 1000); await c4.close();
  const c5 = await mk({ sampleRate: 32000 }); await sleep(2000); out.r32000 = await series(c5, 1000); await c5.close();
  await c.close();
  const c6 = await mk({}); await sleep(2500); out.afterClose = await series(c6, 1000); await c6.close();
  done(out);
})().catch((e) => done({ error: String(e) }));
"""


# Autoplay allowed: this looks at the output figure, not at the gesture rules.
PREFS = {"media.autoplay.default": 0, "media.autoplay.block-webaudio": False}


def session(env):
    """One Firefox session: the JS above, its answer (a dict)."""
    with firefox(env, PREFS, "ff-output-latency-") as d:
        d.s("POST", "/url", {"url": "data:text/html,<title>outputLatency</title>"})
        d.s("POST", "/timeouts", {"script": 60000})
        return d.s("POST", "/execute/async", {"script": JS, "args": []})


def main():
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    tmp = Path(tempfile.mkdtemp(prefix="ff-output-latency-pa-"))
    (tmp / "b").mkdir()
    card = wan_stalls.Pulse(tmp / "b")
    try:
        with open(os.devnull, "ab") as log:
            card.start(log, tone=False)
        env = firefox_env(card)
        for _ in range(sessions):
            print(json.dumps(session(env)), flush=True)
    finally:
        card.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
