// output/worklet.js: plays decoded audio through an AudioWorklet that holds the jitter buffer on
// the audio thread (a planar ring per channel, linear resampling when the stream rate differs
// from the context rate). Main-thread stalls (noVNC drawing) do not starve it.
//
// Only where the context has `audioWorklet`: secure contexts (https, localhost). Chromium still
// defines the AudioWorkletNode global on plain-http pages, so check the context, not the global.
//
// Output interface (shared with output/scheduled.js):
//   static available(ctx) -> reason string it cannot be used, or null
//   static async create(ctx, destination, { targetMs, maxMs, adaptive }) -> output
//   output.name, push(planes, frames, rate), flush(), configure(opts), stats() -> {...}, close()
import { LatencyPolicy } from './latency-policy.js';

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
    this.dropEvents = 0;
    this.droppedFrames = 0;
    this.renderedFrames = 0;
    this.pos = 0;               // fractional read offset (resampling)
    this.minBuf = Infinity;
    this.maxBuf = 0;
    this.quanta = 0;
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
  drop(frames) {
    this.r = (this.r + frames) % this.cap; this.n -= frames;
    this.droppedFrames += frames; this.dropEvents++;
  }
  onMessage(m) {
    if (m.type === 'push') {
      if (m.rate && m.rate !== this.inRate) {
        this.inRate = m.rate;
        this.allocate(m.rate);
        this.policy.reset();
        this.pos = 0;
      }
      this.push(m.channels, m.frames);
    } else if (m.type === 'flush') {
      this.r = 0; this.n = 0; this.pos = 0;
      this.policy.reset();
    } else if (m.type === 'config') {
      this.policy.configure(m);
      if (this.frames(this.policy.maxMs) * 2 > this.cap) this.allocate(this.inRate);
    }
  }
  push(channels, frames) {
    const cap = this.cap;
    if (frames > cap) {                      // absurd chunk: keep its tail
      const skip = frames - cap;
      channels = channels.map((c) => c.subarray(skip));
      frames = cap;
    }
    if (this.n + frames > cap) this.drop(this.n + frames - cap);  // no room: drop the oldest
    const w = (this.r + this.n) % cap;
    const first = Math.min(frames, cap - w);
    for (let ch = 0; ch < 2; ch++) {
      const src = channels[Math.min(ch, channels.length - 1)];
      const dst = this.bufs[ch];
      dst.set(src.subarray(0, first), w);
      if (first < frames) dst.set(src.subarray(first, frames), 0);
    }
    this.n += frames;
    const excess = this.frames(this.policy.excessAfterPush(this.ms(this.n)));
    if (excess > 0) this.drop(Math.min(excess, this.n));
    this.policy.shouldStart(this.ms(this.n));
    if (this.n > this.maxBuf) this.maxBuf = this.n;
  }
  process(inputs, outputs) {
    const out = outputs[0];
    const L = out[0], R = out[1] || out[0];
    const len = L.length;
    let written = 0;
    if (this.policy.playing) {
      const cap = this.cap, bl = this.bufs[0], br = this.bufs[1];
      if (this.inRate === sampleRate) {
        const k = Math.min(len, this.n);
        for (let i = 0; i < k; i++) {
          const j = (this.r + i) % cap;
          L[i] = bl[j]; R[i] = br[j];
        }
        this.r = (this.r + k) % cap; this.n -= k; written = k;
      } else {
        // Linear interpolation between buffer[r] and buffer[r+1] at offset pos.
        const step = this.inRate / sampleRate;
        let pos = this.pos, i = 0;
        while (i < len && this.n >= 2) {
          const j0 = this.r, j1 = (this.r + 1) % cap;
          L[i] = bl[j0] + (bl[j1] - bl[j0]) * pos;
          R[i] = br[j0] + (br[j1] - br[j0]) * pos;
          i++;
          pos += step;
          const adv = Math.floor(pos);
          if (adv) { pos -= adv; const a = Math.min(adv, this.n); this.r = (this.r + a) % cap; this.n -= a; }
        }
        this.pos = pos; written = i;
      }
      if (written < len) {                  // ran dry: count it, rebuffer to the target
        this.policy.underrun();
        // Short fade to avoid a click at the cut.
        const f = Math.min(written, 32);
        for (let i = 0; i < f; i++) { const g = i / f; L[written - f + i] *= 1 - g; R[written - f + i] *= 1 - g; }
      }
    }
    for (let i = written; i < len; i++) { L[i] = 0; R[i] = 0; }
    this.policy.played(len * 1000 / sampleRate, this.ms(this.n));
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
        droppedForLatency: this.dropEvents,
        droppedMs: this.ms(this.droppedFrames),
        renderedMs: this.renderedFrames * 1000 / sampleRate,
        playing: this.policy.playing,
        targetMs: this.policy.workTargetMs,
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
    const source = `${LatencyPolicy.toString()}\n${PROCESSOR_SOURCE}`;
    const blobUrl = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    try {
      await ctx.audioWorklet.addModule(blobUrl);
    } finally {
      URL.revokeObjectURL(blobUrl);
    }
    return new WorkletOutput(ctx, destination, opts);
  }

  constructor(ctx, destination, { targetMs, maxMs, adaptive }) {
    this.name = 'worklet';
    this._stats = { bufferedMs: 0, minBufferedMs: 0, maxBufferedMs: 0, underruns: 0, droppedForLatency: 0,
      droppedMs: 0, renderedMs: 0, playing: false, targetMs };
    this._node = new AudioWorkletNode(ctx, 'novnc-audio-jitter-buffer', {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [2],
      processorOptions: { inRate: 48000, targetMs, maxMs, adaptive },
    });
    this._node.port.onmessage = (e) => { if (e.data.type === 'stats') this._stats = e.data; };
    this._node.connect(destination);
  }

  push(planes, frames, rate) {
    this._node.port.postMessage({ type: 'push', channels: planes, frames, rate }, planes.map((p) => p.buffer));
  }

  flush() { this._node.port.postMessage({ type: 'flush' }); }

  configure(opts) { this._node.port.postMessage({ type: 'config', ...opts }); }

  stats() { return this._stats; }

  close() {
    this._node.port.onmessage = null;
    this._node.disconnect();
  }
}
