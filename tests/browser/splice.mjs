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
function cut(x, want, { plain = false, right = x, maxK } = {}) {
  const l = x.slice(PLAYED), r = right.slice(PLAYED);
  const { k, w } = plain ? { k: want, w: 0 } : Splice.matchCut([l, r], l.length, want, RATE, maxK);
  Splice.overlapAdd([l, r], k, w);
  const join = (played, rest) => {
    const out = new Float32Array(PLAYED + rest.length - k);
    out.set(played.subarray(0, PLAYED));
    out.set(rest.subarray(k), PLAYED);
    return out;
  };
  return { out: join(x, l), outRight: join(right, r), k, w };
}

/** The largest step between neighbouring samples. */
function maxStep(x) {
  let m = 0;
  for (let i = 1; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - x[i - 1]));
  return m;
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
    const j = acrossJoin(out, 440);
    assert.ok(j.maxStep < 0.05, `phase step ${j.maxStep.toFixed(3)} rad at k ${k}`);
    assert.ok(j.minAmp > 0.97 * j.amp, `amplitude ${j.minAmp.toFixed(3)} of ${j.amp.toFixed(3)}`);
    const step = maxStep(out);
    const slope = 0.4 * 2 * Math.PI * 440 / RATE;
    assert.ok(step <= slope * 1.02, `largest sample step ${step.toFixed(4)} vs the sine's ${slope.toFixed(4)}`);
  });
}

test('the measure can fail: a plain cut of 2450 frames moves the phase of the tone', () => {
  const { out } = cut(tone([440], 20000), 2450, { plain: true });
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
  const s = Splice.matchCut([z, z], z.length, 2000, RATE);
  assert.equal(s.k, 2000);
  const t = tone([440], 400);
  const p = Splice.matchCut([t, t], t.length, 300, RATE);
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

test('a cut never goes past maxK, and stays within [want / 2, want] when maxK is want', () => {
  const x = tone([440, 97], 20000);
  for (const want of [200, 480, 961, 3000]) {
    const { k } = cut(x, want, { maxK: want });
    assert.ok(k >= Math.ceil(want / 2) && k <= want, `want ${want}: k ${k}`);
  }
});

test('a join where the match is imperfect (a chirp with noise) starts where the sound was and has no step', () => {
  let s = 3;
  const x = new Float32Array(20000);
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const f = 300 + 900 * i / x.length;      // 300 -> 1200 Hz
    x[i] = 0.4 * Math.sin(2 * Math.PI * f * i / RATE) + 0.05 * (s / 2147483648 - 0.5);
  }
  const { out, w } = cut(x, 1500);
  assert.ok(w > 0);
  // The first sample after the join continues from the last one played, as the signal itself does.
  assert.ok(Math.abs(out[PLAYED] - x[PLAYED]) < 0.02, `first joined sample ${out[PLAYED]} vs ${x[PLAYED]}`);
  const before = maxStep(x);
  assert.ok(maxStep(out) <= before * 1.1, `largest step ${maxStep(out).toFixed(4)} vs the signal's ${before.toFixed(4)}`);
});

test('stereo in opposite phase (which sums to silence) is matched on both channels, not cut blind', () => {
  const l = tone([440], 20000), r = l.map((v) => -v);
  const { out, outRight, k } = cut(l, 2450, { right: r });
  for (const [name, y] of [['left', out], ['right', outRight]]) {
    const j = acrossJoin(y, 440);
    assert.ok(j.maxStep < 0.05, `${name}: phase step ${j.maxStep.toFixed(3)} rad at k ${k}`);
    assert.ok(j.minAmp > 0.97 * j.amp, `${name}: amplitude ${j.minAmp.toFixed(3)} of ${j.amp.toFixed(3)}`);
  }
});

test('overlapAdd of a cut shorter than the join reads each frame before it is overwritten', () => {
  const x = tone([440, 97], 2000);
  const k = 100, w = 240;
  const want = Array.from(x, (v, i) => (i >= k && i < k + w ? x[i - k] * (1 - (i - k + 1) / (w + 1)) + v * ((i - k + 1) / (w + 1)) : v));
  const y = x.slice();
  Splice.overlapAdd([y], k, w);
  for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i] - want[i]) < 1e-6, `frame ${i}: ${y[i]} vs ${want[i]}`);
});
