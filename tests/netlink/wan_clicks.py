"""Clicks written into the daemon's sink, timed in the sink and at the browser's sound card.

The click method of tests/browser/engines/clicks.py (1 ms click, +0.9 then -0.9 of full scale,
every PERIOD_S; a click is the first sample above THRESHOLD after QUIET_MS below it), taken
into this harness so that it runs for the whole of a wan_playout.py run and reports each click:

- **in the sink**: a `parec` on the monitor of the daemon's null sink (what the daemon records);
- **at the card**: a `parec` on the monitor of the browser's own PulseAudio null sink (the
  browser's sound card: its output path counted).

Both PulseAudio servers run on this machine, their clients here, in the root namespace (the
sockets are files, so no traffic crosses the emulated link but the stream itself), and both
times are CLOCK_REALTIME, the clock of `time.time()` in the browser's sampling process too.

Timing: a read from a pipe tells only when Python got the data, which on a loaded machine can
be tens of ms after PulseAudio rendered it. Each recorder therefore counts samples: a null sink
renders on the system clock, so sample k was rendered at anchor + k / RATE, and every read at
time `now` after K samples bounds anchor <= now - K / RATE. The smallest bound over the last
ANCHOR_WINDOW_S is the anchor (a read can be late, never early), so a click is late only by the
monitor's own fragment (2 ms), not by Python's scheduling.

Unlike clicks.py, the clicks ride on a tone bed (the harness's 440 Hz tone at 0.1 of full
scale, below THRESHOLD): the daemon skips digital silence (issue 11), and the module starts a
new jitter window on every timestamp gap (web/output/arrival-jitter.js `restart`), so clicks in
silence would measure a stream of one-frame talk spurts, not the continuous playout a WAN
listener has. With the bed, the daemon sends every frame, and each click is one loud moment in
a stream that never pauses.
"""
import array
import collections
import subprocess
import threading
import time

import linkemu

RATE, CH = 48000, 2
CHUNK = 240  # 5 ms per write
PERIOD_S = 1.0
THRESHOLD = 8000  # the tone bed peaks at 0.1 * 32767 = 3277
QUIET_MS = 300
ANCHOR_WINDOW_S = 5.0
READ_FRAMES = 240  # 5 ms per read: timing comes from the sample count, not the read


def click_chunk():
    burst = 48  # 1 ms
    v = [29490] * (burst // 2) + [-29490] * (burst // 2) + [0] * (CHUNK - burst)
    return array.array("h", (s for x in v for s in (x, x))).tobytes()


class Recorder:
    """parec on SINK's monitor; `hits` gets the wall-clock ms of each click's first loud sample."""

    def __init__(self, env, sink, log):
        self.hits = []
        self.p = subprocess.Popen(
            ["parec", "-d", sink + ".monitor", "--raw", "--format=s16le", f"--rate={RATE}",
             f"--channels={CH}", "--latency-msec=2", "--client-name=wan-clicks-rec"],
            stdout=subprocess.PIPE, stderr=log, env=env, bufsize=0,
            preexec_fn=linkemu.die_with_parent)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        fd = self.p.stdout
        frames = 0           # samples per channel read so far
        bounds = collections.deque()  # (now_s, now_s - frames / RATE)
        last_loud = -1e9     # frame index of the last loud sample
        rest = b""
        want = READ_FRAMES * CH * 2
        while True:
            buf = fd.read(want)
            if not buf:
                return
            now = time.time()
            buf = rest + buf
            usable = len(buf) - len(buf) % (CH * 2)
            buf, rest = buf[:usable], buf[usable:]
            a = array.array("h", buf)
            start = frames
            frames += len(a) // CH
            bounds.append((now, now - frames / RATE))
            while bounds and now - bounds[0][0] > ANCHOR_WINDOW_S:
                bounds.popleft()
            if not a or (max(a) <= THRESHOLD and min(a) >= -THRESHOLD):
                continue
            anchor = min(b for _, b in bounds)
            for i, v in enumerate(a):
                if abs(v) > THRESHOLD:
                    k = start + i // CH
                    if (k - last_loud) * 1000 / RATE > QUIET_MS:
                        self.hits.append((anchor + k / RATE) * 1000)
                    last_loud = k
            # every loud sample of this read counted; the next read continues the quiet count

    def close(self):
        linkemu.stop_pid(self.p)
        self.t.join(2)


class Clicks:
    """Writes a click every PERIOD_S into `sink` of the daemon's PulseAudio (server_env) and
    records it there and on `card_sink` of the browser's PulseAudio (card_env)."""

    def __init__(self, server_env, sink, card_env, card_sink, log):
        self.log = log
        self.sink = Recorder(server_env, sink, log)
        self.card = Recorder(card_env, card_sink, log)
        self.play = subprocess.Popen(
            ["pacat", "-d", sink, "--raw", "--format=s16le", f"--rate={RATE}",
             f"--channels={CH}", "--latency-msec=10", "--client-name=wan-clicks"],
            stdin=subprocess.PIPE, stderr=log, env=server_env,
            preexec_fn=linkemu.die_with_parent)
        self.written = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._write, daemon=True)
        self.t.start()

    def _write(self):
        silence = b"\0" * (CHUNK * CH * 2)
        click = click_chunk()
        chunk_s = CHUNK / RATE
        t0 = time.monotonic()
        next_click = 1.0
        k = 0
        try:
            while not self.stop.is_set():
                d = t0 + k * chunk_s - time.monotonic()
                if d > 0:
                    time.sleep(d)
                t = k * chunk_s
                if t >= next_click:
                    self.written.append(time.time() * 1000)
                    self.play.stdin.write(click)
                    next_click += PERIOD_S
                else:
                    self.play.stdin.write(silence)
                self.play.stdin.flush()
                k += 1
        except (BrokenPipeError, ValueError, OSError):
            pass

    def close(self):
        if self.stop.is_set():
            return
        with linkemu.signals_held():
            self.stop.set()
            self.t.join(2)
            try:
                self.play.stdin.close()
            except OSError:
                pass
            linkemu.stop_pid(self.play)
            time.sleep(0.3)
            self.sink.close()
            self.card.close()

    def pairs(self):
        """One dict per click written: written, sink (ms since the epoch, or None), card."""
        return match(self.written, self.sink.hits, self.card.hits)


def match(written, sink_hits, card_hits, period_ms=PERIOD_S * 1000, min_ms=20):
    """A click's sink time is the first sink hit within 0.8 period after its write; its card
    time is the first card hit at least `min_ms` after its sink time and before the next
    click's sink time + min_ms (so a lost click does not take the next one's: latencies up
    to a period are told apart)."""
    out = []
    sinks = []
    for w in written:
        s = next((h for h in sink_hits if 0 <= h - w < 0.8 * period_ms), None)
        sinks.append(s)
    for i, (w, s) in enumerate(zip(written, sinks)):
        c = None
        if s is not None:
            nxt = next((x for x in sinks[i + 1:] if x is not None), s + period_ms)
            c = next((h for h in card_hits if s + min_ms <= h < nxt + min_ms), None)
        out.append({"written": round(w, 2), "sink": s and round(s, 2), "card": c and round(c, 2),
                    "ms": round(c - s, 1) if c is not None else None})
    return out
