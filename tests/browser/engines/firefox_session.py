"""A fresh headless firefox-esr through geckodriver, for the Firefox probes of this folder
(ff_output_latency.py, ff_transport_probe.py), on tests/netlink's WebDriver and PulseAudio helpers
(wan_browser, wan_stalls: importable from here).
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "netlink"))
import wan_browser  # noqa: E402
import wan_stalls  # noqa: E402,F401 - for the probes

__all__ = ["firefox", "firefox_env", "wan_browser", "wan_stalls"]


def firefox_env(card):
    """Firefox's environment: its sound card is the PulseAudio `card` (a wan_stalls.Pulse)."""
    env = dict(card.env)
    env.pop("XDG_RUNTIME_DIR", None)
    return env


@contextlib.contextmanager
def firefox(env, prefs, home_prefix):
    """A WebDriver session of a headless Firefox ($FIREFOX, /usr/bin/firefox-esr by default) with
    these prefs, its HOME a new temporary directory (home_prefix); yields its wan_browser.Driver.
    Ends the session, geckodriver's process group (Firefox with it) and the directory."""
    port, mport = wan_browser.free_port(), wan_browser.free_port()
    home = tempfile.mkdtemp(prefix=home_prefix)
    gecko = shutil.which("geckodriver") or os.path.expanduser("~/.cargo/bin/geckodriver")
    drv = subprocess.Popen([gecko, "--port", str(port), "--marionette-port", str(mport),
                            "--host", "127.0.0.1"],
                           env=dict(env, HOME=home), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    d = wan_browser.Driver(port)
    try:
        for _ in range(100):
            try:
                d.call("GET", "/status", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        r = d.call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "firefox", "moz:firefoxOptions": {
                "binary": os.environ.get("FIREFOX", "/usr/bin/firefox-esr"), "args": ["-headless"],
                "prefs": prefs}}}})
        d.sid = r["sessionId"]
        yield d
    finally:
        if d.sid:
            try:
                d.call("DELETE", f"/session/{d.sid}", timeout=10)
            except Exception:  # noqa: BLE001
                pass
        wan_browser.end_group(drv, 5)
        shutil.rmtree(home, ignore_errors=True)
