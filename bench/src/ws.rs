//! The few pieces of RFC 6455 a receiving client needs: the upgrade request, the
//! response check and the server-frame parser (server frames are unmasked, but a masked
//! one is tolerated), plus the novnc-audio payload header from docs/CONTRACT.md.

/// A fixed key is fine for a benchmark: the server only has to answer it.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn request(host: &str, port: u16, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Outcome of looking for the end of the HTTP response in `buf`.
pub enum Handshake {
    /// Need more bytes.
    Partial,
    /// 101 received; frame data starts at this offset.
    Upgraded(usize),
    /// Any other status line (the line itself, for the report).
    Refused(String),
}

pub fn parse_response(buf: &[u8]) -> Handshake {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 16 * 1024 {
            return Handshake::Refused("response headers too long".into());
        }
        return Handshake::Partial;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.lines().next().unwrap_or("").to_string();
    if status.split_whitespace().nth(1) == Some("101") {
        Handshake::Upgraded(end + 4)
    } else {
        Handshake::Refused(status)
    }
}

pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Parse one frame at the start of `buf`: `Some((frame, consumed))` or `None` if incomplete.
/// A masked frame is unmasked into `scratch`.
pub fn parse_frame<'a>(buf: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<(Frame<'a>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let mut len = (buf[1] & 0x7f) as u64;
    let mut pos = 2usize;
    if len == 126 {
        if buf.len() < 4 {
            return None;
        }
        len = u16::from_be_bytes([buf[2], buf[3]]) as u64;
        pos = 4;
    } else if len == 127 {
        if buf.len() < 10 {
            return None;
        }
        len = u64::from_be_bytes(buf[2..10].try_into().unwrap());
        pos = 10;
    }
    let mut key = [0u8; 4];
    if masked {
        if buf.len() < pos + 4 {
            return None;
        }
        key.copy_from_slice(&buf[pos..pos + 4]);
        pos += 4;
    }
    let end = pos.checked_add(usize::try_from(len).ok()?)?;
    if buf.len() < end {
        return None;
    }
    let payload: &'a [u8] = if masked {
        scratch.clear();
        scratch.extend(
            buf[pos..end]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4]),
        );
        scratch
    } else {
        &buf[pos..end]
    };
    Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        end,
    ))
}

/// A masked client frame (pong or close) with an all-zero key, so the payload is unchanged.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "control frames only");
    let mut v = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    v.extend_from_slice(payload);
    v
}

/// The novnc-audio message: u64 BE timestamp in ms, codec byte, audio.
pub fn audio_header(payload: &[u8]) -> Option<(u64, u8, &[u8])> {
    if payload.len() < 9 {
        return None;
    }
    let ts = u64::from_be_bytes(payload[..8].try_into().unwrap());
    Some((ts, payload[8], &payload[9..]))
}

/// Frames missing between two consecutive timestamps `frame_ms` apart (0 when contiguous;
/// rounding absorbs the integer-millisecond timestamps of 2.5 ms frames).
pub fn missing_between(prev: u64, ts: u64, frame_ms: f64) -> u64 {
    if ts <= prev {
        return 0;
    }
    let steps = ((ts - prev) as f64 / frame_ms).round() as u64;
    steps.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_and_extended_frames() {
        let mut scratch = Vec::new();
        let short = [0x82, 3, 1, 2, 3, 9];
        let (f, n) = parse_frame(&short, &mut scratch).unwrap();
        assert_eq!(
            (f.fin, f.opcode, f.payload, n),
            (true, 2, &[1u8, 2, 3][..], 5)
        );
        let mut ext = vec![0x82, 126, 0x01, 0x00];
        ext.extend(std::iter::repeat_n(7u8, 256));
        let (f, n) = parse_frame(&ext, &mut scratch).unwrap();
        assert_eq!((f.payload.len(), n), (256, 260));
        assert!(parse_frame(&ext[..100], &mut scratch).is_none());
    }

    #[test]
    fn counts_missing_frames() {
        assert_eq!(missing_between(0, 20, 20.0), 0);
        assert_eq!(missing_between(0, 60, 20.0), 2);
        assert_eq!(missing_between(10, 12, 2.5), 0);
        assert_eq!(missing_between(10, 15, 2.5), 1);
    }

    #[test]
    fn handshake_status() {
        assert!(matches!(
            parse_response(b"HTTP/1.1 101 Switching Protocols\r\nA: b\r\n\r\n\x82"),
            Handshake::Upgraded(42)
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 503 Busy\r\n\r\n"),
            Handshake::Refused(_)
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 101"),
            Handshake::Partial
        ));
    }
}
