// output/scheduled.js: plays decoded audio without AudioWorklet, as AudioBufferSourceNodes queued
// back to back on the AudioContext timeline (jsmpeg's src/webaudio.js does the same). Works in
// every context that has an AudioContext, plain-http pages included.
//
// The jitter buffer is the audio scheduled ahead of the play position (plus, while buffering,
// the chunks held back until the target is reached); LatencyPolicy decides exactly as on the
// worklet path. Audio is scheduled as it arrives, so a stalled main thread costs no more here
// than it already does to the WebSocket that delivers the frames.
//
// Resampling: when the stream rate differs from the context rate, chunks are resampled here with
// a linear interpolator that keeps its phase across chunks (the worklet does the same). Letting
// the engine resample each AudioBuffer would treat every 20 ms chunk edge as the end of the
// signal; here chunk boundaries stay exact sample positions at the context rate.
//
// Same interface as output/worklet.js.
import { LatencyPolicy } from './latency-policy.js';

// Start (and restart after an underrun) this far past currentTime: the engine renders a quantum
// or two ahead of currentTime, and a start in the past is cut.
const START_LEAD_S = 0.01;

export class ScheduledOutput {
  static available(ctx) {
    return typeof ctx.createBufferSource === 'function' ? null : 'this browser cannot schedule audio buffers';
  }

  static async create(ctx, destination, opts) { return new ScheduledOutput(ctx, destination, opts); }

  constructor(ctx, destination, { targetMs, maxMs, adaptive }) {
    this.name = 'scheduled';
    this._ctx = ctx;
    this._dest = destination;
    this._rate = ctx.sampleRate;
    this._policy = new LatencyPolicy({ targetMs, maxMs, adaptive });
    this._queue = [];           // scheduled, not yet ended: { src, buf, startFrame, endFrame }
    this._pending = [];         // AudioBuffers held while buffering
    this._pendingFrames = 0;
    this._nextFrame = 0;        // end of the scheduled audio, in context frames
    this._lastPlayedFrame = null;
    this._resampler = null;
    this._dropEvents = 0;
    this._droppedFrames = 0;
    this._scheduledFrames = 0;
    this._minFill = Infinity;
    this._maxFill = 0;
  }

  _nowFrame() { return this._ctx.currentTime * this._rate; }
  _ms(frames) { return frames * 1000 / this._rate; }

  /** Audio ahead of the play position, in ms. */
  _fillMs() {
    if (!this._policy.playing) return this._ms(this._pendingFrames);
    return this._ms(Math.max(0, this._nextFrame - this._nowFrame()));
  }

  /** Called on every arrival and stats poll: notices an underrun and feeds the slack window. */
  _advance() {
    const now = this._nowFrame();
    if (this._lastPlayedFrame !== null && now > this._lastPlayedFrame) {
      const fill = this._ms(Math.max(0, this._nextFrame - now));
      this._policy.played(this._ms(now - this._lastPlayedFrame), fill);
    }
    this._lastPlayedFrame = now;
    while (this._queue.length && this._queue[0].endFrame <= now) this._queue.shift();
    if (this._policy.playing && now >= this._nextFrame) {
      this._policy.underrun();  // everything scheduled has played: ran dry
      this._queue.length = 0;
    }
  }

  push(planes, frames, rate) {
    const buf = this._toBuffer(planes, frames, rate);
    if (!buf) return;
    this._advance();
    const fillBefore = this._fillMs();
    if (fillBefore < this._minFill) this._minFill = fillBefore;
    if (!this._policy.playing) {
      this._pending.push(buf);
      this._pendingFrames += buf.length;
      if (this._policy.shouldStart(this._ms(this._pendingFrames))) {
        this._nextFrame = Math.ceil(this._nowFrame() + START_LEAD_S * this._rate);
        const pending = this._pending;
        this._pending = [];
        this._pendingFrames = 0;
        for (const b of pending) this._schedule(b);
      } else if (this._pendingFrames > this._rate * this._policy.maxMs / 1000) {
        const old = this._pending.shift();   // cannot happen with target < max; bounded anyway
        this._pendingFrames -= old.length;
        this._droppedFrames += old.length;
        this._dropEvents++;
      }
    } else {
      this._schedule(buf);
      const excessMs = this._policy.excessAfterPush(this._fillMs());
      if (excessMs > 0) this._drop(Math.round(excessMs * this._rate / 1000));
    }
    const fill = this._fillMs();
    if (fill > this._maxFill) this._maxFill = fill;
  }

