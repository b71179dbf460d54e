// receiver.js: from the stream's binary messages to audio for the output: the wire header, holes
// and talk spurts, how late frames arrive (arrival-jitter.js), the decoder. One class for both
// places it runs: the page's main thread (NovncAudio, the default where the output schedules
// buffers), or a dedicated Worker (stream-worker.js) that feeds the AudioWorklet directly, so
// that a busy main thread (noVNC drawing a large update) does not hold the audio back.
//
// The output it feeds is a sink: { push(planes, frames, rate, gapMs, lateMs), flush() } (an
// output of output/*.js, or output/worklet.js's WorkletFeed on the worklet's port).
import { pickDecoder } from './select.js';
import { PcmDecoder } from './decoders/pcm.js';
import { WebCodecsOpusDecoder, webCodecsOpusUnavailable } from './decoders/webcodecs-opus.js';
import { WasmOpusDecoder, wasmOpusUnavailable } from './decoders/wasm-opus.js';
import { ArrivalJitter } from './output/arrival-jitter.js';

const CODEC_PCM = 0x00;
const CODEC_OPUS = 0x01;
export const HEADER_BYTES = 9;
const MAX_CONCEALED_FRAMES = 5;       // a longer hole is a stall, not a lost frame

const DECODERS = { webcodecs: WebCodecsOpusDecoder, wasm: WasmOpusDecoder, pcm: PcmDecoder };

function message(e) { return e && e.message ? e.message : String(e); }

/**
 * A wrapper for the work a frame costs on the receiving thread: runs fn and hands its time (ms)
 * to add, not twice when nested (the decoder's output inside a frame's work). One per thread:
 * NovncAudio's (stats.mainThreadMsPerS) and stream-worker.js's (stats.workerMsPerS).
 */
export function busyTimer(add) {
  let depth = 0;
  return (fn) => {
    if (depth) { fn(); return; }
    depth++;
    const t0 = performance.now();
    try { fn(); } finally {
      add(performance.now() - t0);
      depth--;
    }
  };
}

/** Closes the stream's socket (or nothing: null) after dropping its handlers: no event follows. */
export function closeSocketQuietly(ws, code, reason) {
  if (!ws) return;
  ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  try { ws.close(code, reason); } catch { /* already closed */ }
}

export class StreamReceiver {
  /**
   * @param {object} o
   * @param {{push: Function, flush: Function}} o.sink   where decoded audio goes
   * @param {(msg: string) => void} o.onDecoderError   a decoder failed (NovncAudio counts them)
   * @param {(msg: string) => void} o.onNotOurs   the first frame is not the wire format
   * @param {() => void} o.onFirstFrame           the connection's first frame
   * @param {boolean} [o.jitterPeaks=false], [o.pcmSampleRate=48000], [o.pcmChannels=2]
   * @param {boolean} [o.wasmWorker=false]       the WebAssembly decoder in its own Worker
   * @param {(fn: Function) => void} [o.timed]    wraps the work each frame costs (main-thread stats)
   */
  constructor(o) {
    this.sink = o.sink;
    this._o = o;
    this._timed = o.timed || ((fn) => fn());
    this.jitter = new ArrivalJitter({ peaks: o.jitterPeaks === true });
    this.decoder = null;         // for Opus frames (or PCM when PCM was chosen)
    this._pcm = null;            // for PCM frames a server sends whatever was asked
    this._gen = 0;
    this.counters = { frames: 0, bytesReceived: 0, jitterMs: 0, gaps: 0, spurts: 0, concealedFrames: 0, codec: null };
    this.audioS = 0;             // seconds of audio pushed to the sink
    this.restart();
  }

  /** A new connection: nothing known of its frames yet. */
  restart() {
    this.gotFrame = false;
    this.lastTs = null;
    this.lastArrival = null;
    this.frameMs = null;
    this._lateAtArrival = 0;
    this._gap = null;            // { ts, ms }: audio lost before frame ts, not concealed
    this.jitter.restart();
  }

  /**
   * Picks and opens the decoder (a fresh one: also after a switch to PCM). Returns
   * { kind, name, note }: note is a fallback to say (or ''). Throws when nothing can decode.
   */
  async openDecoder({ codec, decoder, usePcm }) {
    this.closeDecoders();
    const gen = ++this._gen;
    const wantsOpus = !usePcm;
    const pick = pickDecoder({
      codec: wantsOpus ? codec : 'pcm',
      decoder,
      webcodecs: wantsOpus ? await webCodecsOpusUnavailable() : 'not needed',
      wasm: wantsOpus ? wasmOpusUnavailable() : 'not needed',
    });
    if (!pick.decoder) throw new Error(pick.error);
    let note = pick.note;
    let kind = pick.decoder;
    let dec;
    try {
      dec = await this._create(kind, gen);
    } catch (e) {
      if (kind === 'pcm' || codec === 'opus') throw e;
      note = `${message(e)}; playing PCM instead (?codec=pcm, about 1.5 Mbit/s)`;
      kind = 'pcm';
      dec = await this._create(kind, gen);
    }
    if (gen !== this._gen) { dec.close(); throw new Error('superseded'); }
    this.decoder = dec;
    return { kind, name: dec.name, note };
  }

  _create(kind, gen) {
    return DECODERS[kind].create({
      onAudio: (planes, frames, rate, ts) => { if (gen === this._gen) this._timed(() => this._onAudio(planes, frames, rate, ts)); },
      onError: (e) => { if (gen === this._gen) this._o.onDecoderError(message(e)); },
      worker: !!this._o.wasmWorker,
      sampleRate: this._o.pcmSampleRate || 48000,
      channels: this._o.pcmChannels || 2,
    });
  }

