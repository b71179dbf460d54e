//! The wire format, framed once per audio frame and shared by every client.
//!
//! One binary WebSocket message per frame: u64 big-endian timestamp (ms since the server
//! started), one codec byte (0x00 PCM, 0x01 Opus), then the audio bytes. The WebSocket
//! header (server frames are unmasked) is written in front, so each client gets the frame
//! with one `write` of shared bytes and no per-client copy.

use std::rc::Rc;

/// Longest header of an unmasked server frame: 2 bytes + 8 bytes of extended length.
const MAX_WS_HEADER: usize = 10;

/// A complete WebSocket message, ready for the socket.
pub struct WireFrame {
    buf: Vec<u8>,
    start: usize,
}

impl WireFrame {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Builds frames, reusing the buffers of frames every client has finished with,
/// so the steady state allocates nothing.
#[derive(Default)]
pub struct FrameBuilder {
    spare: Vec<Rc<WireFrame>>,
}

impl FrameBuilder {
    /// Builds a frame whose payload `fill` appends to the vector it is given
    /// (returning an error leaves nothing behind).
    pub fn build<E>(
        &mut self,
        ts_ms: u64,
        codec: u8,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Rc<WireFrame>, E> {
        let mut buf = self.take_buffer();
        buf.clear();
        buf.resize(MAX_WS_HEADER, 0);
        buf.extend_from_slice(&ts_ms.to_be_bytes());
        buf.push(codec);
        fill(&mut buf)?;
        let payload_len = buf.len() - MAX_WS_HEADER;
        let start = write_header(&mut buf[..MAX_WS_HEADER], payload_len);
        Ok(Rc::new(WireFrame { buf, start }))
    }

    /// Keeps `frame` to reuse its buffer once nobody else holds it.
    pub fn recycle(&mut self, frame: Rc<WireFrame>) {
        if self.spare.len() < 64 {
            self.spare.push(frame);
        }
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        if let Some(pos) = self.spare.iter().position(|f| Rc::strong_count(f) == 1) {
            let frame = self.spare.swap_remove(pos);
            if let Ok(frame) = Rc::try_unwrap(frame) {
                return frame.buf;
            }
        }
        Vec::with_capacity(4096)
    }
}

/// Writes a FIN + binary header for `len` payload bytes right-aligned into `head`
/// and returns where it starts.
fn write_header(head: &mut [u8], len: usize) -> usize {
    debug_assert_eq!(head.len(), MAX_WS_HEADER);
    if len <= 125 {
        head[8] = 0x82;
        head[9] = len as u8;
        8
    } else if len <= 0xFFFF {
        head[6] = 0x82;
        head[7] = 126;
        head[8..10].copy_from_slice(&(len as u16).to_be_bytes());
        6
    } else {
        head[0] = 0x82;
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: usize) -> Rc<WireFrame> {
        FrameBuilder::default()
            .build::<()>(0x0102_0304_0506_0708, 1, |b| {
                b.extend(std::iter::repeat_n(0xAB, payload));
                Ok(())
            })
            .unwrap()
    }

    #[test]
    fn small_frame_layout() {
        let f = frame(3);
        assert_eq!(
            f.bytes(),
            &[0x82, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0x01, 0xAB, 0xAB, 0xAB]
        );
    }

    #[test]
    fn medium_and_large_lengths() {
        let f = frame(3840);
        assert_eq!(&f.bytes()[..4], &[0x82, 126, 0x0F, 0x09]); // 3849 bytes
        assert_eq!(f.bytes().len(), 4 + 3849);
        let f = frame(70000);
        assert_eq!(&f.bytes()[..2], &[0x82, 127]);
        assert_eq!(&f.bytes()[2..10], &(70009u64).to_be_bytes());
    }

    #[test]
    fn buffers_are_reused_only_when_free() {
        let mut b = FrameBuilder::default();
        let f1 = b
            .build::<()>(1, 0, |v| {
                v.push(1);
                Ok(())
            })
            .unwrap();
        let p1 = f1.bytes().as_ptr();
        let held = f1.clone();
        b.recycle(f1);
        let f2 = b
            .build::<()>(2, 0, |v| {
                v.push(2);
                Ok(())
            })
            .unwrap();
        assert_ne!(f2.bytes().as_ptr(), p1, "a held buffer is not reused");
        assert_eq!(
            held.bytes()[2..10],
            1u64.to_be_bytes(),
            "held frame untouched"
        );
        drop(held);
        drop(f2);
        let f3 = b
            .build::<()>(3, 0, |v| {
                v.push(3);
                Ok(())
            })
            .unwrap();
        let ptr = p1;
        assert_eq!(f3.bytes().as_ptr(), ptr, "free buffer reused");
    }
}
