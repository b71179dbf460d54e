// novnc-ui.js: sound for noVNC's own page (vnc.html) with one line:
//
//   <script type="module" src="novnc-ui.js"></script>           (a copy beside vnc.html)
//   <script type="module" src="DAEMON/novnc-ui.js"></script>    (from the daemon, DAEMON = http://HOST:6090)
//
// It adds a Sound button and panel to noVNC's control bar (on/off, volume, what is happening),
// or a small floating control when the page has no noVNC control bar; remembers the choice and
// the volume in localStorage; and starts the sound on the user's first gesture anywhere on the
// page, the desktop canvas included. Tested with noVNC 1.3 (Debian's novnc package).
// The panel also has a Microphone switch (the daemon's --microphone; microphone.js): the remote
// desktop hears this browser's microphone. It needs a secure context (https://), is off on every
// load (never remembered: a microphone is asked for each time), and says why when it cannot be.
//
// Where the audio stream is (first that applies):
//   1. data-audio-url="..." on this script tag (resolved against the page, like src), or
//      window.novncAudioConfig = { audioUrl } set before this module runs.
//   2. This module was loaded from another origin than the page: it came from the daemon, whose
//      stream is beside it, new URL('audio', import.meta.url) with the ws(s) scheme.
//   3. Otherwise NovncAudio.audioUrlFromVncUrl(location.href) (audio-url.js): port + 10 for
//      noVNC at the root of its port (http://h:6080/vnc.html -> ws://h:6090/audio), /audio on the
//      same origin for noVNC under a sub-path (http://h/novnc/vnc.html -> ws://h/audio).
// For the daemon serving noVNC itself (same origin, noVNC under /novnc/), the daemon injects
//   <script type="module" src="../novnc-ui.js" data-audio-url="../audio"></script>
// before </body>: relative, so it keeps working behind a proxy that adds a path prefix.
//
// Other settings (data- attribute / window.novncAudioConfig key):
//   data-token / token        the daemon's --token-file secret
//   data-ui / ui              'auto' (control bar, else floating), 'floating', 'none'
//   data-default / default    'on' (default: sound starts on the first gesture) or 'off'
//   options (config only)     NovncAudio's options (novnc-audio.js), e.g. { latencyHint: 'balanced' }
// The NovncAudio object is exported (default export) and set as window.novncAudio.
import { NovncAudio, noAudioReason } from './novnc-audio.js';
import { noMicrophoneReason } from './microphone.js';

const PREF_ON = 'novnc-audio.ui.on';
const PREF_VOLUME = 'novnc-audio.volume';
const PREF_MUTED = 'novnc-audio.muted';

const ICON_ON = svgUrl('<path d="M3 9v6h4l5 5V4L7 9H3z"/><path d="M16.5 12a4.5 4.5 0 0 0-2.5-4v8a4.5 4.5 0 0 0 2.5-4z"/><path d="M14 3.2v2.1a7 7 0 0 1 0 13.4v2.1a9 9 0 0 0 0-17.6z"/>');
const ICON_OFF = svgUrl('<path d="M3 9v6h4l5 5V4L7 9H3z"/><path d="M16 9.4l1.4-1.4 2.1 2.1 2.1-2.1 1.4 1.4-2.1 2.1 2.1 2.1-1.4 1.4-2.1-2.1-2.1 2.1-1.4-1.4 2.1-2.1z"/>');

