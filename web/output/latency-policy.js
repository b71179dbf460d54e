// latency-policy.js: the jitter-buffer rules both output paths follow, in milliseconds.
//
// The worklet path keeps its buffer in a ring on the audio thread; the scheduled path keeps it as
// AudioBufferSourceNodes queued on the AudioContext timeline. Both ask this one object when to
// start, how much to drop and when an underrun happened, so they behave the same:
// - playback starts, and restarts after an underrun, once the fill reaches the working target;
// - above maxMs the oldest audio is dropped back to the working target;
// - if the fill never went below target + 20 ms for 2 s, that slack is pure delay: it is trimmed
//   back to the target on the next arrival;
// - adaptive: each underrun raises the working target by 20 ms (keeping 40 ms below maxMs);
//   10 s without one lowers it by 10 ms again, down to the configured target.
//
// The class is self-contained (no imports, no outside names): the worklet path ships its source
// text to the audio thread with Function.prototype.toString().
export class LatencyPolicy {
  constructor(o = {}) {
    this.targetMs = o.targetMs || 60;
    this.maxMs = o.maxMs || 200;
    this.adaptive = o.adaptive !== false;
    this.extraMs = 0;
    this.calmMs = 0;
    this.underruns = 0;
    this.reset();
  }

  /** The fill level playback starts at: the configured target plus the adaptive part. */
  get workTargetMs() { return this.targetMs + this.extraMs; }

  configure(o) {
    if (o.targetMs) this.targetMs = o.targetMs;
    if (o.maxMs) this.maxMs = o.maxMs;
    if (o.adaptive !== undefined) this.adaptive = o.adaptive;
    this.extraMs = 0;
  }

  /** Forget the playing state (flush, reconnect): the next audio buffers to the target again. */
  reset() {
    this.playing = false;
    this.slackMinMs = Infinity;
    this.slackMs = 0;
    this.trimPending = false;
  }

  /** While buffering: true once fillMs is enough to start (and marks the state playing). */
  shouldStart(fillMs) {
    if (!this.playing && fillMs >= this.workTargetMs) this.playing = true;
    return this.playing;
  }

  /** The buffer ran dry while playing: count it and rebuffer to the (raised) working target. */
  underrun() {
    this.underruns++;
    if (this.adaptive) {
      this.extraMs = Math.max(0, Math.min(this.extraMs + 20, this.maxMs - 40 - this.targetMs));
      this.calmMs = 0;
    }
    this.reset();
  }

  /** After new audio arrived and the fill is fillMs: how many ms of the oldest audio to drop. */
  excessAfterPush(fillMs) {
    if (fillMs > this.maxMs) { this.trimPending = false; return fillMs - this.workTargetMs; }
    if (this.trimPending) {
      this.trimPending = false;
      if (this.playing && fillMs > this.workTargetMs) return fillMs - this.workTargetMs;
    }
    return 0;
  }

  /** Time passed (elapsedMs of output) while the fill was at least fillMs. */
  played(elapsedMs, fillMs) {
    if (!this.playing) { this.slackMinMs = Infinity; this.slackMs = 0; return; }
    if (fillMs < this.slackMinMs) this.slackMinMs = fillMs;
    this.slackMs += elapsedMs;
    if (this.slackMs >= 2000) {
      if (this.slackMinMs > this.workTargetMs + 20) this.trimPending = true;
      this.slackMinMs = Infinity;
      this.slackMs = 0;
    }
    if (this.extraMs > 0 && (this.calmMs += elapsedMs) >= 10000) {
      this.extraMs = Math.max(0, this.extraMs - 10);
      this.calmMs = 0;
    }
  }
}
