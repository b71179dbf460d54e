//! A periodic timer that costs the main loop nothing between its ticks: a timerfd watched
//! by a glib fd source.
//!
//! A glib timeout source makes every loop iteration read the clock (prepare and check)
//! and gives poll() a finite timeout, for which the kernel arms and cancels an hrtimer on
//! every call. The capture wakes the loop 80 times a second, so the ping check that runs
//! every 5 s while clients are connected cost that on each of those wakeups (perf, one
//! client: the hrtimer under poll and the clock reads were about 1 % of the daemon's
//! samples, see docs/PERFORMANCE.md). A timerfd is one more fd in the poll set, and the
//! kernel arms its timer once per period.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use glib::{ControlFlow, IOCondition, SourceId};
use glib_unix::unix_fd_add_local;

use super::remove_source;

pub(super) struct Ticker {
    // Drop removes the source before the fields drop and the fd closes.
    source: Option<SourceId>,
    _fd: OwnedFd,
}

impl Ticker {
    /// Calls `tick` every `period` from the main loop until the ticker is dropped.
    pub(super) fn start(period: Duration, mut tick: impl FnMut() + 'static) -> io::Result<Ticker> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let every = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: every,
            it_value: every,
        };
        // SAFETY: a valid timerfd and itimerspec; no old value wanted.
        if unsafe { libc::timerfd_settime(raw, 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let source = unix_fd_add_local(raw, IOCondition::IN, move |fd, _| {
            // Reading the expiration count re-arms readiness for the next period.
            let mut expirations = [0u8; 8];
            // SAFETY: reads 8 bytes into a buffer of 8 from the timerfd this source watches.
            unsafe { libc::read(fd, expirations.as_mut_ptr() as *mut libc::c_void, 8) };
            tick();
            ControlFlow::Continue
        });
        Ok(Ticker {
            source: Some(source),
            _fd: fd,
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(source) = self.source.take() {
            remove_source(source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Instant;

    #[test]
    fn ticks_every_period_until_dropped() {
        let ctx = glib::MainContext::default();
        let _guard = ctx.acquire().unwrap();
        let ticks = Rc::new(Cell::new(0u32));
        let counted = ticks.clone();
        let ticker = Ticker::start(Duration::from_millis(20), move || {
            counted.set(counted.get() + 1)
        })
        .unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while ticks.get() < 3 && Instant::now() < end {
            ctx.iteration(true);
        }
        assert_eq!(ticks.get(), 3, "three ticks of 20 ms within 5 s");
        drop(ticker);
        let after = ticks.get();
        let end = Instant::now() + Duration::from_millis(100);
        while Instant::now() < end {
            ctx.iteration(false);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ticks.get(), after, "no tick once dropped");
    }
}
