// microphone.js: the way back. The browser's microphone goes to the daemon's /mic (the daemon
// runs with --microphone), where it becomes a source that applications on the remote desktop
// record from.
//
// getUserMedia with echo cancellation, noise suppression and automatic gain control; an
// AudioWorklet cuts the track into 20 ms frames of 48 kHz mono (resampling if the context runs
// at another rate); WebCodecs' AudioEncoder makes Opus of them where the browser has it, else
// they go as s16le PCM. Each frame is one binary message in the stream's own format
// (docs/CONTRACT.md): u64 big-endian timestamp (ms, from the sample count), codec byte (0x01
// Opus, 0x00 PCM), payload. Frames the socket cannot take are dropped, never queued.
//
// Every browser gives a page the microphone only in a secure context (https://, or
// http://localhost): on a plain-http page start() fails with a reason that says so and how to
// get one (the daemon's --tls-cert, or a TLS proxy in front of it).
//
//   import { Microphone } from './microphone.js';
//   const mic = new Microphone({ url: 'wss://desk.example/mic' });
//   mic.addEventListener('state', () => show(mic.state, mic.reason));
//   mic.addEventListener('frame', (e) => meter(e.detail.rms));   // each 20 ms frame sent
//   button.onclick = () => mic.state === 'live' ? mic.stop() : mic.start();

const CODEC_PCM = 0x00;
const CODEC_OPUS = 0x01;
const RATE = 48000;
const FRAME = 960;                 // 20 ms at 48 kHz
const MAX_BUFFERED_BYTES = 32768;  // about 1 s of Opus, 170 ms of PCM: drop beyond
const OPUS_BITRATE = 32000;

export const INSECURE_REASON =
  'A microphone needs a secure context: open this page over https:// (serve the daemon with ' +
  '--tls-cert and --tls-key, or put it behind the TLS proxy that serves noVNC), or from localhost';

// The worklet, as source text (a Blob URL module needs no extra file from a possibly
// cross-origin server). It resamples to 48 kHz and posts 20 ms frames of mono.
const PROCESSOR_SOURCE = String.raw`
class NovncMicFramer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / ${RATE};
    this.pos = 0;            // fractional read position into the pending input
    this.pending = new Float32Array(0);
    this.frame = new Float32Array(${FRAME});
    this.filled = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    const mono = new Float32Array(n);
    for (const ch of input) for (let i = 0; i < n; i++) mono[i] += ch[i] / input.length;
    const data = new Float32Array(this.pending.length + n);
    data.set(this.pending);
    data.set(mono, this.pending.length);
    while (this.pos + 1 < data.length) {
      const i = Math.floor(this.pos);
      const f = this.pos - i;
      this.frame[this.filled++] = data[i] * (1 - f) + data[i + 1] * f;
      this.pos += this.step;
      if (this.filled === ${FRAME}) {
        this.port.postMessage({ frame: this.frame, time: currentTime }, [this.frame.buffer]);
        this.frame = new Float32Array(${FRAME});
        this.filled = 0;
      }
    }
    const keep = Math.floor(this.pos);
    this.pending = data.slice(keep);
    this.pos -= keep;
    return true;
  }
}
registerProcessor('novnc-mic-framer', NovncMicFramer);
`;

function message(e) { return e && e.message ? e.message : String(e); }