function svgUrl(paths) {
  return 'data:image/svg+xml,' + encodeURIComponent(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="24" height="24" fill="#fff">${paths}</svg>`);
}

function pref(key, fallback) {
  try { const v = localStorage.getItem(key); return v === null ? fallback : v; } catch { return fallback; }
}
function setPref(key, value) {
  try { localStorage.setItem(key, value); } catch { /* private mode */ }
}

/** This module's <script> tag, for its data- attributes (document.currentScript is null in modules). */
function ownScriptTag() {
  const me = import.meta.url.split('#')[0];
  for (const s of document.querySelectorAll('script[src]')) if (s.src.split('#')[0] === me) return s;
  return null;
}

/** The settings: data- attributes, then window.novncAudioConfig. */
export function readConfig() {
  const tag = ownScriptTag();
  const global = globalThis.novncAudioConfig || {};
  const get = (attr, key) => (tag && tag.dataset[attr] !== undefined ? tag.dataset[attr] : global[key]);
  return {
    audioUrl: get('audioUrl', 'audioUrl'),
    token: get('token', 'token'),
    ui: get('ui', 'ui') || 'auto',
    default: get('default', 'default') || 'on',
    // NovncAudio's constructor options (novnc-audio.js), e.g. { latencyHint: 'balanced' }.
    options: global.options && typeof global.options === 'object' ? global.options : {},
  };
}

/** The audio stream's URL by the rules at the top of this file. */
export function audioUrlFor(config, moduleUrl = import.meta.url, pageUrl = location.href) {
  if (config.audioUrl) return new URL(config.audioUrl, pageUrl).href;
  if (new URL(moduleUrl).origin !== new URL(pageUrl).origin) return new URL('audio', moduleUrl).href;
  return NovncAudio.audioUrlFromVncUrl(pageUrl);
}

// ----------------------------------------------------------------------------------- the UI

const CSS = `
#noVNC_audio_button.novnc-audio-blocked { animation: novnc-audio-pulse 1.2s ease-in-out infinite; }
#noVNC_audio_button.novnc-audio-off { opacity: .6; }
#noVNC_audio_button.novnc-audio-error { background-color: rgba(248, 81, 73, .6); }
@keyframes novnc-audio-pulse { 50% { background-color: rgba(255, 255, 255, .35); } }
#noVNC_audio .novnc-audio-row { display: flex; align-items: center; gap: 8px; margin: 6px 0; }
#noVNC_audio input[type=range] { flex: 1; min-width: 120px; }
#noVNC_audio_status, #noVNC_audio_mic_status { max-width: 260px; font-size: 12px; line-height: 1.35; opacity: .85; overflow-wrap: anywhere; }
#noVNC_audio_floating { position: fixed; right: 12px; bottom: 12px; z-index: 2147483000;
  font: 13px/1.3 system-ui, sans-serif; color: #fff; display: flex; flex-direction: column; align-items: flex-end; gap: 6px; }
#noVNC_audio_floating #noVNC_audio_button { width: 36px; height: 36px; padding: 6px; border: 0; border-radius: 8px;
  background: rgba(30, 34, 40, .85); cursor: pointer; }
#noVNC_audio_floating #noVNC_audio { display: none; background: rgba(30, 34, 40, .92); border-radius: 10px; padding: 10px 12px; }
#noVNC_audio_floating #noVNC_audio.noVNC_open { display: block; }
`;

function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function buildPanel() {
  const enabled = el('input', { type: 'checkbox', id: 'noVNC_audio_enabled' });
  const volume = el('input', { type: 'range', id: 'noVNC_audio_volume', min: '0', max: '100', 'aria-label': 'Volume' });
  const status = el('div', { id: 'noVNC_audio_status', role: 'status' });
  const mic = el('input', { type: 'checkbox', id: 'noVNC_audio_mic' });
  const micStatus = el('div', { id: 'noVNC_audio_mic_status', role: 'status' });
  const panel = el('div', { id: 'noVNC_audio', class: 'noVNC_panel' }, [
    el('div', { class: 'noVNC_heading' }, [el('img', { alt: '', src: ICON_ON }), ' Sound']),
    el('label', { class: 'novnc-audio-row' }, [enabled, ' Play sound']),
    el('label', { class: 'novnc-audio-row' }, ['Volume ', volume]),
    status,
    el('label', { class: 'novnc-audio-row' }, [mic, ' Microphone']),
    micStatus,
  ]);
  return { panel, enabled, volume, status, mic, micStatus };
}

/** Mounts the controls; returns them, or null for ui 'none'. */
export function mountUi(audio, config) {
  if (config.ui === 'none') return null;
  document.head.append(el('style', { id: 'noVNC_audio_style' }, [CSS]));
  const button = el('input', { type: 'image', id: 'noVNC_audio_button', class: 'noVNC_button', alt: 'Sound', title: 'Sound', src: ICON_ON });
  const parts = buildPanel();
  const bar = config.ui === 'floating' ? null : document.querySelector('#noVNC_control_bar .noVNC_scroll');
  if (bar) {
    // noVNC's layout: a button, then its panel inside a centering div (.noVNC_vcenter in 1.3,
    // .noVNC_crosscenter in later versions: copied from the Settings panel's); before Settings.
    const anchor = bar.querySelector('#noVNC_settings_button') || bar.querySelector('#noVNC_disconnect_button');
    const settings = document.getElementById('noVNC_settings');
    const wrapClass = (settings && settings.parentElement && settings.parentElement !== bar && settings.parentElement.className) || 'noVNC_vcenter';
    const wrap = el('div', { class: wrapClass }, [parts.panel]);
    if (anchor) { bar.insertBefore(button, anchor); bar.insertBefore(wrap, anchor); } else bar.append(button, wrap);
    // noVNC closes its own panels when another button is used; close ours the same way.
    bar.addEventListener('click', (e) => {
      if (e.target !== button && e.target.classList && e.target.classList.contains('noVNC_button')) setOpen(false);
    });
  } else {
    document.body.append(el('div', { id: 'noVNC_audio_floating' }, [parts.panel, button]));
  }
  const setOpen = (open) => {
    parts.panel.classList.toggle('noVNC_open', open);
    button.classList.toggle('noVNC_selected', open);
  };
  button.addEventListener('click', () => setOpen(!parts.panel.classList.contains('noVNC_open')));
  return { button, ...parts, floating: !bar, setOpen };
}

/** Wires a NovncAudio to the controls and the stored preferences. */
export function attach(audio, ui, config) {
  const on = () => pref(PREF_ON, config.default === 'off' ? '0' : '1') === '1';
  audio.volume = Number(pref(PREF_VOLUME, '1'));
  audio.muted = pref(PREF_MUTED, '0') === '1';

  const why = noAudioReason();
  const show = () => {
    if (!ui) return;
    const s = audio.stats;
    let text, cls = '';
    if (why) { text = `Cannot play sound: ${why}.`; cls = 'error'; }
    else if (!on()) { text = 'Sound is off.'; cls = 'off'; }
    else if (audio.state === 'idle') { text = 'Sound starts on your first click or key press on the page.'; cls = 'blocked'; }
    else if (audio.state === 'error') { text = `Cannot play sound: ${audio.reason}`; cls = 'error'; }
    else if (audio.blocked) { text = 'Sound is blocked by the browser until you click or press a key on the page.'; cls = 'blocked'; }
    else if (audio.state === 'playing' && !s.frames) text = 'Connected; nothing plays on the desktop right now.';
    else if (audio.state === 'playing') {
      text = `Playing${s.codec ? ` (${s.codec}, ${s.decoder}, ${s.output}, ${Math.round(s.latencyMs)} ms)` : ''}.`;
      if (audio.reason && audio.reason !== 'playing') text += ` ${audio.reason}`;
    } else if (audio.state === 'reconnecting' && !s.frames) {
      // Never got a frame: the likely causes, not just the close code.
      text = `Cannot reach the sound server at ${audio.url.replace(/([?&]token=)[^&]*/, '$1…')}: is novnc-audio ` +
        `running there, is the port reachable from this browser, does it want a token (data-token)? (${audio.reason})`;
      cls = 'error';
    } else if (audio.state === 'reconnecting') { text = `Reconnecting: ${audio.reason}`; cls = 'blocked'; }
    else if (audio.state === 'connecting') text = 'Connecting to the sound…';
    else text = 'Sound is off.';
    ui.status.textContent = text;
    ui.button.title = `Sound: ${text}`;
    ui.button.src = on() && !audio.muted && !why ? ICON_ON : ICON_OFF;
    for (const c of ['blocked', 'off', 'error']) ui.button.classList.toggle(`novnc-audio-${c}`, c === cls);
    ui.enabled.checked = on() && !why;
    ui.enabled.disabled = !!why;
    ui.volume.value = String(Math.round(audio.volume * 100));
  };

  if (ui) {
    ui.enabled.addEventListener('change', () => {
      setPref(PREF_ON, ui.enabled.checked ? '1' : '0');
      if (ui.enabled.checked) audio.start();   // inside the click: the browser lets it play
      else audio.stop();
      show();
    });
    ui.volume.addEventListener('input', () => {
      audio.volume = Number(ui.volume.value) / 100;
      if (audio.muted && audio.volume > 0) audio.muted = false;
      setPref(PREF_VOLUME, String(audio.volume));
      setPref(PREF_MUTED, audio.muted ? '1' : '0');
      show();
    });
  }
  audio.addEventListener('statechange', show);
  audio.addEventListener('stats', show);

  // The microphone: off on every load, only from this switch (the permission prompt needs the
  // click); the reason shows when it cannot be (plain http, refused, no --microphone).
  if (ui) {
    const noMic = noMicrophoneReason();
    if (noMic) {
      ui.mic.disabled = true;
      ui.micStatus.textContent = noMic;
    }
    ui.mic.addEventListener('change', () => {
      if (ui.mic.checked) audio.startMicrophone().catch(() => {});
      else audio.stopMicrophone();
    });
    audio.addEventListener('microphone', (e) => {
      const { state, reason } = e.detail;
      ui.mic.checked = state === 'live' || state === 'starting';
      ui.micStatus.textContent = reason || (state === 'live' ? 'Microphone on: the remote desktop hears you.' : '');
    });
  }

  if (!why && on()) {
    // Sound was unlocked on this origin before: start now (the browser may still hold it until a
    // gesture; the module resumes on the first one). Otherwise start on the first gesture.
    if (NovncAudio.soundEnabled) audio.start();
    else audio.startOnFirstGesture(window);
  }
  show();
}

let audio = null;
if (typeof document !== 'undefined') {  // (imported by node for tests of the functions above)
  const config = readConfig();
  audio = new NovncAudio({ ...config.options, url: audioUrlFor(config), ...(config.token ? { token: config.token } : {}) });
  globalThis.novncAudio = audio;
  attach(audio, mountUi(audio, config), config);
}

export default audio;
