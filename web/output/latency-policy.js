// latency-policy.js: the jitter-buffer rules both output paths follow (WebRTC NetEq's ideas, in
// milliseconds of audio).
//
// The worklet path keeps its buffer in a ring on the audio thread; the scheduled path keeps it as
// AudioBufferSourceNodes queued on the AudioContext timeline. Both ask this one object how to
// start, how fast to play and when to drop, so they behave the same:
// - The target is a low-water mark: the fill just before a frame arrives. It is the highest of
//   the engine's floor (its render quantum and base latency: below that the engine starts
//   reading before the audio is there), the measured arrival jitter (a high percentile of how
//   late recent frames came, from arrival-jitter.js) plus a margin, and a fixed minimum the page
//   may ask for; plus the user's extra delay (lip sync).
// - It starts, and restarts after an underrun or a flush, at once: the first frame is preceded
//   by just enough silence that the next frame finds the target.
// - It reaches the target by playing slightly faster or slower (at most +1 % / -0.5 %, a
//   resampling ratio: the pitch moves by less than a sixth of a semitone), so the fill drains or
//   grows over a second or so instead of losing whole frames. A backlog (a low-water mark more
//   than a frame above the target over half a second: a late start, a burst after a stall, a
//   lowered lip-sync delay) is drained faster, as NetEq's "accelerate" does: with each chunk that
//   arrives, up to half a chunk is cut out where the waveform after the cut matches what would
//   have played (Splice.matchCut), a pitch period or so at a time, never a stretch of sound at
//   once. Only a fill above the hard cap is cut back to the target at once (same matched cut).
// - No ratchet: an underrun does not raise the target by itself; a late burst raises it through
//   the jitter percentile, which forgets it after its window (5 s), and the fill then drains.
// - A cautious start, where the engine asks for it (select.js pickStartMargin): for the first
//   startHoldMs of output after the sound first starts, the target is startMarginMs higher; then
//   the margin goes and its backlog drains as any other.
//
// The class is self-contained (no imports, no outside names): the worklet path ships its source
// text to the audio thread with Function.prototype.toString().
export class LatencyPolicy {
  constructor(o = {}) {
    this.minTargetMs = 0;       // a fixed minimum asked for by the page (targetLatencyMs)
    this.maxMs = 500;           // the hard bound of the fill
    this.floorMs = 10;          // the engine's output quantum
    this.jitterMs = 10;         // arrival jitter (p99 over the window); conservative until measured
    this.delayMs = 0;           // extra delay asked for by the user (lip sync)
    this.startMarginMs = 0;     // added to the target in the first startHoldMs of output
    this.startHoldMs = 4000;
    this.marginEndMs = null;    // output time the start margin ends (set at the first audio)
    this.frameMs = 20;          // the size of the chunks pushed, as last seen
    this.underruns = 0;
    this.speed = 1;             // playout speed: > 1 drains the buffer, < 1 lets it grow
    this.drains = 0;            // backlogs drained by cuts (each counted once, however many cuts)
    this.capCuts = 0;           // fills above the hard cap cut back to the target at once
    this.configure(o);
    this.reset();
  }

  /** The low-water fill to keep (ms): what stats.targetMs shows. */
  get workTargetMs() {
    const jitter = Math.min(this.jitterMs + 2, this.maxMs - this.frameMs - 20);
    return Math.max(this.floorMs, jitter, this.minTargetMs) + this.delayMs + this.startMarginMs;
  }

  /** Above this fill, audio is dropped back to the target (a burst after a long stall). */
  get capMs() {
    const t = this.workTargetMs;
    return Math.max(t + this.frameMs + 20, Math.min(this.maxMs, Math.max(2 * t, t + 80) + this.frameMs));
  }

  configure(o) {
    if (o.targetMs !== undefined) this.minTargetMs = Math.max(0, Number(o.targetMs) || 0);
    if (o.maxMs) this.maxMs = o.maxMs;
    if (o.floorMs !== undefined) this.floorMs = o.floorMs;
    if (o.jitterMs !== undefined) this.jitterMs = o.jitterMs;
    if (o.delayMs !== undefined) this.delayMs = Math.max(0, Number(o.delayMs) || 0);
    if (o.startMarginMs !== undefined && this.marginEndMs === null) this.startMarginMs = Math.max(0, Number(o.startMarginMs) || 0);
    if (o.startHoldMs !== undefined) this.startHoldMs = Math.max(0, Number(o.startHoldMs) || 0);
  }

