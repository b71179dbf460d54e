// The pages under test: upstream noVNC (Debian's novnc package) with sound added as the module's
// README tells a user. One function per page variant; each returns the URL to open from a given
// host name and the web root websockify must serve for it, or { skip } when it does not apply.
// Every variant's page is vnc.html at the root, as a user who edits vnc.html has it (the module
// derives the daemon's address from the page's path: a renamed page changes what it connects to).
//
// Adding a variant: write a function (ctx, host) => ({ url, webRoot } | { skip }), add it to
// VARIANTS, and it runs for every engine and origin (VARIANTS=name selects it).
import fs from 'node:fs';
import path from 'node:path';

/** The first ```html block of the README's "Adding sound to upstream noVNC" section. */
export function readmeSnippet(readme) {
  const at = readme.search(/^#+ .*Adding sound to upstream noVNC/m);
  if (at < 0) throw new Error('the README has no "Adding sound to upstream noVNC" section');
  const m = /^```html\n([\s\S]*?)^```/m.exec(readme.slice(at));
  if (!m) throw new Error('the README has no ```html block in "Adding sound to upstream noVNC"');
  return m[1];
}

/** vnc.html with `snippet` inserted just before the last </body>, as the README says. */
export function withSnippet(vncHtml, snippet) {
  const i = vncHtml.lastIndexOf('</body>');
  if (i < 0) throw new Error('vnc.html has no </body>');
  return vncHtml.slice(0, i) + snippet + vncHtml.slice(i);
}

/** Every file under web/: the new README says to copy all of it (the module imports its parts). */
function moduleFiles(webDir) {
  const out = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p); else out.push(path.relative(webDir, p));
    }
  };
  walk(webDir);
  return out;
}

/**
 * Links `src`'s entries into `dst`, which may already hold some of them as real folders (the
 * module's vendor/ beside noVNC's vendor/): there it descends and links their children. A symlink
 * to a folder of the package is never written through, so /usr/share/novnc stays untouched.
 */
function linkTree(src, dst) {
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, e.name);
    const d = path.join(dst, e.name);
    if (!fs.existsSync(d)) fs.symlinkSync(s, d);
    else if (e.isDirectory() && fs.lstatSync(d).isDirectory()) linkTree(s, d);
    else throw new Error(`the module's ${d} would hide noVNC's ${s}`);
  }
}

/**
 * The context of the variants: `serveDir` holds one web root per variant (made on first use),
 * each with noVNC's files symlinked from `novncDir` (never edited) and its own vnc.html.
 */
export function preparePages({ novncDir, webDir, serveDir, wsPort, daemonPort, novncDirPath }) {
  const readme = fs.readFileSync(path.join(webDir, 'README.md'), 'utf8');
  const ctx = {
    serveDir, wsPort, daemonPort, novncDirPath, readme,
    snippet: readmeSnippet(readme),
    vnc: fs.readFileSync(path.join(novncDir, 'vnc.html'), 'utf8'),
    files: moduleFiles(webDir),
    /** A web root `name` with vnc.html = `html`, and the module's files when `withModule`. */
    root(name, html, withModule) {
      const dir = path.join(serveDir, name);
      if (fs.existsSync(dir)) return dir;
      fs.mkdirSync(dir, { recursive: true });
      // The module's files first, in real folders; then noVNC's, linked around them.
      if (withModule) {
        for (const f of ctx.files) {
          const dst = path.join(dir, f);
          fs.mkdirSync(path.dirname(dst), { recursive: true });
          fs.copyFileSync(path.join(webDir, f), dst);
        }
      }
      linkTree(novncDir, dir);
      fs.rmSync(path.join(dir, 'vnc.html'));  // our copy, with the snippet, replaces the link
      fs.writeFileSync(path.join(dir, 'vnc.html'), html);
      return dir;
    },
  };
  return ctx;
}

export const VARIANTS = {
  /** vnc.html + the README snippet, the module's files copied next to it (README step 1). */
  copied(ctx, host, set = null) {
    // An option set (OPTION_SETS) goes to the module as window.novncAudioConfig.options, set by
    // a classic script before the snippet (novnc-ui.js reads it when it runs).
    const config = set ? `<script>window.novncAudioConfig = ${JSON.stringify({ options: set.options })};</script>\n` : '';
    const webRoot = ctx.root(set ? `copied-${set.label}` : 'copied', withSnippet(ctx.vnc, config + ctx.snippet), true);
    return { url: `http://${host}:${ctx.wsPort}/vnc.html?autoconnect=true`, webRoot };
  },
  /**
   * vnc.html + the snippet importing the module from the daemon, the README's other option:
   * './x.js' -> 'http://HOST:DAEMONPORT/x.js', HOST as the user types it (the page's host).
   */
  daemon(ctx, host) {
    if (!/from the daemon|:6090\/[\w-]+\.js/i.test(ctx.readme)) {
      return { skip: 'the README does not offer loading the module from the daemon' };
    }
    if (!ctx.daemonServesWebDir) {
      return { skip: "the daemon's built-in novnc-audio.js is not WEB_DIR's (build the daemon from the same tree)" };
    }
    const base = `http://${host}:${ctx.daemonPort}/`;
    let n = 0;
    // Relative module paths ('./x.js', "x.js"; not '/x.js' or 'http://...'), in import statements
    // and src= attributes.
    const snippet = ctx.snippet.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\bsrc\s*=\s*)(['"])(?:\.\/)?([\w][^'":]*\.m?js)\2/g,
      (_, kw, q, rel) => { n++; return `${kw}${q}${base}${rel}${q}`; });
    if (!n) return { skip: 'the README snippet loads nothing by a relative path to point at the daemon' };
    const webRoot = ctx.root(`daemon-${host}`, withSnippet(ctx.vnc, snippet), false);
    return { url: `http://${host}:${ctx.wsPort}/vnc.html?autoconnect=true`, webRoot };
  },
  /**
   * The daemon serving noVNC's own files with the module injected (--novnc-dir DIR, planned):
   * run.sh passes the option when the daemon's --help lists it and sets NOVNC_DIR_PATH.
   * noVNC's socket still goes to websockify (port=), the module to port + 10 = the daemon.
   */
  novncDir(ctx, host) {
    if (!ctx.novncDirPath) return { skip: 'the daemon has no --novnc-dir option' };
    return {
      url: `http://${host}:${ctx.daemonPort}${ctx.novncDirPath}?autoconnect=true&host=${host}&port=${ctx.wsPort}`,
      webRoot: ctx.root('plain', ctx.vnc, false),
    };
  },
};
