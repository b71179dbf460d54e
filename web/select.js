// select.js: which decoder and which output path, from what the browser offers. Pure functions
// of the facts (each "unavailable" fact is null when the thing works, else the reason it does
// not), so the choice is testable without a browser.

/**
 * @param {object} f
 * @param {'auto'|'opus'|'pcm'} f.codec      what the user asked for on the wire
 * @param {'auto'|'webcodecs'|'wasm'} f.decoder  which Opus decoder the user asked for
 * @param {string|null} f.webcodecs          why WebCodecs cannot decode Opus, or null
 * @param {string|null} f.wasm               why the WebAssembly decoder cannot run, or null
 * @returns {{decoder: 'webcodecs'|'wasm'|'pcm'|null, note: string, error: string}}
 */
export function pickDecoder({ codec = 'auto', decoder = 'auto', webcodecs, wasm }) {
  if (codec === 'pcm') return { decoder: 'pcm', note: '', error: '' };
  if (decoder === 'webcodecs' || decoder === 'wasm') {
    const why = decoder === 'webcodecs' ? webcodecs : wasm;
    if (!why) return { decoder, note: '', error: '' };
    return codec === 'opus'
      ? { decoder: null, note: '', error: `cannot decode Opus: ${why}` }
      : { decoder: 'pcm', note: `${why}; playing PCM instead (?codec=pcm, about 1.5 Mbit/s)`, error: '' };
  }
  if (!webcodecs) return { decoder: 'webcodecs', note: '', error: '' };
  if (!wasm) return { decoder: 'wasm', note: '', error: '' };
  const why = `${webcodecs}, and ${wasm}`;
  if (codec === 'opus') {
    return { decoder: null, note: '', error: `cannot decode Opus: ${why}. Allow WebAssembly, or use codec 'auto' to get PCM` };
  }
  return { decoder: 'pcm', note: `${why}; playing PCM instead (?codec=pcm, about 1.5 Mbit/s)`, error: '' };
}

/**
 * Which engine renders the page, from its user agent string: 'chromium' (Chrome, Edge and the
 * other Blink browsers), 'firefox', 'webkitgtk' (WebKitGTK and WPE: WebKit on Linux), 'safari'
 * (WebKit on Apple systems), or 'other'. Only for choices measured per engine (pickOutput).
 * @param {string} ua navigator.userAgent
 */
