// Scripts run in the page (WebDriver "execute script" bodies: `arguments[i]`, `return`).
// They look for the module where the README snippet puts it (window.novncAudio).

/** Where the page stands: secure context, noVNC's connection, the module's state. */
export const PAGE_STATE = `
  const a = window.novncAudio;
  const st = document.getElementById('noVNC_status');
  return {
    secure: window.isSecureContext,
    connected: document.documentElement.classList.contains('noVNC_connected'),
    novncStatus: st ? st.textContent : null,
    userAgent: navigator.userAgent,
    hasModule: !!a,
    state: a ? a.state : null,
    stats: a ? a.stats : null,
    audioGlobals: Object.keys(window).filter((k) => /audio/i.test(k)),
  };`;

/** Size of noVNC's canvas and whether it shows anything (distinct colours over a grid). */
export const CANVAS_PIXELS = `
  const c = document.querySelector('#noVNC_container canvas');
  if (!c) return { found: false };
  const r = c.getBoundingClientRect();
  const out = { found: true, width: c.width, height: c.height, cssWidth: r.width, cssHeight: r.height };
  if (!c.width || !c.height) return out;
  const g = c.getContext('2d');
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const colours = new Set();
  let sum = 0, sum2 = 0, n = 0;
  const stepX = Math.max(1, Math.floor(c.width / 64)), stepY = Math.max(1, Math.floor(c.height / 64));
  for (let y = 0; y < c.height; y += stepY) for (let x = 0; x < c.width; x += stepX) {
    const i = (y * c.width + x) * 4;
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    sum += l; sum2 += l * l; n++;
  }
  out.colours = colours.size;
  out.lumaVariance = sum2 / n - (sum / n) ** 2;
  return out;`;

/** Does this engine block audio before a gesture? A throwaway context, closed at once. */
export const AUTOPLAY_PROBE = `
  const done = arguments[arguments.length - 1];
  const C = window.AudioContext || window.webkitAudioContext;
  if (!C) return done({ error: 'no AudioContext' });
  const c = new C();
  setTimeout(() => { const s = c.state; c.close().then(() => done({ state: s }), () => done({ state: s })); }, 300);`;

/**
 * The tone as the audio graph renders it: the peak of the module's AnalyserNode spectrum and the
 * RMS of its time-domain data.
 */
export const TONE = `
  const a = window.novncAudio;
  const an = a && a.analyser;
  if (!an) return { error: 'no analyser (window.novncAudio.analyser)' };
  const f = new Float32Array(an.frequencyBinCount);
  an.getFloatFrequencyData(f);
  let best = 0;
  for (let i = 1; i < f.length; i++) if (f[i] > f[best]) best = i;
  const t = new Float32Array(an.fftSize);
  an.getFloatTimeDomainData(t);
  let s2 = 0;
  for (const v of t) s2 += v * v;
  const sr = an.context.sampleRate;
  return { peakHz: best * sr / an.fftSize, binHz: sr / an.fftSize, peakDb: f[best],
           rms: Math.sqrt(s2 / t.length), sampleRate: sr, contextState: an.context.state,
           baseLatency: an.context.baseLatency,
           // Not in Firefox: a reading there can hang the page for good (web/select.js readsOutputPath).
           outputLatency: a.engine === 'firefox' ? null : an.context.outputLatency };`;

/**
 * Starts the click detector: a probe AnalyserNode (32768 samples, ~0.7 s at 48 kHz) fed from the
 * module's analyser, read every few ms. A click is the first sample above the threshold after a
 * quiet half second. Its wall-clock times:
 *   rendered: when the graph rendered it = now - (currentTime - t_click)
 *   output:   when the engine says it leaves for the device, from getOutputTimestamp()
 * (ms since the epoch: performance.timeOrigin + performance.now()).
 */
export const CLICK_DETECTOR_START = `
  const a = window.novncAudio;
  const ctx = a.analyser.context;
  const probe = ctx.createAnalyser();
  probe.fftSize = 32768;
  a.analyser.connect(probe);
  const buf = new Float32Array(probe.fftSize);
  const sr = ctx.sampleRate;
  const det = window.__clickDetector = { clicks: [], polls: 0, maxGapMs: 0, maxAbs: 0, probe };
  let lastT = -1, lastPoll = performance.now();
  // Firefox's getOutputTimestamp() is not read: it can hang the page (web/select.js
  // readsOutputPath), and it gave the render time itself there anyway.
  const firefox = a.engine === 'firefox';
  det.timer = setInterval(() => {
    const p = performance.now();
    det.maxGapMs = Math.max(det.maxGapMs, p - lastPoll); lastPoll = p;
    det.polls++;
    probe.getFloatTimeDomainData(buf);
    const ct = ctx.currentTime;
    const wall = performance.timeOrigin + performance.now();
    const ts = ctx.getOutputTimestamp && !firefox ? ctx.getOutputTimestamp() : null;
    for (let i = 0; i < buf.length; i++) {
      const v = Math.abs(buf[i]);
      if (v > det.maxAbs) det.maxAbs = v;
      if (v < 0.2) continue;
      const t = ct - (buf.length - i) / sr;
      if (t > lastT + 0.5) {
        lastT = t;
        det.clicks.push({
          ctxTime: t,
          rendered: wall - (ct - t) * 1000,
          output: ts && ts.performanceTime ? performance.timeOrigin + ts.performanceTime + (t - ts.contextTime) * 1000 : null,
        });
      }
      i += Math.floor(0.5 * sr);  // past this click's ringing
    }
  }, 4);
  return true;`;

export const CLICK_DETECTOR_STOP = `
  const det = window.__clickDetector;
  clearInterval(det.timer);
  try { window.novncAudio.analyser.disconnect(det.probe); } catch (e) {}
  return { clicks: det.clicks, polls: det.polls, maxGapMs: det.maxGapMs, maxAbs: det.maxAbs };`;

/** The figures of one stats reading kept per second of the window (results.json `series`). */
export function seriesPoint(st, tMs) {
  const r = (v) => (Number.isFinite(v) ? Math.round(v * 10) / 10 : v);
  return { t: Math.round(tMs / 100) / 10, underruns: st.underruns, targetMs: r(st.targetMs), lateP99Ms: r(st.lateP99Ms), latePeakMs: r(st.latePeakMs),
    minBufferedMs: r(st.minBufferedMs), bufferedMs: r(st.bufferedMs), latencyMs: r(st.latencyMs),
    outputLatencyMs: r(st.outputLatencyMs), speed: st.speed, droppedMs: r(st.droppedMs) };
}

/**
 * How the engine advances the context clock, seen from the main thread: currentTime polled on
 * every 1 ms timer for 2 s; each change is a step (the engine rendered that much at once). Returns
 * the step sizes in render quanta (128 frames) with their counts, and the longest wall time
 * between two changes.
 */
export const RENDER_CLOCK = `
  const done = arguments[arguments.length - 1];
  const ctx = window.novncAudio.audioContext;
  const steps = {};
  let last = ctx.currentTime, lastAt = performance.now(), maxStepMs = 0, changes = 0;
  const end = performance.now() + 2000;
  const tick = () => {
    const now = performance.now(), t = ctx.currentTime;
    if (t !== last) {
      const q = Math.round((t - last) * ctx.sampleRate / 128);
      steps[q] = (steps[q] || 0) + 1;
      maxStepMs = Math.max(maxStepMs, now - lastAt);
      last = t; lastAt = now; changes++;
    }
    if (now < end) setTimeout(tick, 1); else done({ steps, maxStepMs, changes });
  };
  tick();`;
