// Browser tests of web/novnc-audio.js and the listen page (web/index.html), in headless Debian
// Chromium driven by playwright-core.
//
// Against the real daemon (what tests/browser/run.sh sets up):
//   NOVNC_AUDIO_URL=http://127.0.0.1:PORT/   the daemon's listen page
//   NOVNC_AUDIO_CMD='["/path/novnc-audio","-H","127.0.0.1",...]'  to restart it (JSON argv)
//   NOVNC_AUDIO_PIDFILE=FILE                 pid of the running daemon (kept up to date here)
//   PULSE_SERVER=...                         passed to the restarted daemon only
// Without NOVNC_AUDIO_URL the tests run against tests/browser/mock-server.mjs (Opus when
// opusenc is installed, else PCM only).
//
// Other knobs: WINDOW_S (jitter-buffer measurement window, default 20), SCREENSHOT (default
// <repo>/target/browser/listen-page.png), CHROMIUM (default /usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startMockServer } from './mock-server.mjs';
import { NovncAudio } from '../../web/novnc-audio.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const WINDOW_S = Number(process.env.WINDOW_S || 20);
const SCREENSHOT = process.env.SCREENSHOT || path.join(repo, 'target/browser/listen-page.png');
const TONE_HZ = Number(process.env.TONE_HZ || 440);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log('#', ...a);

// ------------------------------------------------------------------------------- the backend
// Either the real daemon (started by run.sh, restarted here) or the mock server.
let backend;

function daemonBackend() {
  const base = process.env.NOVNC_AUDIO_URL.replace(/\/?$/, '/');
  const argv = JSON.parse(process.env.NOVNC_AUDIO_CMD || 'null');
  const pidfile = process.env.NOVNC_AUDIO_PIDFILE;
  const port = Number(new URL(base).port);
  const readPid = () => Number(fs.readFileSync(pidfile, 'utf8').trim());
  return {
    kind: 'daemon',
    base,
    expectCodec: 'opus',
    canRestart: !!(argv && pidfile),
    closeCode: 1001,  // SIGTERM: clients get 1001 (going away)
    async kill() {
      const pid = readPid();
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
      if (alive(pid)) { process.kill(pid, 'SIGKILL'); throw new Error('the daemon ignored SIGTERM for 5 s'); }
    },
    async start() {
      const logFile = fs.openSync(path.join(path.dirname(pidfile), 'daemon-restarted.log'), 'a');
      const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', logFile, logFile], env: process.env });
      child.unref();
      fs.writeFileSync(pidfile, `${child.pid}\n`);
      await waitForPort(port, 15000);
    },
    async close() {},
  };
}

async function mockBackend() {
  let srv = await startMockServer({ freq: TONE_HZ });
  const port = srv.port;
  return {
    kind: 'mock',
    base: srv.url,
    expectCodec: srv.codec,
    canRestart: true,
    async kill() { await srv.close(); },
    async start() { srv = await startMockServer({ port, freq: TONE_HZ }); },
    async close() { await srv.close(); },
  };
}

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function waitForPort(port, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`port ${port} did not open within ${ms} ms`);
}

// ------------------------------------------------------------------------------- the browser
let browser;
let userDataDir;

before(async () => {
  backend = process.env.NOVNC_AUDIO_URL ? daemonBackend() : await mockBackend();
  log(`backend: ${backend.kind} at ${backend.base}`);
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'novnc-audio-chromium-'));
  browser = await launch(userDataDir, 'no-user-gesture-required');
});

// The browser must not find the test PulseAudio: its output would land in the sink whose
// monitor the daemon records (a feedback loop). Without a server it renders to a null device.
function launch(dir, autoplayPolicy) {
  const env = { ...process.env };
  delete env.PULSE_SERVER;
  delete env.XDG_RUNTIME_DIR;
  env.HOME = dir;
  return chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    env,
    viewport: { width: 640, height: 480 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', `--autoplay-policy=${autoplayPolicy}`,
      '--no-first-run', '--disable-sync', '--disable-quic',
    ],
  });
}

