//! One client's socket and its outgoing queue: audio frames (shared, dropped when the
//! client falls behind) and control bytes (HTTP answers, pongs, closes; never dropped),
//! written in order with one `writev`, or fed whole to the TLS session.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use crate::wire::WireFrame;

enum Item {
    Audio(Rc<WireFrame>),
    Control(Vec<u8>),
}

impl Item {
    fn bytes(&self) -> &[u8] {
        match self {
            Item::Audio(f) => f.bytes(),
            Item::Control(v) => v,
        }
    }
}

/// The socket plus its outgoing queue. tungstenite writes control frames into the queue
/// (never the socket directly), so they are ordered with the audio around them.
pub struct ClientIo {
    pub(super) sock: TcpStream,
    /// With `--tls-cert`: the TLS session; queued items are fed to it whole.
    pub(super) tls: Option<Box<rustls::ServerConnection>>,
    queue: VecDeque<Item>,
    /// Bytes of the front item already written.
    offset: usize,
    pub(super) control_bytes: usize,
    pub(super) audio_frames: usize,
    pub(super) last_progress: Instant,
}

impl Read for ClientIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.sock.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            // No plaintext yet: pull TLS records from the socket.
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        // Queue the alert for the peer; the caller closes.
                        let _ = tls.write_tls(&mut self.sock);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for ClientIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.control_bytes += buf.len();
        self.queue.push_back(Item::Control(buf.to_vec()));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) enum Flush {
    Done,
    Blocked,
}

impl ClientIo {
    pub(super) fn new(sock: TcpStream, tls: Option<Box<rustls::ServerConnection>>) -> ClientIo {
        ClientIo {
            sock,
            tls,
            queue: VecDeque::new(),
            offset: 0,
            control_bytes: 0,
            audio_frames: 0,
            last_progress: Instant::now(),
        }
    }

    /// Writes as much of the queue as the socket takes, several items per syscall.
    pub(super) fn flush_queue(&mut self, bytes_sent: &mut u64) -> io::Result<Flush> {
        self.flush_queue_at(bytes_sent, Instant::now())
    }

    /// Sends a shared audio frame: with nothing waiting before it (a client that keeps
    /// up, nearly always) straight from the shared bytes with one write(), queueing only
    /// what the socket did not take; otherwise behind what waits. With 1000 clients this
    /// is 50,000 sends a second, so it skips the queue, the reference count and the
    /// iovec array a queued send costs. Returns the frames dropped from the queue.
    pub(super) fn send_audio(
        &mut self,
        frame: &Rc<WireFrame>,
        max_frames: usize,
        now: Instant,
        bytes_sent: &mut u64,
    ) -> (u64, io::Result<Flush>) {
        if self.tls.is_some() || !self.queue.is_empty() {
            let dropped = self.enqueue_audio(frame, max_frames);
            return (dropped, self.flush_queue_at(bytes_sent, now));
        }
        let bytes = frame.bytes();
        loop {
            let result = match self.sock.write(bytes) {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                Ok(n) if n == bytes.len() => {
                    *bytes_sent += n as u64;
                    self.last_progress = now;
                    Ok(Flush::Done)
                }
                Ok(n) => {
                    // The socket is full: the rest waits, as if queued and begun.
                    *bytes_sent += n as u64;
                    self.last_progress = now;
                    self.enqueue_audio(frame, max_frames);
                    self.offset = n;
                    Ok(Flush::Blocked)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.enqueue_audio(frame, max_frames);
                    Ok(Flush::Blocked)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            return (0, result);
        }
    }

    /// Nothing waits to be written.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// The socket took the first `written` bytes of `frame` (sent directly, nothing was
    /// queued): the rest waits as a begun frame.
    pub(super) fn queue_rest(&mut self, frame: &Rc<WireFrame>, written: usize) {
        debug_assert!(self.queue.is_empty());
        self.queue.push_back(Item::Audio(frame.clone()));
        self.audio_frames += 1;
        self.offset = written;
    }

    fn flush_queue_at(&mut self, bytes_sent: &mut u64, now: Instant) -> io::Result<Flush> {
        if self.tls.is_some() {
            return self.flush_tls(bytes_sent);
        }
        while !self.queue.is_empty() {
            let mut slices: [IoSlice<'_>; 16] = [IoSlice::new(&[]); 16];
            let mut n = 0;
            for (i, item) in self.queue.iter().take(16).enumerate() {
                let b = item.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
                n += 1;
            }
            let written = match self.sock.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            *bytes_sent += written as u64;
            self.last_progress = now;
            let mut left = written;
            while left > 0 {
                let front_len = self.queue[0].bytes().len() - self.offset;
                if left >= front_len {
                    left -= front_len;
                    self.offset = 0;
                    match self.queue.pop_front() {
                        Some(Item::Control(v)) => self.control_bytes -= v.len(),
                        Some(Item::Audio(_)) => self.audio_frames -= 1,
                        None => {}
                    }
                } else {
                    self.offset += left;
                    left = 0;
                }
            }
        }
        Ok(Flush::Done)
    }

    /// TLS: items enter the session only once its previous records are on the wire, so
    /// the queue (where stale audio is dropped) stays the only place data waits.
    fn flush_tls(&mut self, bytes_sent: &mut u64) -> io::Result<Flush> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(Flush::Done);
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        *bytes_sent += n as u64;
                        self.last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let Some(item) = self.queue.pop_front() else {
                return Ok(Flush::Done);
            };
            match &item {
                Item::Control(v) => self.control_bytes -= v.len(),
                Item::Audio(_) => self.audio_frames -= 1,
            }
            tls.writer().write_all(item.bytes())?;
        }
    }

    /// Queues a frame, dropping the oldest not-yet-begun audio beyond `max_frames`.
    /// Returns how many frames were dropped.
    pub(super) fn enqueue_audio(&mut self, frame: &Rc<WireFrame>, max_frames: usize) -> u64 {
        let mut dropped = 0;
        while self.audio_frames >= max_frames {
            let begun = if self.offset > 0 { 1 } else { 0 };
            let Some(pos) = self
                .queue
                .iter()
                .skip(begun)
                .position(|i| matches!(i, Item::Audio(_)))
            else {
                break;
            };
            self.queue.remove(pos + begun);
            self.audio_frames -= 1;
            dropped += 1;
        }
        self.queue.push_back(Item::Audio(frame.clone()));
        self.audio_frames += 1;
        dropped
    }

    pub(super) fn drop_pending_audio(&mut self) {
        let begun = usize::from(self.offset > 0);
        let mut i = begun;
        while i < self.queue.len() {
            if matches!(self.queue[i], Item::Audio(_)) {
                self.queue.remove(i);
                self.audio_frames -= 1;
            } else {
                i += 1;
            }
        }
    }

    /// Queues bytes that must all reach the client (an HTTP answer).
    pub(super) fn enqueue_control(&mut self, bytes: Vec<u8>) {
        self.control_bytes += bytes.len();
        self.queue.push_back(Item::Control(bytes));
    }
}

/// Sets the socket's send buffer: small, so a stalled client shows in our queue.
pub(super) fn set_sndbuf(sock: &TcpStream, bytes: usize) {
    let value = bytes as libc::c_int;
    // SAFETY: setsockopt on a valid socket with a pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests;
