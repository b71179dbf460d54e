//! Raw HTTP on the daemon's port: requests written byte for byte, the response
//! read back as status, head and body, and the one `expect_status` of the tests.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::Daemon;

/// A raw HTTP response: status code, head and body (as read until EOF or timeout).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().to_ascii_lowercase() == name).then(|| v.trim().to_owned())
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send raw bytes; read the response head, then the body: for 101 nothing,
/// with Content-Length exactly that many bytes, otherwise until EOF/timeout.
/// Without a complete head: Err("closed: ...") if the server closed or reset
/// the connection, Err("timeout: ...") if it said nothing for 3 s.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> Result<RawResponse, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(request).map_err(|e| format!("write: {e}"))?;
    read_response(&mut s)
}

/// Read one HTTP response from a stream (see `raw_request`).
pub fn read_response(s: &mut TcpStream) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        let so_far = String::from_utf8_lossy(&buf).into_owned();
        match s.read(&mut chunk) {
            Ok(0) => return Err(format!("closed: EOF after {so_far:?}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "timeout: no complete response head, got {so_far:?}"
                ))
            }
            Err(e) => return Err(format!("closed: {e} after {so_far:?}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let mut resp = RawResponse {
        status,
        head,
        body: Vec::new(),
    };
    if status != 101 {
        let len: Option<usize> = resp.header("content-length").and_then(|v| v.parse().ok());
        loop {
            if len.is_some_and(|l| body.len() >= l) {
                break;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        if let Some(l) = len {
            body.truncate(l);
        }
    }
    resp.body = body;
    Ok(resp)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A WebSocket upgrade request for `path` with a fixed key.
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// A plain GET of `path` with `extra_headers` (each ending in CRLF).
pub fn get(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n")
}

/// Sends `request` and reads one response (see `read_response`). A failed write
/// is no error: the daemon may answer and close before it read everything (431).
/// Panics if the daemon does not accept the connection.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Result<RawResponse, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(request);
    read_response(&mut s)
}

/// Sends `request` (`what` names it in the failure message) and returns the
/// response; panics unless its status is `status`.
pub fn expect_status(
    daemon: &Daemon,
    what: &str,
    request: impl AsRef<[u8]>,
    status: u16,
) -> RawResponse {
    match exchange(daemon.addr(), request.as_ref()) {
        Ok(r) if r.status == status => r,
        Ok(r) => panic!(
            "{what}: expected HTTP {status}, got:\n{}\n{}",
            r.head,
            r.body_text()
        ),
        Err(e) => panic!("{what}: expected HTTP {status}, got no response: {e}"),
    }
}
