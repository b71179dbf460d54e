// stream-worker.js: the stream's WebSocket, its decoder and the hand-over to the AudioWorklet, in a
// dedicated Worker (NovncAudio's transport 'worker', on pages where the output is the worklet).
// Frames go from the socket to the audio thread without waiting for the page's main thread,
// which noVNC keeps busy drawing the desktop: a 200 ms drawing task no longer holds 200 ms of
// audio back. The main thread keeps the rest (the state, reconnecting, stats, the reports it
// asks this worker to send) and hears from here by messages:
//
//   main -> worker: { type: 'init', port, opts }       port: a MessagePort to the worklet
//                   { type: 'connect', id, url, codec, decoder, usePcm }
//                   { type: 'send', text }  { type: 'close', code, reason }
//   worker -> main: events of connection id: { type: 'decoder', kind, name, note, id }
//                   { type: 'fail', message } | { type: 'open', handshakeMs }
//                   { type: 'close', code, reason } | { type: 'first' }
//                   { type: 'notours', what } | { type: 'decoderError', message }
//                   { type: 'echo', text, at } | { type: 'stats', ... } (every STATS_MS)
//
// Times cross between the two as performance.timeOrigin + performance.now(): a worker's clock
// starts at its own creation.
import { StreamReceiver, busyTimer, closeSocketQuietly } from './receiver.js';
import { WorkletFeed } from './output/worklet.js';

const STATS_MS = 250;

let rx = null;
let ws = null;
let conn = 0;                  // bumps on every connect/close; stale events check it
let id = 0;                    // the main thread's number for the current connection
let busyMs = 0;

const abs = (t) => performance.timeOrigin + t;
const post = (m) => self.postMessage(m);
const tell = (m) => post({ ...m, id });    // an event of the current connection
/** Runs fn, adding its time to busyMs (stats.workerMsPerS), not nested twice. */
const timed = busyTimer((ms) => { busyMs += ms; });

function closeSocket(code, reason) {
  const s = ws;
  ws = null;
  closeSocketQuietly(s, code, reason);
}

async function connect(m) {
  const my = ++conn;
  id = m.id;
  closeSocket(1000, 'reconnecting');
  let d;
  try {
    d = await rx.openDecoder(m);
  } catch (e) {
    if (my === conn) tell({ type: 'fail', message: e && e.message ? e.message : String(e) });
    return;
  }
  if (my !== conn) return;
  tell({ type: 'decoder', ...d });
  rx.restart();
  // A decoder that fell back to PCM needs PCM on the wire (the main thread's URL asked for Opus).
  const url = new URL(m.url);
  if (d.kind === 'pcm') url.searchParams.set('codec', 'pcm');
  let s;
  try {
    s = new WebSocket(url.toString());
  } catch (e) {
    tell({ type: 'fail', message: `invalid audio URL ${m.url}: ${e && e.message ? e.message : e}` });
    return;
  }
  s.binaryType = 'arraybuffer';
  ws = s;
  const t0 = performance.now();
  s.onopen = () => { if (my === conn) tell({ type: 'open', handshakeMs: performance.now() - t0 }); };
  s.onmessage = (e) => {
    if (my !== conn) return;
    if (typeof e.data === 'string') { tell({ type: 'echo', text: e.data, at: abs(performance.now()) }); return; }
    timed(() => rx.frame(e.data, performance.now()));
  };
  s.onclose = (e) => {
    if (my !== conn) return;
    ws = null;
    tell({ type: 'close', code: e.code, reason: e.reason });
  };
}

/** The receiver's figures, their times absolute (this worker's clock is not the page's). */
function stats() {
  if (!rx) return;
  const f = rx.figures();
  post({
    type: 'stats', ...f, lastArrival: f.lastArrival === null ? null : abs(f.lastArrival),
    at: abs(performance.now()), busyMs,
  });
}

self.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'init') {
    const feed = new WorkletFeed(m.port);
    rx = new StreamReceiver({
      ...m.opts,
      sink: feed,
      timed,
      onDecoderError: (msg) => tell({ type: 'decoderError', message: msg }),
      onNotOurs: (what) => tell({ type: 'notours', what }),
      onFirstFrame: () => tell({ type: 'first' }),
    });
    setInterval(stats, STATS_MS);
  } else if (m.type === 'connect') {
    connect(m);
  } else if (m.type === 'send') {
    if (ws && ws.readyState === 1) { try { ws.send(m.text); } catch { /* closing */ } }
  } else if (m.type === 'close') {
    conn++;
    closeSocket(m.code || 1000, m.reason || '');
    rx.closeDecoders();
  }
};
