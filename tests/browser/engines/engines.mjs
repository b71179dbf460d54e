// The three engines, each behind its own WebDriver server. An engine knows how to find its
// binaries (or say why it cannot run), how to start its driver and what capabilities open a
// session with the engine's real autoplay policy (nothing here allows autoplay: the test's
// click on the desktop must be what unlocks sound).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startDriver, freePort, Session } from './webdriver.mjs';

function which(cmd) {
  if (cmd.includes('/')) return fs.existsSync(cmd) ? cmd : null;
  for (const dir of (process.env.PATH || '').split(':')) {
    const p = path.join(dir, cmd);
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  return null;
}

function miniBrowser() {
  if (process.env.MINIBROWSER) return process.env.MINIBROWSER;
  for (const pkg of ['libwebkit2gtk-4.1-0', 'libwebkit2gtk-4.0-37', 'libwebkitgtk-6.0-4']) {
    try {
      const hit = execFileSync('dpkg', ['-L', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
        .split('\n').find((l) => l.endsWith('/MiniBrowser'));
      if (hit) return hit;
    } catch { /* not installed */ }
  }
  return null;
}

// Environment of a driver (and so of its browser): the browsers' own PulseAudio, never the
// daemon's (the browser's output would land in the sink the daemon records: feedback).
function driverEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  env.PULSE_SERVER = process.env.BROWSER_PULSE_SERVER || '';
  if (!env.PULSE_SERVER) delete env.PULSE_SERVER;
  delete env.XDG_RUNTIME_DIR;
  return env;
}

const chromium = {
  name: 'chromium',
  missing() {
    const miss = [];
    if (!which(process.env.CHROMEDRIVER || 'chromedriver')) miss.push('chromedriver (package chromium-driver)');
    if (!which(process.env.CHROMIUM || '/usr/bin/chromium')) miss.push('chromium');
    return miss.length ? `not installed: ${miss.join(', ')}` : null;
  },
  async start(tmp, logStream) {
    const port = await freePort();
    const drv = await startDriver([which(process.env.CHROMEDRIVER || 'chromedriver'), `--port=${port}`],
      port, { env: driverEnv({ HOME: tmp }), logStream });
    return { drv, caps: {
      browserName: 'chrome',
      'goog:chromeOptions': {
        binary: process.env.CHROMIUM || '/usr/bin/chromium',
        args: [
          '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync',
          `--user-data-dir=${fs.mkdtempSync(path.join(tmp, 'profile-'))}`,
          '--window-size=1280,900',
          // No --autoplay-policy: the default one (a user gesture is required) is under test.
        ],
      },
    } };
  },
};

const firefox = {
  name: 'firefox',
  missing() {
    const miss = [];
    if (!which(process.env.GECKODRIVER || 'geckodriver')) miss.push('geckodriver (cargo install geckodriver --locked)');
    if (!which(process.env.FIREFOX || '/usr/bin/firefox-esr')) miss.push('firefox-esr');
    return miss.length ? `not installed: ${miss.join(', ')}` : null;
  },
  async start(tmp, logStream) {
    const port = await freePort();
    const mport = await freePort();
    const drv = await startDriver([which(process.env.GECKODRIVER || 'geckodriver'), '--port', String(port),
      '--marionette-port', String(mport), '--host', '127.0.0.1'],
      port, { env: driverEnv({ HOME: tmp, MOZ_HEADLESS_WIDTH: '1280', MOZ_HEADLESS_HEIGHT: '900' }), logStream });
    return { drv, caps: {
      browserName: 'firefox',
      'moz:firefoxOptions': {
        binary: process.env.FIREFOX || '/usr/bin/firefox-esr',
        args: ['-headless'],  // size from MOZ_HEADLESS_WIDTH/HEIGHT: firefox-esr has no -width flag
        prefs: {
          // Firefox's own defaults, pinned so a changed default cannot make the test pass
          // without the click: audible media and Web Audio wait for a user gesture.
          'media.autoplay.default': 1,
          'media.autoplay.block-webaudio': true,
          // Millisecond clocks for the latency measurement (the default rounds and jitters).
          'privacy.reduceTimerPrecision': false,
          'browser.shell.checkDefaultBrowser': false,
        },
        log: { level: 'warn' },
      },
    } };
  },
};

const webkit = {
  name: 'webkit',
  missing() {
    const miss = [];
    if (!which(process.env.WEBKITWEBDRIVER || 'WebKitWebDriver')) miss.push('WebKitWebDriver (package webkit2gtk-driver)');
    if (!miniBrowser()) miss.push('MiniBrowser (package libwebkit2gtk-4.1-0)');
    if (!process.env.WEBKIT_DISPLAY && !process.env.DISPLAY) miss.push('an X display (run.sh starts Xvfb and sets WEBKIT_DISPLAY)');
    return miss.length ? `not installed: ${miss.join(', ')}` : null;
  },
  async start(tmp, logStream) {
    const port = await freePort();
    // WebKitGTK has no headless mode: MiniBrowser draws on the Xvfb display run.sh started.
    const display = process.env.WEBKIT_DISPLAY || process.env.DISPLAY;
    const drv = await startDriver([which(process.env.WEBKITWEBDRIVER || 'WebKitWebDriver'), `--port=${port}`],
      port, { env: driverEnv({ HOME: tmp, DISPLAY: display, XDG_CACHE_HOME: tmp, XDG_DATA_HOME: tmp }), logStream });
    return { drv, caps: {
      'webkitgtk:browserOptions': { binary: miniBrowser(), args: ['--automation'] },
    } };
  },
};

export const ENGINES = { chromium, firefox, webkit };

// Profiles and homes of sessions still open when node exits (an interrupted run) go too.
const tmpDirs = new Set();
process.once('exit', () => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });

/** Opens a session of `engine`; returns { session, driverPid, close() } (close ends both). */
export async function openSession(engine, logStream) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `novnc-audio-engines-${engine.name}-`));
  tmpDirs.add(tmp);
  let drv;
  try {
    const started = await engine.start(tmp, logStream);
    drv = started.drv;
    const session = await Session.create(drv.base, started.caps);
    await session.setTimeouts({ script: 120000, pageLoad: 120000, implicit: 0 });
    return {
      session,
      driverPid: drv.child.pid,
      async close() {
        await session.close();
        await drv.stop();
        fs.rmSync(tmp, { recursive: true, force: true });
        tmpDirs.delete(tmp);
      },
    };
  } catch (e) {
    if (drv) await drv.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Every process now: pid -> { ppid, ticks (user + system), name }, from /proc. */
function readProcs() {
  const procs = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').filter(Boolean);
      procs.set(Number(d), { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]),
        name: `${path.basename(cmd[0] || '?')}${cmd.includes('-isForBrowser') || cmd.includes('tab') ? ' (content)' : ''}` });
    } catch { /* gone */ }
  }
  return procs;
}

/** Pids of rootPid and its descendants among `procs` (readProcs). */
function treeIn(procs, rootPid) {
  const tree = new Set([rootPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, p] of procs) if (!tree.has(pid) && tree.has(p.ppid)) { tree.add(pid); grew = true; }
  }
  return [...tree].filter((pid) => procs.has(pid));
}

/** Pids of rootPid and its descendants now. */
export function treeOf(rootPid) { return treeIn(readProcs(), rootPid); }

/**
 * CPU use (% of one core over `ms`) of every process under `rootPid`, busiest first: tells a page
 * stuck in a loop (a content process at 100 %) from a driver that stopped answering (all idle).
 */
export async function cpuOfTree(rootPid, ms = 1000) {
  const a = readProcs();
  await new Promise((r) => setTimeout(r, ms));
  const b = readProcs();
  const hz = 100;  // USER_HZ
  return treeIn(b, rootPid).filter((pid) => a.has(pid))
    .map((pid) => ({ pid, name: b.get(pid).name, cpu: Math.round(((b.get(pid).ticks - a.get(pid).ticks) / hz) * 100000 / ms) }))
    .sort((x, y) => y.cpu - x.cpu);
}
