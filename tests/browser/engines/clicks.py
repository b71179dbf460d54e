#!/usr/bin/env python3
"""Writes clicks into a PulseAudio sink at known wall-clock times, for latency measurements.

    clicks.py --sink SINK [--period 1.0] [--count N] [--latency-msec 10]
              [--card-server PULSE_SERVER [--card-sink browser_out]]

Plays silence with a 1 ms click (+0.9 then -0.9, no DC) every PERIOD seconds through pacat
(small --latency-msec, so little audio waits in pacat's stream), pacing its writes by the wall
clock so nothing queues in the pipe either. For each click it prints one JSON line:
  {"n": i, "written": T, "monitor": M}
T is time.time() (ms since the epoch, the clock of a page's performance.timeOrigin + now())
when the chunk that starts with the click was handed to pacat; M is when a parec on the sink's
monitor (what the daemon records) saw it, or null. M is the time to measure from: pacat's own
buffer varies (each underrun of its stream adds to it for good, tens to hundreds of ms on a
busy machine), while M is late only by parec's read latency (2 ms fragments, 1 ms reads).
With --card-server, "card" is when the click reached the browser's sound card (the monitor of
the null sink of the browsers' own PulseAudio): the engine's output path included.
"""
import argparse, json, os, struct, subprocess, sys, threading, time

RATE, CH = 48000, 2
CHUNK = 240  # 5 ms

ap = argparse.ArgumentParser()
ap.add_argument('--sink', required=True)
ap.add_argument('--period', type=float, default=1.0)
ap.add_argument('--count', type=int, default=20)
ap.add_argument('--latency-msec', type=int, default=10)
ap.add_argument('--lead-in', type=float, default=1.0, help='silence before the first click (s)')
ap.add_argument('--card-server', help="PULSE_SERVER of the browser's own PulseAudio (optional)")
ap.add_argument('--card-sink', default='browser_out', help='its sink, the sound card the browser plays to')
a = ap.parse_args()

silence = b'\0' * (CHUNK * CH * 2)
burst = 48  # samples (1 ms)
click = b''.join(struct.pack('<hh', v, v) for v in
                 [29490] * (burst // 2) + [-29490] * (burst // 2) + [0] * (CHUNK - burst))

def watch_monitor(proc, hits):
    # Little reads, a threshold: the first loud sample after a quiet stretch is a click.
    quiet_since = 0
    while True:
        buf = proc.stdout.read(CHUNK * CH * 2 // 5)  # 1 ms
        if not buf:
            return
        now = time.time() * 1000
        samples = struct.unpack('<%dh' % (len(buf) // 2), buf)
        loud = next((i for i, v in enumerate(samples) if abs(v) > 8000), None)
        if loud is None:
            continue
        # The first loud sample was captured (len - loud) samples before the read returned.
        at = now - (len(samples) - loud) / CH / RATE * 1000
        if at - quiet_since > 300:
            hits.append(at)
        quiet_since = now

def record(sink, env, hits):
    proc = subprocess.Popen(['parec', '-d', sink + '.monitor', '--raw', '--format=s16le',
                             f'--rate={RATE}', f'--channels={CH}', '--latency-msec=2'],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    threading.Thread(target=watch_monitor, args=(proc, hits), daemon=True).start()
    return proc

env = dict(os.environ)
monitor_hits, card_hits = [], []
recorders = [record(a.sink, env, monitor_hits)]
if a.card_server:
    # The browser's sound card: the null sink of the browsers' own PulseAudio.
    recorders.append(record(a.card_sink, dict(env, PULSE_SERVER=a.card_server), card_hits))
play = subprocess.Popen(['pacat', '-d', a.sink, '--raw', '--format=s16le', f'--rate={RATE}',
                         f'--channels={CH}', f'--latency-msec={a.latency_msec}',
                         '--stream-name=latency-clicks'],
                        stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
written = []
try:
    t0 = time.monotonic()
    chunk_s = CHUNK / RATE
    total = int((a.lead_in + a.count * a.period + 0.5) / chunk_s)
    next_click = a.lead_in
    for k in range(total):
        due = t0 + k * chunk_s
        d = due - time.monotonic()
        if d > 0:
            time.sleep(d)
        t = k * chunk_s
        if len(written) < a.count and t >= next_click:
            written.append(time.time() * 1000)
            play.stdin.write(click)
            next_click += a.period
        else:
            play.stdin.write(silence)
        play.stdin.flush()
    time.sleep(0.5)
finally:
    play.stdin.close()
    play.wait(timeout=5)
    for r in recorders:
        r.terminate()
        r.wait(timeout=5)
window = a.period * 1000 * 0.8
for i, w in enumerate(written):
    m = next((h for h in monitor_hits if 0 <= h - w < window), None)
    c = next((h for h in card_hits if m is not None and 0 <= h - m < window), None)
    print(json.dumps({'n': i, 'written': round(w, 2), 'monitor': m and round(m, 2), 'card': c and round(c, 2)}))
sys.stdout.flush()
