// novnc-audio.js: browser client for the novnc-audio daemon.
//
// ES modules, no dependencies, no build step (noVNC style). This file holds the public class:
// the connection, reconnection, the audio graph (volume, mute, level meter) and the stats. The
// stages live beside it, one file per concern behind a small interface, chosen by what the
// browser offers (select.js):
//   receiver.js                 the wire format, holes, arrival lateness, the decoder
//   stream-worker.js            the receiver in a Worker, feeding the worklet (transport 'worker')
//   decoders/webcodecs-opus.js  Opus via WebCodecs (secure contexts)
//   decoders/wasm-opus.js       Opus via libopus in WebAssembly (plain-http pages), loaded lazily
//   decoders/pcm.js             raw PCM frames
//   output/worklet.js           AudioWorklet jitter buffer (secure contexts)
//   output/scheduled.js         AudioBufferSourceNodes on the context timeline (everywhere)
//   output/latency-policy.js    the jitter-buffer rules both outputs share
//   output/arrival-jitter.js    how late frames arrive: the buffer's target
//   audio-url.js, gesture.js    where the stream is; starting on the first user gesture
//   microphone.js               the way back: the browser's microphone to the daemon's /mic
//
// Wire format (docs/CONTRACT.md): one binary message per frame:
//   u64 big-endian timestamp (ms since server start) | 1 codec byte (0x00 PCM s16le
//   interleaved, 0x01 Opus) | payload.
//
//   import { NovncAudio } from './novnc-audio.js';
//   const audio = NovncAudio.fromVncUrl(location.href);   // http://h:6080/vnc.html -> ws://h:6090/audio
//   audio.startOnFirstGesture();                          // or audio.start() from a click handler
import { audioUrlFromVncUrl, toWsUrl } from './audio-url.js';
import { onGesture } from './gesture.js';
import { engineOf, enginePullS, pickContextRate, pickFloorMs, pickLatencyHint, pickOutput, pickStartMargin, pickTransport, readsOutputPath, startsBlind } from './select.js';
import { WorkletOutput } from './output/worklet.js';
import { ScheduledOutput } from './output/scheduled.js';
import { Microphone, micUrlFromAudioUrl } from './microphone.js';
import { StreamReceiver, busyTimer, closeSocketQuietly } from './receiver.js';

const WORKER_URL = new URL('./stream-worker.js', import.meta.url);
const STORAGE_KEY = 'novnc-audio.enabled';
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const STATS_INTERVAL_MS = 250;
const MAIN_THREAD_WINDOW_S = 5;       // stats.mainThreadMsPerS is over this much audio
const OPUS_LOOKAHEAD_MS = 2.5;        // the daemon's encoder (restricted low delay)
const REPORT_INTERVAL_MS = 5000;      // playout figures to the daemon, as a text message
// The network term (networkTerm) comes from the echoed round trips of the playout reports over
// this window. Four reports: a link that slows or recovers is followed within about 20 s.
const ECHO_WINDOW_MS = 20000;
const MAX_AUDIO_DELAY_MS = 2000;
const BLIND_FLOOR_MS = 40;      // the buffer's floor where the engine hides its output path
const SILENT_REASON = 'connected; the desktop is silent';
const BLOCKED_REASON = 'Sound is blocked by the browser: click or press a key anywhere on the page to enable it';

const OUTPUTS = { worklet: WorkletOutput, scheduled: ScheduledOutput };

function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }
function message(e) { return e && e.message ? e.message : String(e); }

function storageGet(key) {
  try { return globalThis.localStorage ? globalThis.localStorage.getItem(key) : null; } catch { return null; }
}
function storageSet(key, value) {
  try { if (globalThis.localStorage) globalThis.localStorage.setItem(key, value); } catch { /* private mode */ }
}

/** Why this browser cannot play any sound, or null. */
export function noAudioReason() {
  if (globalThis.AudioContext || globalThis.webkitAudioContext) return null;
  return 'this browser has no Web Audio (AudioContext): sound cannot play here. Use a current Firefox, ' +
    'Chromium/Chrome/Edge or Safari, and check that audio is not disabled by a policy or an extension';
}

