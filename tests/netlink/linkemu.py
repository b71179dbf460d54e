#!/usr/bin/env python3
"""A WAN-like link in user space, between two network namespaces this process's owner creates.

This kernel has no sch_netem, so the link is a forwarder: one TUN device in each namespace
(`wan0`, point-to-point, 10.201.x.1 <-> 10.201.x.2), and one process holding both file
descriptors that copies every IP packet from one to the other after a delay, or drops it.
Why TUN and not a veth pair: a veth pair hands packets from one stack to the other inside
the kernel, where user space cannot delay them without netem; with a TUN in each namespace
every packet crosses this process, and nothing else is needed (no bridge, no routes, no
iptables, nothing outside the two namespaces; all traffic stays between them).

Per packet and per direction: delay = `delay_ms` + uniform(-`jitter_ms`, +`jitter_ms`), and a
loss probability `loss_pct`. By default a packet never overtakes the one before it in its
flow (same addresses, protocol and ports: its release time is at least the previous one's),
as a real path mostly keeps a flow in order, so TCP sees jitter and loss but no reordering;
the actual delays are then a little larger than the ones drawn (reported in the stats).
Order is kept per flow, not per direction, so that flows sharing the link (the benchmark runs
several at once) do not smooth each other's jitter away. `reorder=True` lets packets overtake.

Library use (the caller must be root):

    with Link(delay_ms=40, jitter_ms=20, loss_pct=1) as link:
        link.run_a(["novnc-audio", "-H", link.addr_a, ...])   # a Popen in namespace A
        link.set(delay_ms=0, jitter_ms=0, loss_pct=0)          # the link turns clean
        link.stats()                                           # counters per direction

Everything it starts is ended by pid, and both namespaces are deleted, on exit or failure.
The forwarder itself runs as `linkemu.py forward ...` in its own process, so the caller's
work (and its GIL) does not add to the link's delay.
"""
import argparse
import ctypes
import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
DEV = "wan0"


def check_host():
    """None if this machine can run the link, else why not (as a sentence)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (load the tun module, or give the container the device)"
    if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
        return "no `ip` command (apt-get install iproute2)"
    name = f"nalink-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({path}): {os.strerror(e)}")
    finally:
        os.close(fd)


def _open_tun(ns):
    """A TUN device named wan0 in namespace `ns`, opened from inside it (the device belongs
    to the namespace the opener is in); the descriptor keeps working from anywhere."""
    _setns(f"/var/run/netns/{ns}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", DEV.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Direction:
    def __init__(self, name, src, dst):
        self.name, self.src, self.dst = name, src, dst
        self.last_due = {}  # flow -> release time of its last packet
        self.passed = self.dropped = self.held_back = 0
        self.delays = []  # actual delays (ms) of a sample of the packets, for the stats

    def stats(self):
        d = sorted(self.delays)

        def q(p):
            return round(d[min(len(d) - 1, int(p * len(d)))], 1) if d else None
        return {"passed": self.passed, "dropped": self.dropped,
                "held_back_for_order": self.held_back,
                "delay_ms_p50": q(0.5), "delay_ms_p99": q(0.99), "delay_ms_max": q(1.0)}


def flow(pkt):
    """What identifies a packet's flow: IPv4 addresses, protocol and (TCP/UDP) ports."""
    if len(pkt) >= 20 and pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 0x0F) * 4
        return pkt[9:10] + pkt[12:20] + pkt[ihl:ihl + 4]
    return pkt[:1]  # IPv6 and the rest: one flow each (only IPv4 is configured)


