// decoders/wasm-opus.js: Opus through libopus compiled to WebAssembly (the vendored opus-decoder
// package, web/vendor/opus-decoder/), for pages where WebCodecs cannot decode it: plain-http
// pages in Chromium and Firefox. Loaded with import() only when needed (87 KB).
//
// Two modes: on the main thread (OpusDecoder, synchronous), or in a Web Worker
// (OpusDecoderWebWorker; the main thread only posts packets and receives PCM). NovncAudio
// measures the main-thread cost of either (stats.mainThreadMsPerS); the main thread is the
// default, it measured cheaper (see the wasmWorker option in novnc-audio.js). In a bulk
// benchmark (1000 frames back to back, Chromium) decoding costs 7.8-9.0 ms per s of audio on the
// main thread and 0.7-0.9 with the worker; one frame at a time, as they arrive, the worker's
// reply costs the main thread more than the decoding it saves.
//
// Lost frames: decodeFrame(empty packet) runs libopus's packet-loss concealment. It conceals the
// maximum packet duration (120 ms); we keep the lost frames' worth, fade its last 2.5 ms out and
// the next real frame's first 2.5 ms in: the decoder's state has moved on by 120 ms, and the fade
// turns that jump into a short dip instead of a click.
//
// Same interface as decoders/pcm.js.

const VENDOR_URL = new URL('../vendor/opus-decoder/opus-decoder.min.js', import.meta.url);
const FADE_FRAMES = 120;  // 2.5 ms at 48 kHz

let library = null;

/** The vendored library (loaded once). */
function load() {
  if (!library) {
    library = import(VENDOR_URL.href).then(() => {
      const lib = globalThis['opus-decoder'];
      if (!lib || !lib.OpusDecoder) throw new Error(`${VENDOR_URL.href} did not define OpusDecoder`);
      return lib;
    });
    library.catch(() => { library = null; });  // a later start() may retry
  }
  return library;
}

/** Why the WASM decoder cannot run here, or null. */
export function wasmOpusUnavailable() {
  if (typeof globalThis.WebAssembly !== 'object' || typeof WebAssembly.instantiate !== 'function') {
    return 'WebAssembly is disabled or unsupported in this browser (needed to decode Opus without WebCodecs)';
  }
  return null;
}

export class WasmOpusDecoder {
  /** @param {{onAudio, onError, worker?: boolean}} opts */
  static async create(opts) {
    let lib;
    try {
      lib = await load();
    } catch (e) {
      throw new Error(`cannot load the WebAssembly Opus decoder from ${VENDOR_URL.href}: ${e && e.message ? e.message : e}`);
    }
    const worker = !!opts.worker && typeof globalThis.Worker === 'function';
    const impl = worker ? new lib.OpusDecoderWebWorker({ channels: 2 }) : new lib.OpusDecoder({ channels: 2 });
    await impl.ready;
    return new WasmOpusDecoder(impl, worker, opts);
  }

  constructor(impl, worker, { onAudio, onError }) {
    this.name = worker ? 'wasm-worker' : 'wasm';
    this._impl = impl;
    this._worker = worker;
    this._onAudio = onAudio;
    this._onError = onError;
    this._inFlight = 0;
    this._fadeInNext = false;
    this._closed = false;
  }

  get queueSize() { return this._inFlight; }

  decode(bytes) { this._run(bytes, 0); }

  /** Conceal `frames` lost 48 kHz frames with libopus's PLC. */
  conceal(frames) {
    if (frames > 0 && frames <= 5760) this._run(new Uint8Array(0), frames);
    return true;
  }

  _run(bytes, concealFrames) {
    if (this._closed) return;
    if (!this._worker) {
      this._deliver(this._impl.decodeFrame(bytes), concealFrames);
      return;
    }
    if (this._inFlight > 50) return;  // a stalled worker must not pile up latency
    this._inFlight++;
    // The worker gets its own copy: bytes is a view into the WebSocket message.
    this._impl.decodeFrame(bytes.slice()).then((r) => {
      this._inFlight--;
      if (!this._closed) this._deliver(r, concealFrames);
    }, (e) => { this._inFlight--; if (!this._closed) this._onError(e); });
  }

  _deliver(r, concealFrames) {
    if (r.errors && r.errors.length) {
      this._onError(new Error(r.errors[0].message || String(r.errors[0])));
      return;
    }
    let frames = r.samplesDecoded;
    let planes = r.channelData;
    if (!frames) return;
    if (concealFrames) {
      frames = Math.min(frames, concealFrames);
      planes = planes.map((p) => p.slice(0, frames));
      fade(planes, frames, false);
      this._fadeInNext = true;
    } else if (this._fadeInNext) {
      fade(planes, frames, true);
      this._fadeInNext = false;
    }
    this._onAudio(planes, frames, r.sampleRate || 48000);
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    try { this._impl.free(); } catch { /* already freed */ }
  }
}

function fade(planes, frames, fadeIn) {
  const n = Math.min(FADE_FRAMES, frames);
  for (const p of planes) {
    for (let i = 0; i < n; i++) {
      const g = i / n;
      if (fadeIn) p[i] *= g;
      else p[frames - 1 - i] *= g;
    }
  }
}
