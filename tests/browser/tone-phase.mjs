// The phase and amplitude of a pure tone in recorded audio, by Hann-windowed I/Q demodulation:
// how the browser tests and splice.mjs tell a join that keeps the waveform from one that breaks
// it (a phase jump, an amplitude dip), which a sample-step detector does not see once a join is
// crossfaded.

/** Phase (rad) and amplitude of frequency f over x[from .. from + n), Hann-windowed I/Q. */
export function iq(x, rate, f, from, n) {
  let i = 0, q = 0, wsum = 0;
  for (let j = from; j < from + n; j++) {
    const h = 0.5 - 0.5 * Math.cos(2 * Math.PI * (j - from + 0.5) / n);
    i += h * x[j] * Math.cos(2 * Math.PI * f * j / rate);
    q += h * x[j] * Math.sin(2 * Math.PI * f * j / rate);
    wsum += h;
  }
  return { phase: Math.atan2(q, i), amp: 2 * Math.hypot(i, q) / wsum };
}

export const wrap = (a) => Math.atan2(Math.sin(a), Math.cos(a));

/**
 * Phase jumps of a tone of hz in x (rate, the recording's start t0 s): 5 ms windows every 2.5 ms,
 * each compared with the window 5 ms later. A steady tone advances by the same angle every time;
 * the playout speed (+1 % / -0.5 %, held for 500 ms or more) moves that angle by at most 0.2 rad,
 * and it is taken out by comparing each advance with the median of its neighbours 15-100 ms
 * away. A cut that breaks the waveform shows whole, as an isolated jump. Returns the largest jump
 * (rad) and when (s), the largest few over 0.3 rad, and the lowest window amplitude against the
 * median with the windows under 0.9 of it.
 */
export function phaseJumps(x, rate, hz, t0 = 0) {
  const n = Math.round(rate * 0.005), hop = n >> 1;
  const win = [];
  for (let from = 0; from + n <= x.length; from += hop) win.push({ from, ...iq(x, rate, hz, from, n) });
  const d = [];
  for (let k = 0; k + 2 < win.length; k++) d.push(wrap(win[k + 2].phase - win[k].phase));
  const t = (i) => +(t0 + i / rate).toFixed(3);
  const over = [];
  let worst = { jump: 0, at: 0 };
  for (let k = 40; k + 40 < d.length; k++) {
    const near = [...d.slice(k - 40, k - 6), ...d.slice(k + 7, k + 41)].sort((a, b) => a - b);
    const j = Math.abs(wrap(d[k] - near[near.length >> 1]));
    if (j > 0.3) over.push([t(win[k].from + n), +j.toFixed(2)]);
    if (j > worst.jump) worst = { jump: j, at: win[k].from + n };
  }
  const amps = win.map((w) => w.amp).sort((a, b) => a - b);
  const medAmp = amps[amps.length >> 1];
  const low = win.filter((w) => w.amp < 0.9 * medAmp).map((w) => [t(w.from), +(w.amp / medAmp).toFixed(2)]);
  over.sort((a, b) => b[1] - a[1]);
  low.sort((a, b) => a[1] - b[1]);
  return { maxJump: worst.jump, at: t(worst.at), minAmpRatio: amps[0] / medAmp, over: over.slice(0, 8), low: low.slice(0, 8) };
}
