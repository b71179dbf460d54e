// The scheduled output (web/output/scheduled.js, with LatencyPolicy and Splice as shipped) run in
// node against a stub AudioContext that keeps Chromium's clock: it renders 512 frames at a time,
// ahead of the wall clock, and currentTime is the end of what it has rendered. Frames of a 440 Hz
// tone arrive every 20 ms; the lip-sync delay is raised to 300 ms, then dropped to 0, so that the
// backlog is cut out a little at a time, as in the browser suite's "backlog cut" test.
//
// What is checked is the rule the real engines need, which a browser run only breaks now and
// then: a source the output stops and replaces (a cut, a flush) must start past the stretch the
// engine will render next (its 512 frames and a quantum). Inside it, the old source may already
// be stopped when the engine renders, and its replacement not yet in place: a chunk of silence
// that no underrun counts. Also checked: what stays scheduled is one gapless run of sources, and
// a flush with nothing to replace leaves one decaying tail after the audio, not two.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const webOutput = new URL('../../web/output/', import.meta.url);
const policyUrl = `data:text/javascript,${encodeURIComponent(readFileSync(new URL('latency-policy.js', webOutput), 'utf8'))}`;
const scheduledSrc = readFileSync(new URL('scheduled.js', webOutput), 'utf8')
  .replace("'./latency-policy.js'", JSON.stringify(policyUrl));
const { ScheduledOutput } = await import(`data:text/javascript,${encodeURIComponent(scheduledSrc)}`);
const { Splice } = await import(policyUrl);
const TAIL_FRAMES = 5 * Splice.DECAY;   // scheduled.js's tail after the last chunk

const RATE = 48000, BURST = 512, CHUNK = 960, HZ = 440;

/** Chromium's clock: at wall time `wallS` it has rendered whole bursts up to and past it. */
function stubContext() {
  const ctx = {
    sampleRate: RATE, baseLatency: 128 / RATE, currentTime: 0, calls: [],
    setWall(wallS) { ctx.currentTime = Math.ceil(wallS * RATE / BURST) * BURST / RATE; },
    createBuffer(channels, length) {
      const data = Array.from({ length: channels }, () => new Float32Array(length));
      return { length, numberOfChannels: channels, getChannelData: (c) => data[c] };
    },
    createBufferSource() {
      const src = {
        buffer: null, startS: null,
        connect() {}, disconnect() {},
        start(when) { src.startS = when; ctx.calls.push({ op: 'start', src, at: ctx.currentTime }); },
        stop(when = 0) { ctx.calls.push({ op: 'stop', src, when, at: ctx.currentTime }); },
      };
      return src;
    },
  };
  return ctx;
}

test('the scheduled output replaces only audio the engine has not started to render (Chromium\'s 512-frame bursts)', () => {
  const ctx = stubContext();
  const out = new ScheduledOutput(ctx, {}, { pullS: BURST / RATE, jitterMs: 5 });
  let phase = 0;
  const chunk = () => {
    const a = new Float32Array(CHUNK);
    for (let i = 0; i < CHUNK; i++) a[i] = 0.4 * Math.sin(phase + 2 * Math.PI * HZ * i / RATE);
    phase += 2 * Math.PI * HZ * CHUNK / RATE;
    return [a, a.slice()];
  };
  let cutStops = 0;
  const violations = [];
  let seed = 1;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let k = 0; k < 3000; k++) {         // 60 s of 20 ms frames, arriving up to 3 ms late
    ctx.setWall(k * CHUNK / RATE + 0.003 * random());
    // As NovncAudio's audioDelayMs setter: the bound follows the delay, a higher delay restarts.
    // Lowering it by 300 ms is cut at once (above the cap), by 40 ms a cut at a time.
    if (k === 100) { out.configure({ delayMs: 300, maxMs: 800 }); out.flush(); }
    if (k === 250) out.configure({ delayMs: 0, maxMs: 500 });
    if (k >= 400 && k % 100 === 0) {
      const delayMs = k % 200 ? 0 : 40;
      out.configure({ delayMs, maxMs: 500 + delayMs });
      if (delayMs) out.flush();
    }
    const before = ctx.calls.length;
    out.push(chunk(), CHUNK, RATE);
    // Every source stopped by this push that had been started as audio (not a tail decaying
    // after the last chunk) was replaced: it must start past the next burst and a quantum.
    const nextRender = ctx.currentTime * RATE + BURST + 128;
    for (const c of ctx.calls.slice(before)) {
      if (c.op !== 'stop' || c.src.buffer.length === TAIL_FRAMES) continue;
      cutStops++;
      const startFrame = c.src.startS * RATE;
      if (startFrame < nextRender) violations.push({ push: k, framesAhead: startFrame - ctx.currentTime * RATE });
    }
  }
  const st = out.stats();
  console.log(`cut ${st.droppedMs.toFixed(0)} ms in ${st.droppedForLatency} backlogs; ${cutStops} sources replaced, ${violations.length} inside the next burst; fill ${st.bufferedMs.toFixed(1)} ms, target ${st.targetMs.toFixed(1)}`);
  assert.ok(st.droppedMs >= 300 + 14 * 40 * 0.8, `the backlogs were cut out (${st.droppedMs.toFixed(0)} ms)`);
  assert.ok(cutStops >= 50, `the cuts replaced sources (${cutStops} stops)`);
  assert.deepEqual(violations.slice(0, 3), [], `${violations.length} of ${cutStops} replaced sources started inside the engine's next burst`);
  assert.equal(st.underruns, 0);
  // What is left scheduled plays gaplessly, each source where the previous one ends.
  const q = out._queue;
  for (let i = 1; i < q.length; i++) assert.equal(q[i].startFrame, q[i - 1].endFrame, `source ${i} joins on`);
  assert.ok(st.bufferedMs < 60, `back near the target (${st.bufferedMs.toFixed(1)} ms)`);
});

test('a flush with nothing it may replace keeps the one tail it had (no second tail on top)', () => {
  const ctx = stubContext();
  const out = new ScheduledOutput(ctx, {}, { pullS: BURST / RATE, jitterMs: 5 });
  const chunk = () => { const a = new Float32Array(CHUNK).fill(0.5); return [a, a.slice()]; };
  for (let k = 0; k < 20; k++) { ctx.setWall(k * CHUNK / RATE); out.push(chunk(), CHUNK, RATE); }
  // The clock just short of the last source's start: the engine may have pulled it already, so
  // nothing is replaceable, and the last source has not ended.
  const last = out._queue[out._queue.length - 1];
  ctx.setWall((last.startFrame - BURST) / RATE);
  assert.equal(out._firstReplaceable(), -1, 'nothing is replaceable');
  const liveTails = () => {
    const stopped = new Set(ctx.calls.filter((c) => c.op === 'stop').map((c) => c.src));
    return ctx.calls.filter((c) => c.op === 'start' && c.src.buffer.length === TAIL_FRAMES && !stopped.has(c.src)
      && Math.round(c.src.startS * RATE) === out._nextFrame).length;
  };
  assert.equal(liveTails(), 1, 'one tail after the last chunk before the flush');
  out.flush();
  assert.equal(liveTails(), 1, 'one tail after the last chunk after the flush');
});
