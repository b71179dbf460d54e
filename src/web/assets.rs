//! The files of web/, compiled in by build.rs: every file under web/ (README.md aside) is
//! served at `/<its path under web/>`.

/// One file of web/.
#[derive(Debug)]
pub struct Asset {
    /// The URL path: `/index.html`, `/decoders/opus.js`.
    pub path: &'static str,
    pub body: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

impl Asset {
    /// The media type, from the file's extension.
    pub fn content_type(&self) -> &'static str {
        content_type(self.path)
    }

    /// A page (HTML) is only shown with the token; modules, styles and data are public,
    /// since pages of other origins (noVNC) load them.
    pub fn is_page(&self) -> bool {
        self.content_type().starts_with("text/html")
    }
}

/// The asset at URL `path` in `table` (`/` is `/index.html`).
pub fn find<'a>(table: &'a [Asset], path: &str) -> Option<&'a Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    table.iter().find(|a| a.path == path)
}

/// The media type of a file, by extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "txt" => "text/plain; charset=utf-8",
        "ico" => "image/x-icon",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ttf" => "font/ttf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "mp3" => "audio/mpeg",
        "oga" | "ogg" => "audio/ogg",
        _ => "application/octet-stream",
    }
}
