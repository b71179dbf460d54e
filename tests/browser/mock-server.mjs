// A stand-in for the daemon, for developing and testing the browser side alone: serves web/
// like the daemon (GET / is index.html, every other file under web/ at its path) and streams a PCM sine on /audio in the
// daemon's wire format (u64 BE ms timestamp, codec byte, 20 ms frames): Opus (0x01) by default
// when opusenc and sox are installed (a 1 s loop of the tone, encoded once at start), PCM s16le
// stereo 48 kHz (0x00) for ?codec=pcm or when they are not.
//
//   node tests/browser/mock-server.mjs [--port N] [--freq HZ] [--jitter MS]
// or import { startMockServer } and call it from a test.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.resolve(here, '../../web');

/** 20 ms Opus packets of a 1 s sine loop, or null when opusenc/sox are missing. */
export function opusLoop(freq) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mock-opus-'));
  try {
    const raw = path.join(dir, 'tone.raw'), ogg = path.join(dir, 'tone.opus');
    execFileSync('sox', ['-q', '-n', '-t', 'raw', '-r', '48000', '-c', '2', '-e', 'signed', '-b', '16', raw,
      'synth', '1', 'sine', String(freq), 'vol', '0.5'], { stdio: 'ignore' });
    execFileSync('opusenc', ['--quiet', '--raw', '--raw-rate', '48000', '--raw-chan', '2', '--framesize', '20',
      '--bitrate', '64', raw, ogg], { stdio: 'ignore' });
    return oggPackets(fs.readFileSync(ogg)).slice(2);  // skip OpusHead, OpusTags
  } catch {
    return null;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function oggPackets(buf) {
  const packets = [];
  let cur = [];
  for (let off = 0; off + 27 <= buf.length;) {
    if (buf.toString('latin1', off, off + 4) !== 'OggS') throw new Error('bad ogg page');
    const nseg = buf[off + 26];
    let body = off + 27 + nseg;
    for (let i = 0; i < nseg; i++) {
      const len = buf[off + 27 + i];
      cur.push(buf.subarray(body, body + len));
      body += len;
      if (len < 255) { packets.push(Buffer.concat(cur)); cur = []; }
    }
    off = body;
  }
  return packets;
}

const MIME = {
  html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', mjs: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8', json: 'application/json', wasm: 'application/wasm', svg: 'image/svg+xml',
  md: 'text/markdown; charset=utf-8', txt: 'text/plain; charset=utf-8',
};

/** A file under web/ the way the daemon serves them: / is index.html, README.md files are not served. */
export function webFile(pathname) {
  const rel = pathname === '/' ? 'index.html' : decodeURIComponent(pathname).replace(/^\/+/, '');
  const full = path.resolve(webDir, rel);
  if (!full.startsWith(webDir + path.sep) || path.basename(full) === 'README.md') return null;
  let body;
  try { body = fs.readFileSync(full); } catch { return null; }
  const ext = path.extname(full).slice(1);
  return { body, type: MIME[ext] || (path.basename(full) === 'LICENSE' ? 'text/plain; charset=utf-8' : 'application/octet-stream') };
}

export function startMockServer({ port = 0, host = '127.0.0.1', freq = 440, jitterMs = 0, frameMs = 20 } = {}) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const f = webFile(url.pathname);
    if (f) {
      res.writeHead(200, { 'Content-Type': f.type, 'Cache-Control': 'no-store', 'Access-Control-Allow-Origin': '*' });
      res.end(f.body);
    } else if (url.pathname === '/audio') {
      res.writeHead(426, { 'Content-Type': 'text/plain' });
      res.end('WebSocket upgrade required\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const wss = new WebSocketServer({ noServer: true });
  const opus = frameMs === 20 ? opusLoop(freq) : null;
  const started = Date.now();
  const rate = 48000;
  const frames = (rate * frameMs) / 1000;
  let phase = 0;
  let sent = 0;
  const clients = new Set();
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname !== '/audio') { socket.destroy(); return; }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.pcm = !opus || url.searchParams.get('codec') === 'pcm';
      clients.add(ws);
      ws.on('close', () => clients.delete(ws));
    });
  });
  // One shared "capture" clock, like the daemon: a frame every frameMs, sent to every client,
  // with optional random delay (network jitter) that keeps the order.
  let next = performance.now();
  let timer;
  let queueUntil = 0;
  let stallUntil = 0;
  const ctl = { loseEvery: 0, silentUntil: 0 };
  const outbox = [];
  let pumpTimer;
  const pump = () => {
    const now = performance.now();
    while (outbox.length && outbox[0].at <= now + 0.5) {
      for (const [ws, msg] of outbox.shift().out) if (ws.readyState === 1) ws.send(msg);
    }
    if (outbox.length) pumpTimer = setTimeout(pump, Math.max(0, outbox[0].at - now));
  };
  const tick = () => {
    const now = performance.now();
    while (next <= now) {
      const buf = Buffer.alloc(9 + frames * 4);
      buf.writeBigUInt64BE(BigInt(sent * frameMs), 0);
      buf[8] = 0x00;
      for (let i = 0; i < frames; i++) {
        const v = Math.round(Math.sin(phase) * 0.5 * 32767);
        phase += (2 * Math.PI * freq) / rate;
        buf.writeInt16LE(v, 9 + i * 4);
        buf.writeInt16LE(v, 9 + i * 4 + 2);
      }
      phase %= 2 * Math.PI;
      let opusBuf = null;
      if (opus) {
        const pkt = opus[sent % opus.length];
        opusBuf = Buffer.alloc(9 + pkt.length);
        buf.copy(opusBuf, 0, 0, 8);
        opusBuf[8] = 0x01;
        pkt.copy(opusBuf, 9);
      }
      sent++;
      next += frameMs;
      // Random network delay (order kept), or a stall: everything held until stallUntil.
      let delay = jitterMs ? Math.max(queueUntil - now, Math.random() * jitterMs) : 0;
      if (stallUntil > now) delay = Math.max(delay, stallUntil - now);
      queueUntil = now + delay;
      // A lost frame: its timestamp is used, the frame never sent (a client that gets a hole).
      if (ctl.loseEvery && sent % ctl.loseEvery === 0) continue;
      // Silence the daemon skipped: nothing sent, the timestamps run on (a new talk spurt after).
      if (now < ctl.silentUntil) continue;
      // Delayed frames go through one queue, sent in order (timers of different lengths that
      // expire together may fire out of order; TCP never reorders).
      const out = [...clients].map((ws) => [ws, ws.pcm ? buf : opusBuf]);
      if (delay || outbox.length) {
        outbox.push({ at: now + delay, out });
        clearTimeout(pumpTimer);
        pumpTimer = setTimeout(pump, Math.max(0, outbox[0].at - performance.now()));
      } else {
        for (const [ws, msg] of out) if (ws.readyState === 1) ws.send(msg);
      }
    }
    timer = setTimeout(tick, Math.max(1, next - performance.now()));
  };
  tick();
  return new Promise((resolve) => {
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({
        port: addr.port,
        url: `http://${host}:${addr.port}/`,
        clients,
        codec: opus ? 'opus' : 'pcm',
        /** Hold the stream for ms, then deliver the backlog at once (a network stall). */
        stall(ms) { stallUntil = performance.now() + ms; },
        /** Lose one frame in every n (0: none): holes in the timestamps, as a dropped frame. */
        loseEvery(n) { ctl.loseEvery = n; },
        /** Send nothing for ms (as the daemon skipping silence): a timestamp gap, then audio. */
        silence(ms) { ctl.silentUntil = performance.now() + ms; },
        close() {
          clearTimeout(timer);
          clearTimeout(pumpTimer);
          for (const ws of clients) ws.terminate();
          const p = new Promise((r) => server.close(() => r()));
          server.closeAllConnections();
          return p;
        },
        started,
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, def) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : def; };
  const s = await startMockServer({ port: arg('--port', 6090), freq: arg('--freq', 440), jitterMs: arg('--jitter', 0) });
  console.log(`mock novnc-audio on ${s.url}`);
}
