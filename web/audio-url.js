// audio-url.js: where the daemon's audio stream is, given where noVNC connects.
//
// The daemon conventionally listens on the VNC websocket port + 10 (websockify on 6080, audio on
// 6090). Accepts the websocket URL (ws://h:6080/websockify) or the noVNC page URL
// (http://h:6080/vnc.html, with noVNC's own ?host=&port=&path=&encrypt= parameters, also in the
// #hash). A page or websocket at a standard noVNC path (/, /websockify, /vnc.html, /vnc_lite.html,
// /index.html) with an explicit port means "the VNC proxy owns this port": audio is on port + 10.
// Anything else (no port, or a longer path such as /novnc/vnc.html or /desktops/42/websockify) is
// taken as a reverse proxy that routes by path: audio is /audio on the same origin, at the root.
// When that guess is wrong for a deployment, pass the URL: new NovncAudio({ url }), or
// data-audio-url on novnc-ui.js's script tag.

export function audioUrlFromVncUrl(vncUrl) {
  const base = globalThis.location ? globalThis.location.href : undefined;
  const u = new URL(vncUrl || base, base);
  let secure = u.protocol === 'wss:' || u.protocol === 'https:';
  let host = u.hostname;
  let port = u.port;
  let path = u.pathname;
  const params = new URLSearchParams(u.search);
  if (u.hash.length > 1) for (const [k, v] of new URLSearchParams(u.hash.slice(1))) params.set(k, v);
  if (params.get('host')) host = params.get('host');
  if (params.get('port')) port = params.get('port');
  if (params.has('path')) path = '/' + params.get('path').replace(/^\/+/, '');
  const enc = params.get('encrypt');
  if (enc === '1' || enc === 'true') secure = true;
  else if (enc === '0' || enc === 'false') secure = false;
  return buildAudioUrl(secure ? 'wss:' : 'ws:', host, port, path);
}

function buildAudioUrl(scheme, host, port, path) {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const standard = /^\/(websockify\/?|vnc(_lite|_auto)?\.html|index\.html)?$/.test(path || '/');
  const p = parseInt(port, 10);
  if (port && Number.isFinite(p) && standard) return `${scheme}//${h}:${p + 10}/audio`;
  return `${scheme}//${h}${port ? ':' + port : ''}/audio`;
}

/** ws(s) URL from ws(s)/http(s)/relative input (relative to the page). */
export function toWsUrl(url, base = globalThis.location ? globalThis.location.href : undefined) {
  const u = new URL(url, base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.toString();
}
