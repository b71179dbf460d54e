// decoders/pcm.js: the daemon's raw PCM frames (s16le interleaved) to planar Float32.
//
// Decoder interface (shared with webcodecs-opus.js and wasm-opus.js):
//   static async create({ onAudio(planes, frames, rate, ts), onError(err), ... }) -> decoder
//     (ts: the frame's timestamp where the decoder knows it, else undefined)
//   decoder.name                 what stats.decoder shows
//   decoder.decode(bytes, ts)    bytes: the frame's payload (Uint8Array), ts: its ms timestamp
//   decoder.conceal(frames)      fill a gap of `frames` lost 48 kHz frames; false if it cannot
//   decoder.queueSize            frames waiting inside the decoder (latency estimate)
//   decoder.close()
export class PcmDecoder {
  static async create(opts) { return new PcmDecoder(opts); }

  constructor({ onAudio, sampleRate = 48000, channels = 2 }) {
    this.name = 'pcm';
    this.queueSize = 0;
    this._onAudio = onAudio;
    this._rate = sampleRate;
    this._channels = channels;
  }

  decode(bytes, ts) {
    const chans = this._channels;
    const frames = Math.floor(bytes.byteLength / (2 * chans));
    if (!frames) return;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, frames * 2 * chans);
    const planes = [];
    for (let c = 0; c < chans; c++) planes.push(new Float32Array(frames));
    for (let i = 0, o = 0; i < frames; i++) {
      for (let c = 0; c < chans; c++, o += 2) planes[c][i] = dv.getInt16(o, true) / 32768;
    }
    this._onAudio(planes, frames, this._rate, ts);
  }

  conceal() { return false; }

  close() {}
}
