// Unit tests of Splice.matchCut / overlapAdd (web/output/latency-policy.js), the cut both outputs
// make when they drop a backlog: no browser, the class is plain arithmetic. A cut of a pure tone
// must keep its phase and amplitude (a plain cut of the same length is shown to break both, so
// the measure can fail), a chord must be cut where it repeats, and audio too short to search
// falls back to the plain cut.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { iq, wrap } from './tone-phase.mjs';

const src = readFileSync(new URL('../../web/output/latency-policy.js', import.meta.url), 'utf8');
const { Splice } = await import(`data:text/javascript,${encodeURIComponent(src)}`);

const RATE = 48000;
const PLAYED = 2400;  // frames already played when the cut is made

function tone(freqs, n, amp = 0.4) {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) for (const f of freqs) x[i] += amp * Math.sin(2 * Math.PI * f * i / RATE + f / 100);
  return x;
}

/**
 * Cuts about `want` frames out of the stereo signal (both channels x) after PLAYED frames, as
 * the outputs do; `plain` cuts exactly `want` without matching. Returns the joined signal and k.
 */
function cut(x, want, plain = false) {
  const l = x.slice(PLAYED), r = x.slice(PLAYED);
  const mono = new Float32Array(l.length);
  for (let i = 0; i < l.length; i++) mono[i] = l[i] + r[i];
  const { k, w } = plain ? { k: want, w: 0 } : Splice.matchCut(mono, mono.length, want, RATE);
  const ch = [l, r];
  Splice.overlapAdd(2, k, w, (c, i) => ch[c][i], (c, i, v) => { ch[c][i] = v; });
  const out = new Float32Array(PLAYED + l.length - k);
  out.set(x.subarray(0, PLAYED));
  out.set(l.subarray(k), PLAYED);
  return { out, k, w, right: r.subarray(k) };
}

/**
 * The largest phase step (rad) and lowest amplitude of a tone f across the join: 25 ms windows
 * sliding by 2.5 ms from before the join to well after it, against the last window before it.
 */
function acrossJoin(out, f) {
  const n = 1200;
  const ref = iq(out, RATE, f, PLAYED - n, n);
  let maxStep = 0, minAmp = Infinity;
  for (let from = PLAYED - n; from < PLAYED + 4 * n; from += n / 10) {
    const m = iq(out, RATE, f, from, n);
    const d = Math.abs(wrap(m.phase - ref.phase));
    maxStep = Math.max(maxStep, d);
    minAmp = Math.min(minAmp, m.amp);
  }
  return { maxStep, minAmp, amp: ref.amp };
}

for (const want of [2450, 960, 4800 + 37, 300]) {
  test(`a 440 Hz tone cut by about ${want} frames keeps its phase and amplitude`, () => {
    const x = tone([440], 20000);
    const { out, k, w } = cut(x, want);
    assert.ok(w > 0, 'searched');
    assert.ok(k >= want / 2 && k <= want + 360, `k ${k} in range`);
    const j = acrossJoin(out, 440);
    assert.ok(j.maxStep < 0.05, `phase step ${j.maxStep.toFixed(3)} rad at k ${k}`);
    assert.ok(j.minAmp > 0.97 * j.amp, `amplitude ${j.minAmp.toFixed(3)} of ${j.amp.toFixed(3)}`);
    let step = 0;
    for (let i = 1; i < out.length; i++) step = Math.max(step, Math.abs(out[i] - out[i - 1]));
    const slope = 0.4 * 2 * Math.PI * 440 / RATE;
    assert.ok(step <= slope * 1.02, `largest sample step ${step.toFixed(4)} vs the sine's ${slope.toFixed(4)}`);
  });
}

test('the measure can fail: a plain cut of 2450 frames moves the phase of the tone', () => {
  const { out } = cut(tone([440], 20000), 2450, true);
  const j = acrossJoin(out, 440);
  assert.ok(j.maxStep > 1, `phase step ${j.maxStep.toFixed(3)} rad`);
});

test('a chord (220 + 330 Hz, repeating every 436.4 frames) is cut where it repeats', () => {
  const x = tone([220, 330], 20000, 0.3);
  const { out, k } = cut(x, 2000);
  const period = RATE / 110;
  const off = (k / period) % 1;
  assert.ok(Math.min(off, 1 - off) < 0.01, `k ${k} is ${off.toFixed(3)} of a period off`);
  for (const f of [220, 330]) {
    const j = acrossJoin(out, f);
    assert.ok(j.maxStep < 0.05, `${f} Hz: phase step ${j.maxStep.toFixed(3)} rad`);
  }
});

test('silence is cut at the length asked; audio too short to search is cut plainly', () => {
  const z = new Float32Array(6000);
  const s = Splice.matchCut(z, z.length, 2000, RATE);
  assert.equal(s.k, 2000);
  const t = tone([440], 400);
  const p = Splice.matchCut(t, t.length, 300, RATE);
  assert.deepEqual(p, { k: 300, w: 0 });
});

test('noise: the cut stays near the length asked and the join keeps most of its power', () => {
  let s = 7;
  const x = new Float32Array(20000);
  for (let i = 0; i < x.length; i++) { s = (s * 1103515245 + 12345) % 2147483648; x[i] = (s / 2147483648 - 0.5) * 0.5; }
  const { out, k, w } = cut(x, 3000);
  assert.ok(k >= 1500 && k <= 3360, `k ${k}`);
  const rms = (a, b) => Math.sqrt(out.subarray(a, b).reduce((e, v) => e + v * v, 0) / (b - a));
  const before = rms(0, PLAYED), join = rms(PLAYED, PLAYED + w);
  assert.ok(join > 0.6 * before, `join rms ${join.toFixed(3)} vs ${before.toFixed(3)}`);
});
