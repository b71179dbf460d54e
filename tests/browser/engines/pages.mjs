// The pages under test: upstream noVNC (Debian's novnc package) with sound added exactly as the
// module's README tells a user. One function per page variant; each returns the URL to open from
// a given host name, or null with a reason when the variant does not apply.
//
// Adding a variant: write a function (ctx, host) => ({ url } | { skip }) and list it in VARIANTS.
import fs from 'node:fs';
import path from 'node:path';

/** The first ```html block of the README's "Adding sound to upstream noVNC" section. */
export function readmeSnippet(readmePath) {
  const md = fs.readFileSync(readmePath, 'utf8');
  const at = md.search(/^#+ .*Adding sound to upstream noVNC/m);
  if (at < 0) throw new Error(`${readmePath}: no "Adding sound to upstream noVNC" section`);
  const m = /^```html\n([\s\S]*?)^```/m.exec(md.slice(at));
  if (!m) throw new Error(`${readmePath}: no \`\`\`html block in "Adding sound to upstream noVNC"`);
  return m[1];
}

/** vnc.html with `snippet` inserted just before the last </body>, as the README says. */
export function withSnippet(vncHtml, snippet) {
  const i = vncHtml.lastIndexOf('</body>');
  if (i < 0) throw new Error('vnc.html has no </body>');
  return vncHtml.slice(0, i) + snippet + vncHtml.slice(i);
}

/**
 * Fills `serveDir` (what websockify --web serves): noVNC's files symlinked from `novncDir` (never
 * edited), the module's files copied from `webDir` next to vnc.html (the README's step 1), and
 * one HTML page per variant. Returns the variant context.
 */
export function preparePages({ novncDir, webDir, serveDir, wsPort, daemonPort, novncDirPath }) {
  fs.mkdirSync(serveDir, { recursive: true });
  for (const name of fs.readdirSync(novncDir)) {
    if (name === 'vnc.html') continue;
    const dst = path.join(serveDir, name);
    if (!fs.existsSync(dst)) fs.symlinkSync(path.join(novncDir, name), dst);
  }
  // Every file of the module (the README names novnc-audio.js today; a module split in several
  // files, or with a WASM decoder, comes along), except the daemon's own page and the docs.
  const copied = [];
  const copyTree = (src, dst) => {
    for (const e of fs.readdirSync(src, { withFileTypes: true })) {
      if (src === webDir && ['README.md', 'index.html'].includes(e.name)) continue;
      const s = path.join(src, e.name);
      const d = path.join(dst, e.name);
      if (e.isDirectory()) {
        if (fs.existsSync(d) && fs.lstatSync(d).isSymbolicLink()) continue;  // noVNC's own folder
        fs.mkdirSync(d, { recursive: true });
        copyTree(s, d);
      } else if (!fs.existsSync(d)) {
        fs.copyFileSync(s, d);
        copied.push(path.relative(serveDir, d));
      }
    }
  };
  copyTree(webDir, serveDir);

  const snippet = readmeSnippet(path.join(webDir, 'README.md'));
  const vnc = fs.readFileSync(path.join(novncDir, 'vnc.html'), 'utf8');
  fs.writeFileSync(path.join(serveDir, 'vnc.html'), withSnippet(vnc, snippet));
  const readme = fs.readFileSync(path.join(webDir, 'README.md'), 'utf8');
  return { serveDir, wsPort, daemonPort, snippet, readme, copied, vnc, novncDirPath };
}

// The README's alternative: the same snippet with the module imported from the daemon's origin
// ('./x.js' -> 'http://HOST:DAEMONPORT/x.js'). One page per host, as a user writes their host in.
function fromDaemonPage(ctx, host) {
  const base = `http://${host}:${ctx.daemonPort}/`;
  let n = 0;
  const snippet = ctx.snippet.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])\.\/([^'"]+)\2/g,
    (_, kw, q, rel) => { n++; return `${kw}${q}${base}${rel}${q}`; });
  if (!n) return null;
  const file = `vnc-daemon-module-${host.replace(/[^a-z0-9]/gi, '_')}.html`;
  fs.writeFileSync(path.join(ctx.serveDir, file), withSnippet(ctx.vnc, snippet));
  return file;
}

export const VARIANTS = {
  /** vnc.html + snippet, the module's files copied next to it (README step 1, first option). */
  copied(ctx, host) {
    return { url: `http://${host}:${ctx.wsPort}/vnc.html?autoconnect=true` };
  },
  /** vnc.html + snippet importing the module from the daemon (README step 1, second option). */
  daemon(ctx, host) {
    if (!/6090\/novnc-audio\.js|from the daemon/i.test(ctx.snippet + (ctx.readme || ''))) {
      return { skip: 'the README does not offer loading the module from the daemon' };
    }
    const file = fromDaemonPage(ctx, host);
    if (!file) return { skip: 'the README snippet imports nothing relative to rewrite' };
    return { url: `http://${host}:${ctx.wsPort}/${file}?autoconnect=true` };
  },
  /**
   * The daemon serving noVNC's own files with the module injected (--novnc-dir DIR, planned):
   * run.sh passes the option when the daemon's --help lists it and sets NOVNC_DIR_PATH.
   * noVNC's socket still goes to websockify (port=), and the module to port + 10 = the daemon.
   */
  novncDir(ctx, host) {
    if (!ctx.novncDirPath) return { skip: 'the daemon has no --novnc-dir option' };
    return { url: `http://${host}:${ctx.daemonPort}${ctx.novncDirPath}?autoconnect=true&host=${host}&port=${ctx.wsPort}` };
  },
};