export function engineOf(ua = '') {
  if (/Firefox\//.test(ua)) return 'firefox';
  if (/Chrom(e|ium)\/|Edg\//.test(ua)) return 'chromium';
  if (/AppleWebKit\//.test(ua)) return /Linux|X11/.test(ua) && !/Android/.test(ua) ? 'webkitgtk' : 'safari';
  return 'other';
}

/**
 * The AudioContext's sample rate: what the page asked for (a number, or null for the device's
 * own), else by engine, as measured (docs/PERFORMANCE.md, LAN per engine, a 44.1 kHz sound card):
 * Chromium opens its output at the context's rate and resamples to the device's inside its
 * output path, so the device's rate (null: the module resamples instead) reaches the card
 * sooner. Firefox's own default was 48 kHz on that card (no difference to measure); WebKitGTK
 * stays at the stream's 48 kHz (with the device's rate it played no tone: not investigated).
 * @param {number|null|undefined} f.sampleRate  the sampleRate option
 * @param {string} [f.engine]                   engineOf(navigator.userAgent)
 * @returns {number|null}
 */
export function pickContextRate({ sampleRate, engine = 'other' }) {
  if (sampleRate !== undefined) return sampleRate;
  return engine === 'chromium' ? null : 48000;
}

/**
 * The AudioContext's latencyHint: what the page asked for, else by engine and output, as
 * measured (docs/PERFORMANCE.md). Chromium sizes its output buffer by it: 'interactive' takes
 * the device's usual 512 frames (baseLatency 11.6 ms at 44.1 kHz), 0 the smallest it allows (128
 * frames, 2.9 ms), which takes 8-10 ms off its render -> sound card path (the buffer's floor
 * stays where it was: renderBurstFrames). With the worklet, whose JavaScript runs on the audio
 * thread, that small buffer breaks at the sound card, which the module cannot see: paired
 * 90 s windows, secure page, 6 minutes per hint (engines harness, 2026-12-04): 0 had 13 drops
 * and 25 jumps at the card, 'interactive' 6 and 7, for 8 ms more (card 68-70 against 76-78);
 * 3 x 30 s on 2026-12-03 had read 14 drops / 42 jumps against 2 / 2. The scheduled output
 * (plain-HTTP pages: native nodes on that thread) broke no more often with 0 and keeps it: 2 x
 * 90 s per hint, 2 drops / 5 jumps, card 80, against 5 / 7 and an underrun, card 88-90 (same
 * day). Firefox measured the same with either; WebKitGTK ignores it.
 * Elsewhere the standard's 'interactive'.
 * @param {string|number|undefined} f.latencyHint  the latencyHint option
 * @param {string} [f.engine]                      engineOf(navigator.userAgent)
 * @param {boolean} [f.worklet]                    whether the worklet output will play
 * @returns {string|number}
 */
export function pickLatencyHint({ latencyHint, engine = 'other', worklet = true }) {
  if (latencyHint !== undefined && latencyHint !== null) return latencyHint;
  return engine === 'chromium' && !worklet ? 0 : 'interactive';
}

/**
 * How many frames the engine renders at once, at least, whatever its output buffer: the floor
 * of the buffer covers this much besides a quantum (enginePullS).
 * Chromium renders 512 frames at a time (currentTime seen from the page steps by 4 quanta)
 * with latencyHint 0 as with 'interactive', though its baseLatency says 128 with 0 (with
 * 'interactive' 512 is its least PulseAudio buffer, kMinimumOutputBufferSize in Chromium's
 * media/audio/pulse/audio_manager_pulse.cc; with 0 the bursts stay, from further down). A floor
 * from that baseLatency (5.8 ms) underran 4 times in 3 paired minutes against 1 with this one
 * (14.5 ms, as with 'interactive'), and 1-3 times a minute in other short runs (engines harness,
 * 2026-12-03). Elsewhere 0: the engine's baseLatency says it.
 * @param {string} [engine] engineOf(navigator.userAgent)
 */
export function renderBurstFrames(engine = 'other') {
  return engine === 'chromium' ? 512 : 0;
}

/**
 * How much the engine takes from the buffer at one pull (s): its base latency, at least the
 * frames it renders at once (renderBurstFrames). The outputs' floor is this and a quantum.
 * @param {object} f
 * @param {number} f.baseLatency  the context's baseLatency (s; 0 or undefined: unknown)
 * @param {number} f.sampleRate   the context's rate
 * @param {string} [f.engine]     engineOf(navigator.userAgent)
 */
export function enginePullS({ baseLatency, sampleRate, engine = 'other' }) {
  return Math.max(baseLatency || 0, renderBurstFrames(engine) / sampleRate);
}

/**
 * The buffer's floor where the engine's own figures make the outputs' floor too low (ms), else
 * null (the output's floor stands). Firefox ESR 153 renders 7-8 quanta at a time (18.7-21.3 ms
 * at 48 kHz; the `currentTime` the page sees steps by that) but its baseLatency reads 0, so the
 * worklet's floor was one quantum (2.7 ms) and it underran 1-4 times a minute, each a gap heard
 * at the sound card. Paired, 2 x 60 s per floor, secure page (engines harness, 2026-12-04):
 * 2.7 ms 6 underruns, card 57 and 72 ms; 12 ms 1 underrun, card 66 and 67; 21.3 ms (a whole
 * burst and a quantum) 1 underrun, card 75 and 75. With 12 ms, one 10-minute window had 1
 * underrun. The scheduled output needs the whole burst and a quantum, 1024 frames, as in
 * Chromium (its floor there is the burst, a quantum and 2 ms): sources scheduled from the main
 * thread must be in place before the burst that renders them. Plain page, paired, 8 minutes per
 * floor: 12 ms (its own, the start lead and 2 ms) 5 underruns, 13 drops and 11 jumps at the
 * card, card 74 ms; 16 ms 7, 12 and 7, 79 ms; 21.3 ms 1, 1 and 0, 82 ms (2026-12-04).
 * Used by pickFloorMs only.
 * @param {string} [engine] engineOf(navigator.userAgent)
 * @param {string} [output] the output's name ('worklet' or 'scheduled')
 */
function engineFloorMs(engine = 'other', output = 'worklet') {
  if (engine !== 'firefox') return null;
  return output === 'scheduled' ? 1024 * 1000 / 48000 : 12;
}

/**
 * The floor to give the output in place of its own (ms), or null to keep the output's.
 * @param {object} f
 * @param {number|null} f.floorMs        the floorMs option (null: not given)
 * @param {'engine'|'quantum'} f.floorMode the floor option ('quantum' asks for the smallest)
 * @param {number} f.outputFloorMs       the floor the output derived from the engine's figures
 * @param {string} [f.engine]            engineOf(navigator.userAgent)
 * @param {string} [f.output]            the output's name ('worklet' or 'scheduled')
 */
export function pickFloorMs({ floorMs = null, floorMode = 'engine', outputFloorMs, engine = 'other', output = 'worklet' }) {
  if (floorMs !== null) return floorMs;
  const least = floorMode === 'engine' ? engineFloorMs(engine, output) : null;
  return least !== null && least > outputFloorMs ? least : null;
}

/**
 * Whether the engine is known to tell nothing of its output path (WebKitGTK: no outputLatency,
 * no usable getOutputTimestamp), so that the buffer keeps the blind floor from its first audio
 * instead of after a second of such readings (NovncAudio._blindOutput). In WebKitGTK 2.50 the
 * first readings of getOutputTimestamp() are in range (750 ms of them), which kept lifting the
 * blind floor: its first second played at a 12 ms floor, and the fill then took seconds to grow
 * to 40 ms. That is when the tone at the sound card broke, 1-3 times at every start, and never
 * after 4 s (engines harness, 2026-12-03). With this alone it still broke at the start:
 * pickStartMargin.
 * @param {string} [engine] engineOf(navigator.userAgent)
 */
export function startsBlind(engine = 'other') {
  return engine === 'webkitgtk';
}

/**
 * Whether the page may read the engine's output-path figures (AudioContext.outputLatency,
 * getOutputTimestamp()). Not in Firefox: there a reading can hang the page's main thread for
 * good. Gecko answers a reading that has no cached figure yet (the first second of sound, or
 * more) with a synchronous call to the audio server (AudioIPC, in the parent process) while it
 * holds the graph's lock; the server needs PulseAudio's mainloop lock, which cubeb holds while
 * it waits for the content process's audio callback, and that callback waits for the graph's
 * lock. gdb's backtraces of Firefox ESR 153 in that state, twice (engines harness,
 * STALL_STACKS=1, 2026-12-03): page main thread in a sync AudioIPC call, the parent's "AudioIPC
 * Server RPC" thread in pa_mutex_lock, "threaded-ml" in a cubeb callback waiting on a futex,
 * the content's "AudioIPC Callback" thread in a condition variable wait. Sound stops and the tab
 * no longer answers. Each reading was a chance of it: the harness's tone probe and the module's
 * stats read it every 250 ms and hung 2-6 sessions in 12. Firefox's figure was a snapshot that
 * scattered 9.6-50.5 ms around a 30-34 ms path anyway (outputLatency in novnc-audio.js).
 * @param {string} [engine] engineOf(navigator.userAgent)
 */
export function readsOutputPath(engine = 'other') {
  return engine !== 'firefox';
}

/**
 * How much higher the buffer's target is for the first seconds after the sound starts (ms;
 * LatencyPolicy startMarginMs): what the page asked for, else by engine, as measured. WebKitGTK
 * 2.50's first 2-3 s of sound are rough whatever the buffer holds later: with the 40 ms blind
 * floor from the start (startsBlind), the tone at the sound card still broke 1-2 times per start,
 * 30-75 ms each, and not after 4 s (engines harness, 2026-12-03). Elsewhere 0, until measured.
 * @param {number|undefined} f.startMarginMs  the startMarginMs option
 * @param {string} [f.engine]                 engineOf(navigator.userAgent)
 */
export function pickStartMargin({ startMarginMs, engine = 'other' }) {
  if (startMarginMs !== undefined && startMarginMs !== null) return Math.max(0, Number(startMarginMs) || 0);
  return engine === 'webkitgtk' ? 80 : 0;
}

/**
 * @param {'auto'|'worklet'|'scheduled'} f.output  what the user asked for
 * @param {string|null} f.worklet    why AudioWorklet cannot be used, or null
 * @param {string|null} f.scheduled  why scheduled buffers cannot be used, or null
 * @param {string} [f.engine]        engineOf(navigator.userAgent)
 * @returns {{output: 'worklet'|'scheduled'|null, error: string}}
 */
export function pickOutput({ output = 'auto', worklet, scheduled, engine = 'other' }) {
  if (output === 'worklet') return worklet ? { output: null, error: `cannot use the AudioWorklet output: ${worklet}` } : { output, error: '' };
  if (output === 'scheduled') return scheduled ? { output: null, error: `cannot schedule audio: ${scheduled}` } : { output, error: '' };
  // WebKitGTK plays the worklet later and less evenly than scheduled buffers, by measurement
  // (docs/PERFORMANCE.md, LAN per engine): schedule there even on secure pages. Safari's
  // worklet (CoreAudio) was not measured and keeps the default.
  if (engine === 'webkitgtk' && !scheduled) return { output: 'scheduled', error: '' };
  // Elsewhere the worklet keeps playing through main-thread stalls (noVNC drawing): prefer it.
  if (!worklet) return { output: 'worklet', error: '' };
  if (!scheduled) return { output: 'scheduled', error: '' };
  return { output: null, error: `cannot play audio: ${worklet}, and ${scheduled}` };
}

/**
 * Where the stream is received and decoded. The worker helps only where the output runs off the
 * main thread (the worklet): the scheduled output creates its buffers on the main thread, so
 * audio handed to it from a worker would wait for the main thread all the same. 'auto' takes it
 * in Chromium only, by measurement (docs/PERFORMANCE.md, LAN per engine): in Firefox ESR 153 a
 * real noVNC page with the worker stopped answering WebDriver, its content process idle, in 4
 * of 8 runs (0 of 5 without; a listen page 0 of 9): a deadlock in the engine, not yet narrowed
 * down. WebKit schedules (pickOutput); Safari was not measured.
 * @param {'auto'|'main'|'worker'} f.transport  what the user asked for
 * @param {string} f.output                     the output chosen ('worklet' or 'scheduled')
 * @param {string|null} f.worker                why a Worker cannot run here, or null
 * @param {string} [f.engine]                   engineOf(navigator.userAgent)
 * @returns {{transport: 'main'|'worker', note: string}}
 */
export function pickTransport({ transport = 'auto', output, worker, engine = 'other' }) {
  if (transport === 'main' || (transport === 'auto' && engine !== 'chromium')) return { transport: 'main', note: '' };
  const why = output !== 'worklet' ? `the ${output} output plays from the main thread` : worker;
  if (!why) return { transport: 'worker', note: '' };
  return { transport: 'main', note: transport === 'worker' ? `no stream Worker (${why}); receiving on the main thread` : '' };
}
