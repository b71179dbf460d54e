// The microphone in headless Debian Chromium, driven by playwright-core against the real daemon
// (tests/browser/mic.sh starts it with --microphone and a private PulseAudio):
//   - on the listen page (a secure context: 127.0.0.1) its microphone button is pressed; a fake
//     microphone playing MIC_WAV (660 Hz, steady then in bursts) speaks into /mic; `parec` on the
//     server's default source hears 660 Hz; the latency from the browser's capture to the source
//     is printed (median, p99);
//   - on a plain-http origin (desk.test, mapped to 127.0.0.1) the listen page says that a
//     microphone needs a secure context (its button off), and start() fails with that reason.
//
//   NOVNC_AUDIO_URL=http://127.0.0.1:PORT/   the daemon's listen page
//   MIC_WAV=FILE                             what the fake microphone says
//   PULSE_SERVER=...                         the daemon's PulseAudio (for parec)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = (process.env.NOVNC_AUDIO_URL || '').replace(/\/?$/, '/');
const WAV = process.env.MIC_WAV;
const VOICE_HZ = 660;
const PLAIN_HOST = 'desk.test';
const RATE = 48000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log('#', ...a);
const wallMs = () => performance.timeOrigin + performance.now();

let browser;
let userDataDir;

before(async () => {
  assert.ok(BASE && WAV, 'run through tests/browser/mic.sh (NOVNC_AUDIO_URL and MIC_WAV)');
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'novnc-audio-mic-chromium-'));
  // Chromium must not find the test PulseAudio: its output would land in the daemon's sink.
  const env = { ...process.env };
  delete env.PULSE_SERVER;
  delete env.XDG_RUNTIME_DIR;
  env.HOME = userDataDir;
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    env,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
      '--autoplay-policy=no-user-gesture-required',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${WAV}`,
      `--host-resolver-rules=MAP ${PLAIN_HOST} 127.0.0.1`,
    ],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

async function openPage(url) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => log('pageerror:', e.message));
  page.on('console', (m) => { if (m.type() === 'error') log('console.error:', m.text()); });
  await page.goto(url);
  return page;
}

function pactl(...args) {
  return new Promise((resolve) => {
    const p = spawn('pactl', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('close', () => resolve(out.trim()));
  });
}

/** parec on a source: samples in -1..1 with the wall-clock time each was recorded. */
function record(source) {
  const child = spawn('parec', ['--raw', '--format=s16le', `--rate=${RATE}`, '--channels=1',
    '--latency-msec=10', `--device=${source}`], { stdio: ['ignore', 'pipe', 'ignore'] });
  const samples = [];
  const times = [];
  let odd = null;
  child.stdout.on('data', (chunk) => {
    const now = wallMs();
    let buf = odd ? Buffer.concat([odd, chunk]) : chunk;
    odd = null;
    if (buf.length % 2) { odd = buf.subarray(buf.length - 1); buf = buf.subarray(0, buf.length - 1); }
    const n = buf.length / 2;
    for (let i = 0; i < n; i++) {
      samples.push(buf.readInt16LE(2 * i) / 32768);
      times.push(now - (n - 1 - i) * 1000 / RATE);
    }
  });
  return { samples, times, stop: () => child.kill() };
}

function rms(x) {
  let s = 0;
  for (const v of x) s += v * v;
  return x.length ? Math.sqrt(s / x.length) : 0;
}

/** Dominant frequency in 100..4000 Hz (Goertzel over a 5 Hz grid, Hann window). */
function dominantHz(x) {
  const w = x.map((v, i) => v * (0.5 - 0.5 * Math.cos(2 * Math.PI * i / (x.length - 1))));
  let best = [0, -1];
  for (let f = 100; f <= 4000; f += 5) {
    const c = 2 * Math.cos(2 * Math.PI * f / RATE);
    let s1 = 0; let s2 = 0;
    for (const v of w) { const s = v + c * s1 - s2; s2 = s1; s1 = s; }
    const p = s1 * s1 + s2 * s2 - c * s1 * s2;
    if (p > best[1]) best = [f, p];
  }
  return best[0];
}

/** Wall-clock times where a burst begins: a 2.5 ms window over 0.05 after one under 0.01. */
function onsets(samples, times) {
  const out = [];
  let quiet = false;
  for (let i = 0; i + 120 <= samples.length; i += 120) {
    const level = rms(samples.slice(i, i + 120));
    if (level < 0.01) quiet = true;
    else if (level > 0.05 && quiet) { quiet = false; out.push(times[i]); }
  }
  return out;
}

function medianP99(v) {
  const s = [...v].sort((a, b) => a - b);
  const at = (q) => s[Math.round((s.length - 1) * q)];
  return [at(0.5), at(0.99)];
}

test('a fake microphone speaks through the listen page into the default source', async () => {
  const page = await openPage(BASE);
  assert.equal(await page.evaluate(() => window.isSecureContext), true);
  assert.equal(await page.isDisabled('#mic'), false, 'the microphone button is usable');
  // The listen page's microphone button, as a person would press it.
  await page.click('#mic');
  await page.waitForFunction(() => window.novncAudio.microphone && window.novncAudio.microphone.state !== 'starting',
    null, { timeout: 15000 });
  const started = await page.evaluate(() => {
    const mic = window.novncAudio.microphone;
    // When each burst entered the encoder (its first loud sample, wall clock).
    window.micOnsets = [];
    let quiet = false;
    mic.addEventListener('frame', (e) => {
      const { rms: level, firstLoud, at } = e.detail;
      if (level < 0.01) quiet = true;
      else if (firstLoud >= 0 && quiet) { quiet = false; window.micOnsets.push(at + firstLoud * 1000 / 48000); }
    });
    return { ok: mic.state === 'live', why: mic.reason, codec: mic.stats.codec, url: mic.url,
      shown: document.getElementById('micreason').textContent };
  });
  assert.ok(started.ok, `the microphone did not start: ${started.why}`);
  assert.match(started.url, /^ws:\/\/127\.0\.0\.1:\d+\/mic$/);
  assert.match(started.shown, /Microphone on/);
  log(`microphone live, codec ${started.codec}`);

  let source = '';
  for (let i = 0; i < 50 && source !== 'novnc_mic'; i++) { await sleep(100); source = await pactl('get-default-source'); }
  assert.equal(source, 'novnc_mic', 'the microphone became the default source');
  const rec = record('@DEFAULT_SOURCE@');
  await sleep(1000);
  const steady = rec.samples.slice(-RATE / 2);
  const hz = dominantHz(steady);
  log(`the default source: ${hz} Hz, rms ${rms(steady).toFixed(3)}`);
  assert.ok(Math.abs(hz - VOICE_HZ) <= 10 && rms(steady) > 0.05, `heard ${hz} Hz at rms ${rms(steady)}`);

  await sleep(8000);
  rec.stop();
  const sent = await page.evaluate(() => window.micOnsets);
  const heard = onsets(rec.samples, rec.times);
  // Each burst sent, with the first onset heard after it (and within a second): a dip inside
  // a burst heard twice counts once.
  const used = new Set();
  const latencies = [];
  for (const h of heard) {
    const i = sent.findLastIndex((t) => t <= h);
    if (i < 0 || used.has(i) || h - sent[i] >= 1000) continue;
    used.add(i);
    latencies.push(h - sent[i]);
  }
  assert.ok(latencies.length >= 20, `bursts matched: ${latencies.length} (sent ${sent.length}, heard ${heard.length})`);
  const [median, p99] = medianP99(latencies);
  log(`sent ${sent.length} bursts, heard ${heard.length} onsets: ${latencies.map((v) => Math.round(v)).join(' ')}`);
  log(`browser capture to source (${started.codec}): median ${median.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms over ${latencies.length} bursts`);
  console.log(`mic browser latency: median ${median.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);

  const stats = await page.evaluate(() => window.novncAudio.microphone.stats);
  assert.equal(stats.state, 'live');
  assert.ok(stats.framesSent > 400, JSON.stringify(stats));
  const daemon = await (await fetch(new URL('stats', BASE))).json();
  assert.equal(daemon.microphone.speaker_connected, true, JSON.stringify(daemon.microphone));
  assert.equal(daemon.microphone.source, 'novnc_mic');
  await page.click('#mic');
  assert.equal(await page.evaluate(() => window.novncAudio.microphone.state), 'stopped');
  await page.close();
});

