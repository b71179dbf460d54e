// output/worklet.js: plays decoded audio through an AudioWorklet that holds the jitter buffer on
// the audio thread (a planar ring per channel, linear resampling when the stream rate differs
// from the context rate). Main-thread stalls (noVNC drawing) do not starve it.
//
// Only where the context has `audioWorklet`: secure contexts (https, localhost). Chromium still
// defines the AudioWorkletNode global on plain-http pages, so check the context, not the global.
//
// Output interface (shared with output/scheduled.js):
//   static available(ctx) -> reason string it cannot be used, or null
//   static async create(ctx, destination, { targetMs, maxMs, jitterMs, delayMs }) -> output
//   output.name, output.floorMs, push(planes, frames, rate, gapMs, lateMs), flush(),
//   configure(opts), stats() -> {..., queueMs: lateMs + the wait to render, averaged}, close()
// and, for the stream's Worker (stream-worker.js), feedPort() -> a MessagePort to hand it, on
// which a WorkletFeed pushes as push() does, without the main thread.
import { LatencyPolicy, Splice } from './latency-policy.js';

// The processor, as source text: a Blob URL module needs no extra file fetched from a possibly
// cross-origin server, and LatencyPolicy travels with it (same class as the scheduled path).
const PROCESSOR_SOURCE = String.raw`
class NovncAudioJitterBuffer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.inRate = o.inRate || sampleRate;
    this.policy = new LatencyPolicy(o);
    this.allocate(this.inRate);
    this.droppedFrames = 0;
    this.renderedFrames = 0;
    this.stretchFrames = 0;     // input frames played minus output frames (speed-up > 0)
    this.pos = 0;               // fractional read offset (resampling, speed)
    this.minBuf = Infinity;
    this.maxBuf = 0;
    this.quanta = 0;
    this.last = [0, 0];         // the last sample output, per channel
    this.xfade = 0;             // frames left of a crossfade from the held last sample (a drop)
    this.xfrom = [0, 0];
    this.dry = false;           // ran dry: an underrun, unless the stream had a gap (flush)
    this.decay = Splice.decayStep;
    this.queueMs = null;        // how late chunks come + the audio ahead of them (EWMA)
    this.qMin = Infinity;
    this.qCount = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }
  allocate(rate) {
    // Room for a few times the latency bound; overflow is handled by the latency bound.
    this.cap = Math.max(4096, Math.ceil(rate * Math.max(2, this.policy.maxMs * 4 / 1000)));
    this.bufs = [new Float32Array(this.cap), new Float32Array(this.cap)];
    this.r = 0;                 // read index
    this.n = 0;                 // frames stored
  }
  ms(frames) { return frames * 1000 / this.inRate; }
  frames(ms) { return Math.round(ms * this.inRate / 1000); }
  onMessage(m) {
    if (m.type === 'push') {
      if (m.rate && m.rate !== this.inRate) {
        this.inRate = m.rate;
        this.allocate(m.rate);
        this.policy.reset();
        this.pos = 0;
      }
      // lateMs is as the main thread posted it. The message's own way here (currentTime now
      // minus the main thread's currentTime then, half a render burst on average) was tried and
      // overshot: latencyMs then rose 7-16 ms above the sound card in Chromium and Firefox.
      this.push(m.channels, m.frames, m.gapMs || 0, m.lateMs || 0);
    } else if (m.type === 'flush') {
      // Stale audio goes; the sound decays from the last sample (process), the next starts fresh.
      this.r = 0; this.n = 0; this.pos = 0;
      this.policy.reset();
      this.dry = false;
      this.queueMs = null;
    } else if (m.type === 'config') {
      this.policy.configure(m);
      if (this.frames(this.policy.maxMs) * 2 > this.cap) this.allocate(this.inRate);
    } else if (m.type === 'feed') {
      // A second way in for 'push' and 'flush': a port whose other end is the stream's Worker.
      m.port.onmessage = (e) => this.onMessage(e.data);
    }
  }
  lastStored(ch) { return this.n ? this.bufs[ch][(this.r + this.n - 1) % this.cap] : this.last[ch]; }
  write(src, frames) {
    const cap = this.cap;
    if (this.n + frames > cap) { const k = this.n + frames - cap; this.r = (this.r + k) % cap; this.n -= k; this.droppedFrames += k; }
    const w = (this.r + this.n) % cap;
    const first = Math.min(frames, cap - w);
    for (let ch = 0; ch < 2; ch++) {
      const s = src[Math.min(ch, src.length - 1)];
      const dst = this.bufs[ch];
      dst.set(s.subarray(0, first), w);
      if (first < frames) dst.set(s.subarray(first, frames), 0);
    }
    this.n += frames;
  }
  /** Decaying silence (from the last sample stored or played), so many frames long. */
  writeDecay(frames) {
    const p = [new Float32Array(frames), new Float32Array(frames)];
    for (let ch = 0; ch < 2; ch++) {
      let v = this.lastStored(ch);
      for (let i = 0; i < frames; i++) { v *= this.decay; p[ch][i] = v; }
    }
    this.write(p, frames);
  }
  push(channels, frames, gapMs, lateMs) {
    if (frames > this.cap / 2) {             // absurd chunk: keep its tail
      const skip = frames - Math.floor(this.cap / 2);
      channels = channels.map((c) => c.subarray(skip));
      frames -= skip;
    }
    channels = channels.map((c) => c.subarray(0, frames));
    const chunkMs = this.ms(frames);
    this.policy.arriving(this.ms(this.n), chunkMs, currentTime * 1000);
    if (!this.policy.playing) {
      if (this.dry) { this.policy.underrun(); this.dry = false; }
      // Start now: decaying silence first (the tail of what played before, if any), then the
      // audio faded in from it.
      const pre = this.frames(this.policy.start(this.ms(this.n + frames), chunkMs));
      if (pre > 0) this.writeDecay(pre);
      Splice.fadeFrom([this.lastStored(0), this.lastStored(1)], channels, frames);
    } else if (gapMs > 0) {
      // Lost audio nothing concealed: its time filled by a fade out, then this fades in.
      this.writeDecay(Math.min(this.frames(gapMs), this.cap / 4));
      Splice.fadeFrom([this.lastStored(0), this.lastStored(1)], channels, frames);
    }
    // Late, plus the audio it plays after; the lowest of every 8 chunks. The engine renders a
    // burst of quanta at once (Chromium 4-5, Firefox 7) and messages come in between, so the
    // fill here counts audio the next burst renders at once: the mean of lateness + fill was
    // 9-12 ms above what the clicks measured (sink -> rendered - frame - lookahead), the low
    // point of the burst cycle is what the policy holds at its target.
    const q = lateMs + this.ms(this.n);
    this.qMin = Math.min(this.qMin ?? Infinity, q);
    if (++this.qCount >= 8 || this.queueMs === null) {
      this.queueMs = this.queueMs === null ? this.qMin : this.queueMs + (this.qMin - this.queueMs) / 4;
      this.qMin = Infinity;
      this.qCount = 0;
    }
    this.write(channels, frames);
    // Above the hard cap: back to the target at once; a backlog: a pitch period or so per chunk.
    this.policy.trim(this.ms(this.n), chunkMs, (ms, maxMs) => {
      const want = Math.min(this.frames(ms), this.n - 2);
      return want > 0 ? this.ms(this.cut(want, maxMs === Infinity ? Infinity : want)) : 0;
    });

    if (this.n > this.maxBuf) this.maxBuf = this.n;
  }
  /**
   * Cut about 'want' frames out of the oldest audio (a backlog above the target): where the
   * waveform after the cut matches what would have played (Splice.matchCut), joined by
   * overlap-add; only audio too short to search is cut plainly, crossfaded from the held last
   * sample. Never more than maxK frames. Returns the frames cut.
   */
  cut(want, maxK = Infinity) {
    if (want <= 0) return 0;
    const cap = this.cap;
    const len = Math.min(this.n, want + this.frames(25));
    // The audio from the play point on, unwrapped into scratch planes kept between cuts.
    if (!this.scratch || this.scratch[0].length < len) this.scratch = [new Float32Array(2 * len), new Float32Array(2 * len)];
    const x = this.scratch;
    for (let ch = 0; ch < 2; ch++) {
      const b = this.bufs[ch], first = Math.min(len, cap - this.r);
      x[ch].set(b.subarray(this.r, this.r + first), 0);
      if (first < len) x[ch].set(b.subarray(0, len - first), first);
    }
    const { k, w } = Splice.matchCut(x, len, want, this.inRate, maxK);
    if (k <= 0) return 0;
    if (w) {                                 // the join goes back into the ring
      Splice.overlapAdd(x, k, w);
      for (let ch = 0; ch < 2; ch++) for (let i = k; i < k + w; i++) this.bufs[ch][(this.r + i) % cap] = x[ch][i];
    } else {
      this.xfade = Splice.FADE; this.xfrom = [this.last[0], this.last[1]];
    }
    this.r = (this.r + k) % cap; this.n -= k;
    this.droppedFrames += k;
    return k;
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const L = out[0], R = out[1] || out[0];
    const len = L.length;
    let written = 0;
    if (this.policy.playing) {
      // Linear interpolation between buffer[r] and buffer[r+1] at offset pos; the step is the
      // rate ratio times the playout speed (1 exactly when the rates match and no correction runs).
      const cap = this.cap, bl = this.bufs[0], br = this.bufs[1];
      const step = this.inRate / sampleRate * this.policy.speed;
      let pos = this.pos, i = 0, used = 0;
      while (i < len && this.n >= 2) {
        const j0 = this.r, j1 = (this.r + 1) % cap;
        L[i] = bl[j0] + (bl[j1] - bl[j0]) * pos;
        R[i] = br[j0] + (br[j1] - br[j0]) * pos;
        i++;
        pos += step;
        const adv = Math.floor(pos);
        if (adv) { pos -= adv; const a = Math.min(adv, this.n); this.r = (this.r + a) % cap; this.n -= a; used += a; }
      }
      this.pos = pos; written = i;
      this.stretchFrames += used - i * this.inRate / sampleRate;
      if (written < len) {                  // ran dry: decay below, restart on the next audio
        this.dry = true;
        this.n = 0; this.pos = 0;
        this.policy.reset();
      }
    }
    if (this.xfade > 0) {
      for (let i = 0; i < written && this.xfade > 0; i++, this.xfade--) {
        const g = 1 - this.xfade / (Splice.FADE + 1);
        L[i] = this.xfrom[0] * (1 - g) + L[i] * g;
        if (R !== L) R[i] = this.xfrom[1] * (1 - g) + R[i] * g;
      }
    }
    if (written > 0) { this.last[0] = L[written - 1]; this.last[1] = R[written - 1]; }
    for (let i = written; i < len; i++) {   // nothing to play: the last sample decays to silence
      this.last[0] *= this.decay; this.last[1] *= this.decay;
      L[i] = this.last[0]; if (R !== L) R[i] = this.last[1];
    }
    if (Math.abs(this.last[0]) < 1e-6) this.last[0] = 0;
    if (Math.abs(this.last[1]) < 1e-6) this.last[1] = 0;
    if (R !== L) for (let c = 2; c < out.length; c++) out[c].set(L);
    this.renderedFrames += len;
    if (this.n < this.minBuf) this.minBuf = this.n;
    if (++this.quanta >= 8) {
      this.quanta = 0;
      this.port.postMessage({
        type: 'stats',
        bufferedMs: this.ms(this.n),
        minBufferedMs: this.ms(this.minBuf === Infinity ? this.n : this.minBuf),
        maxBufferedMs: this.ms(this.maxBuf),
        underruns: this.policy.underruns,
        droppedForLatency: this.policy.cuts,
        droppedMs: this.ms(this.droppedFrames),
        stretchedMs: this.ms(this.stretchFrames),
        speed: this.policy.speed,
        renderedMs: this.renderedFrames * 1000 / sampleRate,
        playing: this.policy.playing,
        targetMs: this.policy.workTargetMs,
        frameMs: this.policy.frameMs,
        queueMs: this.queueMs,
      });
      this.minBuf = Infinity; this.maxBuf = this.n;
    }
    return true;
  }
}
registerProcessor('novnc-audio-jitter-buffer', NovncAudioJitterBuffer);
`;

