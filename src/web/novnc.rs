//! noVNC's own page with sound, without editing noVNC's files (`--novnc-dir`).
//!
//! Debian's `novnc` package puts noVNC in /usr/share/novnc, where an upgrade overwrites any
//! hand edit of vnc.html. With `--novnc-dir DIR` the daemon serves DIR's files read-only at
//! `/novnc/` on its own port and adds sound to every HTML page as it goes out:
//! - in `<head>`, a classic script that, when the page URL names no `port`, sets it to
//!   websockify's port (`--websockify-port`), so noVNC connects its desktop there and not to
//!   our port (noVNC reads `?port=` before its saved settings);
//! - before `</body>`, the module `novnc-ui.js` (compiled in from web/) with the stream's
//!   path, relative to the page so that a proxy adding a path prefix keeps working.
//!
//! Files are read from disk per request (so an upgrade of noVNC shows at once); noVNC's are
//! small. Paths are checked lexically: no `..`, no hidden files, no backslashes; links inside
//! DIR are the administrator's choice and are followed.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::assets::content_type;
use super::http::Reply;

/// Where noVNC is served on our port.
pub const PREFIX: &str = "/novnc/";

/// Largest file served from the directory; noVNC's largest is about 200 KiB.
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// The `--novnc-dir` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovncDir {
    pub root: PathBuf,
    /// The port noVNC's page connects to for the desktop (websockify).
    pub websockify_port: u16,
    /// The stream's path (`--path`).
    pub stream_path: String,
    /// `--token-file`'s token, handed to the page (which was only shown with it).
    pub token: Option<String>,
}

impl NovncDir {
    /// The answer for `path` if it is ours (`/novnc` or under `/novnc/`), else `None`.
    pub fn serve(&self, path: &str) -> Option<Reply> {
        if path == "/novnc" {
            return Some(redirect("novnc/vnc.html"));
        }
        let rel = path.strip_prefix(PREFIX)?;
        if rel.is_empty() {
            return Some(redirect("vnc.html"));
        }
        let Some(file) = resolve(&self.root, rel) else {
            return Some(not_found());
        };
        let body = match read_file(&file) {
            Ok(Some(body)) => body,
            Ok(None) => return Some(not_found()),
            Err(e) => {
                log::warn!("--novnc-dir: cannot read {}: {e}", file.display());
                return Some(Reply::text(
                    500,
                    "Internal Server Error",
                    "This file of noVNC cannot be read; the daemon's log says why.",
                ));
            }
        };
        let kind = content_type(rel);
        if kind.starts_with("text/html") {
            let page = String::from_utf8_lossy(&body);
            return Some(Reply::ok(kind, self.with_sound(&page).into_bytes()));
        }
        Some(Reply::ok(kind, body))
    }

    /// `page` with the two additions described at the top of this file.
    pub fn with_sound(&self, page: &str) -> String {
        let head = format!(
            "<script>/* added by novnc-audio: the desktop is on websockify's port */\n\
             (function () {{ var u = new URL(location.href);\n\
             if (!u.searchParams.has('port')) {{ u.searchParams.set('port', '{}');\n\
             history.replaceState(history.state, '', u.href); }} }})();</script>\n",
            self.websockify_port
        );
        let token = match &self.token {
            Some(t) => format!(" data-token=\"{}\"", attribute(t)),
            None => String::new(),
        };
        // The page is at /novnc/NAME: "../" reaches our root, wherever a proxy mounted it.
        let body = format!(
            "<script type=\"module\" src=\"../novnc-ui.js\" data-audio-url=\"..{}\"{token}>\
             </script>\n",
            attribute(&self.stream_path)
        );
        let page = insert_before(page, "</head>", &head, true);
        insert_before(&page, "</body>", &body, false)
    }
}

/// The file under `root` for the URL path `rel` (after the prefix), or `None` when the path
/// is not one we serve. Checked lexically, so nothing outside `root` can be named.
pub fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = rel.split(['?', '#']).next().unwrap_or("");
    if rel.contains(['\\', '\0', '%']) {
        return None;
    }
    let mut out = root.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part.starts_with('.') {
            return None; // "", ".", "..", hidden files, "//"
        }
        out.push(part);
    }
    Some(out)
}

