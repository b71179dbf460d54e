// arrival-jitter.js: how late frames arrive, for the jitter buffer's target (NetEq's inter-arrival
// statistics, simplified).
//
// For each frame, d = arrival time - its timestamp. Over a window of recent frames, the fastest
// frame has the smallest d; every other frame was late by d - min(d). The buffer needs to hold
// about that much to play late frames on time: p99 of the lateness over the last 5 s (p95 let a
// 10 ms main-thread hiccup every few seconds through as an underrun). A stall
// leaves the window after 5 s, so one bad moment does not keep the latency up (no ratchet).
// Clock drift between the daemon and the browser (~100 ppm) moves d by 0.5 ms in 5 s.
//
// A new talk spurt (the daemon skipped silence: a timestamp gap) starts a new window: the
// previous percentile is kept as the estimate until the new window has enough frames.
const WINDOW_MS = 5000;
const MIN_FRAMES = 10;
// Peaks (NetEq's DelayPeakDetector, simplified): the latest frame of each second over the last
// PEAK_WINDOW_MS. A stall that recurs (WebKitGTK's main thread stalls 30-60 ms every few
// seconds while noVNC draws) is too rare for the 5 s percentile, yet comes back before the
// buffer is safe again: the second-highest peak of the window covers it. A single stall is the
// highest peak only, and leaves the target alone (no ratchet).
const PEAK_BUCKET_MS = 1000;
const PEAK_WINDOW_MS = 20000;
// Stalls (always on): on a lossy WAN link TCP recovers each lost segment by retransmitting it, and
// every frame behind it waits: 100-250 ms of lateness every few seconds (1 % loss at 40 ± 20 ms
// each way). The 5 s percentile forgets each stall before the next comes (Chromium: 11-19
// underruns a minute). So when at least STALL_SECONDS stalls (runs of seconds that peaked above
// STALL_MS) are in the peak window, the estimate is the window's highest peak + STALL_MARGIN_MS,
// and it falls back to the p99 once fewer are left in the window (at the latest 20 s after the last stall). A
// single stall never switches it on (no ratchet). STALL_MS lies above what a link without loss
// does (the emulated ±20 ms jitter gives at most 40 ms) and above the recurring main-thread
// stalls of a LAN page (WebKitGTK: 30-60 ms, which `peaks` covers), and below the shortest
// retransmission stall (about one round trip, 80 ms on that link). Replaying 12
// client-minutes recorded at 1 % (tests/netlink/playout_sim.py): 19.4 underruns a minute at a
// 137 ms median buffer with the p99 alone, 4.1 with this rule (1.75 after each recording's first
// 20 s, the same as the maximum + 50 ms always on) at 211 ms; a margin of 30 / 70 ms gave 4.3 /
// 3.7 at 191 / 230 ms, thresholds of 40-100 ms 3.9-4.3, and 3 seconds instead of 2 4.8.
const STALL_MS = 60;
const STALL_SECONDS = 2;
const STALL_MARGIN_MS = 50;

export class ArrivalJitter {
  constructor({ windowMs = WINDOW_MS, percentile = 0.99, priorMs = 10, peaks = false } = {}) {
    this.windowMs = windowMs;
    this.percentile = percentile;
    this.prior = priorMs;
    this.peaks = peaks;
    this._t = [];     // arrival times (ms)
    this._d = [];     // arrival - timestamp (ms)
    this._buckets = [];   // { at, min, max } of d per PEAK_BUCKET_MS of arrivals
  }

  /** A frame with timestamp tsMs arrived at nowMs. */
  arrived(tsMs, nowMs) {
    const d = nowMs - tsMs;
    this._t.push(nowMs);
    this._d.push(d);
    let k = 0;
    while (k < this._t.length - 1 && nowMs - this._t[k] > this.windowMs) k++;
    if (k) { this._t.splice(0, k); this._d.splice(0, k); }
    const b = this._buckets;
    const last = b[b.length - 1];
    if (last && nowMs - last.at < PEAK_BUCKET_MS) {
      if (d < last.min) last.min = d;
      if (d > last.max) last.max = d;
    } else {
      b.push({ at: nowMs, min: d, max: d });
      while (b.length && nowMs - b[0].at > PEAK_WINDOW_MS) b.shift();
    }
  }

  /** Start a new window (timestamps jumped), keeping the current figure meanwhile. */
  restart() {
    if (this._d.length >= MIN_FRAMES) this.prior = this.lateMs();
    this._t = [];
    this._d = [];
    this._buckets = [];
  }

  /**
   * The highest per-second peak of lateness over the peak window + a margin (ms), if at least
   * STALL_SECONDS stalls (runs of seconds that peaked above STALL_MS) are in the window (the link
   * stalls again and again); else 0.
   */
  stallMs() {
    const b = this._buckets;
    let min = Infinity;
    for (const x of b) if (x.min < min) min = x.min;
    // Seconds late in a row are one stall: the burst after a stall can straddle the start of a
    // second, and one stall read as two switched the rule on (browser suite, CI 2026-12-04:
    // a single 400 ms stall held the target at 439 ms for the rest of the test).
    let stalls = 0, highest = 0, wasLate = false;
    for (const x of b) {
      const late = x.max - min;
      if (late > STALL_MS && !wasLate) stalls++;
      wasLate = late > STALL_MS;
      if (late > highest) highest = late;
    }
    return stalls >= STALL_SECONDS ? highest + STALL_MARGIN_MS : 0;
  }

  /** The second-highest per-second peak of lateness over the peak window (ms); 0 until 3 s. */
  peakMs() {
    const b = this._buckets;
    if (!this.peaks || b.length < 3) return 0;
    let min = Infinity;
    for (const x of b) if (x.min < min) min = x.min;
    let first = 0, second = 0;
    for (const x of b) {
      const late = x.max - min;
      if (late > first) { second = first; first = late; } else if (late > second) second = late;
    }
    return second;
  }

  /** How late a frame may come (ms): the window's percentile, or the recurring peak or stall if
   * higher. */
  lateMs() {
    return Math.max(this.percentileMs(), this.peakMs(), this.stallMs());
  }

  /** The percentile of lateness over the window (ms). */
  percentileMs() {
    const n = this._d.length;
    if (n < MIN_FRAMES) return this.prior;
    let min = Infinity;
    for (const d of this._d) if (d < min) min = d;
    const late = this._d.map((d) => d - min).sort((a, b) => a - b);
    return late[Math.min(n - 1, Math.floor(n * this.percentile))];
  }

  /** How late (ms) audio of timestamp tsMs is at nowMs, against the fastest frame of the window. */
  lateOf(tsMs, nowMs) {
    if (!this._d.length) return 0;
    let min = Infinity;
    for (const d of this._d) if (d < min) min = d;
    return Math.max(0, nowMs - tsMs - min);
  }

  /** Median lateness (ms): the part of the network delay above the fastest frame. */
  medianMs() {
    const n = this._d.length;
    if (n < MIN_FRAMES) return 0;
    let min = Infinity;
    for (const d of this._d) if (d < min) min = d;
    const late = this._d.map((d) => d - min).sort((a, b) => a - b);
    return late[n >> 1];
  }
}
