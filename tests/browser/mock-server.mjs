// A stand-in for the daemon, for developing and testing the browser side alone: serves web/
// like the daemon (GET / and GET /novnc-audio.js) and streams a PCM sine on /audio in the
// daemon's wire format (u64 BE ms timestamp, codec byte 0x00, s16le stereo 48 kHz, 20 ms).
// It never sends Opus (no encoder here), whatever ?codec= says.
//
//   node tests/browser/mock-server.mjs [--port N] [--freq HZ] [--jitter MS]
// or import { startMockServer } and call it from a test.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.resolve(here, '../../web');

export function startMockServer({ port = 0, host = '127.0.0.1', freq = 440, jitterMs = 0, frameMs = 20 } = {}) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const files = { '/': ['index.html', 'text/html; charset=utf-8'], '/novnc-audio.js': ['novnc-audio.js', 'text/javascript; charset=utf-8'] };
    const f = files[url.pathname];
    if (f) {
      res.writeHead(200, { 'Content-Type': f[1], 'Cache-Control': 'no-store' });
      res.end(fs.readFileSync(path.join(webDir, f[0])));
    } else if (url.pathname === '/audio') {
      res.writeHead(426, { 'Content-Type': 'text/plain' });
      res.end('WebSocket upgrade required\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const wss = new WebSocketServer({ noServer: true });
  const started = Date.now();
  const rate = 48000;
  const frames = (rate * frameMs) / 1000;
  let phase = 0;
  let sent = 0;
  const clients = new Set();
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname !== '/audio') { socket.destroy(); return; }
    wss.handleUpgrade(req, socket, head, (ws) => { ws.query = url.search; clients.add(ws); ws.on('close', () => clients.delete(ws)); });
  });
  // One shared "capture" clock, like the daemon: a frame every frameMs, sent to every client,
  // with optional random delay (network jitter) that keeps the order.
  let next = performance.now();
  let timer;
  let queueUntil = 0;
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
      sent++;
      next += frameMs;
      const delay = jitterMs ? Math.max(queueUntil - now, Math.random() * jitterMs) : 0;
      queueUntil = now + delay;
      for (const ws of clients) {
        if (delay) setTimeout(() => ws.readyState === 1 && ws.send(buf), delay);
        else if (ws.readyState === 1) ws.send(buf);
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
        close() {
          clearTimeout(timer);
          for (const ws of clients) ws.terminate();
          return new Promise((r) => server.close(() => r()));
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
