"""Run pcmflux (the capture + Opus core of Selkies) on a PulseAudio source until SIGTERM.

Same settings as the daemon under test: 48 kHz stereo, 20 ms frames, 64 kbit/s Opus,
no silence gate; the callback only counts frames. Prints one JSON line on exit.
usage: pcmflux_run.py SOURCE [FRAME_MS]
"""
import json
import signal
import sys
import threading
import time

import pcmflux

source = sys.argv[1]
frame_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
frames = 0
first = None
t0 = time.monotonic()


def on_frame(frame):
    global frames, first
    if first is None:
        first = time.monotonic()
    frames += 1


s = pcmflux.AudioCaptureSettings()
s.device_name = source
s.sample_rate = 48000
s.channels = 2
s.frame_duration_ms = frame_ms
s.opus_bitrate = 64000
s.use_silence_gate = False
settings = {k: getattr(s, k, None) for k in (
    "device_name", "sample_rate", "channels", "frame_duration_ms", "latency_ms", "opus_bitrate",
    "opus_complexity", "use_vbr", "use_silence_gate", "red_distance", "omit_audio_header")}
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
signal.signal(signal.SIGINT, lambda *_: done.set())
cap = pcmflux.AudioCapture()
cap.start_capture(s, on_frame)
print("STARTED", flush=True)
while not done.wait(0.5):
    if cap.state == "failed":
        break
state, err = cap.state, cap.last_error
cap.stop_capture()
print(json.dumps({"frames": frames, "state": state, "last_error": err,
                  "first_frame_ms": None if first is None else (first - t0) * 1000,
                  "settings": settings}), flush=True)
