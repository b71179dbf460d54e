// The worklet's jitter buffer (web/output/worklet.js's processor source, with LatencyPolicy and
// Splice, exactly as shipped to the audio thread) run in node: AudioWorkletProcessor,
// registerProcessor, sampleRate and currentTime are stubbed, 20 ms chunks of a 440 Hz tone are
// pushed on time and 128-frame quanta rendered. What a user does with the lip-sync slider,
// lowering the delay in one or two steps at any moment of the policy's 500 ms window, must
// drain the backlog by matched cuts: no underrun, no phase jump, each backlog counted once, and
// the fill back at the target. The 2 s ring wraps several times on the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { phaseJumps } from './tone-phase.mjs';

const webOutput = new URL('../../web/output/', import.meta.url);
const policySrc = readFileSync(new URL('latency-policy.js', webOutput), 'utf8');
const { LatencyPolicy, Splice } = await import(`data:text/javascript,${encodeURIComponent(policySrc)}`);
const processorSrc = readFileSync(new URL('worklet.js', webOutput), 'utf8').match(/String\.raw`([\s\S]*?)`;/)[1];

const RATE = 48000, CHUNK = 960, HZ = 440;

/** The processor as the worklet gets it; env.currentTime is the audio thread's clock (s). */
function makeProcessor(opts) {
  const env = { currentTime: 0, cls: null };
  class AudioWorkletProcessor { constructor() { this.port = { postMessage() {} }; } }
  const source = `${LatencyPolicy.toString()}\n${Splice.toString()}\n${processorSrc}`;
  new Function('AudioWorkletProcessor', 'registerProcessor', 'env',
    `"use strict"; const sampleRate = ${RATE};\n${source.replace(/\bcurrentTime\b/g, 'env.currentTime')}`,
  )(AudioWorkletProcessor, (name, cls) => { env.cls = cls; }, env);
  return { p: new env.cls({ processorOptions: { inRate: RATE, ...opts } }), env };
}

/**
 * Plays `seconds` of the tone; at each [t, delayMs] of `changes` the delay is set; watch(p, t),
 * if given, sees the processor after each quantum.
 */
function play(seconds, changes, opts = {}, watch = null) {
  const { p, env } = makeProcessor({ floorMs: 13, jitterMs: 5, ...opts });
  let phase = 0, next = 0;
  const out = new Float32Array(Math.round(seconds * RATE / 128) * 128);
  const todo = [...changes];
  for (let q = 0; q * 128 < out.length; q++) {
    env.currentTime = q * 128 / RATE;
    while (next <= env.currentTime) {
      const a = new Float32Array(CHUNK);
      for (let i = 0; i < CHUNK; i++) a[i] = 0.4 * Math.sin(phase + 2 * Math.PI * HZ * i / RATE);
      phase += 2 * Math.PI * HZ * CHUNK / RATE;
      p.onMessage({ type: 'push', channels: [a, a.slice()], frames: CHUNK, rate: RATE, gapMs: 0, lateMs: 0 });
      next += CHUNK / RATE;
    }
    while (todo.length && env.currentTime >= todo[0][0]) p.onMessage({ type: 'config', delayMs: todo.shift()[1] });
    const L = new Float32Array(128), R = new Float32Array(128);
    p.process([], [[L, R]]);
    out.set(L, q * 128);
    if (watch) watch(p, env.currentTime);
  }
  return { p, out };
}