test('a fake microphone speaks through noVNC\'s own page (--novnc-dir, the Sound panel)', async () => {
  const page = await openPage(new URL('novnc/vnc.html', BASE).toString());
  await page.waitForSelector('#noVNC_audio_mic', { state: 'attached', timeout: 15000 });
  // The switch in the Sound panel of noVNC's control bar (clicked in the page: noVNC may keep
  // its bar folded away).
  await page.evaluate(() => document.getElementById('noVNC_audio_mic').click());
  await page.waitForFunction(() => window.novncAudio.microphone && window.novncAudio.microphone.state !== 'starting',
    null, { timeout: 15000 });
  const m = await page.evaluate(() => ({
    state: window.novncAudio.microphone.state, reason: window.novncAudio.microphone.reason,
    url: window.novncAudio.microphone.url, shown: document.getElementById('noVNC_audio_mic_status').textContent,
  }));
  assert.equal(m.state, 'live', `the microphone did not start: ${m.reason}`);
  assert.match(m.url, /^ws:\/\/127\.0\.0\.1:\d+\/mic$/);
  assert.match(m.shown, /Microphone on/);
  await sleep(1000);
  const rec = record('@DEFAULT_SOURCE@');
  await sleep(1500);
  rec.stop();
  const tail = rec.samples.slice(-RATE);
  // The bursts: over a second, 660 Hz dominates what is heard.
  const hz = dominantHz(tail);
  log(`noVNC page: the default source carries ${hz} Hz, rms ${rms(tail).toFixed(3)}`);
  assert.ok(Math.abs(hz - VOICE_HZ) <= 10 && rms(tail) > 0.02, `heard ${hz} Hz at rms ${rms(tail)}`);
  await page.evaluate(() => document.getElementById('noVNC_audio_mic').click());
  assert.equal(await page.evaluate(() => window.novncAudio.microphone.state), 'stopped');
  await page.close();
});

test('on a plain-http page the microphone says it needs a secure context', async () => {
  const url = new URL(BASE);
  const page = await openPage(`http://${PLAIN_HOST}:${url.port}/`);
  // The listen page says so, and its button is off.
  assert.equal(await page.isDisabled('#mic'), true);
  assert.match(await page.textContent('#micreason'), /secure context/);
  const r = await page.evaluate(async () => {
    const { Microphone, noMicrophoneReason, INSECURE_REASON } = await import('/microphone.js');
    const mic = new Microphone({ url: `ws://${location.host}/mic` });
    let error = null;
    try { await mic.start(); } catch (e) { error = e.message; }
    return { secure: window.isSecureContext, reason: noMicrophoneReason(), expected: INSECURE_REASON, error, state: mic.state };
  });
  assert.equal(r.secure, false);
  assert.equal(r.reason, r.expected);
  assert.equal(r.error, r.expected);
  assert.equal(r.state, 'error');
  assert.match(r.expected, /secure context/);
  await page.close();
});