/// A regular file's bytes; `None` if it is missing or not a regular file.
fn read_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO someone left in the directory would otherwise block the
    // daemon's one thread until a writer came; it is refused below as not a regular file.
    // Reading a regular file ignores the flag.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE).read_to_end(&mut body)?;
    Ok(Some(body))
}

/// `page` with `text` inserted before the first (or, `first == false`, the last)
/// case-insensitive `tag`; at the start (head) or end (body) when the tag is missing.
fn insert_before(page: &str, tag: &str, text: &str, first: bool) -> String {
    let lower = page.to_ascii_lowercase();
    let at = if first {
        lower.find(tag)
    } else {
        lower.rfind(tag)
    };
    let at = at.unwrap_or(if first { 0 } else { page.len() });
    let mut out = String::with_capacity(page.len() + text.len());
    out.push_str(&page[..at]);
    out.push_str(text);
    out.push_str(&page[at..]);
    out
}

/// `s` safe inside a double-quoted HTML attribute.
fn attribute(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn redirect(to: &str) -> Reply {
    Reply::text(302, "Found", &format!("noVNC is at {to}")).with_header("Location", to)
}

fn not_found() -> Reply {
    Reply::text(404, "Not Found", "No such file in --novnc-dir.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(root: &Path) -> NovncDir {
        NovncDir {
            root: root.to_path_buf(),
            websockify_port: 6080,
            stream_path: "/audio".into(),
            token: None,
        }
    }

    #[test]
    fn resolve_refuses_everything_outside_the_root() {
        let root = Path::new("/srv/novnc");
        assert_eq!(
            resolve(root, "app/ui.js"),
            Some(root.join("app").join("ui.js"))
        );
        assert_eq!(resolve(root, "vnc.html?x=1"), Some(root.join("vnc.html")));
        for bad in [
            "../etc/passwd",
            "app/../../x",
            "./vnc.html",
            ".git/config",
            "app//ui.js",
            "app/",
            "a\\b",
            "%2e%2e/x",
            "a\0b",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages_get_the_port_and_the_module_other_files_are_untouched() {
        let tmp = std::env::temp_dir().join(format!("novnc-dir-test-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("app")).unwrap();
        std::fs::write(
            tmp.join("vnc.html"),
            "<html><HEAD><title>x</title></HEAD><body><p>x</p></BODY></html>",
        )
        .unwrap();
        std::fs::write(tmp.join("app/ui.js"), "export {};").unwrap();
        let mut d = dir(&tmp);
        d.token = Some("s\"e<c>".into());

        let page = d.serve("/novnc/vnc.html").unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        let html = String::from_utf8(page.body).unwrap();
        let port = html.find("searchParams.set('port', '6080')").unwrap();
        assert!(port < html.find("</HEAD>").unwrap(), "{html}");
        let module = html
            .find(r#"<script type="module" src="../novnc-ui.js" data-audio-url="../audio" data-token="s&quot;e&lt;c&gt;">"#)
            .unwrap_or_else(|| panic!("{html}"));
        assert!(module > html.find("<p>x</p>").unwrap() && module < html.find("</BODY>").unwrap());

        let js = d.serve("/novnc/app/ui.js").unwrap();
        assert_eq!(js.body, b"export {};");
        assert!(js.content_type.starts_with("text/javascript"));

        assert_eq!(d.serve("/novnc/missing.js").unwrap().status, 404);
        assert_eq!(d.serve("/novnc/app").unwrap().status, 404, "a directory");
        assert_eq!(d.serve("/novnc/../vnc.html").unwrap().status, 404);
        let r = d.serve("/novnc/").unwrap();
        assert_eq!((r.status, r.headers[0].1.as_str()), (302, "vnc.html"));
        let r = d.serve("/novnc").unwrap();
        assert_eq!((r.status, r.headers[0].1.as_str()), (302, "novnc/vnc.html"));
        assert!(d.serve("/novncx").is_none());
        assert!(d.serve("/index.html").is_none());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_fifo_in_the_directory_is_refused_without_blocking() {
        let tmp = std::env::temp_dir().join(format!("novnc-fifo-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let fifo = tmp.join("vnc.html");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo {}", fifo.display());
        // Without O_NONBLOCK this open would wait for a writer forever.
        assert_eq!(dir(&tmp).serve("/novnc/vnc.html").unwrap().status, 404);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
