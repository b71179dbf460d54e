#!/usr/bin/env python3
"""Chromium playing the daemon's listen page over the emulated link; run inside the client's
namespace by wan_playout.py.

    wan_browser.py URL SECONDS

Starts chromedriver (a child, ended by pid) and a headless Chromium whose sound card is
whatever PULSE_SERVER names (the caller's second PulseAudio, never the daemon's), opens URL,
clicks Play (a WebDriver element click: a trusted gesture, no autoplay switch), waits for
`window.novncAudio.state == 'playing'`, prints `playing`, then one JSON line of
`window.novncAudio.stats` (plus `t`, seconds since playing) every second for SECONDS.
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


def main():
    # SIGTERM from the harness runs the finally block, which ends the session and the driver.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    url, seconds = sys.argv[1], float(sys.argv[2])
    port = free_port()
    home = tempfile.mkdtemp(prefix="wan-chromium-")
    env = dict(os.environ, HOME=home)
    drv = subprocess.Popen([shutil.which("chromedriver") or "chromedriver", f"--port={port}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
            print(json.dumps(s), flush=True)
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    finally:
        if d.sid:
            try:
                d.call("DELETE", f"/session/{d.sid}", timeout=20)
            except Exception:
                pass
        if drv.poll() is None:
            drv.terminate()
            try:
                drv.wait(10)
            except subprocess.TimeoutExpired:
                drv.kill()
                drv.wait()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
