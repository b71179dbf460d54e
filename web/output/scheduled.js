// output/scheduled.js: plays decoded audio without AudioWorklet, as AudioBufferSourceNodes queued
// back to back on the AudioContext timeline (jsmpeg's src/webaudio.js does the same). Works in
// every context that has an AudioContext, plain-http pages included.
//
// The jitter buffer is the audio scheduled ahead of the play position; LatencyPolicy decides
// exactly as on the worklet path. Every chunk is followed by a short tail (its last sample
// decaying to silence), stopped before it starts when the next chunk joins on in time: if the
// buffer runs dry the sound fades instead of stopping dead. Audio is scheduled as it arrives, so a stalled main thread costs no more here
// than it already does to the WebSocket that delivers the frames.
//
// Resampling: every chunk goes through a linear interpolator that keeps its phase across chunks
// (the worklet does the same); its ratio is the rate ratio times the playout speed the policy
// sets (+1 % / -0.5 % at most). Letting
// the engine resample each AudioBuffer would treat every 20 ms chunk edge as the end of the
// signal; here chunk boundaries stay exact sample positions at the context rate.
//
// Same interface as output/worklet.js.
import { LatencyPolicy, Splice } from './latency-policy.js';

// Start (and restart after an underrun) this far past currentTime: the engine renders a quantum
// or two ahead of currentTime, and a start in the past is cut.
const START_LEAD_S = 0.01;
// Audio that starts sooner than this after currentTime may already be rendering: the buffer has
// run dry (an underrun), and new audio starts afresh instead of being joined on.
const GUARD_FRAMES = 256;
const TAIL_FRAMES = 5 * Splice.DECAY;

export class ScheduledOutput {
  static available(ctx) {
    return typeof ctx.createBufferSource === 'function' ? null : 'this browser cannot schedule audio buffers';
  }

  static async create(ctx, destination, opts) { return new ScheduledOutput(ctx, destination, opts); }

  constructor(ctx, destination, opts) {
    this.name = 'scheduled';
    this._ctx = ctx;
    this._dest = destination;
    this._rate = ctx.sampleRate;
    // The floor: the start lead, or the engine's pull (opts.pullS, select.js enginePullS: its
    // base latency, at least the frames it renders at once) and a quantum, whichever is more, and
    // 2 ms for the main thread's own delays.
    const pullS = opts.pullS ?? (ctx.baseLatency || 0);
    const pullQuantumFrames = pullS * ctx.sampleRate + 128;   // the pull and a quantum
    this.floorMs = Math.max(START_LEAD_S * 1000, pullQuantumFrames * 1000 / ctx.sampleRate) + 2;
    // Sources are replaced (a cut, a flush) only where the engine cannot have pulled yet: past
    // its pull and a quantum, as the floor. Chromium renders 512 frames at a time, ahead of the
    // currentTime the page sees; a source stopped inside that stretch and started again in a
    // new one may be rendered with the old one stopped and the new one not yet in place: a
    // chunk of silence that no underrun counts (seen once in CI after a backlog cut, when 256
    // frames was the only guard).
    this._replaceFrames = Math.max(GUARD_FRAMES, Math.ceil(pullQuantumFrames));
    this._policy = new LatencyPolicy({ ...opts, floorMs: this.floorMs });
    this._queue = [];           // scheduled, not yet ended: { src, buf, startFrame, endFrame }
    this._tail = null;          // the decay after the last chunk: { src, startFrame }
    this._last = [0, 0];        // the last sample scheduled, per channel
    this._nextFrame = 0;        // end of the scheduled audio, in context frames
    this._dry = false;
    this._resampler = null;
    this._droppedFrames = 0;
    this._scheduledFrames = 0;
    this._stretchMs = 0;
    this._minFill = Infinity;
    this._maxFill = 0;
    this._queueMs = null;      // how late chunks come + how long they wait to render (EWMA)
  }

  _nowFrame() { return this._ctx.currentTime * this._rate; }
  _ms(frames) { return frames * 1000 / this._rate; }

  /** Audio ahead of the play position, in ms. */
  _fillMs() {
    if (!this._policy.playing) return 0;
    return this._ms(Math.max(0, this._nextFrame - this._nowFrame()));
  }

  /** Forget the sources that have ended. */
  _clean() {
    const now = this._nowFrame();
    while (this._queue.length && this._queue[0].endFrame <= now) this._queue.shift();
  }

