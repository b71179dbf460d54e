//! What a speaker may send, and the close code for everything it may not.
//!
//! One binary WebSocket message per audio frame, in the stream's own frame format:
//! `u64` big-endian timestamp (ms, the client's clock, continuous with its audio), one
//! codec byte, the payload. Codec `0x01`: one Opus packet (48 kHz, mono or stereo).
//! Codec `0x00`: s16le PCM, 48 kHz, mono.
//!
//! Close codes (RFC 6455 §7.4.1), each with a reason that says exactly what was wrong:
//! - 1003 (unsupported data): a text message, or a codec byte this daemon does not know
//!   (the data may be fine, it is just not a kind we take: the client can fall back);
//! - 1007 (invalid payload): a message shorter than the 9-byte header, an empty payload,
//!   PCM of an odd length, an Opus packet that does not decode or lasts over 120 ms;
//! - 1009 (message too big): over [`MAX_MESSAGE`] bytes;
//! - 1008 (policy violation): audio arriving faster than real time (see `pace`).

use std::fmt;

/// Timestamp and codec byte.
pub const HEADER: usize = 9;
/// The longest message: the header and 120 ms of 48 kHz mono PCM (11,520 bytes), which
/// is also more than any Opus packet of 120 ms needs.
pub const MAX_MESSAGE: usize = HEADER + 120 * 48 * 2;

pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_INVALID: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;

pub const CODEC_PCM: u8 = 0x00;
pub const CODEC_OPUS: u8 = 0x01;

/// Why a speaker is closed: the WebSocket close code and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub reason: String,
}

impl Rejection {
    pub fn new(code: u16, reason: impl Into<String>) -> Rejection {
        let mut reason = reason.into();
        // A close frame's reason must fit in 123 bytes.
        if reason.len() > 123 {
            let mut end = 123;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Rejection { code, reason }
    }

    pub fn text_message() -> Rejection {
        Rejection::new(
            CLOSE_UNSUPPORTED,
            "text messages are not accepted: send binary audio frames",
        )
    }

    pub fn too_big(len: usize) -> Rejection {
        Rejection::new(
            CLOSE_TOO_BIG,
            format!("message of {len} bytes; at most {MAX_MESSAGE}"),
        )
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MicCodec {
    Pcm,
    Opus,
}

/// One parsed frame from the speaker; the payload is checked for shape only (a PCM
/// length, an Opus packet that is not empty), decoding checks the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicFrame<'a> {
    pub ts_ms: u64,
    pub codec: MicCodec,
    pub payload: &'a [u8],
}

/// Parses one binary message.
pub fn parse(msg: &[u8]) -> Result<MicFrame<'_>, Rejection> {
    if msg.len() > MAX_MESSAGE {
        return Err(Rejection::too_big(msg.len()));
    }
    if msg.len() < HEADER {
        return Err(Rejection::new(
            CLOSE_INVALID,
            format!(
                "message of {} bytes is shorter than the {HEADER}-byte header",
                msg.len()
            ),
        ));
    }
    let ts_ms = u64::from_be_bytes(msg[..8].try_into().expect("8 bytes"));
    let codec = match msg[8] {
        CODEC_PCM => MicCodec::Pcm,
        CODEC_OPUS => MicCodec::Opus,
        other => {
            return Err(Rejection::new(
                CLOSE_UNSUPPORTED,
                format!("unknown codec byte 0x{other:02x}: 0x00 PCM and 0x01 Opus are accepted"),
            ))
        }
    };
    let payload = &msg[HEADER..];
    if payload.is_empty() {
        return Err(Rejection::new(CLOSE_INVALID, "empty audio payload"));
    }
    if codec == MicCodec::Pcm && !payload.len().is_multiple_of(2) {
        return Err(Rejection::new(
            CLOSE_INVALID,
            format!(
                "PCM payload of odd length {}: s16le samples are 2 bytes",
                payload.len()
            ),
        ));
    }
    Ok(MicFrame {
        ts_ms,
        codec,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ts: u64, codec: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = ts.to_be_bytes().to_vec();
        m.push(codec);
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn a_pcm_frame_parses() {
        let m = msg(0x0102_0304_0506_0708, 0x00, &[1, 2, 3, 4]);
        let f = parse(&m).unwrap();
        assert_eq!(f.ts_ms, 0x0102_0304_0506_0708);
        assert_eq!(f.codec, MicCodec::Pcm);
        assert_eq!(f.payload, &[1, 2, 3, 4]);
    }

    #[test]
    fn an_opus_frame_parses() {
        let m = msg(5, 0x01, &[0xF8, 0xFF, 0xFE]);
        let f = parse(&m).unwrap();
        assert_eq!((f.ts_ms, f.codec, f.payload.len()), (5, MicCodec::Opus, 3));
    }

    #[test]
    fn each_bad_shape_gets_its_code() {
        let code = |m: &[u8]| parse(m).unwrap_err().code;
        for len in 0..HEADER {
            assert_eq!(code(&vec![0; len]), CLOSE_INVALID, "{len} bytes");
        }
        assert_eq!(code(&msg(0, 0x00, &[])), CLOSE_INVALID, "empty PCM");
        assert_eq!(code(&msg(0, 0x01, &[])), CLOSE_INVALID, "empty Opus");
        assert_eq!(code(&msg(0, 0x00, &[1, 2, 3])), CLOSE_INVALID, "odd PCM");
        assert_eq!(code(&msg(0, 0x02, &[1, 2])), CLOSE_UNSUPPORTED);
        assert_eq!(code(&msg(0, 0xFF, &[1, 2])), CLOSE_UNSUPPORTED);
        assert_eq!(code(&vec![0; MAX_MESSAGE + 1]), CLOSE_TOO_BIG);
        assert!(parse(&msg(0, 0x00, &vec![0; MAX_MESSAGE - HEADER])).is_ok());
    }

    #[test]
    fn reasons_say_what_was_wrong_and_fit_a_close_frame() {
        let r = parse(&msg(0, 0x07, &[0])).unwrap_err();
        assert!(r.reason.contains("0x07"), "{r}");
        let r = parse(&msg(0, 0x00, &[0; 7])).unwrap_err();
        assert!(r.reason.contains("odd length 7"), "{r}");
        let r = parse(&[0; 4]).unwrap_err();
        assert!(r.reason.contains("4 bytes"), "{r}");
        let long = Rejection::new(CLOSE_INVALID, "é".repeat(100));
        assert!(long.reason.len() <= 123);
        assert!(Rejection::text_message().reason.len() <= 123);
    }
}