export class WorkletOutput {
  static available(ctx) {
    if (ctx.audioWorklet && typeof globalThis.AudioWorkletNode === 'function') return null;
    return globalThis.isSecureContext === false
      ? 'AudioWorklet needs a secure context (https or localhost)'
      : 'this browser has no AudioWorklet';
  }

  static async create(ctx, destination, opts) {
    const source = `${LatencyPolicy.toString()}\n${Splice.toString()}\n${PROCESSOR_SOURCE}`;
    const blobUrl = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    try {
      await ctx.audioWorklet.addModule(blobUrl);
    } finally {
      URL.revokeObjectURL(blobUrl);
    }
    return new WorkletOutput(ctx, destination, opts);
  }

  constructor(ctx, destination, opts) {
    this.name = 'worklet';
    // The floor. The engine pulls base latency's worth at a time (Chromium 512 frames, Firefox
    // 896), but the fill the policy keeps is the low-water mark just before a frame arrives,
    // which is already after the engine's last pull: only the next pull must find its audio,
    // and the audio arriving then is in the ring before it. So a render quantum (the
    // interpolator reads one frame ahead) and 1 ms for the message from the main thread are
    // the floor with opts.floor 'quantum'. Measured, it renders 11-15 ms sooner in Chromium, but
    // the jitter percentile then lets through the rare late frame that base latency covered
    // (3.6 underruns a minute over 10 minutes): the default keeps base latency + a quantum.
    // "Base latency" is the engine's pull (opts.pullS, select.js enginePullS: at least the 512
    // frames Chromium renders at once, whatever its latencyHint).
    const pullS = opts.pullS ?? (ctx.baseLatency || 0);
    this.floorMs = opts.floor === 'quantum'
      ? 128 / ctx.sampleRate * 1000 + 1
      : (pullS + 128 / ctx.sampleRate) * 1000;
    const policy = { ...opts, floorMs: this.floorMs };
    this._stats = { bufferedMs: 0, minBufferedMs: 0, maxBufferedMs: 0, underruns: 0, droppedForLatency: 0,
      droppedMs: 0, stretchedMs: 0, speed: 1, renderedMs: 0, playing: false, targetMs: opts.targetMs || 0, frameMs: 20 };
    this._node = new AudioWorkletNode(ctx, 'novnc-audio-jitter-buffer', {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [2],
      processorOptions: { inRate: 48000, ...policy },
    });
    this._node.port.onmessage = (e) => { if (e.data.type === 'stats') this._stats = e.data; };
    this._node.connect(destination);
    this._feed = new WorkletFeed(this._node.port);
  }

  push(planes, frames, rate, gapMs = 0, lateMs = 0) { this._feed.push(planes, frames, rate, gapMs, lateMs); }

  flush() { this._feed.flush(); }

  /** A new port into the processor, for a Worker to push on (the other end is returned). */
  feedPort() {
    const ch = new MessageChannel();
    this._node.port.postMessage({ type: 'feed', port: ch.port1 }, [ch.port1]);
    return ch.port2;
  }

  configure(opts) { this._node.port.postMessage({ type: 'config', ...opts }); }

  stats() { return this._stats; }

  close() {
    this._node.port.onmessage = null;
    this._node.disconnect();
  }
}

/** The processor's messages for audio, on its node's port or on a feedPort() from a Worker. */
export class WorkletFeed {
  constructor(port) { this._port = port; }

  /** gapMs: audio lost before this, that nothing concealed: its time is filled with a fade. */
  push(planes, frames, rate, gapMs = 0, lateMs = 0) {
    this._port.postMessage({ type: 'push', channels: planes, frames, rate, gapMs, lateMs }, planes.map((p) => p.buffer));
  }

  flush() { this._port.postMessage({ type: 'flush' }); }
}