  push(planes, frames, rate, gapMs = 0, lateMs = 0) {
    if (!frames) return;
    this._clean();
    const now = this._nowFrame();
    const chunkMs = frames * 1000 / rate;
    if (this._policy.playing && this._nextFrame - now < GUARD_FRAMES) {
      this._dry = true;         // ran dry, or nearly: the tail is (about to be) playing
      this._policy.reset();
    }
    const fillBefore = this._fillMs();
    if (fillBefore < this._minFill) this._minFill = fillBefore;
    this._policy.arriving(fillBefore, chunkMs, this._ms(now));
    const [l, r] = this._resample(planes, frames, rate, this._policy.speed);
    if (!l.length) return;
    this._stretchMs += chunkMs - this._ms(l.length);
    if (!this._policy.playing) {
      if (this._dry) { this._policy.underrun(); this._dry = false; }
      const preMs = this._policy.start(chunkMs, chunkMs);
      const at = Math.ceil(now + (START_LEAD_S + preMs / 1000) * this._rate);
      if (at > this._nextFrame) {
        this._nextFrame = at;   // after silence: the tail of what played decays, this fades in
        Splice.fadeFrom([0, 0], [l, r], l.length);
      } else {
        Splice.fadeFrom(this._last, [l, r], l.length);
      }
      this._queued(lateMs, now);
      this._schedule(l, r);
    } else {
      if (gapMs > 0) {
        // Lost audio nothing concealed: the tail fades out over its time, then this fades in.
        this._nextFrame += Math.round(gapMs * this._rate / 1000);
        Splice.fadeFrom([0, 0], [l, r], l.length);
      }
      this._queued(lateMs, now);
      this._schedule(l, r);
      // Above the hard cap: back to the target at once; a backlog: a pitch period or so per chunk.
      this._policy.trim(this._fillMs(), chunkMs, (ms, maxMs) => {
        const want = Math.round(ms * this._rate / 1000);
        return want > 0 ? this._ms(this._drop(want, maxMs === Infinity ? Infinity : want)) : 0;
      });
    }
    const fill = this._fillMs();
    if (fill > this._maxFill) this._maxFill = fill;
  }

  /** A chunk lateMs late is scheduled at _nextFrame: queueMs follows lateness + the wait. */
  _queued(lateMs, now) {
    const q = lateMs + this._ms(this._nextFrame - now);
    this._queueMs = this._queueMs === null ? q : this._queueMs + (q - this._queueMs) / 16;
  }

  /** Planar Float32 at `rate` -> planes at the context rate, played `speed` times faster. */
  _resample(planes, frames, rate, speed) {
    const L = planes[0], R = planes[1] || planes[0];
    if (!this._resampler || this._resampler.inRate !== rate) this._resampler = new LinearResampler(rate, this._rate);
    this._resampler.step = rate / this._rate * speed;
    return this._resampler.process(L, R, frames);
  }

