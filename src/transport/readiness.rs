//! Every connection's socket in one epoll set, watched by a single glib fd source.
//!
//! glib polls each of its sources on every loop iteration: with one fd source per client,
//! every wakeup (each capture fragment, read even while its frames are skipped as silence)
//! prepared, polled and checked every client, so a silent desktop with 100 viewers cost
//! several times one with a single viewer, and 1000 clients paid a poll() over 1000 fds
//! twice per frame. Here glib sees one fd whatever the number of clients, and the kernel
//! says which sockets are ready. Level-triggered, like glib's own fd watches.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A registration for writability, held by a connection while its socket is full.
pub(super) struct Watch;

/// What a ready socket wants done.
pub(super) struct Ready {
    pub(super) id: u64,
    /// Readable, hung up or in error: read it (a read reports the error).
    pub(super) readable: bool,
    /// Writable (or in error) while a write was waiting.
    pub(super) writable: bool,
}

pub(super) struct Readiness {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

/// Events taken per dispatch; more stay pending and the loop comes back for them after
/// its other sources had their turn.
const EVENTS_PER_DISPATCH: usize = 256;

impl Readiness {
    pub(super) fn new() -> io::Result<Readiness> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Readiness {
            // SAFETY: a fresh fd nobody else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            events: Vec::with_capacity(EVENTS_PER_DISPATCH),
        })
    }

    /// The fd glib watches: readable while any socket in the set is ready.
    pub(super) fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, id: u64, out: bool) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if out { libc::EPOLLOUT } else { 0 }) as u32,
            u64: id,
        };
        // SAFETY: a valid epoll fd and event; fd is a socket the caller owns.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` (connection `id`) for input, hang-up and errors.
    pub(super) fn add(&self, fd: RawFd, id: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, id, false)
    }

    /// Also watches `fd` for writability (`out`), or no longer.
    pub(super) fn set_out(&self, fd: RawFd, id: u64, out: bool) {
        if let Err(e) = self.ctl(libc::EPOLL_CTL_MOD, fd, id, out) {
            log::warn!("epoll_ctl(MOD) failed for a client socket: {e}");
        }
    }

    /// Forgets `fd` (before it is closed).
    pub(super) fn remove(&self, fd: RawFd) {
        // SAFETY: a valid epoll fd; the event argument is ignored for DEL.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// The sockets ready now (does not wait).
    pub(super) fn ready(&mut self) -> Vec<Ready> {
        self.events.clear();
        // SAFETY: the buffer has room for EVENTS_PER_DISPATCH events; epoll_wait fills
        // the first n and we set the length to n.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                EVENTS_PER_DISPATCH as libc::c_int,
                0,
            )
        };
        if n <= 0 {
            return Vec::new();
        }
        unsafe { self.events.set_len(n as usize) };
        let hangup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        self.events
            .iter()
            .map(|ev| Ready {
                id: ev.u64,
                readable: ev.events & (libc::EPOLLIN as u32 | hangup) != 0,
                writable: ev.events & (libc::EPOLLOUT as u32 | hangup) != 0,
            })
            .collect()
    }
}