  _schedule(buf) {
    const src = this._ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this._dest);
    const startFrame = this._nextFrame;
    src.start(startFrame / this._rate);
    this._nextFrame += buf.length;
    this._scheduledFrames += buf.length;
    this._queue.push({ src, buf, startFrame, endFrame: this._nextFrame });
  }

  /**
   * Drop the oldest `frames` of the audio that has not started playing: the sources not yet
   * started are stopped and their audio, minus the dropped part, is scheduled again as one buffer
   * where the first of them was to start.
   */
  _drop(frames) {
    const guard = this._nowFrame() + START_LEAD_S * this._rate;
    const i = this._queue.findIndex((q) => q.startFrame >= guard);
    if (i < 0) return;
    const later = this._queue.splice(i);
    const at = later[0].startFrame;
    let total = 0;
    for (const q of later) { q.src.onended = null; q.src.stop(); q.src.disconnect(); total += q.buf.length; }
    const n = Math.min(frames, total);
    this._droppedFrames += n;
    this._dropEvents++;
    this._scheduledFrames -= total;
    this._nextFrame = at;
    const keep = total - n;
    if (keep <= 0) return;
    const out = this._ctx.createBuffer(2, keep, this._rate);
    for (let ch = 0; ch < 2; ch++) {
      const dst = out.getChannelData(ch);
      let skip = n, o = 0;
      for (const q of later) {
        const srcData = q.buf.getChannelData(Math.min(ch, q.buf.numberOfChannels - 1));
        if (skip >= srcData.length) { skip -= srcData.length; continue; }
        dst.set(skip ? srcData.subarray(skip) : srcData, o);
        o += srcData.length - skip;
        skip = 0;
      }
    }
    this._schedule(out);
  }

  /** Planar Float32 at `rate` -> a stereo AudioBuffer at the context rate. */
  _toBuffer(planes, frames, rate) {
    if (!frames) return null;
    const L = planes[0], R = planes[1] || planes[0];
    // getChannelData().set() rather than copyToChannel(): Safari before 14.1 lacks the latter.
    if (rate === this._rate) {
      const b = this._ctx.createBuffer(2, frames, this._rate);
      b.getChannelData(0).set(L.length === frames ? L : L.subarray(0, frames));
      b.getChannelData(1).set(R.length === frames ? R : R.subarray(0, frames));
      return b;
    }
    if (!this._resampler || this._resampler.inRate !== rate) this._resampler = new LinearResampler(rate, this._rate);
    const [l, r] = this._resampler.process(L, R, frames);
    if (!l.length) return null;
    const b = this._ctx.createBuffer(2, l.length, this._rate);
    b.getChannelData(0).set(l);
    b.getChannelData(1).set(r);
    return b;
  }

  flush() {
    // What was scheduled but will not play is not rendered audio.
    if (this._policy.playing) this._scheduledFrames -= Math.max(0, this._nextFrame - this._nowFrame());
    for (const q of this._queue) { q.src.stop(); q.src.disconnect(); }
    this._queue.length = 0;
    this._pending = [];
    this._pendingFrames = 0;
    this._policy.reset();
    this._lastPlayedFrame = null;
  }

  configure(opts) { this._policy.configure(opts); }

  stats() {
    this._advance();
    const fill = this._fillMs();
    const s = {
      bufferedMs: fill,
      minBufferedMs: Math.min(this._minFill, fill),
      maxBufferedMs: Math.max(this._maxFill, fill),
      underruns: this._policy.underruns,
      droppedForLatency: this._dropEvents,
      droppedMs: this._ms(this._droppedFrames),
      renderedMs: this._ms(Math.max(0, this._scheduledFrames - (this._policy.playing
        ? Math.max(0, this._nextFrame - this._nowFrame()) : 0))),
      playing: this._policy.playing,
      targetMs: this._policy.workTargetMs,
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