/** The microphone's URL beside a stream URL: ws://h:6090/audio -> ws://h:6090/mic. */
export function micUrlFromAudioUrl(audioUrl, base = globalThis.location ? globalThis.location.href : undefined) {
  const u = new URL(audioUrl, base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  u.pathname = u.pathname.replace(/[^/]*$/, 'mic');
  u.searchParams.delete('codec');
  return u.toString();
}

/** Why this page cannot use a microphone, or null. */
export function noMicrophoneReason() {
  if (globalThis.isSecureContext === false) return INSECURE_REASON;
  if (!globalThis.navigator || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return 'this browser offers no microphone (navigator.mediaDevices.getUserMedia is missing)';
  }
  if (!(globalThis.AudioContext || globalThis.webkitAudioContext)) {
    return 'this browser has no Web Audio (AudioContext)';
  }
  return null;
}

/** Does this browser encode Opus with WebCodecs (48 kHz mono)? */
export async function opusEncoderAvailable() {
  if (!globalThis.AudioEncoder || !globalThis.AudioData) return false;
  try {
    const r = await AudioEncoder.isConfigSupported(opusConfig());
    return !!r.supported;
  } catch { return false; }
}

function opusConfig() {
  return { codec: 'opus', sampleRate: RATE, numberOfChannels: 1, bitrate: OPUS_BITRATE };
}

export class Microphone extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.url  ws:// or wss:// URL of the daemon's /mic (http(s) accepted)
   * @param {string} [opts.token]  the daemon's token (--token-file), added as ?token=
   * @param {'auto'|'opus'|'pcm'} [opts.codec='auto']  Opus where WebCodecs encodes it, else PCM
   * @param {MediaTrackConstraints} [opts.constraints]  extra getUserMedia audio constraints
   */
  constructor(opts = {}) {
    super();
    if (!opts.url) throw new TypeError('Microphone: url is required');
    const u = new URL(String(opts.url), globalThis.location ? globalThis.location.href : undefined);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    if (opts.token) u.searchParams.set('token', opts.token);
    this.url = u.toString();
    this.codecChoice = opts.codec || 'auto';
    if (!['auto', 'opus', 'pcm'].includes(this.codecChoice)) throw new TypeError(`Microphone: unknown codec ${this.codecChoice}`);
    this.constraints = opts.constraints || {};
    this._state = 'idle';
    this._reason = '';
    this._gen = 0;
    this._reset();
  }

  _reset() {
    this._stream = null;
    this._ctx = null;
    this._node = null;
    this._source = null;
    this._ws = null;
    this._encoder = null;
    this._samples = 0;
    this._stats = { codec: null, framesSent: 0, bytesSent: 0, framesDropped: 0, closeCode: null, closeReason: '' };
  }

  /** idle | starting | live | stopped | error */
  get state() { return this._state; }
  /** Why it is not live (error), '' otherwise. */
  get reason() { return this._reason; }
  get stats() { return { ...this._stats, state: this._state }; }

  _setState(state, reason = '') {
    this._state = state;
    this._reason = reason;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, reason } }));
  }

  _fail(gen, reason) {
    if (gen !== this._gen) return;
    this._teardown();
    this._setState('error', reason);
  }

  /**
   * Asks for the microphone (call it from a user gesture) and starts sending. Resolves once
   * live; on failure the state is 'error' with a reason, and the promise rejects with it.
   */
  async start() {
    if (this._state === 'starting' || this._state === 'live') return;
    const gen = ++this._gen;
    this._reset();
    this._setState('starting');
    const why = noMicrophoneReason();
    if (why) { this._fail(gen, why); throw new Error(why); }
    try {
      this._stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1,
          ...this.constraints,
        },
      });
      if (gen !== this._gen) { this._stopTracks(); return; }
      const useOpus = this.codecChoice !== 'pcm' && await opusEncoderAvailable();
      if (this.codecChoice === 'opus' && !useOpus) throw new Error('this browser has no WebCodecs Opus encoder (try codec pcm)');
      this._stats.codec = useOpus ? 'opus' : 'pcm';
      await this._openSocket(gen);
      if (gen !== this._gen) return;
      if (useOpus) this._startEncoder(gen);
      await this._startCapture(gen);
      if (gen !== this._gen) return;
      this._setState('live');
    } catch (e) {
      const reason = e && e.name === 'NotAllowedError'
        ? 'the microphone was not allowed (the browser or the user refused it)'
        : e && e.name === 'NotFoundError' ? 'there is no microphone on this device' : message(e);
      this._fail(gen, reason);
      throw new Error(reason);
    }
  }

  /** Stops sending and releases the microphone. */
  stop() {
    this._gen++;
    this._teardown();
    if (this._state !== 'idle') this._setState('stopped');
  }

  _openSocket(gen) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.binaryType = 'arraybuffer';
      this._ws = ws;
      let open = false;
      ws.onopen = () => { open = true; resolve(); };
      ws.onmessage = () => {};
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        this._stats.closeCode = ev.code;
        this._stats.closeReason = ev.reason;
        if (!open) {
          reject(new Error('the daemon refused the microphone: someone else may be speaking (HTTP 409), ' +
            'the daemon may run without --microphone (404), or the token or origin is wrong (401, 403)'));
          return;
        }
        if (gen === this._gen) this._fail(gen, `the daemon closed the microphone (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`);
      };
    });
  }

  _startEncoder(gen) {
    this._encoder = new AudioEncoder({
      output: (chunk) => {
        if (gen !== this._gen) return;
        const msg = new Uint8Array(9 + chunk.byteLength);
        new DataView(msg.buffer).setBigUint64(0, BigInt(Math.round(chunk.timestamp / 1000)));
        msg[8] = CODEC_OPUS;
        chunk.copyTo(msg.subarray(9));
        this._send(msg);
      },
      error: (e) => this._fail(gen, `the Opus encoder failed: ${message(e)}`),
    });
    this._encoder.configure(opusConfig());
  }

  async _startCapture(gen) {
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    // The browser's own rate: Firefox cannot connect a track to a context of another rate.
    const ctx = new Ctx();
    this._ctx = ctx;
    const url = URL.createObjectURL(new Blob([PROCESSOR_SOURCE], { type: 'text/javascript' }));
    try { await ctx.audioWorklet.addModule(url); } finally { URL.revokeObjectURL(url); }
    if (gen !== this._gen) return;
    this._source = ctx.createMediaStreamSource(this._stream);
    this._node = new AudioWorkletNode(ctx, 'novnc-mic-framer', { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: 'explicit' });
    this._node.port.onmessage = (e) => { if (gen === this._gen) this._onFrame(e.data.frame); };
    this._source.connect(this._node);
    // A worklet runs only when pulled: into a muted gain, so nothing is heard.
    const mute = ctx.createGain();
    mute.gain.value = 0;
    this._node.connect(mute).connect(ctx.destination);
    if (ctx.state === 'suspended') await ctx.resume();
  }

  _onFrame(frame) {
    const start = this._samples;
    this._samples += FRAME;
    // For meters and measurements: the level, the first sample over 0.1 (-1: none), and the
    // wall-clock time (ms) the frame began, which is now less its own duration.
    let sum = 0;
    let firstLoud = -1;
    for (let i = 0; i < FRAME; i++) {
      sum += frame[i] * frame[i];
      if (firstLoud < 0 && Math.abs(frame[i]) > 0.1) firstLoud = i;
    }
    const at = performance.timeOrigin + performance.now() - FRAME * 1000 / RATE;
    this.dispatchEvent(new CustomEvent('frame', { detail: { rms: Math.sqrt(sum / FRAME), firstLoud, at } }));
    if (this._encoder) {
      if (this._encoder.encodeQueueSize > 5) { this._stats.framesDropped++; return; }
      const data = new AudioData({
        format: 'f32-planar', sampleRate: RATE, numberOfFrames: FRAME, numberOfChannels: 1,
        timestamp: Math.round(start * 1e6 / RATE), data: frame,
      });
      this._encoder.encode(data);
      data.close();
      return;
    }
    const msg = new Uint8Array(9 + FRAME * 2);
    const view = new DataView(msg.buffer);
    view.setBigUint64(0, BigInt(Math.round(start * 1000 / RATE)));
    msg[8] = CODEC_PCM;
    for (let i = 0; i < FRAME; i++) {
      const v = Math.max(-1, Math.min(1, frame[i]));
      view.setInt16(9 + 2 * i, v < 0 ? v * 32768 : v * 32767, true);
    }
    this._send(msg);
  }

  _send(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) { this._stats.framesDropped++; return; }
    ws.send(msg);
    this._stats.framesSent++;
    this._stats.bytesSent += msg.byteLength;
  }

  _stopTracks() {
    if (this._stream) for (const t of this._stream.getTracks()) t.stop();
    this._stream = null;
  }

  _teardown() {
    this._stopTracks();
    if (this._node) { this._node.port.onmessage = null; try { this._node.disconnect(); } catch { /* gone */ } }
    if (this._source) { try { this._source.disconnect(); } catch { /* gone */ } }
    if (this._ctx) this._ctx.close().catch(() => {});
    if (this._encoder && this._encoder.state !== 'closed') { try { this._encoder.close(); } catch { /* closed */ } }
    if (this._ws) {
      const ws = this._ws;
      ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000, 'microphone stopped');
    }
    this._node = null;
    this._source = null;
    this._ctx = null;
    this._encoder = null;
    this._ws = null;
  }
}
