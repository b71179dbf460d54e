#!/usr/bin/env python3
"""Chromium playing the daemon's listen page over the emulated link; run inside the client's
namespace by wan_playout.py.

    wan_browser.py URL SECONDS

Starts chromedriver (a child in its own process group, which Chromium joins; the group is
ended on clean-up, and within STOP_S, so nothing outlives the caller's SIGKILL deadline;
chromedriver also gets SIGTERM if this process dies) and a headless Chromium whose sound card is
whatever PULSE_SERVER names (the caller's second PulseAudio, never the daemon's), opens URL,
clicks Play (a WebDriver element click: a trusted gesture, no autoplay switch), waits for
`window.novncAudio.state == 'playing'`, prints `playing`, then one JSON line of
`window.novncAudio.stats` (plus `t`, seconds since playing, and `wall`, ms since the epoch)
every second for SECONDS.
The WebDriver protocol is spoken over plain HTTP with urllib: nothing to install.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import linkemu  # noqa: E402

# The whole clean-up (ending the session, then the driver's process group) takes at most
# this long; the caller (wan_playout.py) waits STOP_S + 5 before SIGKILL.
STOP_S = 10

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.sid = None

    def call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"WebDriver {method} {path}: {e.read()[:300]!r}") from None

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.sid}{path}", body)

    def js(self, script):
        return self.s("POST", "/execute/sync", {"script": script, "args": []})


def end_group(drv, timeout):
    """SIGTERM to chromedriver's process group (its pgid is its pid: it was started in a
    session of its own, so the group holds only it and the Chromium it launched), SIGKILL
    to the group after `timeout` s if anything in it remains."""
    def signal_group(sig):
        try:
            os.killpg(drv.pid, sig)
            return True
        except ProcessLookupError:
            return False
    if not signal_group(signal.SIGTERM):
        drv.poll()
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        drv.poll()  # reap the leader, so the group empties once Chromium is gone too
        if not signal_group(0):
            return
        time.sleep(0.1)
    signal_group(signal.SIGKILL)
    drv.wait()


def main():
    # SIGTERM from the harness runs the finally block, which ends the session and the driver;
    # a second one is ignored, so it cannot cut that short.
    linkemu.exit_on_signal()
    url, seconds = sys.argv[1], float(sys.argv[2])
    port = free_port()
    home = tempfile.mkdtemp(prefix="wan-chromium-")
    env = dict(os.environ, HOME=home)
    drv = subprocess.Popen([shutil.which("chromedriver") or "chromedriver", f"--port={port}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, preexec_fn=linkemu.die_with_parent)
    d = Driver(port)
    try:
        end = time.monotonic() + 20
        while True:
            try:
                d.call("GET", "/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > end or drv.poll() is not None:
                    raise RuntimeError("chromedriver did not start")
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", f"--user-data-dir={home}/profile"]}}}}
        r = d.call("POST", "/session", caps)
        d.sid = r["sessionId"]
        d.s("POST", "/url", {"url": url})
        el = d.s("POST", "/element", {"using": "css selector", "value": "#play"})
        d.s("POST", f"/element/{list(el.values())[0]}/click", {})
        end = time.monotonic() + 30
        while True:
            st = d.js("const a = window.novncAudio; return a ? {state: a.state, "
                      "frames: a.stats.frames, err: a.stats.lastError} : null;")
            if st and st["state"] == "playing" and st["frames"] > 0:
                break
            if time.monotonic() > end:
                raise RuntimeError(f"not playing after 30 s: {st}")
            time.sleep(0.2)
        print("playing", flush=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(max(0.0, 1 - (time.monotonic() - t0) % 1))
            s = d.js("const a = window.novncAudio; return Object.assign({state: a.state}, "
                     "a.stats);")
            s["t"] = round(time.monotonic() - t0, 2)
            s["wall"] = round(time.time() * 1000, 1)  # CLOCK_REALTIME, the clicks' clock
            print(json.dumps(s), flush=True)
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    finally:
        deadline = time.monotonic() + STOP_S
        if d.sid:
            try:
                d.call("DELETE", f"/session/{d.sid}", timeout=STOP_S / 2)
            except Exception:
                pass
        end_group(drv, max(1.0, deadline - time.monotonic()))
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
