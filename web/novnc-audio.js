// novnc-audio.js: browser client for the novnc-audio daemon.
//
// One ES module, no dependencies, no build step. It connects to the daemon's WebSocket,
// decodes the frames (Opus through WebCodecs' AudioDecoder, or raw PCM) and plays them through
// an AudioWorklet that holds a small, bounded jitter buffer.
//
// Wire format (docs/CONTRACT.md): one binary message per frame:
//   u64 big-endian timestamp (ms since server start) | 1 codec byte (0x00 PCM s16le
//   interleaved, 0x01 Opus) | payload.
//
//   import { NovncAudio } from './novnc-audio.js';
//   const audio = NovncAudio.fromVncUrl('ws://host:6080/websockify');   // -> ws://host:6090/audio
//   document.addEventListener('click', () => audio.start(), { once: true });

const CODEC_PCM = 0x00;
const CODEC_OPUS = 0x01;
const HEADER_BYTES = 9;
const STORAGE_KEY = 'novnc-audio.enabled';
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const STATS_INTERVAL_MS = 250;

// ---------------------------------------------------------------------------------------------
// The AudioWorklet: a planar ring buffer per channel, a play/buffering state machine, bounded
// latency, linear resampling when the stream rate differs from the AudioContext rate.
// Kept as source text so the module stays a single file; loaded from a Blob URL.
const WORKLET_SOURCE = String.raw`
class NovncAudioJitterBuffer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.inRate = o.inRate || sampleRate;
    this.targetMs = o.targetMs || 60;
    // Adaptive part: each underrun raises the working target by 20 ms (keeping 40 ms below the
    // bound); 10 s without one lowers it by 10 ms again, down to the configured target.
    this.adaptive = o.adaptive !== false;
    this.extraMs = 0;
    this.calmFrames = 0;
    this.maxMs = o.maxMs || 200;
    this.allocate(this.inRate);
    this.playing = false;       // false: (re)buffering until target is reached
    this.everPlayed = false;
    this.underruns = 0;
    this.dropEvents = 0;
    this.droppedFrames = 0;
    this.renderedFrames = 0;
    this.pos = 0;               // fractional read offset (resampling)
    this.minBuf = Infinity;
    this.maxBuf = 0;
    this.quanta = 0;
    this.slackMin = Infinity;   // lowest fill over the current ~2 s window while playing
    this.slackFrames = 0;
    this.trimPending = false;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }
  allocate(rate) {
    // Room for a few times the latency bound; overflow is handled by the latency bound.
    this.cap = Math.max(4096, Math.ceil(rate * Math.max(2, this.maxMs * 4 / 1000)));
    this.bufs = [new Float32Array(this.cap), new Float32Array(this.cap)];
    this.r = 0;                 // read index
    this.n = 0;                 // frames stored
  }
  msToFrames(ms) { return Math.round(ms * this.inRate / 1000); }
  workTarget() { return this.targetMs + this.extraMs; }
  onMessage(m) {
    if (m.type === 'push') {
      if (m.rate && m.rate !== this.inRate) {
        this.inRate = m.rate;
        this.allocate(m.rate);
        this.playing = false;
        this.pos = 0;
      }
      this.push(m.channels, m.frames);
    } else if (m.type === 'flush') {
      this.r = 0; this.n = 0; this.pos = 0; this.playing = false; this.everPlayed = false;
      this.slackMin = Infinity; this.slackFrames = 0; this.trimPending = false;
    } else if (m.type === 'config') {
      if (m.targetMs) this.targetMs = m.targetMs;
      if (m.adaptive !== undefined) this.adaptive = m.adaptive;
      this.extraMs = 0;
      if (m.maxMs) this.maxMs = m.maxMs;
      if (this.msToFrames(this.maxMs) * 2 > this.cap) this.allocate(this.inRate);
    }
  }
  push(channels, frames) {
    const cap = this.cap;
    if (frames > cap) {                      // absurd chunk: keep its tail
      const skip = frames - cap;
      channels = channels.map((c) => c.subarray(skip));
      frames = cap;
    }
    if (this.n + frames > cap) {             // no room: drop the oldest
      const over = this.n + frames - cap;
      this.r = (this.r + over) % cap; this.n -= over;
      this.droppedFrames += over; this.dropEvents++;
    }
    let w = (this.r + this.n) % cap;
    const first = Math.min(frames, cap - w);
    for (let ch = 0; ch < 2; ch++) {
      const src = channels[Math.min(ch, channels.length - 1)];
      const dst = this.bufs[ch];
      dst.set(src.subarray(0, first), w);
      if (first < frames) dst.set(src.subarray(first, frames), 0);
    }
    this.n += frames;
    // Latency bound: above max, drop the oldest audio to get back to the target.
    const maxF = this.msToFrames(this.maxMs);
    if (this.n > maxF) {
      const drop = this.n - this.msToFrames(this.workTarget());
      this.r = (this.r + drop) % cap; this.n -= drop;
      this.droppedFrames += drop; this.dropEvents++;
    }
    if (this.trimPending) {
      this.trimPending = false;
      const excess = this.n - this.msToFrames(this.workTarget());
      if (this.playing && excess > 0) {
        this.r = (this.r + excess) % cap; this.n -= excess;
        this.droppedFrames += excess; this.dropEvents++;
      }
    }
    if (!this.playing && this.n >= this.msToFrames(this.workTarget())) {
      this.playing = true; this.everPlayed = true;
    }
    if (this.n > this.maxBuf) this.maxBuf = this.n;
  }
  process(inputs, outputs) {
    const out = outputs[0];
    const L = out[0], R = out[1] || out[0];
    const len = L.length;
    let written = 0;
    if (this.playing) {
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
        this.underruns++;
        if (this.adaptive) {
          this.extraMs = Math.max(0, Math.min(this.extraMs + 20, this.maxMs - 40 - this.targetMs));
          this.calmFrames = 0;
        }
        this.playing = false;
        // Short fade to avoid a click at the cut.
        const f = Math.min(written, 32);
        for (let i = 0; i < f; i++) { const g = i / f; L[written - f + i] *= 1 - g; R[written - f + i] *= 1 - g; }
      }
    }
    for (let i = written; i < len; i++) { L[i] = 0; R[i] = 0; }
    // Latency creep: if the buffer never went below target + 20 ms for ~2 s, that slack is
    // pure delay (left by a burst that stayed under the bound, or a slow audio clock): drop it.
    if (this.playing) {
      if (this.n < this.slackMin) this.slackMin = this.n;
      this.slackFrames += len;
      if (this.slackFrames >= 2 * sampleRate) {
        // Trimmed on the next arrival, back to the fill level playback starts at.
        if (this.slackMin > this.msToFrames(this.workTarget() + 20)) this.trimPending = true;
        this.slackMin = Infinity; this.slackFrames = 0;
      }
    } else {
      this.slackMin = Infinity; this.slackFrames = 0;
    }
    if (this.playing && this.extraMs > 0 && (this.calmFrames += len) >= 10 * sampleRate) {
      this.extraMs = Math.max(0, this.extraMs - 10);
      this.calmFrames = 0;
    }
    if (R !== L) for (let c = 2; c < out.length; c++) out[c].set(L);
    this.renderedFrames += len;
    if (this.n < this.minBuf) this.minBuf = this.n;
    if (++this.quanta >= 8) {
      this.quanta = 0;
      this.port.postMessage({
        type: 'stats',
        bufferedMs: this.n * 1000 / this.inRate,
        minBufferedMs: (this.minBuf === Infinity ? this.n : this.minBuf) * 1000 / this.inRate,
        maxBufferedMs: this.maxBuf * 1000 / this.inRate,
        underruns: this.underruns,
        droppedForLatency: this.dropEvents,
        droppedMs: this.droppedFrames * 1000 / this.inRate,
        renderedMs: this.renderedFrames * 1000 / sampleRate,
        playing: this.playing,
        targetMs: this.workTarget(),
      });
      this.minBuf = Infinity; this.maxBuf = this.n;
    }
    return true;
  }
}
registerProcessor('novnc-audio-jitter-buffer', NovncAudioJitterBuffer);
`;