after(async () => {
  if (browser) await browser.close();
  if (backend) await backend.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

async function openPage(query = '', init) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => log('pageerror:', e.message));
  page.on('console', (m) => {
    // Refused reconnect attempts are expected while the server is down.
    if ((m.type() === 'error' || m.type() === 'warning') && !/WebSocket connection to .* failed/.test(m.text())) {
      log(`console.${m.type()}:`, m.text());
    }
  });
  if (init) await page.addInitScript(init);
  await page.goto(backend.base + query);
  return page;
}

const audioState = (page) => page.evaluate(() => {
  const a = window.novncAudio;
  return { state: a.state, reason: a.reason, stats: a.stats, url: a.url };
});

async function waitFor(page, fn, arg, ms = 15000, what = 'condition') {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
  } catch (e) {
    const s = await audioState(page).catch(() => null);
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
  }
}

async function waitPlaying(page, minFrames = 25) {
  await waitFor(page, (n) => window.novncAudio.state === 'playing' && window.novncAudio.stats.frames >= n
    && window.novncAudio.stats.renderedMs > 0, minFrames, 20000, 'state playing');
}

/** Median of several dominant-frequency readings of the rendered output. */
async function dominant(page, n = 7) {
  const reads = [];
  for (let i = 0; i < n; i++) {
    reads.push(await page.evaluate(() => window.novncAudio.dominantFrequency()));
    await sleep(150);
  }
  reads.sort((a, b) => a.hz - b.hz);
  return reads[Math.floor(n / 2)];
}

function assertTone(f, label) {
  log(`${label}: dominant ${f.hz.toFixed(1)} Hz at ${f.db.toFixed(1)} dB (bin ${f.binHz.toFixed(2)} Hz)`);
  assert.ok(f.db > -60, `${label}: output is silent (peak ${f.db} dB)`);
  assert.ok(Math.abs(f.hz - TONE_HZ) <= f.binHz * 1.0001,
    `${label}: dominant frequency ${f.hz} Hz, want ${TONE_HZ} ±1 bin (${f.binHz} Hz)`);
}

// ------------------------------------------------------------------------------------ tests

test('fromVncUrl derives the audio URL from a noVNC URL', () => {
  const cases = [
    ['ws://h:6080/websockify', 'ws://h:6090/audio'],
    ['wss://h:6080/websockify', 'wss://h:6090/audio'],
    ['ws://h:5700/', 'ws://h:5710/audio'],
    ['http://h:6080/vnc.html', 'ws://h:6090/audio'],
    ['https://h:6080/vnc.html?autoconnect=1', 'wss://h:6090/audio'],
    ['http://page:80/vnc.html?host=vnc&port=6080', 'ws://vnc:6090/audio'],
    ['ws://[::1]:6080/websockify', 'ws://[::1]:6090/audio'],
    ['wss://example.org/websockify', 'wss://example.org/audio'],
    ['https://example.org/vnc.html', 'wss://example.org/audio'],
    ['wss://example.org:8443/desktops/42/websockify', 'wss://example.org:8443/audio'],
    ['https://example.org/vnc.html?path=desktops/42/websockify', 'wss://example.org/audio'],
  ];
  for (const [vnc, want] of cases) assert.equal(NovncAudio.audioUrlFromVncUrl(vnc), want, vnc);
  assert.equal(NovncAudio.fromVncUrl('ws://h:6080/websockify').url, 'ws://h:6090/audio');
  assert.equal(NovncAudio.fromVncUrl('wss://h/websockify?token=vnc', { token: 'a b' }).url, 'wss://h/audio?token=a+b');
  assert.equal(new NovncAudio({ url: 'http://h:1/audio' }).url, 'ws://h:1/audio');
  const a = new NovncAudio({ url: 'ws://x/audio' });
  assert.equal(a.state, 'idle');
  assert.equal(a.volume, 1);
  a.volume = 3; assert.equal(a.volume, 1);
  a.volume = -1; assert.equal(a.volume, 0);
  assert.throws(() => new NovncAudio({ url: 'ws://x/audio', codec: 'mp3' }));
});

test('the daemon serves the page and the module with the right types', async () => {
  const page = await fetch(backend.base);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /^text\/html/);
  assert.equal(await page.text(), fs.readFileSync(path.join(repo, 'web/index.html'), 'utf8'));
  const js = await fetch(new URL('novnc-audio.js', backend.base));
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  assert.equal(await js.text(), fs.readFileSync(path.join(repo, 'web/novnc-audio.js'), 'utf8'));
});