for (const [label, changes] of [
  ['200 -> 0 ms', [[3.0, 0]]],
  ['200 -> 0 ms, 0.26 s later in the window', [[3.26, 0]]],
  ['200 -> 100 -> 0 ms, 0.1 s apart', [[3.0, 100], [3.1, 0]]],
  ['200 -> 100 -> 0 ms, 0.45 s apart', [[3.0, 100], [3.45, 0]]],
  ['200 -> 150 ms (below the hard cap: drained, not cut at once)', [[3.0, 150]]],
]) {
  test(`a lowered lip-sync delay (${label}) is drained without an underrun or a phase jump`, () => {
    const { p, out } = play(8, changes, { delayMs: 200 });
    const j = phaseJumps(out.subarray(RATE), RATE, HZ, 1);
    const target = p.policy.workTargetMs, fill = p.ms(p.n);
    const cut = p.ms(p.droppedFrames);
    const asked = 200 - changes[changes.length - 1][1];
    assert.equal(p.policy.underruns, 0, 'no underrun');
    // The speed switching between +1 % and -0.5 % moves the measure by up to 0.2 rad; a cut at an
    // arbitrary sample moves the phase by anything up to pi.
    assert.ok(j.maxJump < 0.3, `phase jump ${j.maxJump.toFixed(3)} rad at ${j.at} s`);
    assert.ok(j.minAmpRatio > 0.95, `amplitude down to ${j.minAmpRatio.toFixed(3)} of the median`);
    assert.ok(Math.abs(cut - asked) < 30, `cut ${cut.toFixed(1)} ms for a delay lowered by ${asked}`);
    assert.ok(fill < target + 2 * CHUNK / 48, `fill ${fill.toFixed(1)} ms, target ${target.toFixed(1)}`);
    assert.ok(p.policy.cuts >= 1 && p.policy.cuts <= changes.length,
      `backlogs counted: ${p.policy.drains} drained, ${p.policy.capCuts} cut at once`);
    assert.equal(p.policy.drainMs, 0, 'nothing left to drain');
  });
}

test('the ring wraps (2 s of it, 8 s played) and the buffer holds its target with no cut at all', () => {
  const { p, out } = play(8, []);
  assert.equal(p.droppedFrames, 0);
  assert.equal(p.policy.underruns, 0);
  assert.ok(p.cap * 3 < out.length, `ring of ${p.cap} frames, ${out.length} played`);
  const j = phaseJumps(out.subarray(RATE), RATE, HZ, 1);
  assert.ok(j.maxJump < 0.1, `phase jump ${j.maxJump.toFixed(3)} rad at ${j.at} s`);
});

test('a backlog the fill no longer holds is left to the speed and not counted as cut', () => {
  const policy = new LatencyPolicy({ floorMs: 13, jitterMs: 5 });
  policy.start(20, 20);
  policy.drainMs = 30;              // arriving() found a backlog of 30 ms
  const target = policy.workTargetMs;
  assert.equal(policy.takeCut(20, target + 20 + 3), 0, 'only 3 ms above the target: nothing to cut');
  assert.equal(policy.drainMs, 0);
  assert.equal(policy.drains, 0, 'nothing was cut, so no backlog is counted');
  policy.drainMs = 30;
  const ms = policy.takeCut(20, target + 20 + 40);
  assert.equal(ms, 10, 'half the chunk');
  policy.cutMade(ms);
  assert.equal(policy.drains, 1);
  assert.equal(policy.drainMs, 20);
});

test('a cautious start holds the margin for its first seconds, then drains it without a jump', () => {
  // The low-water fill (just before a chunk arrives) in each second of output.
  const low = [];
  const { p, out } = play(8, [], { startMarginMs: 80, startHoldMs: 4000 }, (pr, t) => {
    const s = Math.floor(t);
    low[s] = Math.min(low[s] ?? Infinity, pr.ms(pr.n));
  });
  const base = Math.max(13, 5 + 2);
  for (const s of [1, 2, 3]) assert.ok(low[s] >= base + 80 - 5, `second ${s}: the fill fell to ${low[s].toFixed(1)} ms`);
  assert.ok(low[7] < base + 20, `the margin is still held after 7 s: the fill stays above ${low[7].toFixed(1)} ms`);
  assert.equal(p.policy.startMarginMs, 0);
  assert.equal(p.policy.underruns, 0);
  assert.equal(p.policy.capCuts, 0, 'drained by matched cuts, not cut at once');
  const j = phaseJumps(out.subarray(RATE), RATE, HZ, 1);
  assert.ok(j.maxJump < 0.3, `phase jump ${j.maxJump.toFixed(3)} rad at ${j.at} s`);
  assert.ok(j.minAmpRatio > 0.95, `amplitude down to ${j.minAmpRatio.toFixed(3)} of the median`);
});

test('the start margin is armed once: a later config or an underrun does not bring it back', () => {
  const policy = new LatencyPolicy({ floorMs: 13, jitterMs: 5, startMarginMs: 60, startHoldMs: 1000 });
  assert.equal(policy.workTargetMs, 73);
  policy.start(20, 20);
  policy.arriving(70, 20, 0);
  policy.arriving(70, 20, 1000);
  assert.equal(policy.workTargetMs, 13);
  policy.configure({ startMarginMs: 60 });
  policy.underrun();
  policy.start(20, 20);
  assert.equal(policy.workTargetMs, 13);
});