  /** Forget the playing state (flush, reconnect, underrun): the next audio starts again. */
  reset() {
    this.playing = false;
    this.speed = 1;
    this.endDrain();
    this.windowMinMs = Infinity;
    this.windowStartMs = null;
  }

  /**
   * Audio arrived while not playing (fillMs buffered, including it): start now. Returns the
   * silence (ms) to play first so that the fill finds the target when the next frame arrives.
   */
  start(fillMs, chunkMs) {
    if (chunkMs > 0) this.frameMs = chunkMs;
    this.playing = true;
    return Math.max(0, this.workTargetMs + this.frameMs - fillMs);
  }

  /** The buffer ran dry while playing (and the stream had no gap): count it. */
  underrun() {
    this.underruns++;
    this.reset();
  }

  /**
   * A chunk of chunkMs is about to be added to fillMs (at nowMs of output time): the low-water
   * sample the speed follows. Every 500 ms of output the lowest fill seen sets the speed.
   */
  arriving(fillMs, chunkMs, nowMs) {
    if (chunkMs > 0) this.frameMs = chunkMs;
    if (!this.playing) return;
    if (this.marginEndMs === null) this.marginEndMs = nowMs + this.startHoldMs;
    else if (this.startMarginMs > 0 && nowMs >= this.marginEndMs) this.startMarginMs = 0;
    if (fillMs < this.windowMinMs) this.windowMinMs = fillMs;
    if (this.windowStartMs === null) this.windowStartMs = nowMs;
    if (nowMs - this.windowStartMs < 500) return;
    // Drain (or grow) the error over about 1 s. Far above the target (the backlog of a late
    // start, or of a burst after a stall), the excess is cut out instead, over the next chunks.
    const err = this.windowMinMs - this.workTargetMs;
    if (err > this.frameMs) this.drainMs = err - 2;
    let d = 0;
    if (err > 3) d = Math.min(0.01, Math.max(0.002, err / 1000));
    else if (err < -3) d = Math.max(-0.005, Math.min(-0.002, err / 1000));
    this.speed = 1 + d;
    this.windowMinMs = Infinity;
    this.windowStartMs = nowMs;
  }

  /**
   * Audio (ms) to cut out with a chunk of chunkMs that just arrived (the fill, with it, is fillMs):
   * what is left of the backlog arriving() found, at most half the chunk, and never more than
   * the fill holds above the target once this chunk has played (the target may have risen, or
   * the speed done part of the work since). 0 when none; the output cuts at most this much and
   * reports what it cut (cutMade).
   */
  takeCut(chunkMs, fillMs) {
    if (!(this.drainMs > 0)) return 0;
    // A rest under 5 ms (or what the fill no longer holds) is left to the speed: a cut that short
    // cannot reach a whole period of most pitches, and would cost the join more than it drains.
    const ms = Math.min(this.drainMs, chunkMs / 2, fillMs - chunkMs - this.workTargetMs);
    if (ms < 5) { this.endDrain(); return 0; }
    return ms;
  }

  /** The output cut ms of the backlog: counted once a backlog, however many cuts it takes. */
  cutMade(ms) {
    if (ms > 0 && !this.cutting) { this.drains++; this.cutting = true; }
    this.drainMs = Math.max(0, this.drainMs - ms);
    if (this.drainMs < 0.5) this.endDrain();
  }

  /** No backlog left to cut (cut, left to the speed, or cut at once above the cap). */
  endDrain() {
    this.drainMs = 0;
    this.cutting = false;
  }

  /**
   * After new audio arrived and the fill is fillMs: how many ms of the oldest audio to cut at
   * once (a fill above the hard cap); a backlog being drained is then done with.
   */
  excessAfterPush(fillMs) {
    if (!this.playing || fillMs <= this.capMs) return 0;
    this.endDrain();
    return fillMs - (this.workTargetMs + this.frameMs);
  }

  /**
   * What both outputs do once a chunk of chunkMs is stored and the fill is fillMs: a fill above
   * the hard cap is cut back to the target at once; else a backlog being drained loses a pitch
   * period or so. cut(wantMs, maxMs) cuts about wantMs, never more than maxMs, where the
   * waveform matches (Splice.matchCut), and returns the ms it cut. Counts both kinds of cut
   * (capCuts, drains: stats.droppedForLatency is their sum).
   */
  trim(fillMs, chunkMs, cut) {
    const overMs = this.excessAfterPush(fillMs);
    if (overMs > 0) {
      if (cut(overMs, Infinity) > 0) this.capCuts++;
      return;
    }
    const wantMs = this.takeCut(chunkMs, fillMs);
    if (wantMs > 0) this.cutMade(cut(wantMs, wantMs));
  }