test('the listen page passes ?token= on to the WebSocket URL', async () => {
  const page = await openPage('?token=s3cret&autostart=0');
  const url = await page.evaluate(() => window.novncAudio.url);
  assert.equal(new URL(url).searchParams.get('token'), 's3cret');
  assert.equal(new URL(url).pathname, '/audio');
  assert.match(url, /^ws:\/\//);
  const shown = await page.textContent('#url');
  assert.ok(!shown.includes('s3cret'), 'the token is not shown on the page');
  await page.close();
});

let mainPage;

test('the listen page loads, connects and renders the 440 Hz tone', async () => {
  mainPage = await openPage('?autostart=0');
  assert.equal(await mainPage.title(), 'noVNC audio');
  await mainPage.click('#play');
  await waitPlaying(mainPage);
  const s = await audioState(mainPage);
  log(`state ${s.state}, codec ${s.stats.codec}, context ${s.stats.audioContextState} @ ${s.stats.sampleRate} Hz`);
  assert.equal(s.stats.codec, backend.expectCodec);
  assert.equal(s.stats.audioContextState, 'running');
  assert.equal((await mainPage.textContent('#state')).trim(), 'playing');
  await sleep(1000);  // let the analyser settle
  assertTone(await dominant(mainPage), `${s.stats.codec} via listen page`);
  const level = await mainPage.evaluate(() => window.novncAudio.level);
  assert.ok(level > 0.01, `level meter reads ${level}`);
});

test(`the jitter buffer stays within its bound over ${WINDOW_S} s`, async () => {
  assert.ok(mainPage, 'needs the playing page');
  const res = await mainPage.evaluate(async (windowS) => {
    const a = window.novncAudio;
    const s0 = a.stats;
    const samples = [];
    let min = Infinity, max = 0;
    const end = performance.now() + windowS * 1000;
    while (performance.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      const s = a.stats;
      samples.push(s.bufferedMs);
      min = Math.min(min, s.minBufferedMs);
      max = Math.max(max, s.maxBufferedMs);
    }
    const s1 = a.stats;
    samples.sort((x, y) => x - y);
    return {
      min, max, median: samples[samples.length >> 1], n: samples.length,
      underruns: s1.underruns - s0.underruns, dropped: s1.droppedForLatency - s0.droppedForLatency,
      droppedMs: s1.droppedMs - s0.droppedMs, frames: s1.frames - s0.frames,
      latencyMs: s1.latencyMs, jitterMs: s1.jitterMs, state: a.state, workTarget: s1.targetMs,
      target: a.targetLatencyMs, maxLatency: a.maxLatencyMs,
    };
  }, WINDOW_S);
  log(`jitter buffer over ${WINDOW_S} s: buffered min/median/max ${res.min.toFixed(1)}/${res.median.toFixed(1)}/${res.max.toFixed(1)} ms ` +
    `(target ${res.target}, working target at the end ${res.workTarget}, bound ${res.maxLatency}); underruns ${res.underruns}; drops ${res.dropped} (${res.droppedMs.toFixed(0)} ms); ` +
    `frames ${res.frames}; latency estimate ${res.latencyMs.toFixed(1)} ms; network jitter ${res.jitterMs.toFixed(2)} ms`);
  assert.equal(res.state, 'playing');
  assert.ok(res.frames >= WINDOW_S * 40, `frames kept coming (${res.frames})`);
  assert.ok(res.max <= res.maxLatency, `buffered max ${res.max} ms > bound ${res.maxLatency} ms`);
  assert.ok(res.median <= res.workTarget + 60, `median buffered ${res.median} ms is far above the working target ${res.workTarget} ms`);
  // Underruns are reported, not judged strictly: on a loaded 2-core machine frames can arrive
  // late. A steady stream of them (one every 2 s or more) means something is broken.
  assert.ok(res.underruns <= Math.max(2, WINDOW_S / 2), `${res.underruns} underruns in ${WINDOW_S} s`);
});

test('screenshot of the listen page', async () => {
  assert.ok(mainPage, 'needs the playing page');
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await mainPage.screenshot({ path: SCREENSHOT });
  log(`screenshot: ${SCREENSHOT}`);
  const stats = await mainPage.evaluate(() => ({
    buffered: document.getElementById('s-buffered').textContent,
    frames: document.getElementById('s-frames').textContent,
    codec: document.getElementById('s-codec').textContent,
    meter: document.getElementById('meter').style.width,
  }));
  assert.match(stats.buffered, /^\d+ ms$/);
  assert.ok(Number(stats.frames) > 0);
  assert.equal(stats.codec, backend.expectCodec.toUpperCase());
  assert.ok(parseFloat(stats.meter) < 100, 'the level meter moves');
});

test('killing and restarting the server makes the page reconnect on its own', async (t) => {
  if (!backend.canRestart) { t.skip('no restart command (NOVNC_AUDIO_CMD, NOVNC_AUDIO_PIDFILE)'); return; }
  assert.ok(mainPage, 'needs the playing page');
  const before = (await audioState(mainPage)).stats;
  await backend.kill();
  await waitFor(mainPage, () => window.novncAudio.state === 'reconnecting', null, 10000, 'state reconnecting');
  const r = await audioState(mainPage);
  log(`after kill: ${r.state}: ${r.reason}`);
  assert.match(r.reason, backend.closeCode ? new RegExp(`code ${backend.closeCode}`) : /code \d+/);
  await sleep(1500);  // let it fail a retry or two: backoff
  const t0 = Date.now();
  await backend.start();
  await waitFor(mainPage, (f) => window.novncAudio.state === 'playing' && window.novncAudio.stats.frames > f + 25,
    before.frames, 20000, 'playing again');
  const after = await audioState(mainPage);
  log(`playing again ${Date.now() - t0} ms after the restart; reconnects ${after.stats.reconnects}`);
  assert.ok(after.stats.reconnects > before.reconnects);
  await sleep(800);
  assertTone(await dominant(mainPage), 'after reconnect');
  await mainPage.close();
  mainPage = null;
});

test("codec 'pcm' plays too (and a page where sound was enabled before starts by itself)", async () => {
  const page = await openPage('?codec=pcm');
  // No click: the first page's Play stored 'sound enabled' in localStorage.
  await waitPlaying(page);
  const s = await audioState(page);
  assert.equal(new URL(s.url).searchParams.get('codec'), null, 'the configured URL stays as given');
  assert.equal(s.stats.codec, 'pcm');
  await sleep(1000);
  assertTone(await dominant(page), 'pcm');
  await page.click('#play');  // stop
  await waitFor(page, () => window.novncAudio.state === 'stopped', null, 5000, 'stopped');
  await page.close();
});

test("codec 'auto' falls back to PCM where WebCodecs is missing, and says so", async () => {
  const page = await openPage('?autostart=0', () => { delete window.AudioDecoder; delete window.EncodedAudioChunk; });
  const reasons = [];
  await page.exposeFunction('noteReason', (r) => reasons.push(r));
  await page.evaluate(() => window.novncAudio.addEventListener('statechange', (e) => window.noteReason(e.detail.reason)));
  await page.click('#play');
  await waitPlaying(page);
  const s = await audioState(page);
  assert.equal(s.stats.codec, 'pcm');
  assert.ok(reasons.some((r) => /WebCodecs/.test(r) && /PCM/.test(r)), `reasons: ${JSON.stringify(reasons)}`);
  assert.match(s.stats.lastError, /WebCodecs/);
  await sleep(1000);
  assertTone(await dominant(page), 'auto fallback to pcm');
  await page.close();
});

test("codec 'opus' without WebCodecs is an error with a clear reason", async () => {
  const page = await openPage('?codec=opus&autostart=0', () => { delete window.AudioDecoder; });
  await page.click('#play');
  await waitFor(page, () => window.novncAudio.state === 'error', null, 5000, 'state error');
  const s = await audioState(page);
  assert.match(s.reason, /WebCodecs/);
  assert.match(await page.textContent('#reason'), /WebCodecs/);
  await page.close();
});

test('a stall and burst above the bound is dropped back to the target and counted', async () => {
  // Needs control over delivery, so this one always uses the mock server, whatever the backend.
  const mock = await startMockServer({ freq: TONE_HZ });
  const page = await browser.newPage();
  try {
    await page.goto(`${mock.url}?autostart=0&codec=pcm`);
    await page.click('#play');
    await waitPlaying(page);
    await sleep(500);
    const s0 = (await audioState(page)).stats;
    mock.stall(400);  // 400 ms of audio arrives at once: above the 200 ms bound
    await sleep(1500);
    const s1 = (await audioState(page)).stats;
    log(`stall: underruns +${s1.underruns - s0.underruns}, drops +${s1.droppedForLatency - s0.droppedForLatency} ` +
      `(${(s1.droppedMs - s0.droppedMs).toFixed(0)} ms), buffered now ${s1.bufferedMs.toFixed(1)} ms, ` +
      `working target ${s0.targetMs} -> ${s1.targetMs} ms`);
    assert.ok(s1.underruns > s0.underruns, 'the stall ran the buffer dry: an underrun is counted');
    assert.ok(s1.targetMs > s0.targetMs && s1.targetMs <= 160, `the working target adapts (${s0.targetMs} -> ${s1.targetMs} ms)`);
    assert.ok(s1.droppedForLatency > s0.droppedForLatency, 'the burst was dropped for latency');
    assert.ok(s1.droppedMs - s0.droppedMs >= 100, 'at least the excess over the bound was dropped');
    assert.ok(s1.bufferedMs <= 200, `buffered ${s1.bufferedMs} ms after the burst`);
    const played = await page.evaluate(() => window.novncAudio.state);
    assert.equal(played, 'playing');
    assertTone(await dominant(page), 'after the burst');

    // A smaller burst stays under the bound, but the slack it leaves is trimmed within ~2 s.
    await sleep(2500);
    mock.stall(160);
    await sleep(400);
    const s2 = (await audioState(page)).stats;
    // The trim comes after the first full 2 s window without the buffer running low: 2..4 s.
    const t0 = Date.now();
    let s3 = s2;
    while (Date.now() - t0 < 8000) {
      await sleep(200);
      s3 = (await audioState(page)).stats;
      if (s3.droppedForLatency > s2.droppedForLatency && s3.maxBufferedMs <= s3.targetMs + 40) break;
    }
    log(`small burst: buffered max ${s2.maxBufferedMs.toFixed(1)} ms just after, trimmed to ${s3.bufferedMs.toFixed(1)} ms ` +
      `(window max ${s3.maxBufferedMs.toFixed(1)}) ${Date.now() - t0 + 400} ms later; drops +${s3.droppedForLatency - s2.droppedForLatency}`);
    assert.ok(s2.maxBufferedMs > 120, 'the burst raised the fill level');
    assert.ok(s3.droppedForLatency > s2.droppedForLatency, 'the slack was dropped');
    // (Steady state peaks at about target + 10..30 ms; the working target is 60 ms plus 20 ms per
    // recent underrun.)
    assert.ok(s3.maxBufferedMs <= s3.targetMs + 40, `the slack was trimmed (fill ${s3.maxBufferedMs} ms, target ${s3.targetMs})`);
  } finally {
    await page.close();
    await mock.close();
  }
});

test('an AudioContext at 44.1 kHz resamples the 48 kHz stream to the right pitch', async () => {
  const page = await openPage('?autostart=0');
  const url = await page.evaluate(() => window.novncAudio.url);
  await page.evaluate(async (u) => {
    const { NovncAudio } = await import('/novnc-audio.js');
    window.novncAudio = new NovncAudio({ url: u, sampleRate: 44100 });
    await window.novncAudio.start();
  }, url);
  await waitPlaying(page);
  const rate = await page.evaluate(() => window.novncAudio.audioContext.sampleRate);
  assert.equal(rate, 44100);
  await sleep(1000);
  const f = await dominant(page);
  assert.ok(Math.abs(f.binHz - 44100 / 8192) < 0.01);
  assertTone(f, 'resampled to 44.1 kHz');
  const s = (await audioState(page)).stats;
  assert.ok(s.bufferedMs <= 200);
  await page.evaluate(() => window.novncAudio.stop());
  await page.close();
});

test('autoplay policy: a blocked start waits for the first click, then remembers it', async () => {
  // A second browser that enforces the policy (the main one is launched without it).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'novnc-audio-chromium-'));
  const strict = await launch(dir, 'document-user-activation-required');
  try {
    const page = strict.pages()[0] || await strict.newPage();
    await page.goto(backend.base + '?autostart=1');  // starts without any gesture
    await waitFor(page, () => window.novncAudio.state === 'playing', null, 15000, 'playing (blocked)');
    await sleep(500);
    const blocked = await page.evaluate(() => ({
      ctx: window.novncAudio.audioContext.state, reason: window.novncAudio.reason,
      pill: document.getElementById('state').textContent, button: document.getElementById('playlabel').textContent,
      stored: localStorage.getItem('novnc-audio.enabled'),
    }));
    log(`blocked: ${JSON.stringify(blocked)}`);
    assert.equal(blocked.ctx, 'suspended');
    assert.match(blocked.reason, /click or press a key/);
    assert.equal(blocked.pill, 'click to enable');
    assert.equal(blocked.button, 'Enable');
    assert.equal(blocked.stored, null);
    await page.mouse.click(5, 460);  // anywhere on the page
    await waitFor(page, () => window.novncAudio.audioContext.state === 'running' && window.novncAudio.stats.bufferedMs > 0,
      null, 5000, 'running after a click');
    const after = await page.evaluate(() => ({
      reason: window.novncAudio.reason, stored: localStorage.getItem('novnc-audio.enabled'),
      pill: document.getElementById('state').textContent,
    }));
    assert.equal(after.stored, '1');
    assert.equal(after.reason, 'playing');
    await sleep(1200);
    assertTone(await dominant(page), 'after the unlocking click');
    assert.equal((await page.evaluate(() => document.getElementById('state').textContent)), 'playing');
  } finally {
    await strict.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("web/README.md's vnc.html snippet plays from the VNC port + 10 after the first click", async () => {
  // A stand-in for noVNC's vnc.html (the README's <script> block, verbatim) served on port P,
  // and a mock daemon on P + 10.
  const readme = fs.readFileSync(path.join(repo, 'web/README.md'), 'utf8');
  const snippet = readme.match(/```html\n([\s\S]*?)```/)[1];
  const http = await import('node:http');
  const page = `<!doctype html><html><head><title>noVNC</title></head><body><div id="screen">VNC here</div>\n${snippet}</body></html>`;
  const js = fs.readFileSync(path.join(repo, 'web/novnc-audio.js'));
  let vnc, mock;
  for (let i = 0; i < 20 && !mock; i++) {
    vnc = http.createServer((req, res) => {
      const p = new URL(req.url, 'http://x').pathname;
      if (p === '/vnc.html') { res.writeHead(200, { 'Content-Type': 'text/html' }); res.end(page); }
      else if (p === '/novnc-audio.js') { res.writeHead(200, { 'Content-Type': 'text/javascript' }); res.end(js); }
      else { res.writeHead(404); res.end(); }
    });
    await new Promise((r) => vnc.listen(0, '127.0.0.1', r));
    const port = vnc.address().port;
    try {
      if (port + 10 > 65535) throw new Error('port out of range');
      mock = await startMockServer({ port: port + 10, freq: TONE_HZ });
    } catch {
      await new Promise((r) => vnc.close(r));
      vnc = null;
    }
  }
  assert.ok(mock, 'found a free port pair');
  const p = await browser.newPage();
  try {
    await p.addInitScript(() => localStorage.removeItem('novnc-audio.enabled'));
    await p.goto(`http://127.0.0.1:${vnc.address().port}/vnc.html?autoconnect=1`);
    await p.waitForFunction(() => !!window.novncAudio, null, { timeout: 5000 });
    assert.equal(await p.evaluate(() => window.novncAudio.url), `ws://127.0.0.1:${mock.port}/audio`);
    assert.equal(await p.evaluate(() => window.novncAudio.state), 'idle', 'waits for a gesture');
    await p.click('#screen');
    await waitPlaying(p);
    await sleep(1000);
    assertTone(await dominant(p), 'README snippet');
  } finally {
    await p.close();
    await mock.close();
    const closed = new Promise((r) => vnc.close(r));
    vnc.closeAllConnections();
    await closed;
  }
});
