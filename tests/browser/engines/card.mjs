// card.mjs: what reached the browser's sound card while the tone played, and where it broke.
//
// The module's own `underruns` counts only the gaps its buffer saw. An engine can also drop audio
// after the graph, in its output path (a small output buffer on a busy machine: the latencyHint
// the module picks per engine), and that is heard all the same. So the window's tone is recorded
// at the card (the monitor of the null sink of the browsers' own PulseAudio) and searched for:
//   drops  stretches of 5 ms whose level falls below half the tone's (a gap, concealed or not);
//   jumps  samples a pure tone cannot follow from the two before it (a click: a splice, a cut).
import { spawn } from 'node:child_process';

export const CARD_RATE = 48000;

/**
 * Records the card's monitor (mono, 16 bit, CARD_RATE) until stop(), which resolves to its
 * samples (Int16Array). The recorder is its own process group, ended by pid.
 * @param {string} server PULSE_SERVER of the browsers' PulseAudio
 * @param {string} [sink] its null sink
 */
export function recordCard(server, sink = 'browser_out') {
  const child = spawn('parec', ['-d', `${sink}.monitor`, '--raw', '--format=s16le', `--rate=${CARD_RATE}`,
    '--channels=1', '--latency-msec=20'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, PULSE_SERVER: server } });
  const chunks = [];
  child.stdout.on('data', (b) => chunks.push(b));
  const exited = new Promise((r) => child.once('exit', r));
  return {
    async stop() {
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
      await exited;
      const b = Buffer.concat(chunks);
      return new Int16Array(b.buffer, b.byteOffset, b.length >> 1);
    },
  };
}

/**
 * Where a steady tone of hz breaks in samples. The first and last 100 ms are left out (the
 * recorder's start and stop). A drop is a run of 5 ms blocks with an RMS under half the median
 * block's; a jump is a sample whose distance from the pure tone's prediction from the two before
 * it, x[n] - 2 cos(w) x[n-1] + x[n-2], exceeds a third of the tone's amplitude (Opus's noise and
 * the resamplers stay far below: measured at under 2 % of the amplitude on a clean run), counted
 * once per 5 ms. breaks lists the drops (from the start of the recording: atS, ms, the lowest
 * block's level against the tone's, and whether a jump falls at its start, cutIn, or its end,
 * cutOut); loneJumpsAtS the jumps away from any drop.
 * @returns {{seconds: number, rms: number, drops: number, dropMs: number, jumps: number,
 *   breaks: object[], loneJumpsAtS: number[]}}
 */
export function toneBreaks(samples, hz, rate = CARD_RATE) {
  const edge = Math.round(rate * 0.1);
  const x = samples.subarray(edge, Math.max(edge, samples.length - edge));
  const block = Math.round(rate * 0.005);
  const nBlocks = Math.floor(x.length / block);
  const rmsOf = new Float64Array(nBlocks);
  for (let b = 0; b < nBlocks; b++) {
    let s = 0;
    for (let i = b * block; i < (b + 1) * block; i++) s += x[i] * x[i];
    rmsOf[b] = Math.sqrt(s / block);
  }
  const sorted = Float64Array.from(rmsOf).sort();
  const rms = nBlocks ? sorted[nBlocks >> 1] : 0;
  let drops = 0, dropBlocks = 0, inDrop = false;
  const gaps = [];   // each drop: [first block, blocks, lowest block RMS]
  for (let b = 0; b < nBlocks; b++) {
    const low = rmsOf[b] < rms / 2;
    if (low) {
      dropBlocks++;
      if (!inDrop) { drops++; gaps.push([b, 0, Infinity]); }
      const g = gaps[gaps.length - 1];
      g[1]++;
      g[2] = Math.min(g[2], rmsOf[b]);
    }
    inDrop = low;
  }
  const c = 2 * Math.cos(2 * Math.PI * hz / rate);
  const limit = (rms * Math.SQRT2) / 3;
  let jumps = 0, lastJump = -Infinity;
  const jumpAt = [];
  for (let n = 2; n < x.length; n++) {
    if (Math.abs(x[n] - c * x[n - 1] + x[n - 2]) > limit && n - lastJump > block) {
      jumps++;
      lastJump = n;
      jumpAt.push(n);
    }
  }
  // Each break, for telling a faded gap (the module's: the level decays, no jump where it falls)
  // from a cut one (the tone stops dead: a jump at its start, e.g. the engine's output starved).
  const near = (n) => jumpAt.some((j) => Math.abs(j - n) <= 2 * block);
  const breaks = gaps.slice(0, 100).map(([b, k, low]) => ({
    atS: +((edge + b * block) / rate).toFixed(3),
    ms: k * 5,
    level: +(low / rms).toFixed(3),
    cutIn: near(b * block),
    cutOut: near((b + k) * block),
  }));
  const lone = jumpAt.filter((n) => !gaps.some(([b, k]) => n >= (b - 2) * block && n <= (b + k + 2) * block));
  return {
    seconds: x.length / rate, rms: rms / 32768, drops, dropMs: dropBlocks * 5, jumps, breaks,
    loneJumpsAtS: lone.slice(0, 100).map((n) => +((edge + n) / rate).toFixed(3)),
  };
}