  closeDecoders() {
    this._gen++;
    for (const d of [this.decoder, this._pcm]) if (d) d.close();
    this.decoder = null;
    this._pcm = null;
  }

  /** One binary message of the stream, arrived at performance.now() = now. */
  frame(buf, now) {
    const st = this.counters;
    st.bytesReceived += buf.byteLength;
    if (buf.byteLength < HEADER_BYTES) return;
    const dv = new DataView(buf);
    const ts = dv.getUint32(0) * 4294967296 + dv.getUint32(4);
    const codec = dv.getUint8(8);
    if (codec !== CODEC_PCM && codec !== CODEC_OPUS) {
      // Not our wire format: most likely the URL reaches websockify or another WebSocket server
      // (its first bytes are "RFB 003.008"). Say so instead of playing nothing in silence.
      if (!this.gotFrame) this._o.onNotOurs(`codec byte 0x${codec.toString(16).padStart(2, '0')}`);
      return;
    }
    st.frames++;

    // Interarrival jitter (RFC 3550 style), the frame duration (the smallest step seen) and holes.
    // A hole of a few frames is lost audio, concealed; a longer one (or a step back) is a new
    // talk spurt (the daemon skipped silence, or restarted): stale audio goes, and the new audio
    // starts at once at the target.
    let lostFrames = 0;
    let spurt = false;
    if (this.lastTs !== null) {
      const step = ts - this.lastTs;
      const d = (now - this.lastArrival) - step;
      st.jitterMs += (Math.abs(d) - st.jitterMs) / 16;
      if (step > 0 && (this.frameMs === null || step < this.frameMs)) this.frameMs = step;
      const f = this.frameMs;
      if (step <= 0) spurt = true;
      else if (f >= 5 && step > f * 1.5) {
        st.gaps++;
        const n = Math.round(step / f) - 1;
        if (n <= MAX_CONCEALED_FRAMES && Math.abs(step - (n + 1) * f) <= 1) lostFrames = n;
        else spurt = true;
      }
    }
    if (spurt) {
      st.spurts++;
      this.jitter.restart();
      this.sink.flush();
    }
    this.jitter.arrived(ts, now);
    this._lateAtArrival = this.jitter.lateOf(ts, now);
    this.lastTs = ts;
    this.lastArrival = now;
    if (!this.gotFrame) {
      this.gotFrame = true;
      this._o.onFirstFrame();
    }

    const payload = new Uint8Array(buf, HEADER_BYTES);
    if (codec === CODEC_PCM) {
      st.codec = 'pcm';
      if (lostFrames) this._gap = { ts, ms: lostFrames * this.frameMs };
      if (this.decoder && this.decoder.name === 'pcm') this.decoder.decode(payload, ts);
      else (this._pcm ||= new PcmDecoder({ onAudio: (p, n, r, t) => this._onAudio(p, n, r, t),
        sampleRate: this._o.pcmSampleRate || 48000, channels: this._o.pcmChannels || 2 })).decode(payload, ts);
    } else {
      st.codec = 'opus';
      // A server started with --codec opus may send Opus even when PCM was asked for: decode it
      // when we have an Opus decoder, otherwise there is nothing to play.
      const dec = this.decoder;
      if (!dec || dec.name === 'pcm') return;
      if (lostFrames) {
        if (dec.conceal(lostFrames * this.frameMs * 48)) st.concealedFrames += lostFrames;
        else this._gap = { ts, ms: lostFrames * this.frameMs };  // the output fades across the hole
      }
      dec.decode(payload, ts);
    }
  }

  _onAudio(planes, frames, rate, ts) {
    this.audioS += frames / rate;
    // WebCodecs decodes asynchronously: the hole is where its frame comes out, found by timestamp.
    let gapMs = 0;
    if (this._gap && this._gap.ts === ts) { gapMs = this._gap.ms; this._gap = null; }
    // How late this audio reaches the output, against the fastest frame of the jitter window:
    // the last frame's lateness on arrival plus the time since (decoding). The output adds how
    // long it then waits to be rendered; the sum is the part of latencyMs above the fastest
    // frame. Not from the decoder's output timestamp: in a 10-minute Chromium run (WebCodecs),
    // after one stall and two holes, latencyMs computed so stayed 38 ms high while the buffer
    // was back at its level; a decoder that stamps its output continuously (not verified) would
    // do that, the arrival's lateness cannot.
    const lateMs = this._lateAtArrival + (this.lastArrival === null ? 0 : performance.now() - this.lastArrival);
    this.sink.push(planes, frames, rate, gapMs, lateMs);
  }

  /** Frames waiting inside the decoder. */
  get decoderQueue() { return this.decoder ? this.decoder.queueSize : 0; }

  /**
   * What this receiver knows, for NovncAudio's stats: the counters, the frame duration, the last
   * frame's timestamp and arrival, the seconds of audio pushed, the decoder's queue and how late
   * frames come (arrival-jitter.js). lastArrival is this thread's performance.now(), as frame()
   * got it: stream-worker.js posts it as performance.timeOrigin + lastArrival.
   */
  figures() {
    const j = this.jitter;
    return {
      ...this.counters, frameMs: this.frameMs, lastTs: this.lastTs, lastArrival: this.lastArrival,
      audioS: this.audioS, decoderQueue: this.decoderQueue,
      lateMs: j.lateMs(), lateP99Ms: j.percentileMs(), latePeakMs: j.peakMs(), lateStallMs: j.stallMs(),
      lateMedianMs: j.medianMs(),
    };
  }
}
