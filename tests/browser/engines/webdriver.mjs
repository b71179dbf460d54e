// A minimal W3C WebDriver client: the few commands the engine tests need, over node's fetch.
// Spec: https://www.w3.org/TR/webdriver2/. Each engine's own server (chromedriver, geckodriver,
// WebKitWebDriver) speaks it; no selenium in between, so what fails is the engine or us.
import { spawn } from 'node:child_process';
import net from 'node:net';

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';  // the spec's web element key

export class WebDriverError extends Error {
  constructor(command, status, value) {
    super(`WebDriver ${command}: ${value?.error || status}: ${value?.message || ''}`.trim());
    this.error = value?.error;
    this.status = status;
  }
}

/** One session on a running WebDriver server at `base` (http://127.0.0.1:PORT). */
export class Session {
  constructor(base, id, capabilities) {
    this.base = base;
    this.id = id;
    this.capabilities = capabilities;
  }

  static async create(base, alwaysMatch, { timeoutMs = 60000 } = {}) {
    const value = await call(base, 'POST', '/session', { capabilities: { alwaysMatch } }, timeoutMs);
    return new Session(base, value.sessionId, value.capabilities);
  }

  cmd(method, path, body, timeoutMs) {
    return call(this.base, method, `/session/${this.id}${path}`, body, timeoutMs);
  }

  setTimeouts(t) { return this.cmd('POST', '/timeouts', t); }
  navigate(url) { return this.cmd('POST', '/url', { url }, 120000); }
  title() { return this.cmd('GET', '/title'); }
  /** Runs `body` (a function body: use `arguments[i]` and `return`) in the page. */
  execute(body, ...args) { return this.cmd('POST', '/execute/sync', { script: body, args }); }
  /**
   * execute() for scripts that only read (safe to run twice): a command with no answer within
   * `timeoutMs` is sent again, up to `retries` times, and counted in `this.stalls`. geckodriver
   * sometimes never answers one execute/sync on a page playing audio while the page itself runs
   * on (its content process idle, its socket read); the next command is answered.
   */
  async read(body, { timeoutMs = 10000, retries = 3 } = {}, ...args) {
    for (let i = 0; ; i++) {
      try {
        return await this.cmd('POST', '/execute/sync', { script: body, args }, timeoutMs);
      } catch (e) {
        if (e.error !== 'timeout' || i >= retries) throw e;
        this.stalls = (this.stalls || 0) + 1;
      }
    }
  }
  /** Runs `body` in the page; it finishes by calling `arguments[arguments.length - 1](value)`. */
  executeAsync(body, ...args) {
    return this.cmd('POST', '/execute/async', { script: body, args }, 300000);
  }
  async find(css) {
    const v = await this.cmd('POST', '/element', { using: 'css selector', value: css });
    return v[ELEMENT];
  }
  rect(element) { return this.cmd('GET', `/element/${element}/rect`); }
  click(element) { return this.cmd('POST', `/element/${element}/click`, {}); }

  /**
   * A real pointer click: move to (x, y) from the element's centre (the spec's element origin),
   * press and release the left button. The engine dispatches trusted pointer/mouse events.
   */
  async pointerClick(element, x = 0, y = 0) {
    await this.cmd('POST', '/actions', {
      actions: [{
        type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' },
        actions: [
          { type: 'pointerMove', duration: 0, origin: { [ELEMENT]: element }, x, y },
          { type: 'pointerDown', button: 0 },
          { type: 'pause', duration: 50 },
          { type: 'pointerUp', button: 0 },
        ],
      }],
    });
    await this.cmd('DELETE', '/actions');
  }

  /** PNG of the viewport, as a Buffer. */
  async screenshot() { return Buffer.from(await this.cmd('GET', '/screenshot'), 'base64'); }
  async close() {
    try { await call(this.base, 'DELETE', `/session/${this.id}`, undefined, 30000); } catch { /* gone */ }
  }
}

async function call(base, method, path, body, timeoutMs = 60000) {
  const started = Date.now();
  let res, text;
  try {
    res = await fetch(base + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    text = await res.text();
  } catch (e) {
    // Name the command: a hung page or driver otherwise shows as a bare "operation was aborted".
    const what = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : e.message;
    throw new WebDriverError(`${method} ${path}`, 0, {
      error: e.name === 'TimeoutError' ? 'timeout' : 'connection',
      message: `${what} (sent at ${new Date(started).toISOString()})`,
    });
  }
  let json;
  try { json = JSON.parse(text); } catch { throw new WebDriverError(`${method} ${path}`, res.status, { message: text.slice(0, 300) }); }
  if (!res.ok || (json.value && json.value.error)) throw new WebDriverError(`${method} ${path}`, res.status, json.value);
  return json.value;
}

/**
 * Starts a WebDriver server (`argv`, which must listen on `port`) and waits for /status to say
 * ready. Returns { base, child, stop() }; stop() ends the process group we started, by pid.
 */
export async function startDriver(argv, port, { env, logStream, readyMs = 30000 } = {}) {
  const child = trackGroup(spawn(argv[0], argv.slice(1), { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
  if (logStream) { child.stdout.pipe(logStream, { end: false }); child.stderr.pipe(logStream, { end: false }); }
  else { child.stdout.resume(); child.stderr.resume(); }
  let exited = null;
  child.on('exit', (code, sig) => { exited = `exited (${code ?? sig})`; });
  child.on('error', (e) => { exited = e.message; });
  const base = `http://127.0.0.1:${port}`;
  const end = Date.now() + readyMs;
  for (;;) {
    if (exited) throw new Error(`${argv[0]} ${exited} before it was ready`);
    try {
      const r = await fetch(`${base}/status`, { signal: AbortSignal.timeout(2000) });
      const j = await r.json();
      if (j.value?.ready !== false) break;
    } catch { /* not listening yet */ }
    if (Date.now() > end) { killGroup(child); throw new Error(`${argv[0]} not ready within ${readyMs} ms`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    child,
    async stop() {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      killGroup(child, 'SIGTERM');
      const t = setTimeout(() => killGroup(child, 'SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    },
  };
}

// Process groups started here and still running: ended when node exits, even on a crash or
// an uncaught error, since run.sh's cleanup only knows the groups it started itself.
const live = new Set();
export function trackGroup(child) {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}
process.once('exit', () => { for (const c of live) killGroup(c, 'SIGKILL'); });
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));

// The driver runs detached in its own process group: its browser children end with it.
function killGroup(child, sig = 'SIGTERM') {
  try { process.kill(-child.pid, sig); } catch { try { child.kill(sig); } catch { /* gone */ } }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}