  /** Times audio was cut for latency: backlogs drained, and fills above the cap cut at once. */
  get cuts() { return this.capCuts + this.drains; }
}

/**
 * Joins without clicks, shared by both outputs (self-contained too, shipped to the worklet).
 * A join where the waveform does not continue (a restart after an underrun, a lost frame that
 * nothing concealed, a drop too short to search) is crossfaded from the last sample played,
 * held, into the new audio over FADE frames; where the audio simply stops, the last sample
 * decays to zero. A drop is cut where the waveform continues (matchCut, overlapAdd).
 */
export class Splice {
  static get FADE() { return 120; }      // 2.5 ms at 48 kHz
  static get DECAY() { return 24; }      // time constant of the decay to silence, in frames

  /** Crossfade the first FADE frames of planes (in place) from the held values prev[ch]. */
  static fadeFrom(prev, planes, frames, offset = 0) {
    const n = Math.min(Splice.FADE, frames);
    for (let ch = 0; ch < planes.length; ch++) {
      const p = planes[ch], v = prev[Math.min(ch, prev.length - 1)];
      for (let i = 0; i < n; i++) {
        const g = (i + 1) / (n + 1);
        p[offset + i] = v * (1 - g) + p[offset + i] * g;
      }
    }
  }

  /** The decay factor per frame. */
  static get decayStep() { return Math.exp(-1 / Splice.DECAY); }

  /**
   * Where to cut about `want` frames out of audio not yet played, so that the join does not
   * show (NetEq's "accelerate", WSOLA): the cut k whose continuation x[k..k+W) looks most like
   * what would have played, x[0..W), by normalised cross-correlation over every channel of
   * `planes` (n frames of each, frame 0 the next to play). A pure tone is then cut by whole
   * periods, keeping its phase; speech and music by their best-matching pitch period. k lies in
   * [max(want / 2, want - P), min(want + P / 2, maxK)], P being 15 ms (down to a 67 Hz period),
   * and ties go to the k nearest want. Returns { k, w }: w frames to overlap-add with
   * overlapAdd(); w = 0 (a plain cut of want) where the audio is too short to search.
   */
  static matchCut(planes, n, want, rate, maxK = Infinity) {
    const W = Math.round(rate * 0.005), P = Math.round(rate * 0.015);
    const lo = Math.max(1, Math.ceil(want / 2), want - P);
    const hi = Math.min(n - W, want + (P >> 1), maxK);
    if (hi < lo || n < 2 * W) return { k: Math.min(want, n), w: 0 };
    let ea = 0, eb = 0;
    for (const x of planes) for (let i = 0; i < W; i++) { ea += x[i] * x[i]; eb += x[lo + i] * x[lo + i]; }
    if (ea < 1e-9 * W) return { k: Math.max(lo, Math.min(hi, want)), w: W }; // silence: any cut
    let best = lo, bestScore = -Infinity;
    for (let k = lo; k <= hi; k++) {
      let c = 0;
      for (const x of planes) {
        if (k > lo) { const o = x[k - 1], e = x[k + W - 1]; eb += e * e - o * o; }
        for (let i = 0; i < W; i++) c += x[i] * x[k + i];
      }
      const score = (eb > 1e-12 ? c / Math.sqrt(ea * eb) : 0) - 0.01 * Math.abs(k - want) / P;
      if (score > bestScore) { bestScore = score; best = k; }
    }
    return { k: best, w: W };
  }

  /**
   * The join of a cut, in place: x[k + i] = x[i] * (1 - g) + x[k + i] * g over w frames (g
   * rising) in every plane, so the audio after the cut starts as what would have played, then
   * becomes its continuation. Backwards, so that a cut shorter than the join reads x[i] before
   * it is overwritten.
   */
  static overlapAdd(planes, k, w) {
    for (const x of planes) {
      for (let i = w - 1; i >= 0; i--) {
        const g = (i + 1) / (w + 1);
        x[k + i] = x[i] * (1 - g) + x[k + i] * g;
      }
    }
  }
}
