#!/usr/bin/env python3
"""Replays recorded frame arrivals through jitter-buffer target rules, to compare them.

    tests/netlink/playout_sim.py RAW.json [VARIANT]

RAW.json is wan_stalls.py --raw-json output (per client: arrival times `t` and excess delays
`excess`, ms). For each rule the target D is computed at each arrival from the frames that
arrived before it; the buffer's actual delay L follows the target the way web/'s
latency-policy.js does it (at most 1 % faster / 0.5 % slower; a backlog more than a frame
above the target for 0.5 s is dropped back to it at once: the module now cuts it out over the
next chunks, at most half of each, which this model does not follow). A frame with excess > L is an
underrun: playout restarts with L = that frame's excess + D (the module's restart leaves a
target's worth of silence first). Only the network is modelled (no main-thread or output
hiccups, no engine floor, no decoder concealment): compare the rules with each other, not
with a browser's figures.
Prints underruns a minute (all, and after each recording's first 20 s, once a rule has seen
the link) and the median / p99 of L per rule.
"""
import bisect
import json
import statistics
import sys
from collections import deque

FRAME = 20.0
LEARN_MS = 20000  # the second underrun column leaves out each recording's first 20 s


class Window:
    """Excess delays of the frames that arrived in the last `ms` (sorted, for percentiles)."""

    def __init__(self, ms):
        self.ms = ms
        self.q = deque()
        self.sorted = []

    def add(self, t, e):
        self.q.append((t, e))
        bisect.insort(self.sorted, e)
        while self.q and t - self.q[0][0] > self.ms:
            _, old = self.q.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def pct(self, p):
        s = self.sorted
        return s[min(len(s) - 1, int(p * len(s)))] if s else 0.0


def rule(window_ms, p, floor=20.0, margin=2.0, scale=1.0):
    def make():
        w = Window(window_ms)

        def target(t, e_prev):
            if e_prev is not None:
                w.add(t, e_prev)
            return max(floor, w.pct(p) * scale + margin)
        return target
    return make


class Peaks:
    """Per-second lateness peaks over the last 20 s, as web/output/arrival-jitter.js keeps them:
    buckets of 1 s of arrivals holding the min and max excess."""

    def __init__(self, bucket_ms=1000, window_ms=20000):
        self.bucket_ms, self.window_ms = bucket_ms, window_ms
        self.b = deque()  # [at, min, max]

    def add(self, t, e):
        if self.b and t - self.b[-1][0] < self.bucket_ms:
            last = self.b[-1]
            last[1], last[2] = min(last[1], e), max(last[2], e)
        else:
            self.b.append([t, e, e])
            while self.b and t - self.b[0][0] > self.window_ms:
                self.b.popleft()

    def late(self):
        """Each bucket's peak above the window's fastest frame."""
        lo = min(x[1] for x in self.b)
        return [x[2] - lo for x in self.b]


def stall_rule(stall_ms=60.0, stalls=2, peak_margin=50.0, floor=20.0, margin=2.0):
    """web/ with the stall rule: the 5 s p99, unless at least `stalls` stalls (runs of seconds that
    peaked above `stall_ms`) are in the last 20 s; then the highest peak of the 20 s + `peak_margin`."""
    def make():
        w = Window(5000)
        pk = Peaks()

        def target(t, e_prev):
            if e_prev is not None:
                w.add(t, e_prev)
                pk.add(t, e_prev)
            est = w.pct(0.99)
            if pk.b:
                late = pk.late()
                # seconds late in a row are one stall (arrival-jitter.js stallMs)
                runs = sum(1 for i, x in enumerate(late) if x > stall_ms and (i == 0 or late[i - 1] <= stall_ms))
                if runs >= stalls:
                    est = max(est, max(late) + peak_margin)
            return max(floor, est + margin)
        return target
    return make


RULES = {
    "p99 over 5 s (web/ today)": rule(5000, 0.99),
    "stall rule: 2 s > 60 ms in 20 s -> max + 50 ms (web/ new)": stall_rule(),
    "p99 over 30 s": rule(30000, 0.99),
    "p99.9 over 30 s": rule(30000, 0.999),
    "max over 10 s": rule(10000, 1.0),
    "max over 20 s": rule(20000, 1.0),
    "max over 30 s": rule(30000, 1.0),
    "max over 20 s + 20 ms": rule(20000, 1.0, margin=22.0),
    "max over 20 s + 50 ms": rule(20000, 1.0, margin=52.0),
    "max over 20 s x 1.25": rule(20000, 1.0, scale=1.25),
    "max over 60 s": rule(60000, 1.0),
}


def simulate(t, excess, make):
    target = make()
    L = None
    under = []
    Ls = []
    above_since = None
    prev_t, prev_e = None, None
    for ti, ei in zip(t, excess):
        D = target(ti, prev_e)
        if L is None:
            L = ei + D
        else:
            dt = ti - prev_t
            if L > D:  # drain at 1 % faster playout
                L = max(D, L - 0.01 * dt)
            elif L < D:  # grow at 0.5 % slower playout
                L = min(D, L + 0.005 * dt)
            if L > D + FRAME:
                above_since = above_since if above_since is not None else ti
                if ti - above_since >= 500:
                    L, above_since = D, None
            else:
                above_since = None
        if ei > L:
            under.append(ti)
            L = ei + D
            above_since = None
        Ls.append(L)
        prev_t, prev_e = ti, ei
    return under, Ls  # underrun arrival times, L per frame


def rebase(t, excess, window_ms=10_000):
    """Excess against the sliding minimum of the last 10 s (as wan_stalls.raw computes it;
    idempotent, so older recordings made against the whole run's minimum are corrected)."""
    out, w = [], deque()
    for ti, e in zip(t, excess):
        while w and w[-1][1] >= e:
            w.pop()
        w.append((ti, e))
        while ti - w[0][0] > window_ms:
            w.popleft()
        out.append(e - w[0][1])
    return out


def main():
    raw = json.load(open(sys.argv[1]))
    names = [sys.argv[2]] if len(sys.argv) > 2 else [n for n in raw if "nodelay" not in n]
    print("| rule | clients x minutes | underruns a minute | after the first 20 s "
          "| buffer delay median / p99 ms |")
    print("|---|---|---|---|---|")
    for rname, make in RULES.items():
        under, later, Ls, minutes, n = 0, 0, [], 0.0, 0
        for name in names:
            for rec in raw[name]:
                if len(rec["t"]) < 2:
                    continue
                u, l = simulate(rec["t"], rebase(rec["t"], rec["excess"]), make)
                under += len(u)
                later += sum(1 for x in u if x - rec["t"][0] >= LEARN_MS)
                Ls += l
                minutes += (rec["t"][-1] - rec["t"][0]) / 60000
                n += 1
        Ls.sort()
        later_min = minutes - n * LEARN_MS / 60000
        print(f"| {rname} | {n} x {minutes / max(n, 1):.1f} | {under / minutes:.2f} | "
              f"{later / later_min:.2f} | "
              f"{statistics.median(Ls):.0f} / {Ls[int(0.99 * len(Ls))]:.0f} |")


if __name__ == "__main__":
    main()