def forward(a):
    """The forwarder process: creates both TUNs, configures them, prints 'ready', then
    forwards until stdin closes or SIGTERM. Commands on stdin, one a line:
    `set delay_ms=.. jitter_ms=.. loss_pct=..` and `stats` (prints one JSON line)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    fa = _open_tun(a.ns_a)
    fb = _open_tun(a.ns_b)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.setns(own, CLONE_NEWNET)
    os.close(own)
    for ns, mine, peer in ((a.ns_a, a.addr_a, a.addr_b), (a.ns_b, a.addr_b, a.addr_a)):
        for cmd in (["addr", "add", mine, "peer", peer, "dev", DEV],
                    ["link", "set", DEV, "up"], ["link", "set", "lo", "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
    p = {"delay_ms": a.delay_ms, "jitter_ms": a.jitter_ms, "loss_pct": a.loss_pct}
    rng = random.Random(a.seed)
    dirs = {fa: Direction("a_to_b", fa, fb), fb: Direction("b_to_a", fb, fa)}
    heap = []  # (due, seq, direction, packet)
    seq = 0
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    pending = b""
    print("ready", flush=True)
    watch = [fa, fb, stdin]
    while not stop:
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            due, _, d, pkt, sent = heapq.heappop(heap)
            try:
                os.write(d.dst, pkt)
            except OSError:
                pass  # the namespace's stack refused it: a loss, like on a real link
            if d.passed % 4 == 0 and len(d.delays) < 200_000:
                d.delays.append((now - sent) * 1000)
            d.passed += 1
        timeout = max(0.0, heap[0][0] - time.monotonic()) if heap else 1.0
        try:
            ready, _, _ = select.select(watch, [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in ready:
            if fd == stdin:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    watch.remove(stdin)  # the owner went away: keep forwarding until SIGTERM
                    continue
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    words = line.decode().split()
                    if words and words[0] == "set":
                        for kv in words[1:]:
                            k, v = kv.split("=")
                            p[k] = float(v)
                        print("ok", flush=True)
                    elif words and words[0] == "stats":
                        print(json.dumps({d.name: d.stats() for d in dirs.values()}),
                              flush=True)
                continue
            d = dirs[fd]
            for _ in range(64):
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if p["loss_pct"] > 0 and rng.random() * 100 < p["loss_pct"]:
                    d.dropped += 1
                    continue
                delay = p["delay_ms"] + rng.uniform(-p["jitter_ms"], p["jitter_ms"])
                due = now + max(0.0, delay) / 1000
                if not a.reorder:
                    key = flow(pkt)
                    last = d.last_due.get(key, 0.0)
                    if due < last:
                        due = last
                        d.held_back += 1
                    d.last_due[key] = due
                seq += 1
                heapq.heappush(heap, (due, seq, d, pkt, now))
    print(json.dumps({d.name: d.stats() for d in dirs.values()}), flush=True)


class Link:
    """Two namespaces joined by the forwarder; see the module docs."""

    def __init__(self, delay_ms=40.0, jitter_ms=20.0, loss_pct=1.0, reorder=False, seed=None,
                 subnet=None):
        tag = f"{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
        self.ns_a, self.ns_b = f"nalink-{tag}-a", f"nalink-{tag}-b"
        x = subnet if subnet is not None else 1 + os.getpid() % 250
        self.addr_a, self.addr_b = f"10.201.{x}.1", f"10.201.{x}.2"
        self.params = dict(delay_ms=delay_ms, jitter_ms=jitter_ms, loss_pct=loss_pct)
        self.reorder, self.seed = reorder, seed
        self.fwd = None
        self.children = []
        self.made = []
        self.lock = threading.Lock()

    def __enter__(self):
        try:
            for ns in (self.ns_a, self.ns_b):
                subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
                self.made.append(ns)
            cmd = [sys.executable, os.path.abspath(__file__), "forward",
                   "--ns-a", self.ns_a, "--ns-b", self.ns_b,
                   "--addr-a", self.addr_a, "--addr-b", self.addr_b,
                   "--delay-ms", str(self.params["delay_ms"]),
                   "--jitter-ms", str(self.params["jitter_ms"]),
                   "--loss-pct", str(self.params["loss_pct"])]
            if self.reorder:
                cmd.append("--reorder")
            if self.seed is not None:
                cmd += ["--seed", str(self.seed)]
            self.fwd = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
            line = self.fwd.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"link forwarder did not start (said {line!r})")
            return self
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()

    def _cmd(self, line):
        with self.lock:
            self.fwd.stdin.write(line + "\n")
            self.fwd.stdin.flush()
            return self.fwd.stdout.readline().strip()

    def set(self, **params):
        """Change the link while it runs (e.g. all zero: the link turns clean)."""
        self.params.update(params)
        args = " ".join(f"{k}={v}" for k, v in params.items())
        if self._cmd(f"set {args}") != "ok":
            raise RuntimeError("link forwarder did not take the new settings")

    def stats(self):
        return json.loads(self._cmd("stats"))

    def popen(self, ns, cmd, **kw):
        """A child in namespace `ns`, tracked and ended by pid on close."""
        p = subprocess.Popen(["ip", "netns", "exec", ns, *map(str, cmd)], **kw)
        self.children.append(p)
        return p

    def run_a(self, cmd, **kw):
        return self.popen(self.ns_a, cmd, **kw)

    def run_b(self, cmd, **kw):
        return self.popen(self.ns_b, cmd, **kw)

    def close(self):
        # A second SIGTERM or Ctrl-C (a process group signalled twice) must not cut the
        # clean-up short and leave namespaces behind: hold them until it is done.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self._close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _close(self):
        for p in reversed(self.children):
            stop_pid(p)
        self.children = []
        if self.fwd is not None:
            stop_pid(self.fwd)
            self.fwd = None
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made = []


def stop_pid(p, timeout=5.0):
    """SIGTERM, then SIGKILL, to this one child (by its pid, never by name)."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("forward", help="the forwarder process (started by Link)")
    f.add_argument("--ns-a", required=True)
    f.add_argument("--ns-b", required=True)
    f.add_argument("--addr-a", required=True)
    f.add_argument("--addr-b", required=True)
    f.add_argument("--delay-ms", type=float, default=40.0)
    f.add_argument("--jitter-ms", type=float, default=20.0)
    f.add_argument("--loss-pct", type=float, default=1.0)
    f.add_argument("--reorder", action="store_true")
    f.add_argument("--seed", type=int)
    sub.add_parser("check", help="say whether this machine can run the link")
    a = ap.parse_args()
    if a.cmd == "forward":
        forward(a)
    else:
        why = check_host()
        print(why or "ok")
        return 1 if why else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
