//! The audio listeners in one dense list, for the fan-out of each frame.
//!
//! With 1000 clients a frame is 1000 sends, and reaching each client's state through the
//! connection map and its boxed WebSocket cost two cache misses per client (measured:
//! `Hub::send` itself was 9 % of the daemon's CPU, nearly all of it waiting on those two
//! loads). Here everything a send needs for a client that keeps up (its socket, its codec,
//! whether anything waits before the frame) sits in 32 contiguous bytes, and such a
//! client's frame goes out with one `send()` straight from the shared bytes. Only a client
//! with something queued (or TLS) takes the slower path through its connection.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::Instant;

use crate::audio::Codec;

pub(super) struct Listener {
    pub(super) id: u64,
    pub(super) fd: RawFd,
    pub(super) codec: Codec,
    /// Nothing waits in the connection's queue, it is not waiting to be writable and has
    /// no TLS: the next frame may go straight to the socket.
    pub(super) direct: bool,
    /// When the socket last took bytes on the direct path (the connection's own
    /// `last_progress` covers the queued path; the later of the two counts).
    pub(super) last_progress: Instant,
}

/// What one direct send did.
pub(super) enum Sent {
    All,
    /// The socket took only these bytes (or none): the rest must wait.
    Part(usize),
    Failed,
}

/// One non-blocking `send()` of `bytes` on `fd`, retried only when interrupted.
pub(super) fn send_now(fd: RawFd, bytes: &[u8]) -> Sent {
    loop {
        // SAFETY: `fd` is the socket of a connection the hub still holds (entries are
        // removed before their connection is dropped); the buffer is valid for its length.
        let n = unsafe {
            libc::send(
                fd,
                bytes.as_ptr() as *const libc::c_void,
                bytes.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            let n = n as usize;
            return if n == bytes.len() {
                Sent::All
            } else {
                Sent::Part(n)
            };
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Sent::Part(0),
            _ => return Sent::Failed,
        }
    }
}

#[derive(Default)]
pub(super) struct Listeners {
    pub(super) list: Vec<Listener>,
    /// Where each id sits in `list`.
    index: HashMap<u64, usize>,
}

impl Listeners {
    fn position(&self, id: u64) -> Option<usize> {
        self.index.get(&id).copied()
    }

    /// Adds or updates `id`'s entry.
    pub(super) fn upsert(
        &mut self,
        id: u64,
        fd: RawFd,
        codec: Codec,
        direct: bool,
        progress: Instant,
    ) {
        match self.position(id) {
            Some(i) => {
                let l = &mut self.list[i];
                l.direct = direct;
                l.last_progress = l.last_progress.max(progress);
            }
            None => {
                self.index.insert(id, self.list.len());
                self.list.push(Listener {
                    id,
                    fd,
                    codec,
                    direct,
                    last_progress: progress,
                });
            }
        }
    }

    pub(super) fn remove(&mut self, id: u64) {
        if let Some(i) = self.index.remove(&id) {
            self.list.swap_remove(i);
            if let Some(moved) = self.list.get(i) {
                self.index.insert(moved.id, i);
            }
        }
    }

    /// The last direct progress of `id`, if it is listed.
    pub(super) fn progress(&self, id: u64) -> Option<Instant> {
        self.position(id).map(|i| self.list[i].last_progress)
    }
}
