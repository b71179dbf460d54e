// decoders/webcodecs-opus.js: Opus through WebCodecs' AudioDecoder (the browser's own libopus,
// decoded off the main thread). Only in secure contexts (https, localhost), and not in every
// browser. Same interface as decoders/pcm.js.

/** Why WebCodecs cannot decode Opus here, or null when it can. */
export async function webCodecsOpusUnavailable() {
  if (typeof globalThis.AudioDecoder !== 'function' || typeof globalThis.EncodedAudioChunk !== 'function') {
    return globalThis.isSecureContext === false
      ? 'WebCodecs (AudioDecoder) needs a secure context (https or localhost)'
      : 'this browser has no WebCodecs (AudioDecoder)';
  }
  try {
    const r = await AudioDecoder.isConfigSupported({ codec: 'opus', sampleRate: 48000, numberOfChannels: 2 });
    return r && r.supported ? null : "this browser's WebCodecs cannot decode Opus";
  } catch (e) {
    return `WebCodecs Opus check failed: ${e && e.message ? e.message : e}`;
  }
}

export class WebCodecsOpusDecoder {
  static async create(opts) { return new WebCodecsOpusDecoder(opts); }

  constructor({ onAudio, onError }) {
    this.name = 'webcodecs';
    this._onAudio = onAudio;
    this._onError = onError;
    this._decoder = null;
    this._open();
  }

  _open() {
    const d = new AudioDecoder({
      output: (data) => {
        if (d !== this._decoder) { data.close(); return; }
        this._output(data);
      },
      error: (e) => { if (d === this._decoder) { this._decoder = null; this._onError(e); } },
    });
    d.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 2 });
    this._decoder = d;
  }

  get queueSize() { return this._decoder ? this._decoder.decodeQueueSize : 0; }

  decode(bytes, ts) {
    try {
      if (!this._decoder || this._decoder.state === 'closed') this._open();
      // Never let the decoder queue grow without bound (a stalled decoder adds latency).
      if (this._decoder.decodeQueueSize > 50) return;
      this._decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: ts * 1000, data: bytes }));
    } catch (e) {
      this._decoder = null;
      this._onError(e);
    }
  }

  // WebCodecs has no packet-loss concealment call; the output path handles the gap.
  conceal() { return false; }

  _output(data) {
    try {
      const frames = data.numberOfFrames;
      const planes = [];
      for (let c = 0; c < data.numberOfChannels; c++) {
        const p = new Float32Array(frames);
        data.copyTo(p, { planeIndex: c, format: 'f32-planar' });
        planes.push(p);
      }
      this._onAudio(planes, frames, data.sampleRate, data.timestamp / 1000);
    } catch (e) {
      this._onError(e);
    } finally {
      data.close();
    }
  }

  close() {
    const d = this._decoder;
    this._decoder = null;
    if (d && d.state !== 'closed') { try { d.close(); } catch { /* already closed */ } }
  }
}
