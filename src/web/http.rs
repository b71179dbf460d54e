//! HTTP on the port: parses one request head, checks a WebSocket upgrade, writes
//! answers. Pure functions, no sockets (fuzzed: fuzz/).

use std::fmt::Write as _;

/// Longest request head we read before answering 431.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// An HTTP answer that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn text(status: u16, reason: &'static str, body: &str) -> Reply {
        Reply {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n").into_bytes(),
            headers: Vec::new(),
        }
    }

    /// 200 with `body`.
    pub fn ok(content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            reason: "OK",
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    /// 401 for a missing or wrong token (never says which).
    pub fn unauthorized() -> Reply {
        Reply::text(
            401,
            "Unauthorized",
            "A valid token is required (?token= or Authorization: Bearer).",
        )
        .with_header("WWW-Authenticate", "Bearer realm=\"novnc-audio\"")
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire; `head_only` for HEAD requests.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut s = format!(
            "HTTP/1.1 {} {}\r\nServer: novnc-audio\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            let _ = write!(s, "{k}: {v}\r\n");
        }
        s.push_str("\r\n");
        let mut out = s.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// What the request head says, copied out of the read buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Does a comma-separated header contain `token` (case-insensitive)?
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }

    pub fn is_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"))
    }

    /// The token the client presents: `?token=` or `Authorization: Bearer`.
    pub fn presented_token(&self) -> Option<String> {
        if let Some(t) = self.query_param("token") {
            return Some(t);
        }
        let auth = self.header("authorization")?.trim();
        let (scheme, value) = auth.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| value.trim().to_string())
    }
}

/// Outcome of trying to parse what has arrived so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// The head is not complete yet.
    Partial,
    Complete(Request),
    /// Answer this and close.
    Reject(Reply),
}

pub fn parse_request(buf: &[u8]) -> Parse {
    if buf.first() == Some(&0x16) {
        return Parse::Reject(Reply::text(
            400,
            "Bad Request",
            "This is a plain ws:// port; for TLS (wss://) start novnc-audio with --tls-cert and --tls-key.",
        ));
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_REQUEST_HEAD {
                Parse::Reject(too_large())
            } else {
                Parse::Partial
            }
        }
        Ok(httparse::Status::Complete(head_len)) if head_len > MAX_REQUEST_HEAD => {
            Parse::Reject(too_large())
        }
        Ok(httparse::Status::Complete(_)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            Parse::Complete(Request {
                method: req.method.unwrap_or("").to_string(),
                path: path.to_string(),
                query: query.to_string(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            })
        }
        Err(httparse::Error::TooManyHeaders) => Parse::Reject(too_large()),
        Err(e) => Parse::Reject(Reply::text(
            400,
            "Bad Request",
            &format!("Malformed HTTP request ({e})."),
        )),
    }
}

fn too_large() -> Reply {
    Reply::text(
        431,
        "Request Header Fields Too Large",
        "Request headers over 8 KiB.",
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 101 answer to a valid upgrade.
pub fn switching_protocols(key: &str, protocol: Option<&str>) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let mut s = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        let _ = write!(s, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Checks a WebSocket upgrade request on the stream path; `Err` is the answer to send.
/// Returns the key and the sub-protocol to echo.
pub fn check_upgrade(req: &Request) -> Result<(String, Option<String>), Reply> {
    if req.method != "GET" {
        return Err(
            Reply::text(405, "Method Not Allowed", "WebSocket upgrades use GET.")
                .with_header("Allow", "GET"),
        );
    }
    if !req.is_upgrade() || !req.header_has_token("connection", "upgrade") {
        return Err(Reply::text(
            426,
            "Upgrade Required",
            "This is a WebSocket endpoint: connect with a WebSocket client.",
        )
        .with_header("Upgrade", "websocket")
        .with_header("Sec-WebSocket-Version", "13"));
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Reply::text(
            426,
            "Upgrade Required",
            "Unsupported Sec-WebSocket-Version: only version 13 is spoken here.",
        )
        .with_header("Sec-WebSocket-Version", "13"));
    }
    let key = match req.header("sec-websocket-key").map(str::trim) {
        Some(k) if k.len() == 24 => k.to_string(),
        Some(_) => {
            return Err(Reply::text(
                400,
                "Bad Request",
                "Invalid Sec-WebSocket-Key: expected 16 bytes in base64.",
            ))
        }
        None => {
            return Err(Reply::text(
                400,
                "Bad Request",
                "Missing Sec-WebSocket-Key header.",
            ))
        }
    };
    // Chromium drops the connection unless one of the offered protocols is echoed.
    let protocol = req
        .header("sec-websocket-protocol")
        .and_then(|p| p.split(',').map(str::trim).find(|p| !p.is_empty()))
        .map(str::to_string);
    Ok((key, protocol))
}

/// Escapes a string for a JSON value.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &str) -> Request {
        match parse_request(raw.as_bytes()) {
            Parse::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    const UPGRADE: &str = "GET /audio?token=a%20b&codec=pcm HTTP/1.1\r\nHost: x\r\n\
        Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: binary, base64\r\n\r\n";

    #[test]
    fn upgrade_request_parses_and_echoes_a_protocol() {
        let req = complete(UPGRADE);
        assert_eq!(req.path, "/audio");
        assert_eq!(req.query_param("token").as_deref(), Some("a b"));
        assert_eq!(req.query_param("codec").as_deref(), Some("pcm"));
        let (key, proto) = check_upgrade(&req).unwrap();
        let resp = String::from_utf8(switching_protocols(&key, proto.as_deref())).unwrap();
        // The RFC 6455 example key and accept value.
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: binary\r\n"));
    }

    #[test]
    fn precise_errors() {
        let plain = complete("GET /audio HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(check_upgrade(&plain).unwrap_err().status, 426);
        let v8 = complete(&UPGRADE.replace("Version: 13", "Version: 8"));
        let e = check_upgrade(&v8).unwrap_err();
        assert_eq!(e.status, 426);
        assert!(e.headers.contains(&("Sec-WebSocket-Version", "13".into())));
        let nokey =
            complete(&UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""));
        assert_eq!(check_upgrade(&nokey).unwrap_err().status, 400);
        let post = complete(&UPGRADE.replace("GET", "POST"));
        assert_eq!(check_upgrade(&post).unwrap_err().status, 405);
    }

    #[test]
    fn garbage_tls_and_oversized_heads() {
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost"),
            Parse::Partial
        ));
        match parse_request(b"\x00\x01garbage\r\n\r\n") {
            Parse::Reject(r) => assert_eq!(r.status, 400),
            other => panic!("{other:?}"),
        }
        match parse_request(&[0x16, 0x03, 0x01, 0x02, 0x00]) {
            Parse::Reject(r) => {
                let body = String::from_utf8_lossy(&r.body);
                assert!(body.contains("--tls-cert"), "{body}");
                assert!(!body.contains("proxy"), "{body}");
            }
            other => panic!("{other:?}"),
        }
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST_HEAD + 10, b'a');
        match parse_request(&big) {
            Parse::Reject(r) => assert_eq!(r.status, 431),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bearer_token_and_constant_time_compare() {
        let req = complete("GET /stats HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n");
        assert_eq!(req.presented_token().as_deref(), Some("s3cret"));
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
    }

    #[test]
    fn reply_bytes() {
        let r = Reply::text(404, "Not Found", "No such path.");
        let s = String::from_utf8(r.to_bytes(false)).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.ends_with("\r\n\r\nNo such path.\n"));
        assert!(s.contains("Content-Length: 14\r\n"));
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