  /** Queue planes l, r at _nextFrame, with a decaying tail after them in case nothing follows. */
  _schedule(l, r) {
    const buf = this._ctx.createBuffer(2, l.length, this._rate);
    // getChannelData().set() rather than copyToChannel(): Safari before 14.1 lacks the latter.
    buf.getChannelData(0).set(l);
    buf.getChannelData(1).set(r);
    const src = this._ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this._dest);
    const startFrame = this._nextFrame;
    src.start(startFrame / this._rate);
    // The previous tail goes if this joins on where it was to start (it has not started:
    // otherwise this would have been a restart).
    const old = this._tail;
    if (old && old.startFrame === startFrame) { old.src.stop(); old.src.disconnect(); this._tail = null; }
    this._nextFrame += buf.length;
    this._scheduledFrames += buf.length;
    this._queue.push({ src, buf, startFrame, endFrame: this._nextFrame });
    this._last = [l[l.length - 1], r[r.length - 1]];
    this._setTail();
  }

  /** The tail after the last chunk: stopped before it starts when more audio follows in time. */
  _setTail() {
    const buf = this._ctx.createBuffer(2, TAIL_FRAMES, this._rate);
    const k = Splice.decayStep;
    for (let ch = 0; ch < 2; ch++) {
      const d = buf.getChannelData(ch);
      let v = this._last[ch];
      for (let i = 0; i < TAIL_FRAMES; i++) { v *= k; d[i] = v; }
    }
    const src = this._ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this._dest);
    src.start(this._nextFrame / this._rate);
    this._tail = { src, startFrame: this._nextFrame };
  }

  /** The index of the first source that starts where the engine has not pulled yet, or -1. */
  _firstReplaceable() {
    const guard = this._nowFrame() + this._replaceFrames;
    return this._queue.findIndex((q) => q.startFrame >= guard);
  }

  /** Stop the sources from index i (_firstReplaceable) on, and the tail after them. */
  _unscheduleFrom(i) {
    if (i < 0) return;
    const later = this._queue.splice(i);
    const tail = this._tail;
    if (tail && tail.startFrame >= later[0].startFrame) { tail.src.stop(); tail.src.disconnect(); this._tail = null; }
    for (const q of later) { q.src.stop(); q.src.disconnect(); this._scheduledFrames -= q.buf.length; }
    this._nextFrame = later[0].startFrame;
    const prev = this._queue[this._queue.length - 1];
    this._last = prev ? [prev.buf.getChannelData(0)[prev.buf.length - 1], prev.buf.getChannelData(1)[prev.buf.length - 1]] : [0, 0];
  }

  /**
   * Drop about `frames` of the oldest audio the engine has not pulled yet: those sources
   * (_firstReplaceable) are stopped and their audio, minus the cut, is scheduled again as one
   * buffer where the first of them was to start. The cut is where the waveform after it
   * matches what would have played (Splice.matchCut), joined by overlap-add; only audio too
   * short to search is cut plainly and crossfaded from the sample before it. Returns the
   * frames cut.
   */
  _drop(frames, maxK = Infinity) {
    const i = this._firstReplaceable();
    if (i < 0) return 0;
    // The search comes first, the swap after it: the old sources are stopped and the new one
    // started in one go, with no work of ours between them.
    const later = this._queue.slice(i);
    let total = 0;
    for (const q of later) total += q.buf.length;
    const all = [new Float32Array(total), new Float32Array(total)];
    for (let ch = 0; ch < 2; ch++) {
      let o = 0;
      for (const q of later) { all[ch].set(q.buf.getChannelData(ch), o); o += q.buf.length; }
    }
    const { k, w } = Splice.matchCut(all, total, Math.min(frames, total), this._rate, maxK);
    this._unscheduleFrom(i);
    this._droppedFrames += k;
    const keep = total - k;
    if (keep <= 0) { this._setTail(); return k; }
    if (w) Splice.overlapAdd(all, k, w);
    const out = [all[0].subarray(k), all[1].subarray(k)];
    if (!w) Splice.fadeFrom(this._last, out, keep);
    this._schedule(out[0], out[1]);
    return k;
  }

  flush() {
    // Audio the engine has not pulled yet goes; what plays now ends with its tail. A new tail
    // only where the old one went with that audio: with nothing replaceable it stays, and a
    // second on top of it would play the decay twice over.
    const i = this._firstReplaceable();
    this._unscheduleFrom(i);
    if (i >= 0 && this._queue.length) this._setTail();
    this._policy.reset();
    this._dry = false;
    this._queueMs = null;
  }

  configure(opts) { this._policy.configure(opts); }

  stats() {
    this._clean();
    const fill = this._fillMs();
    const s = {
      bufferedMs: fill,
      minBufferedMs: Math.min(this._minFill, fill),
      maxBufferedMs: Math.max(this._maxFill, fill),
      underruns: this._policy.underruns,
      droppedForLatency: this._policy.cuts,
      droppedMs: this._ms(this._droppedFrames),
      stretchedMs: this._stretchMs,
      speed: this._policy.speed,
      renderedMs: this._ms(Math.max(0, this._scheduledFrames - Math.max(0, this._nextFrame - this._nowFrame()))),
      playing: this._policy.playing,
      targetMs: this._policy.workTargetMs,
      frameMs: this._policy.frameMs,
      queueMs: this._queueMs,
    };
    this._minFill = Infinity;
    this._maxFill = fill;
    return s;
  }

  close() { this.flush(); }
}

/** Streaming linear-interpolation resampler; keeps the last input frame and the phase. */
export class LinearResampler {
  constructor(inRate, outRate) {
    this.inRate = inRate;
    this.step = inRate / outRate;
    this.pos = 0;                 // position of the next output frame, relative to prev
    this.prevL = 0;
    this.prevR = 0;
  }

  process(L, R, frames) {
    // Input frame -1 is the last one of the previous chunk; frames 0..frames-1 are new.
    const n = Math.max(0, Math.ceil((frames - this.pos) / this.step));
    const outL = new Float32Array(n), outR = new Float32Array(n);
    let pos = this.pos;
    for (let i = 0; i < n; i++) {
      const k = Math.floor(pos);          // interpolate between input k-1 and k
      const f = pos - k;
      const l0 = k === 0 ? this.prevL : L[k - 1], r0 = k === 0 ? this.prevR : R[k - 1];
      outL[i] = l0 + (L[k] - l0) * f;
      outR[i] = r0 + (R[k] - r0) * f;
      pos += this.step;
    }
    this.pos = pos - frames;
    this.prevL = L[frames - 1];
    this.prevR = R[frames - 1];
    return [outL, outR];
  }
}