export class NovncAudio extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.url            ws:// or wss:// URL of the daemon's stream (http(s) and
   *        relative URLs accepted)
   * @param {number} [opts.targetLatencyMs=0]  a minimum for the jitter buffer's target (its
   *        low-water fill); 0: the target follows the measured arrival jitter alone, above the
   *        engine's floor (stats.targetMs shows it)
   * @param {number} [opts.maxLatencyMs=500]    the buffer never holds more: above it (or twice
   *        the target, or target + 80 ms, whichever is lower) a burst is dropped back to the target
   * @param {number} [opts.audioDelayMs=0]      extra delay, to line sound up with the picture
   *        (lip sync); also a property
   * @param {'opus'|'pcm'|'auto'} [opts.codec='auto'] 'auto' uses Opus (WebCodecs, else the
   *        WebAssembly decoder) and falls back to PCM (?codec=pcm) only where neither works
   * @param {'auto'|'webcodecs'|'wasm'} [opts.decoder='auto'] which Opus decoder
   * @param {boolean} [opts.wasmWorker=false] run the WebAssembly decoder in a Web Worker. Off by
   *        default, by measurement (stats.mainThreadMsPerS on a plain-http page, 2026-12-02):
   *        Chromium 10.6-13.8 ms per s of audio decoding on the main thread, 11.8-19.0 with the
   *        worker; Firefox 4.0-5.4 against 9.5-14.0. Decoding a 20 ms frame costs ~0.15 ms, less
   *        than the extra task per frame that the worker's reply costs the main thread.
   * @param {'auto'|'worklet'|'scheduled'} [opts.output='auto'] AudioWorklet where the context
   *        has one, else AudioBufferSourceNodes scheduled on the context timeline; WebKitGTK
   *        schedules even where it has a worklet (measured better there: select.js)
   * @param {'auto'|'main'|'worker'} [opts.transport='auto'] where the stream is received and
   *        decoded: 'worker' in a dedicated Worker that feeds the AudioWorklet directly, so the
   *        page's main thread (noVNC drawing) cannot hold the audio back; 'main' on the page's
   *        main thread. 'auto': the worker where the output is the worklet, in Chromium
   *        (select.js pickTransport: Firefox deadlocked with it); the scheduled output needs the
   *        main thread anyway
   * @param {number} [opts.pcmSampleRate=48000] rate of PCM frames (server's --sample-rate)
   * @param {number} [opts.pcmChannels=2]       channels of PCM frames (server's --channels)
   * @param {boolean} [opts.adaptive=true]   the target follows the measured arrival jitter (p99
   *        of how late frames came over the last 5 s); false: floor and targetLatencyMs only
   * @param {boolean} [opts.report=true]     send the playout figures to the daemon every 5 s (a
   *        small JSON text message on the stream socket; the daemon shows them in /stats)
   * @param {string} [opts.token]            the daemon's token (--token-file), added as ?token=
   * @param {number} [opts.volume=1]
   * @param {number|null} [opts.sampleRate] AudioContext rate (null: the device's own, and the
   *        output resamples). Default by engine, measured (select.js pickContextRate): the
   *        device's in Chromium, 48000 elsewhere
   * @param {'interactive'|'balanced'|'playback'|number} [opts.latencyHint] the AudioContext's
   *        latencyHint. Default by engine and output, measured (select.js pickLatencyHint): in
   *        Chromium 0 (the smallest output buffer) for the scheduled output, 'interactive' for
   *        the worklet; 'interactive' elsewhere
   * @param {number} [opts.blindFloorMs=40] the buffer's floor where the engine reports no output
   *        latency (WebKitGTK)
   * @param {'engine'|'quantum'} [opts.floor='engine'] the worklet's floor: the engine's base
   *        latency + a render quantum, or a quantum + 1 ms. 'quantum' renders 11-15 ms sooner
   *        (Chromium secure 26-38 ms instead of 41-52) but a 10-minute Chromium run with it had
   *        36 underruns (3.6 a minute, on a machine still busy with other jobs): not the default
   * @param {number} [opts.floorMs] the buffer's floor (ms) instead of the one derived from the
   *        engine's figures and select.js engineFloorMs (experiments; the engines harness
   *        compares settings with it)
   * @param {number} [opts.startMarginMs] added to the buffer's target for the first 4 s after the
   *        sound starts (a cautious start). Default by engine, measured (select.js
   *        pickStartMargin): 80 in WebKitGTK, 0 elsewhere
   * @param {boolean} [opts.jitterPeaks=false] the target also covers recurring late-frame peaks
   *        (arrival-jitter.js), not only the 5 s percentile. Off by measurement (2026-12-02,
   *        paired runs on a loaded machine): WebKitGTK plain rendered 31-33 -> 96-107 ms, Firefox
   *        plain 42 -> 52 ms, with no fewer underruns
   */
  constructor(opts = {}) {
    super();
    if (!opts.url) throw new TypeError('NovncAudio: url is required');
    const codec = opts.codec || 'auto';
    if (!['opus', 'pcm', 'auto'].includes(codec)) throw new TypeError(`NovncAudio: unknown codec ${codec}`);
    const decoder = opts.decoder || 'auto';
    if (!['auto', 'webcodecs', 'wasm'].includes(decoder)) throw new TypeError(`NovncAudio: unknown decoder ${decoder}`);
    const output = opts.output || 'auto';
    if (!['auto', 'worklet', 'scheduled'].includes(output)) throw new TypeError(`NovncAudio: unknown output ${output}`);
    const transport = opts.transport || 'auto';
    if (!['auto', 'main', 'worker'].includes(transport)) throw new TypeError(`NovncAudio: unknown transport ${transport}`);
    this.transportChoice = transport;
    this.url = toWsUrl(String(opts.url));
    if (opts.token) {
      const u = new URL(this.url);
      u.searchParams.set('token', opts.token);
      this.url = u.toString();
    }
    this.targetLatencyMs = clamp(Number(opts.targetLatencyMs ?? 0) || 0, 0, 5000);
    this.maxLatencyMs = Math.max(Number(opts.maxLatencyMs ?? 500), this.targetLatencyMs + 40);
    this._audioDelayMs = clamp(Number(opts.audioDelayMs ?? 0) || 0, 0, MAX_AUDIO_DELAY_MS);
    this.report = opts.report !== false;
    this.codec = codec;
    this.decoderChoice = decoder;
    this.outputChoice = output;
    this.wasmWorker = !!opts.wasmWorker;
    this.adaptive = opts.adaptive !== false;
    this.pcmSampleRate = Number(opts.pcmSampleRate || 48000);
    this.pcmChannels = Number(opts.pcmChannels || 2);
    this.engine = engineOf(globalThis.navigator ? globalThis.navigator.userAgent : '');
    this.contextSampleRate = pickContextRate({ sampleRate: opts.sampleRate, engine: this.engine });
    this._latencyHintOption = opts.latencyHint;
    this.latencyHint = null;    // the context's, once made (_ensureContext)
    this.startMarginMs = pickStartMargin({ startMarginMs: opts.startMarginMs, engine: this.engine });
    this.blindFloorMs = Number(opts.blindFloorMs ?? BLIND_FLOOR_MS);
    this.floorMode = opts.floor === 'quantum' ? 'quantum' : 'engine';
    this.floorMs = opts.floorMs === undefined || opts.floorMs === null ? null : Math.max(0, Number(opts.floorMs) || 0);
    this._volume = clamp(Number(opts.volume ?? 1), 0, 1);
    this._muted = false;
    this._state = 'idle';
    this._reason = '';
    this._ws = null;
    this._ctx = null;
    this._output = null;
    this._gain = null;
    this._analyser = null;
    this._rxOpts = { jitterPeaks: opts.jitterPeaks === true, pcmSampleRate: this.pcmSampleRate,
      pcmChannels: this.pcmChannels, wasmWorker: this.wasmWorker };
    this._rx = null;             // the StreamReceiver on this thread (transport 'main')
    this._worker = null;         // the stream's Worker (transport 'worker')
    this._workerConn = 0;        // the worker's connection that is current
    this._remote = null;         // the worker's last figures ({ type: 'stats' })
    this._decoderName = null;
    this._decoderErrors = 0;
    this._usePcm = codec === 'pcm';
    this._attempt = 0;
    this._retryTimer = null;
    this._statsTimer = null;
    this._gen = 0;               // bumps on stop/reconnect; stale callbacks check it
    this._wsOpen = false;
    this._disarmUnlock = null;
    this._disarmFirstGesture = null;
    this._timeBuf = null;
    this._freqBuf = null;
    this._mt = { busyMs: 0, audioS0: 0, busyMs0: 0 };
    // Runs fn on the main thread, adding its time to stats.mainThreadMsPerS (not nested twice).
    // performance.now() is coarsened to 100 us (Chromium) or 1 ms (Firefox) on pages that are not
    // cross-origin isolated, unbiased: the sum over many frames is right, one frame's figure is not.
    this._timed = busyTimer((ms) => { this._mt.busyMs += ms; });
    this._sentJitterMs = null;
    this._openStart = null;
    this._networkMs = null;
    this._echoes = [];                  // { at, rttMs } of the echoed reports, ECHO_WINDOW_MS
    this._position = null;        // { ms, at }: stream position at a performance.now()
    this._lastReport = 0;
    this._stats = {
      frames: 0, bytesReceived: 0, underruns: 0, droppedForLatency: 0, droppedMs: 0,
      bufferedMs: 0, minBufferedMs: 0, maxBufferedMs: 0, queueMs: 0, latencyMs: 0, jitterMs: 0, targetMs: 0,
      lateP99Ms: 0, latePeakMs: 0, lateStallMs: 0, networkMs: null, networkSource: null, frameMs: null, outputLatencyMs: 0, outputLatencySource: null,
      outputLatencyKnown: false,
      floorMs: 0, speed: 1, stretchedMs: 0, audioDelayMs: 0, spurts: 0,
      codec: null, decoder: null, output: null, transport: null, mainThreadMsPerS: null, workerMsPerS: null, concealedFrames: 0,
      reconnects: 0, lastError: null, gaps: 0, decodeErrors: 0,
      audioContextState: null, sampleRate: null, latencyHint: null, renderedMs: 0, buffering: true,
    };
  }

  // ------------------------------------------------------------------------------- URL helpers

  /** ws(s) URL from ws(s)/http(s)/relative input. */
  static _wsUrl(url) { return toWsUrl(url); }

  /** See audio-url.js: port + 10 for standard noVNC URLs, /audio on the same origin otherwise. */
  static audioUrlFromVncUrl(vncUrl) { return audioUrlFromVncUrl(vncUrl); }

  /** A NovncAudio for the noVNC connection at vncUrl (see audioUrlFromVncUrl). */
  static fromVncUrl(vncUrl, opts = {}) {
    return new NovncAudio({ ...opts, url: audioUrlFromVncUrl(vncUrl) });
  }

  /** True once a user has enabled sound on this origin (a previous gesture resumed audio). */
  static get soundEnabled() { return storageGet(STORAGE_KEY) === '1'; }

  // ------------------------------------------------------------------------------ public API

  get state() { return this._state; }
  get reason() { return this._reason; }
  get stats() { this._syncReceived(); return { ...this._stats }; }
  get analyser() { return this._analyser; }
  get audioContext() { return this._ctx; }
  /** True while the stream runs but the browser holds the sound until a user gesture. */
  get blocked() {
    return ['connecting', 'playing', 'reconnecting'].includes(this._state) && !!this._ctx && this._ctx.state !== 'running';
  }

  /**
   * Capture to sound, in ms (= stats.latencyMs): the daemon's frame and encoder lookahead, the
   * network (networkTerm: from the echoed round trips of the playout reports; the WebSocket
   * handshake until the first echo) plus how late frames come, the jitter
   * buffer, the decoder and the engine's output path (stats.outputLatencySource says from what).
   */
  get playoutDelayMs() { return this._stats.latencyMs; }

  /** The server timestamp (ms, the wire's clock) of the sound coming out now, or null. */
  get streamPositionMs() {
    const p = this._position;
    if (!p || this._state !== 'playing') return null;
    return p.ms + (performance.now() - p.at);
  }

  /** Extra delay (ms) added to the sound, to line it up with the picture. */
  get audioDelayMs() { return this._audioDelayMs; }
  set audioDelayMs(v) {
    const was = this._audioDelayMs;
    this._audioDelayMs = clamp(Number(v) || 0, 0, MAX_AUDIO_DELAY_MS);
    if (!this._output) return;
    this._output.configure({ delayMs: this._audioDelayMs, maxMs: this._maxMs() });
    // More delay at 1 % slower playout would take many seconds: restart at the new target (the
    // sound fades out and in). Less delay drains by itself (the backlog is cut out a pitch period
    // or so at a time).
    if (this._audioDelayMs > was + 20) this._output.flush();
  }

  _maxMs() { return this.maxLatencyMs + this._audioDelayMs; }

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

  /**
   * Connect and play. Call it from a user gesture where possible (autoplay policies): the
   * AudioContext is created and resumed synchronously, before the first await, so the gesture
   * still counts (Safari requires that).
   */
  start() {
    if (this._state === 'connecting' || this._state === 'playing' || this._state === 'reconnecting') {
      this._resumeContext();
      return Promise.resolve();
    }
    this._gen++;
    this._attempt = 0;
    this._usePcm = this.codec === 'pcm';
    this._decoderErrors = 0;
    this._setState('connecting', 'starting');
    try {
      this._ensureContext();
    } catch (e) {
      this._fail(message(e));
      return Promise.resolve();
    }
    const resumed = this._resumeContext();
    return this._startAsync(this._gen, resumed);
  }

  /**
   * Start (or resume a suspended context) on the user's first gesture anywhere on the page:
   * pointerdown, mousedown, keydown, touchend or click, seen on `target` in the capture phase,
   * so noVNC's canvas cannot swallow it (see gesture.js). Returns a function that cancels it.
   */
  startOnFirstGesture(target = globalThis.window) {
    if (this._disarmFirstGesture) this._disarmFirstGesture();
    const disarm = onGesture(() => {
      disarm();
      if (this._disarmFirstGesture === disarm) this._disarmFirstGesture = null;
      if (this._state === 'idle' || this._state === 'stopped' || this._state === 'error') this.start();
      else this._resumeContext();
    }, target);
    this._disarmFirstGesture = disarm;
    return disarm;
  }

  /** Disconnect and go quiet. start() again resumes. */
  stop() {
    this._gen++;
    if (this._disarmFirstGesture) { this._disarmFirstGesture(); this._disarmFirstGesture = null; }
    this._unarmUnlock();
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._closeSocket(1000, 'stopped');
    this._closeDecoders();
    if (this._output) this._output.flush();
    if (this._ctx && this._ctx.state === 'running') this._ctx.suspend().catch(() => {});
    this._stopStatsTimer();
    this._setState('stopped', 'stopped by the user');
  }

  // -------------------------------------------------------------------------------- microphone

  /**
   * Speaks into the remote desktop's microphone (the daemon runs with --microphone): asks for
   * the browser's microphone (call it from a click: the permission prompt needs a gesture) and
   * sends it to /mic beside the stream. Needs a secure context (https:// or localhost).
   * Resolves once live; rejects with the reason. 'microphone' events carry { state, reason }.
   * @param {object} [opts]  { url, codec: 'auto'|'opus'|'pcm' } (default: /mic beside the stream)
   */
  startMicrophone(opts = {}) {
    if (!this._mic) {
      this._mic = new Microphone({ url: opts.url || micUrlFromAudioUrl(this.url), codec: opts.codec });
      this._mic.addEventListener('state', (e) => this.dispatchEvent(new CustomEvent('microphone', { detail: e.detail })));
    }
    return this._mic.start();
  }

  stopMicrophone() {
    if (this._mic) this._mic.stop();
  }

  /** The Microphone (microphone.js: state, reason, stats, 'frame' events), once started. */
  get microphone() { return this._mic || null; }

  // --------------------------------------------------------------------------------- internals

  async _startAsync(gen, resumed) {
    let note = '';
    try {
      await this._ensureOutput();
      if (gen !== this._gen) return;
      this._ensureTransport();
      note = await this._ensureDecoder();
    } catch (e) {
      if (gen === this._gen) this._fail(message(e));
      return;
    }
    if (gen !== this._gen) return;
    // Browsers leave resume() pending until a gesture: don't wait for it, say so.
    const running = await Promise.race([resumed, new Promise((r) => setTimeout(() => r(false), 300))]);
    if (gen !== this._gen) return;
    if (!running || this._ctx.state !== 'running') this._armUnlock();
    else storageSet(STORAGE_KEY, '1');
    this._stats.audioContextState = this._ctx.state;
    this._startStatsTimer();
    this._connect(note || 'connecting');
  }

  _setState(state, reason = '') {
    if (state === this._state && reason === this._reason) return;
    this._state = state;
    this._reason = reason;
    this.dispatchEvent(new CustomEvent('statechange', { detail: { state, reason } }));
  }

  _emitError(msg) {
    this._stats.lastError = msg;
    this.dispatchEvent(new CustomEvent('error', { detail: { message: msg } }));
  }

  _fail(msg) {
    this._gen++;
    clearTimeout(this._retryTimer);
    this._closeSocket(1000, 'error');
    this._closeDecoders();
    this._stopStatsTimer();
    this._emitError(msg);
    this._setState('error', msg);
  }

  _applyGain() {
    if (!this._gain) return;
    const v = this._muted ? 0 : this._volume;
    const t = this._ctx.currentTime;
    this._gain.gain.cancelScheduledValues(t);
    this._gain.gain.setTargetAtTime(v, t, 0.015);
  }

  /** The AudioContext and the graph after the output: gain (volume, mute) -> analyser -> out. */
  _ensureContext() {
    if (this._ctx) return;
    const why = noAudioReason();
    if (why) throw new Error(why);
    const AC = globalThis.AudioContext || globalThis.webkitAudioContext;
    // The hint depends on the output, which needs the context: whether the worklet can run is
    // known before (audioWorklet is on the prototype only in secure contexts).
    const worklet = this.outputChoice !== 'scheduled' && 'audioWorklet' in AC.prototype;
    this.latencyHint = pickLatencyHint({ latencyHint: this._latencyHintOption, engine: this.engine, worklet });
    let ctx;
    try {
      ctx = this.contextSampleRate
        ? new AC({ sampleRate: this.contextSampleRate, latencyHint: this.latencyHint })
        : new AC({ latencyHint: this.latencyHint });
    } catch {
      ctx = new AC();  // a rate the device refuses, or an old webkitAudioContext: the output resamples
    }
    this._ctx = ctx;
    this._gain = ctx.createGain();
    this._analyser = ctx.createAnalyser();
    this._analyser.fftSize = 8192;
    this._analyser.smoothingTimeConstant = 0.5;
    this._gain.connect(this._analyser);
    this._analyser.connect(ctx.destination);
    this._gain.gain.value = this._muted ? 0 : this._volume;
    this._stats.sampleRate = ctx.sampleRate;
    this._stats.latencyHint = this.latencyHint;
    ctx.addEventListener('statechange', () => this._onContextState());
    // A context the browser suspended (tab hidden, iOS interruption) comes back when the page
    // is visible again; where that needs a gesture, the unlock listener catches the next one.
    if (typeof document !== 'undefined') {
      document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'visible' && this._active()) this._resumeContext();
      });
    }
  }

  _active() { return ['connecting', 'playing', 'reconnecting'].includes(this._state); }

  _onContextState() {
    const ctx = this._ctx;
    this._stats.audioContextState = ctx.state;
    if (!this._active()) return;
    if (ctx.state === 'running') {
      storageSet(STORAGE_KEY, '1');
      this._unarmUnlock();
      // What piled up while suspended is stale: start again from the target latency.
      if (this._output) this._output.flush();
      if (this._state === 'playing' && this._reason === BLOCKED_REASON) this._setState('playing', 'playing');
    } else {
      // 'suspended' by the browser or 'interrupted' (Safari): resume on the next gesture.
      this._armUnlock();
    }
  }

  /** resume(), resolving to true once running; safe to call from a gesture handler. */
  _resumeContext() {
    const ctx = this._ctx;
    if (!ctx) return Promise.resolve(false);
    if (ctx.state === 'running') return Promise.resolve(true);
    let p;
    try { p = ctx.resume(); } catch { return Promise.resolve(false); }
    return Promise.resolve(p).then(() => ctx.state === 'running', () => false);
  }

  async _ensureOutput() {
    const opts = { targetMs: this.targetLatencyMs, maxMs: this._maxMs(), delayMs: this._audioDelayMs, floor: this.floorMode,
      startMarginMs: this.startMarginMs,
      pullS: enginePullS({ baseLatency: this._ctx.baseLatency, sampleRate: this._ctx.sampleRate, engine: this.engine }) };
    if (!this.adaptive) opts.jitterMs = 0;
    if (this._output) { this._output.configure(opts); return; }
    const pick = pickOutput({
      output: this.outputChoice,
      worklet: WorkletOutput.available(this._ctx),
      scheduled: ScheduledOutput.available(this._ctx),
      engine: this.engine,
    });
    if (!pick.output) throw new Error(pick.error);
    try {
      this._output = await OUTPUTS[pick.output].create(this._ctx, this._gain, opts);
    } catch (e) {
      if (pick.output !== 'worklet' || this.outputChoice === 'worklet') throw e;
      // A worklet that fails to load (a Content-Security-Policy without blob:, say): schedule.
      this._emitError(`AudioWorklet failed (${message(e)}); scheduling buffers instead`);
      this._output = await ScheduledOutput.create(this._ctx, this._gain, opts);
    }
    // The page's floorMs, else the engine's where its own figures set the output's too low.
    const floorMs = pickFloorMs({ floorMs: this.floorMs, floorMode: this.floorMode, outputFloorMs: this._output.floorMs,
      engine: this.engine, output: this._output.name });
    if (floorMs !== null) {
      this._output.floorMs = floorMs;
      this._output.configure({ floorMs });
    }
    this._stats.output = this._output.name;
    this._stats.floorMs = this._output.floorMs;
    if (this.floorMs === null && startsBlind(this.engine)) this._useBlindFloor();
  }

  /**
   * Where the stream is received (transport): a Worker feeding the worklet, or this thread. A
   * worker that cannot start (a Content-Security-Policy without blob: workers, say) leaves it
   * here, and says so.
   */
  _ensureTransport() {
    if (this._worker || this._rx) return;
    const pick = pickTransport({
      transport: this.transportChoice,
      output: this._output.name,
      worker: typeof globalThis.Worker === 'function' ? null : 'this browser has no Worker',
      engine: this.engine,
    });
    if (pick.note) this._emitError(pick.note);
    if (pick.transport === 'worker') {
      try {
        this._startWorker();
        this._stats.transport = 'worker';
        return;
      } catch (e) {
        this._emitError(`the stream's Worker did not start (${message(e)}); receiving on the main thread`);
      }
    }
    this._useMainThread();
  }

  _useMainThread() {
    this._worker = null;
    this._remote = null;
    this._mt = { busyMs: 0, audioS0: 0, busyMs0: 0 };
    this._rx = new StreamReceiver({
      ...this._rxOpts,
      sink: {
        push: (...a) => { if (this._output) this._output.push(...a); },
        flush: () => { if (this._output) this._output.flush(); },
      },
      timed: (fn) => this._timed(fn),
      onDecoderError: (msg) => this._onDecoderError(msg),
      onNotOurs: (what) => this._notOurs(what),
      onFirstFrame: () => this._firstFrame(),
    });
    this._stats.transport = 'main';
  }

  /**
   * The Worker, started from a Blob URL that imports stream-worker.js: a Worker's own script
   * must be same-origin with the page, and this module may come from the daemon's origin (a
   * noVNC page on :6080 loading it from :6090); an import from the Blob is allowed across
   * origins (CORS, which the daemon's files allow).
   */
  _startWorker() {
    const blobUrl = URL.createObjectURL(new Blob([`import ${JSON.stringify(WORKER_URL.href)};\n`], { type: 'text/javascript' }));
    let w;
    try {
      w = new Worker(blobUrl, { type: 'module', name: 'novnc-audio stream' });
    } catch (e) {
      URL.revokeObjectURL(blobUrl);
      throw e;
    }
    // Revoked once the worker answers (or fails): the module may still be loading until then.
    const revoke = () => { if (blobUrl) URL.revokeObjectURL(blobUrl); };
    w.onmessage = (e) => { revoke(); if (this._worker === w) this._onWorker(e.data); };
    w.onerror = (e) => {
      revoke();
      if (this._worker !== w) return;
      w.terminate();
      this._emitError(`the stream's Worker failed (${e.message || 'it did not load'}); receiving on the main thread`);
      this._useMainThread();
      if (this._active()) this._scheduleReconnect('the stream\'s Worker failed');
    };
    const port = this._output.feedPort();
    w.postMessage({ type: 'init', port, opts: this._rxOpts }, [port]);
    this._worker = w;
  }

  /** What the worker says (stream-worker.js); events of an older connection are ignored. */
  _onWorker(m) {
    if (m.type === 'stats') { this._remote = m; return; }
    if (m.id !== this._workerConn) return;
    switch (m.type) {
      case 'decoder': this._applyDecoder(m); break;
      case 'fail': this._fail(m.message); break;
      case 'open': this._opened(m.handshakeMs); break;
      case 'close': this._closed(m.code, m.reason); break;
      case 'first': this._firstFrame(); break;
      case 'notours': this._notOurs(m.what); break;
      case 'decoderError': this._onDecoderError(m.message); break;
      case 'echo': this._onEcho(m.text, m.at - performance.timeOrigin); break;
      default: break;
    }
  }

  /**
   * Picks and opens the decoder on this thread; returns a note for the state reason (a
   * fallback), or ''. The worker opens its own when it connects.
   */
  async _ensureDecoder() {
    if (!this._rx) return '';
    const gen = this._gen;
    const d = await this._rx.openDecoder({ codec: this.codec, decoder: this.decoderChoice, usePcm: this._usePcm });
    if (gen !== this._gen) return '';
    return this._applyDecoder(d);
  }

  _applyDecoder({ kind, name, note }) {
    if (kind === 'pcm') this._usePcm = true;
    if (note) this._emitError(note);
    this._decoderName = name;
    this._stats.decoder = name;
    return note;
  }

  _closeDecoders() {
    if (this._rx) this._rx.closeDecoders();
  }

  /** Autoplay policy: resume the AudioContext on the next gesture anywhere on the page. */
  _armUnlock() {
    if (this._disarmUnlock) return;
    this._disarmUnlock = onGesture(() => {
      if (!this._ctx || !this._active()) return;
      this._resumeContext();  // the statechange to 'running' disarms
    });
  }

  _unarmUnlock() {
    if (this._disarmUnlock) { this._disarmUnlock(); this._disarmUnlock = null; }
  }

  _streamUrl() {
    const u = new URL(this.url);
    if (this._usePcm) u.searchParams.set('codec', 'pcm');
    else u.searchParams.delete('codec');
    return u.toString();
  }

  _connect(reason) {
    const gen = this._gen;
    // Started here too: a worker that failed while start() waited bumped its generation.
    if (!this._statsTimer) this._startStatsTimer();
    if (this._ctx && this._ctx.state !== 'running') this._armUnlock();
    this._openStart = performance.now();
    if (this._state !== 'reconnecting') this._setState('connecting', reason);
    if (this._worker) {
      this._wsOpen = false;
      this._worker.postMessage({ type: 'connect', id: ++this._workerConn, url: this._streamUrl(),
        codec: this.codec, decoder: this.decoderChoice, usePcm: this._usePcm });
      return;
    }
    let ws;
    try {
      ws = new WebSocket(this._streamUrl());
    } catch (e) {
      this._fail(`invalid audio URL ${this.url}: ${message(e)}`);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._rx.restart();
    ws.onopen = () => { if (gen === this._gen) this._opened(performance.now() - this._openStart); };
    ws.onmessage = (e) => {
      if (gen !== this._gen) return;
      // The stream is binary; the only text is the echo of our own playout report.
      if (typeof e.data === 'string') { this._onEcho(e.data); return; }
      this._timed(() => this._rx.frame(e.data, performance.now()));
    };
    ws.onerror = () => { /* the close event follows with the details */ };
    ws.onclose = (e) => {
      if (gen !== this._gen) return;
      this._ws = null;
      this._closed(e.code, e.reason);
    };
  }

  /** The socket is open; handshakeMs: from asking to open. */
  _opened(handshakeMs) {
    this._wsOpen = true;
    // The handshake is two round trips (TCP, then the HTTP upgrade): a quarter is one way.
    // Until the daemon echoes a report (older daemons never do): that stays the estimate.
    this._networkMs = handshakeMs / 4;
    this._echoes = [];
    this._stats.networkSource = 'handshake';
    // The daemon sends nothing while the desktop is silent, so an open socket already is
    // the working state: say so rather than "connecting" until someone plays a sound.
    this._attempt = 0;
    this._setState('playing', this._ctx && this._ctx.state !== 'running' ? BLOCKED_REASON : SILENT_REASON);
  }

  _closed(code, reason) {
    this._wsOpen = false;
    this._scheduleReconnect(`socket closed (code ${code}${reason ? ': ' + reason : ''})`);
  }

  _firstFrame() {
    this._attempt = 0;  // a working connection resets the backoff
    this._setState('playing', this._ctx && this._ctx.state !== 'running' ? BLOCKED_REASON : 'playing');
  }

  _notOurs(what) {
    this._fail(`${this.url} is not a novnc-audio stream (${what}); ` +
      "check the audio URL (data-audio-url, or the daemon's port, 6090 by default)");
  }

  _closeSocket(code, reason) {
    this._wsOpen = false;
    if (this._worker) {
      this._workerConn++;
      this._worker.postMessage({ type: 'close', code, reason });
      return;
    }
    const ws = this._ws;
    this._ws = null;
    closeSocketQuietly(ws, code, reason);
  }

  _scheduleReconnect(why) {
    this._gen++;
    this._closeSocket(1000, 'reconnecting');
    // The old decoder's late output must not reach the flushed output (the retry opens a new one).
    this._closeDecoders();
    if (this._output) this._output.flush();
    clearTimeout(this._retryTimer);
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this._attempt);
    this._attempt = Math.min(this._attempt + 1, 10);
    this._stats.lastError = why;
    this._setState('reconnecting', `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    const gen = this._gen;
    this._retryTimer = setTimeout(async () => {
      this._retryTimer = null;
      if (this._state !== 'reconnecting' || gen !== this._gen) return;
      this._stats.reconnects++;
      try {
        await this._ensureDecoder();  // fresh decoder state; also after a switch to PCM
      } catch (e) {
        if (gen === this._gen) this._fail(message(e));
        return;
      }
      if (gen === this._gen) this._connect('reconnecting');
    }, delay);
  }

  _onDecoderError(what) {
    const msg = `Opus decoder error: ${what}`;
    this._stats.decodeErrors++;
    this._decoderErrors++;
    this._emitError(msg);
    if (this._decoderErrors >= 3) {
      this._decoderErrors = 0;
      if (this.codec === 'auto' && !this._usePcm) {
        this._usePcm = true;
        this._attempt = 0;
        this._scheduleReconnect(`${msg}; switching to PCM (?codec=pcm)`);
      } else if (this.codec !== 'auto') {
        this._fail(msg);
      }
    }
  }

  /**
   * An engine that tells nothing of its output path (no outputLatency, no usable
   * getOutputTimestamp: WebKitGTK) also pulls audio in bursts its base latency does not show:
   * measured there, a quantum-sized floor gave 12-21 underruns a minute. After a second of such
   * readings the buffer keeps BLIND_FLOOR_MS instead; an engine known to be so (select.js
   * startsBlind) keeps it from the start.
   */
  _blindOutput(source) {
    const blind = source === 'none' || source === 'baseLatency only';
    if (!this._output || this._ctx.state !== 'running') return;
    this._blindTicks = blind ? (this._blindTicks || 0) + 1 : 0;
    this._seeingTicks = blind ? 0 : (this._seeingTicks || 0) + 1;
    // Readings that tell the path after all lift the blind floor (Firefox's outputLatency read 0
    // for its first second, when it was still read). A second of them, not one: WebKitGTK's
    // getOutputTimestamp() gives a plausible figure now and then in its first second.
    if (this._seeingTicks >= 4 && this._output.blindFloor) {
      this._output.blindFloor = false;
      this._output.configure({ floorMs: this._output.floorMs });
      this._stats.floorMs = this._output.floorMs;
      return;
    }
    if (this._blindTicks >= 4) this._useBlindFloor();
  }

  /** The blind floor instead of the engine's own, if that is lower (and not already so). */
  _useBlindFloor() {
    if (this._output.floorMs >= this.blindFloorMs || this._output.blindFloor) return;
    this._output.blindFloor = true;
    this._output.configure({ floorMs: this.blindFloorMs });
    this._stats.floorMs = this.blindFloorMs;
  }

  _startStatsTimer() {
    this._stopStatsTimer();
    this._statsTimer = setInterval(() => this._updateStats(), STATS_INTERVAL_MS);
  }

  _updateStats() {
    const st = this._stats;
    const ctx = this._ctx;
    this._syncReceived();
    const rx = this._received();
    if (this._output && this.adaptive && rx) {
      // The buffer's target follows how late frames come (sent when it moved by 0.5 ms).
      const late = rx.lateMs;
      if (this._sentJitterMs === null || Math.abs(late - this._sentJitterMs) >= 0.5) {
        this._output.configure({ jitterMs: late });
        this._sentJitterMs = late;
      }
      st.lateP99Ms = rx.lateP99Ms;
      st.latePeakMs = rx.latePeakMs;
      st.lateStallMs = rx.lateStallMs;
    }
    if (this._output) {
      const o = this._output.stats();
      st.bufferedMs = o.bufferedMs;
      st.minBufferedMs = o.minBufferedMs;
      st.maxBufferedMs = o.maxBufferedMs;
      st.underruns = o.underruns;
      st.droppedForLatency = o.droppedForLatency;
      st.droppedMs = o.droppedMs;
      st.renderedMs = o.renderedMs;
      st.buffering = !o.playing;
      st.targetMs = o.targetMs;
      st.speed = o.speed;
      st.stretchedMs = o.stretchedMs;
      st.queueMs = o.queueMs;
      this._outputFrameMs = o.frameMs;
    }
    const out = ctx ? outputLatency(ctx, this.engine) : { ms: 0, source: null };
    // Chromium's figure steps by 8 ms between readings (34.9 / 42.9 with latencyHint 0, 43.6 /
    // 51.6 with 'interactive', PulseAudio), for stretches of 5-20 s, while the path measured at
    // the sound card stays at the lower step (+0-2 ms; engines harness, 2026-12-03): the lowest
    // reading of the last 10 s goes into latencyMs (a lasting change shows after 10 s). No
    // reading (0: a context not running yet, Firefox's first second) is not a short path.
    const outs = (this._outReadings ||= []);
    if (out.ms > 0) {
      outs.push(out.ms);
      if (outs.length > 40) outs.shift();
    }
    if (outs.length) out.ms = Math.min(...outs);
    st.outputLatencyMs = out.ms;
    st.outputLatencySource = out.source;
    st.outputLatencyKnown = out.source === 'getOutputTimestamp' || out.source === 'outputLatency';
    this._blindOutput(out.source);
    let lastTs = rx ? rx.lastTs : null;
    // The worker's figures are up to 250 ms old while the buffer's are current: while frames
    // flow, the stream has moved on by the figures' age since.
    if (this._worker && lastTs !== null && rx.lastArrival !== null && rx.at - rx.lastArrival < 3 * (rx.frameMs || 20)) {
      lastTs += Math.min(STATS_INTERVAL_MS, Math.max(0, performance.timeOrigin + performance.now() - rx.at));
    }
    st.frameMs = rx ? rx.frameMs : null;
    st.networkMs = this._networkMs;
    st.audioDelayMs = this._audioDelayMs;
    const frameMs = st.frameMs || this._outputFrameMs || 20;
    const decMs = rx ? rx.decoderQueue * frameMs : 0;
    // Capture to sound. A sample waits for its frame to fill, and plays at the same place in the
    // frame: that is one frame. Then the encoder's lookahead, the way over for the fastest frame
    // (networkTerm, from the echoed round trips), and from there to the moment the graph renders it, as
    // the output measured it on every chunk (queueMs: how late the chunk came, from arrival and
    // decoding, plus the audio ahead of it), and the engine's output path. The buffer's fill
    // sampled here (min + max) / 2 counted its swing and missed what the late frames add; on the
    // engines harness it overshot Chromium's and Firefox's sound cards by 13-18 ms.
    const terms = {
      frameMs: st.buffering ? 0 : frameMs, queueMs: st.buffering ? 0 : (st.queueMs ?? 0),
      lookaheadMs: st.codec === 'opus' ? OPUS_LOOKAHEAD_MS : 0, networkMs: this._networkMs || 0,
      outputMs: out.ms,
    };
    st.latencyTerms = terms;
    st.latencyMs = Object.values(terms).reduce((a, b) => a + b, 0);
    if (lastTs !== null && !st.buffering) {
      this._position = { ms: lastTs + frameMs - decMs - st.bufferedMs - out.ms, at: performance.now() };
    }
    this._maybeReport();
    st.audioContextState = ctx ? ctx.state : null;
    // Main-thread cost per second of audio, over the last MAIN_THREAD_WINDOW_S of audio.
    // With the worker, frames cost this thread nothing (stats.workerMsPerS: what they cost there).
    const mt = this._mt;
    const audioS = rx ? rx.audioS - mt.audioS0 : 0;
    if (audioS > 0.5) {
      st.mainThreadMsPerS = mt.busyMs / audioS;
      st.workerMsPerS = this._worker ? (rx.busyMs - mt.busyMs0) / audioS : null;
    }
    if (audioS >= MAIN_THREAD_WINDOW_S) this._mt = { busyMs: 0, audioS0: rx.audioS, busyMs0: rx.busyMs || 0 };
    this.dispatchEvent(new CustomEvent('stats', { detail: this.stats }));
  }

  /**
   * The daemon's answer to a report's echo (src/playout.rs): a round trip on the stream's own
   * connection, timed again every report, so the network term follows the link after the
   * handshake (which a page connected over a clean link and then slowed would keep for good).
   */
  _onEcho(text, now = performance.now()) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (!msg || msg.type !== 'echo' || !Number.isFinite(msg.echo)) return;
    const rttMs = now - msg.echo;
    if (!(rttMs >= 0 && rttMs < 10000)) return;
    this._echoes.push({ at: now, rttMs });
    while (this._echoes.length && now - this._echoes[0].at > ECHO_WINDOW_MS) this._echoes.shift();
    const rx = this._received();
    this._networkMs = networkTerm(this._echoes.map((e) => e.rttMs), rx ? rx.lateMedianMs : 0);
    this._stats.networkSource = 'echo';
  }

  /** Every REPORT_INTERVAL_MS, the playout figures to the daemon (bounded there: see src/web). */
  _maybeReport() {
    if (!this.report || !this._wsOpen || this._state !== 'playing') return;
    const now = performance.now();
    if (now - this._lastReport < REPORT_INTERVAL_MS) return;
    this._lastReport = now;
    const st = this._stats;
    const r = (v) => (Number.isFinite(v) ? Math.round(v * 10) / 10 : 0);
    const text = JSON.stringify({
      type: 'playout', latencyMs: r(st.latencyMs), bufferMs: r(st.bufferedMs), targetMs: r(st.targetMs),
      outputMs: r(st.outputLatencyMs), jitterMs: r(Math.max(st.lateP99Ms, st.latePeakMs, st.lateStallMs)), underruns: st.underruns,
      delayMs: r(this._audioDelayMs), output: st.output || '', decoder: st.decoder || '',
      echo: Math.round(now * 1000) / 1000,
    });
    if (this._worker) { this._worker.postMessage({ type: 'send', text }); return; }
    try { this._ws.send(text); } catch { /* closing */ }
  }

  /**
   * What the receiver knows (frames, lateness, the decoder's queue: StreamReceiver.figures()),
   * from this thread's StreamReceiver or the worker's last figures; null before either has any.
   * Only the worker's carry at and busyMs, and their lastArrival is absolute (timeOrigin + t);
   * this thread's is its performance.now(), which nothing reads (the figures' age is the worker's).
   */
  _received() {
    if (this._worker) return this._remote;
    return this._rx ? this._rx.figures() : null;
  }

  /** The receiver's counters into stats (frames, bytes, jitter, holes, the codec on the wire). */
  _syncReceived() {
    const c = this._worker ? this._remote : this._rx && this._rx.counters;
    if (!c) return;
    const st = this._stats;
    for (const k of ['frames', 'bytesReceived', 'jitterMs', 'gaps', 'spurts', 'concealedFrames', 'codec']) st[k] = c[k];
  }

  _stopStatsTimer() {
    clearInterval(this._statsTimer);
    this._statsTimer = null;
  }
}

/**
 * The network term of latencyMs (ms): how long the fastest frame of the jitter window took to
 * come over, from the echoed round trips of the last ECHO_WINDOW_MS (rttsMs) and the frames' median
 * lateness against that fastest frame (medianLateMs, arrival-jitter.js). The rest of a frame's way
 * is its own lateness, which queueMs counts.
 *
 * Half the shortest round trip is that only when an echo found both directions at their fastest:
 * four echoes rarely do on a jittery link, and an echo queued behind late frames or a
 * retransmission comes back later still. On the emulated WAN (40 +- 20 ms each way, 1 % loss,
 * packets kept in order: the fastest frame takes ~20.5 ms) it was 32-37 ms (median), and
 * latencyMs overshot the sound card by 17.6 / 18.5 ms against +5.4 / +5.7 on the clean link
 * (tests/netlink/wan_playout.py, 2 runs). Half the median round trip is a typical one-way time
 * instead, on a link as slow one way as the other; less the frames' median lateness, it is the
 * fastest frame's: 18.9-28.9 ms (median per run, 5 runs), and latencyMs minus the card +3.1 to
 * +13.0 ms on the WAN (median +5.3), +4.3 to +6.2 on the clean link; at the same clicks the old
 * figure gave +13.9 to +22.0 (4 runs). The smaller of the two is taken: on a clean or a
 * recovering link the shortest round trip is the better (and the quicker) figure, and a median
 * that still holds the bad link's round trips must not win. Also tried: each echo's own lateness
 * on the way down (between the frames around it) taken out of its round trip: 17.0-23.6 ms
 * (5 runs, 3 recomputed from logged echoes), latencyMs minus the card +0.9 / +4.5 against +3.1 /
 * +5.3 at the same clicks (2 runs): no better, and more state.
 * What the frames' lateness holds beyond the network (capture bursts, a busy main thread: 0.1-2.5
 * ms median on a LAN) makes the figure that much short, never below 0.
 */
export function networkTerm(rttsMs, medianLateMs) {
  if (!rttsMs.length) return null;
  const sorted = [...rttsMs].sort((a, b) => a - b);
  const n = sorted.length;
  const medianRtt = n % 2 ? sorted[n >> 1] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return Math.max(0, Math.min(sorted[0] / 2, medianRtt / 2 - (medianLateMs || 0)));
}

/**
 * The engine's output path (render -> device), in ms, and where the figure comes from. Two
 * figures can say it: getOutputTimestamp() (when the device plays what the context renders) and
 * outputLatency + baseLatency. Each engine leaves something out of one of them (Firefox's
 * getOutputTimestamp() gives the render time itself, ~0; Chromium's falls 5-10 ms short of its
 * sound card, its outputLatency + baseLatency does not), so the larger one is taken. 'none' or
 * 'baseLatency only' (WebKitGTK) means the engine tells nothing usable of its output path:
 * stats.outputLatencyKnown is then false and latencyMs leaves that path out.
 *
 * 'not read (Firefox)': in Firefox neither figure is read, since a reading can hang the page for
 * good (select.js readsOutputPath); stats.outputLatencyKnown is false and latencyMs leaves the
 * path out (30-34 ms measured at the sound card, 2026-12-02).
 *
 * What that figure was ('outputLatency snapshot', before 2026-12-03): Gecko reads it once per
 * MediaTrackGraph (cubeb_stream_get_latency at the first query, cached until the output device
 * changes) and derives getOutputTimestamp() from the same number. Over 13 sessions with a 44.1
 * kHz card that one reading was 9.6-50.5 ms while the measured render -> card path was 29.8-33.5
 * ms every time (what the output had buffered at that moment, it seems). suspend() and
 * resume(), a second context, another latencyHint, closing the context and opening a new one all
 * return the same number (tests/browser/engines/ff_output_latency.py); only another sample rate
 * (another graph) reads again. stats.outputLatencyKnown was false then too; latencyMs counted the
 * snapshot, which scattered around the path where leaving it out is ~30 ms short every time:
 * 4 sessions (engines harness, 2026-12-02) read 40.0 / 32.5 / 13.1 / 37.5 ms for a path of 31.1
 * / 32.6 / 30.9 / 29.8 ms; latencyMs minus the card was +11.1 / +4.9 / -15.1 / +5.1 ms with it
 * and -28.9 / -27.6 / -28.2 / -32.4 ms without.
 */
export function outputLatency(ctx, engine = null) {
  if (!readsOutputPath(engine || 'other')) return { ms: 0, source: 'not read (Firefox)' };
  let best = { ms: 0, source: 'none' };
  if (typeof ctx.getOutputTimestamp === 'function' && ctx.state === 'running') {
    const t = ctx.getOutputTimestamp();
    if (t && t.contextTime > 0 && t.performanceTime > 0) {
      const ms = (ctx.currentTime - t.contextTime) * 1000 - (performance.now() - t.performanceTime);
      if (ms > 1 && ms < 1000) best = { ms, source: 'getOutputTimestamp' };
    }
  }
  if (ctx.outputLatency > 0) {
    const ms = (ctx.outputLatency + (ctx.baseLatency || 0)) * 1000;
    if (ms > best.ms) best = { ms, source: 'outputLatency' };
  }
  if (best.source === 'none' && ctx.baseLatency > 0) best = { ms: ctx.baseLatency * 1000, source: 'baseLatency only' };
  return best;
}

export default NovncAudio;