function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

function storageGet(key) {
  try { return globalThis.localStorage ? globalThis.localStorage.getItem(key) : null; } catch { return null; }
}
function storageSet(key, value) {
  try { if (globalThis.localStorage) globalThis.localStorage.setItem(key, value); } catch { /* private mode */ }
}

function webCodecsMissingReason() {
  if (typeof globalThis.AudioDecoder === 'function') return null;
  if (globalThis.isSecureContext === false) {
    return 'WebCodecs (AudioDecoder) is unavailable because this page is not a secure context ' +
      '(plain http on a non-localhost address): Opus cannot be decoded; serve the page over https ' +
      'or use PCM';
  }
  return 'WebCodecs (AudioDecoder) is not supported by this browser: Opus cannot be decoded; use PCM';
}

export class NovncAudio extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.url            ws:// or wss:// URL of the daemon's stream (http(s) accepted)
   * @param {number} [opts.targetLatencyMs=60]  jitter buffer fill level to play at
   * @param {number} [opts.maxLatencyMs=200]    above this, audio is dropped back to the target
   * @param {'opus'|'pcm'|'auto'} [opts.codec='auto'] 'auto' uses Opus and falls back to PCM
   *        (asks the server with ?codec=pcm) where WebCodecs cannot decode it
   * @param {number} [opts.pcmSampleRate=48000] rate of PCM frames (server's --sample-rate)
   * @param {number} [opts.pcmChannels=2]       channels of PCM frames (server's --channels)
   * @param {boolean} [opts.adaptive=true]   raise the working target by 20 ms per underrun (up to
   *        maxLatencyMs - 40), lower it by 10 ms per calm 10 s; stats.targetMs shows it
   * @param {string} [opts.token]            the daemon's token (--token-file), added as ?token=
   * @param {number} [opts.volume=1]
   * @param {number|null} [opts.sampleRate=48000] AudioContext rate (null: the browser's default;
   *        the worklet then resamples)
   */
  constructor(opts = {}) {
    super();
    if (!opts.url) throw new TypeError('NovncAudio: url is required');
    const codec = opts.codec || 'auto';
    if (!['opus', 'pcm', 'auto'].includes(codec)) throw new TypeError(`NovncAudio: unknown codec ${codec}`);
    this.url = NovncAudio._wsUrl(String(opts.url));
    if (opts.token) {  // the daemon's --token-file secret, sent as ?token=
      const u = new URL(this.url);
      u.searchParams.set('token', opts.token);
      this.url = u.toString();
    }
    this.targetLatencyMs = clamp(Number(opts.targetLatencyMs ?? 60), 5, 5000);
    this.maxLatencyMs = Math.max(Number(opts.maxLatencyMs ?? 200), this.targetLatencyMs + 20);
    this.codec = codec;
    this.adaptive = opts.adaptive !== false;
    this.pcmSampleRate = Number(opts.pcmSampleRate || 48000);
    this.pcmChannels = Number(opts.pcmChannels || 2);
    // AudioContext rate: 48000 avoids resampling in the worklet; null = the browser's default.
    this.contextSampleRate = opts.sampleRate === undefined ? 48000 : opts.sampleRate;
    this._volume = clamp(Number(opts.volume ?? 1), 0, 1);
    this._muted = false;
    this._state = 'idle';
    this._reason = '';
    this._ws = null;
    this._ctx = null;
    this._node = null;
    this._gain = null;
    this._analyser = null;
    this._decoder = null;
    this._decoderErrors = 0;
    this._usePcm = codec === 'pcm';
    this._attempt = 0;
    this._retryTimer = null;
    this._statsTimer = null;
    this._gen = 0;               // bumps on stop/reconnect; stale callbacks check it
    this._lastTs = null;
    this._lastArrival = null;
    this._unlockHandler = null;
    this._timeBuf = null;
    this._freqBuf = null;
    this._stats = {
      frames: 0, bytesReceived: 0, underruns: 0, droppedForLatency: 0, droppedMs: 0,
      bufferedMs: 0, minBufferedMs: 0, maxBufferedMs: 0, latencyMs: 0, jitterMs: 0, targetMs: 0,
      codec: null, reconnects: 0, lastError: null, gaps: 0, decodeErrors: 0,
      audioContextState: null, sampleRate: null,
    };
  }

  // ------------------------------------------------------------------------------- URL helpers

  /** ws(s) URL from ws(s)/http(s)/relative input. */
  static _wsUrl(url) {
    const base = globalThis.location ? globalThis.location.href : undefined;
    const u = new URL(url, base);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    return u.toString();
  }

  /**
   * Audio URL for a noVNC connection: the daemon conventionally listens on the VNC websocket
   * port + 10 (6080 -> 6090). Accepts the websocket URL (ws://h:6080/websockify) or the noVNC
   * page URL (http://h:6080/vnc.html, with optional ?host=&port=&path= like noVNC itself).
   * Without an explicit port, or behind a path-based proxy (ws://h/some/prefix/websockify), the
   * audio is taken from the same origin at /audio.
   */
  static audioUrlFromVncUrl(vncUrl) {
    const base = globalThis.location ? globalThis.location.href : undefined;
    const u = new URL(vncUrl || base, base);
    const secure = u.protocol === 'wss:' || u.protocol === 'https:';
    const scheme = secure ? 'wss:' : 'ws:';
    let host = u.hostname;
    let port = u.port;
    let path = u.pathname;
    // noVNC page parameters (vnc.html?host=..&port=..&path=..), also in the #hash.
    const params = new URLSearchParams(u.search);
    if (u.hash.length > 1) for (const [k, v] of new URLSearchParams(u.hash.slice(1))) params.set(k, v);
    if (params.get('host')) host = params.get('host');
    if (params.get('port')) port = params.get('port');
    if (params.has('path')) path = '/' + params.get('path').replace(/^\/+/, '');
    if (params.has('encrypt')) {
      // noVNC's encrypt=1 means wss
      const enc = params.get('encrypt');
      if (enc === '1' || enc === 'true') return NovncAudio._buildAudioUrl('wss:', host, port, path);
      if (enc === '0' || enc === 'false') return NovncAudio._buildAudioUrl('ws:', host, port, path);
    }
    return NovncAudio._buildAudioUrl(scheme, host, port, path);
  }

  static _buildAudioUrl(scheme, host, port, path) {
    const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    // Standard noVNC paths (websockify on the root, or the bundled pages) mean "the VNC proxy
    // owns this port": the daemon is on port + 10. Anything with a longer path is a proxy that
    // routes by path, so the audio comes from the same origin.
    const standard = /^\/(websockify\/?|vnc(_lite|_auto)?\.html|index\.html)?$/.test(path || '/');
    const p = parseInt(port, 10);
    if (port && Number.isFinite(p) && standard) return `${scheme}//${h}:${p + 10}/audio`;
    return `${scheme}//${h}${port ? ':' + port : ''}/audio`;
  }

  /** A NovncAudio for the noVNC connection at vncUrl (see audioUrlFromVncUrl). */
  static fromVncUrl(vncUrl, opts = {}) {
    return new NovncAudio({ ...opts, url: NovncAudio.audioUrlFromVncUrl(vncUrl) });
  }

  /** True once a user has enabled sound on this origin (a previous gesture resumed audio). */
  static get soundEnabled() { return storageGet(STORAGE_KEY) === '1'; }

  // ------------------------------------------------------------------------------ public API

  get state() { return this._state; }
  get reason() { return this._reason; }
  get stats() { return { ...this._stats }; }
  get analyser() { return this._analyser; }
  get audioContext() { return this._ctx; }

  get volume() { return this._volume; }
  set volume(v) {
    this._volume = clamp(Number(v) || 0, 0, 1);
    this._applyGain();
  }
  get muted() { return this._muted; }
  set muted(m) {
    this._muted = !!m;
    this._applyGain();
  }

  /** RMS level (0..1) of the rendered output, for a meter. */
  get level() {
    const a = this._analyser;
    if (!a) return 0;
    if (!this._timeBuf || this._timeBuf.length !== a.fftSize) this._timeBuf = new Float32Array(a.fftSize);
    a.getFloatTimeDomainData(this._timeBuf);
    let s = 0;
    for (let i = 0; i < this._timeBuf.length; i++) s += this._timeBuf[i] * this._timeBuf[i];
    return Math.sqrt(s / this._timeBuf.length);
  }

  /** Frequency (Hz) of the strongest FFT bin of the rendered output, with its bin width. */
  dominantFrequency() {
    const a = this._analyser;
    if (!a) return { hz: 0, binHz: 0, db: -Infinity };
    if (!this._freqBuf || this._freqBuf.length !== a.frequencyBinCount) this._freqBuf = new Float32Array(a.frequencyBinCount);
    a.getFloatFrequencyData(this._freqBuf);
    let best = 1;
    for (let i = 2; i < this._freqBuf.length; i++) if (this._freqBuf[i] > this._freqBuf[best]) best = i;
    const binHz = this._ctx.sampleRate / a.fftSize;
    return { hz: best * binHz, binHz, db: this._freqBuf[best] };
  }

  /** Connect and play. Call it from a user gesture where possible (autoplay policies). */
  async start() {
    if (this._state === 'connecting' || this._state === 'playing' || this._state === 'reconnecting') return;
    this._gen++;
    this._attempt = 0;
    this._usePcm = this.codec === 'pcm';
    this._decoderErrors = 0;
    this._setState('connecting', 'starting');
    try {
      await this._ensureAudio();
    } catch (e) {
      this._fail(`cannot start audio output: ${e && e.message ? e.message : e}`);
      return;
    }
    if (this._state !== 'connecting') return;  // stopped meanwhile
    // Decide the codec before connecting.
    let fallbackNote = '';
    if (!this._usePcm) {
      const missing = webCodecsMissingReason() || await this._opusUnsupportedReason();
      if (missing) {
        if (this.codec === 'opus') {
          this._fail(missing + " (codec 'opus' was requested; use codec 'auto' or 'pcm')");
          return;
        }
        this._usePcm = true;
        fallbackNote = missing + '; falling back to PCM (?codec=pcm)';
        this._stats.lastError = missing;
        this._emitError(missing);
      }
    }
    if (this._state !== 'connecting') return;
    this._startStatsTimer();
    this._connect(fallbackNote || 'connecting');
  }

  /** Disconnect and go quiet. start() again resumes. */
  stop() {
    this._gen++;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._closeSocket(1000, 'stopped');
    this._closeDecoder();
    if (this._node) this._node.port.postMessage({ type: 'flush' });
    if (this._ctx && this._ctx.state === 'running') this._ctx.suspend().catch(() => {});
    this._stopStatsTimer();
    this._setState('stopped', 'stopped by the user');
  }

  // --------------------------------------------------------------------------------- internals

  _setState(state, reason = '') {
    if (state === this._state && reason === this._reason) return;
    this._state = state;
    this._reason = reason;
    this.dispatchEvent(new CustomEvent('statechange', { detail: { state, reason } }));
  }

  _emitError(message) {
    this._stats.lastError = message;
    this.dispatchEvent(new CustomEvent('error', { detail: { message } }));
  }

  _fail(message) {
    this._gen++;
    clearTimeout(this._retryTimer);
    this._closeSocket(1000, 'error');
    this._closeDecoder();
    this._stopStatsTimer();
    this._emitError(message);
    this._setState('error', message);
  }

  _applyGain() {
    if (!this._gain) return;
    const v = this._muted ? 0 : this._volume;
    const t = this._ctx.currentTime;
    this._gain.gain.cancelScheduledValues(t);
    this._gain.gain.setTargetAtTime(v, t, 0.015);
  }

  async _opusUnsupportedReason() {
    try {
      const r = await AudioDecoder.isConfigSupported({ codec: 'opus', sampleRate: 48000, numberOfChannels: 2 });
      return r && r.supported ? null : 'this browser\'s WebCodecs cannot decode Opus';
    } catch (e) {
      return `WebCodecs Opus check failed: ${e && e.message ? e.message : e}`;
    }
  }

  async _ensureAudio() {
    if (!this._ctx) {
      const AC = globalThis.AudioContext || globalThis.webkitAudioContext;
      if (!AC) throw new Error('Web Audio is not supported by this browser');
      if (!globalThis.AudioWorkletNode) {
        throw new Error('AudioWorklet is unavailable (needs a secure context or a newer browser)');
      }
      let ctx;
      try {
        ctx = this.contextSampleRate
          ? new AC({ sampleRate: this.contextSampleRate, latencyHint: 'interactive' })
          : new AC({ latencyHint: 'interactive' });
      } catch {
        ctx = new AC({ latencyHint: 'interactive' });  // worklet resamples
      }
      this._ctx = ctx;
      const blobUrl = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: 'text/javascript' }));
      try {
        await ctx.audioWorklet.addModule(blobUrl);
      } finally {
        URL.revokeObjectURL(blobUrl);
      }
      this._node = new AudioWorkletNode(ctx, 'novnc-audio-jitter-buffer', {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [2],
        processorOptions: {
          inRate: 48000, targetMs: this.targetLatencyMs, maxMs: this.maxLatencyMs, adaptive: this.adaptive,
        },
      });
      this._node.port.onmessage = (e) => this._onWorkletMessage(e.data);
      this._gain = ctx.createGain();
      this._analyser = ctx.createAnalyser();
      this._analyser.fftSize = 8192;
      this._analyser.smoothingTimeConstant = 0.5;
      this._node.connect(this._gain);
      this._gain.connect(this._analyser);
      this._analyser.connect(ctx.destination);
      this._gain.gain.value = this._muted ? 0 : this._volume;
      this._stats.sampleRate = ctx.sampleRate;
      ctx.addEventListener('statechange', () => {
        this._stats.audioContextState = ctx.state;
        if (ctx.state === 'running' && this._state !== 'stopped' && this._state !== 'idle') {
          storageSet(STORAGE_KEY, '1');
          // What piled up while suspended is stale: start again from the target latency.
          if (this._node) this._node.port.postMessage({ type: 'flush' });
          if (this._state === 'playing' && /blocked/.test(this._reason)) this._setState('playing', 'playing');
        }
      });
    } else {
      this._node.port.postMessage({
        type: 'config', targetMs: this.targetLatencyMs, maxMs: this.maxLatencyMs, adaptive: this.adaptive,
      });
    }
    if (this._ctx.state !== 'running') {
      // Try right away (works inside a user gesture or with a permissive autoplay policy) but
      // don't wait forever: browsers leave the promise pending until a gesture.
      const resumed = await Promise.race([
        this._ctx.resume().then(() => true, () => false),
        new Promise((r) => setTimeout(() => r(false), 300)),
      ]);
      if (!resumed || this._ctx.state !== 'running') this._armUnlock();
    }
    if (this._ctx.state === 'running') storageSet(STORAGE_KEY, '1');
    this._stats.audioContextState = this._ctx.state;
  }

  /** Autoplay policy: resume the AudioContext on the first click or key press on the page. */
  _armUnlock() {
    if (this._unlockHandler || typeof document === 'undefined') return;
    const handler = () => {
      if (!this._ctx) return;
      if (this._state === 'stopped' || this._state === 'idle') return;
      this._ctx.resume().then(() => {
        if (this._ctx.state === 'running') {
          storageSet(STORAGE_KEY, '1');
          this._disarmUnlock();
        }
      }, () => {});
    };
    this._unlockHandler = handler;
    for (const ev of ['click', 'keydown', 'pointerdown', 'touchend']) document.addEventListener(ev, handler, true);
  }

  _disarmUnlock() {
    if (!this._unlockHandler) return;
    for (const ev of ['click', 'keydown', 'pointerdown', 'touchend']) document.removeEventListener(ev, this._unlockHandler, true);
    this._unlockHandler = null;
  }

  _streamUrl() {
    const u = new URL(this.url);
    if (this._usePcm) u.searchParams.set('codec', 'pcm');
    else u.searchParams.delete('codec');
    return u.toString();
  }

  _connect(reason) {
    const gen = this._gen;
    let ws;
    try {
      ws = new WebSocket(this._streamUrl());
    } catch (e) {
      this._fail(`invalid audio URL ${this.url}: ${e && e.message ? e.message : e}`);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._gotFrame = false;
    this._lastTs = null;
    this._lastArrival = null;
    if (this._state !== 'reconnecting') this._setState('connecting', reason);
    ws.onopen = () => {
      if (gen !== this._gen) return;
      if (this._state !== 'reconnecting') this._setState('connecting', 'connected, waiting for audio');
    };
    ws.onmessage = (e) => {
      if (gen !== this._gen) return;
      if (typeof e.data === 'string') return;  // the stream is binary only
      this._onFrame(e.data);
    };
    ws.onerror = () => { /* the close event follows with the details */ };
    ws.onclose = (e) => {
      if (gen !== this._gen) return;
      this._ws = null;
      const why = `socket closed (code ${e.code}${e.reason ? ': ' + e.reason : ''})`;
      this._scheduleReconnect(why);
    };
  }

  _closeSocket(code, reason) {
    const ws = this._ws;
    this._ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try { ws.close(code, reason); } catch { /* already closed */ }
  }

  _scheduleReconnect(why) {
    this._gen++;
    this._closeSocket(1000, 'reconnecting');
    this._closeDecoder();
    if (this._node) this._node.port.postMessage({ type: 'flush' });
    clearTimeout(this._retryTimer);
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this._attempt);
    this._attempt = Math.min(this._attempt + 1, 10);
    this._stats.lastError = why;
    this._setState('reconnecting', `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (this._state !== 'reconnecting') return;
      this._stats.reconnects++;
      this._connect('reconnecting');
    }, delay);
  }

  _onFrame(buf) {
    const st = this._stats;
    st.bytesReceived += buf.byteLength;
    if (buf.byteLength < HEADER_BYTES) return;
    const dv = new DataView(buf);
    const ts = dv.getUint32(0) * 4294967296 + dv.getUint32(4);
    const codec = dv.getUint8(8);
    st.frames++;

    // Interarrival jitter (RFC 3550 style) and timestamp gaps.
    const now = performance.now();
    if (this._lastTs !== null) {
      const d = (now - this._lastArrival) - (ts - this._lastTs);
      st.jitterMs += (Math.abs(d) - st.jitterMs) / 16;
      if (ts - this._lastTs > 2 * (this._frameMs || 20) + 1) st.gaps++;
      if (ts > this._lastTs) this._frameMs = ts - this._lastTs;
    }
    this._lastTs = ts;
    this._lastArrival = now;

    if (!this._gotFrame) {
      this._gotFrame = true;
      this._attempt = 0;  // a working connection resets the backoff
      const suspended = this._ctx && this._ctx.state !== 'running';
      this._setState('playing', suspended
        ? 'Sound is blocked by the browser: click or press a key anywhere on the page to enable it'
        : 'playing');
    }

    const payload = new Uint8Array(buf, HEADER_BYTES);
    if (codec === CODEC_PCM) {
      st.codec = 'pcm';
      this._playPcm(payload);
    } else if (codec === CODEC_OPUS) {
      st.codec = 'opus';
      this._playOpus(payload, ts);
    }
  }

  _playPcm(bytes) {
    const chans = this.pcmChannels;
    const frames = Math.floor(bytes.byteLength / (2 * chans));
    if (!frames) return;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, frames * 2 * chans);
    const planes = [];
    for (let c = 0; c < chans; c++) planes.push(new Float32Array(frames));
    for (let i = 0, o = 0; i < frames; i++) {
      for (let c = 0; c < chans; c++, o += 2) planes[c][i] = dv.getInt16(o, true) / 32768;
    }
    this._push(planes, frames, this.pcmSampleRate);
  }

  _playOpus(bytes, ts) {
    // A server started with --codec opus may send Opus even when PCM was asked for: decode it
    // when we can, otherwise there is nothing to play.
    if (typeof globalThis.AudioDecoder !== 'function') return;
    if (!this._decoder || this._decoder.state === 'closed') {
      const gen = this._gen;
      try {
        this._decoder = new AudioDecoder({
          output: (data) => {
            if (gen !== this._gen) { data.close(); return; }
            this._onDecoded(data);
          },
          error: (e) => {
            if (gen !== this._gen) return;
            this._onDecoderError(e);
          },
        });
        this._decoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 2 });
      } catch (e) {
        this._onDecoderError(e);
        return;
      }
    }
    // Never let the decoder queue grow without bound (a stalled decoder adds latency).
    if (this._decoder.decodeQueueSize > 50) return;
    try {
      this._decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: ts * 1000, data: bytes }));
    } catch (e) {
      this._onDecoderError(e);
    }
  }

  _onDecoded(data) {
    try {
      const frames = data.numberOfFrames;
      const chans = data.numberOfChannels;
      const planes = [];
      for (let c = 0; c < chans; c++) {
        const p = new Float32Array(frames);
        data.copyTo(p, { planeIndex: c, format: 'f32-planar' });
        planes.push(p);
      }
      this._push(planes, frames, data.sampleRate);
    } catch (e) {
      this._onDecoderError(e);
    } finally {
      data.close();
    }
  }

  _onDecoderError(e) {
    const msg = `Opus decoder error: ${e && e.message ? e.message : e}`;
    this._stats.decodeErrors++;
    this._decoderErrors++;
    this._emitError(msg);
    this._closeDecoder();
    if (this._decoderErrors >= 3) {
      if (this.codec === 'auto') {
        this._usePcm = true;
        this._scheduleReconnect(`${msg}; switching to PCM (?codec=pcm)`);
        this._attempt = 0;
      } else {
        this._fail(msg);
      }
    }
  }

  _closeDecoder() {
    const d = this._decoder;
    this._decoder = null;
    if (d && d.state !== 'closed') { try { d.close(); } catch { /* ignore */ } }
  }

  _push(planes, frames, rate) {
    if (!this._node) return;
    this._node.port.postMessage({ type: 'push', channels: planes, frames, rate }, planes.map((p) => p.buffer));
  }

  _onWorkletMessage(m) {
    if (m.type !== 'stats') return;
    const st = this._stats;
    st.bufferedMs = m.bufferedMs;
    st.minBufferedMs = m.minBufferedMs;
    st.maxBufferedMs = m.maxBufferedMs;
    st.underruns = m.underruns;
    st.droppedForLatency = m.droppedForLatency;
    st.droppedMs = m.droppedMs;
    st.renderedMs = m.renderedMs;
    st.buffering = !m.playing;
    st.targetMs = m.targetMs;
  }

  _startStatsTimer() {
    this._stopStatsTimer();
    this._statsTimer = setInterval(() => {
      const st = this._stats;
      const ctx = this._ctx;
      const outMs = ctx ? ((ctx.baseLatency || 0) + (ctx.outputLatency || 0)) * 1000 : 0;
      const decMs = this._decoder ? this._decoder.decodeQueueSize * (this._frameMs || 20) : 0;
      st.latencyMs = st.bufferedMs + outMs + decMs;
      st.audioContextState = ctx ? ctx.state : null;
      this.dispatchEvent(new CustomEvent('stats', { detail: this.stats }));
    }, STATS_INTERVAL_MS);
  }

  _stopStatsTimer() {
    clearInterval(this._statsTimer);
    this._statsTimer = null;
  }
}

export default NovncAudio;
