//! Capture stage: an async libpulse context on the glib main loop that records the
//! monitor of the (default) sink and hands the bytes to a callback. Three rooms:
//! [`connection`] (the context and its reconnection), [`devices`] (what to record: a pure
//! decision from a snapshot of the server's devices), [`playing`] (whether anything plays
//! into the recorded sink: the stream is corked while nothing does) and [`stream`] (the
//! record stream).
//!
//! Callback rules this module lives by (libpulse calls some callbacks synchronously from
//! inside `connect()`, `connect_record()` and `disconnect()`):
//! - state, moved and operation callbacks never touch `Inner`; they schedule the work on
//!   the main loop ([`defer`]) where nothing is borrowed;
//! - the read callback borrows `Inner` only with `try_borrow_mut` (it is dispatched by the
//!   main loop, never from inside one of our calls, but a panic across the C boundary
//!   aborts, so it must not be able to panic);
//! - a `Context` or `Stream` is never dropped from inside its own callback;
//! - the glib `Mainloop` is declared last in `Inner`, so it outlives the context.

mod connection;
mod devices;
mod playing;
mod stream;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use libpulse_binding::context::Context;
use libpulse_binding::stream::Stream;
use libpulse_glib_binding::Mainloop;

use crate::audio::StreamFormat;
use crate::config::CaptureConfig;
use crate::stats::{CaptureStatus, PulseState};
use connection::{Link, BACKOFF_MIN};
use devices::DeviceState;
use playing::PlayingState;
// Shared with the other libpulse client; the submodules reach them as `super::`.
use crate::pulse_client::{defer, with_inner};

/// What the capture hands to its consumer.
pub enum CaptureEvent<'a> {
    /// Interleaved s16le samples, in capture order.
    Audio(&'a [u8]),
    /// The next audio does not follow the previous audio (new stream, move, hole, cork).
    Discontinuity,
}

/// libpulse could not even be set up (a lost server is not an error: we reconnect).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot create the libpulse glib main loop")]
    Mainloop,
}

type Consumer = Rc<RefCell<dyn FnMut(CaptureEvent<'_>)>>;

/// One record stream from PulseAudio, kept alive across server restarts.
pub struct Capture {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    config: CaptureConfig,
    /// Rate and channels of the record stream.
    format: StreamFormat,
    consumer: Consumer,
    weak: Weak<RefCell<Inner>>,
    status: CaptureStatus,
    /// Clients are listening: the stream may run; otherwise it is corked.
    active: bool,
    /// What plays into the recorded sink, and whether the stream is corked.
    playing: PlayingState,
    /// The connection to the server.
    link: Link,
    /// What the server has and what we asked of it.
    devices: DeviceState,
    read_buf: Vec<u8>,
    stopped: bool,
    // Drop order matters: the stream, then the context, then the main loop.
    stream: Option<Stream>,
    context: Option<Context>,
    mainloop: Mainloop,
}

/// libpulse's glib main loop is one glib source holding every fd libpulse watches
/// (pulse/glib-mainloop.c: `struct pa_glib_mainloop` begins with its `GSource`, made by
/// `g_source_new`). glib blocks a source while dispatching it unless it may recurse, and
/// blocking removes and re-adds each of its fds, each time waking the loop through its
/// eventfd: four eventfd writes, a read and a second poll() per capture fragment. Nothing
/// here iterates the main loop from inside a libpulse callback, so recursion cannot
/// happen and the block buys nothing.
fn let_pulse_source_recurse(mainloop: &Mainloop) {
    use libpulse_binding::mainloop::api::MainloopInnerType;
    let source = mainloop._inner.get_ptr() as *mut glib::ffi::GSource;
    // SAFETY: a live pa_glib_mainloop, which is a GSource (see above); the main loop
    // outlives this call.
    unsafe { glib::ffi::g_source_set_can_recurse(source, glib::ffi::GTRUE) };
}

impl Capture {
    /// Starts connecting; audio flows to `consumer` once clients make it active.
    pub fn start(
        config: CaptureConfig,
        format: StreamFormat,
        consumer: impl FnMut(CaptureEvent<'_>) + 'static,
    ) -> Result<Capture, CaptureError> {
        let mainloop = Mainloop::new(None).ok_or(CaptureError::Mainloop)?;
        let_pulse_source_recurse(&mainloop);
        let inner = Rc::new_cyclic(|weak| {
            RefCell::new(Inner {
                config,
                format,
                consumer: Rc::new(RefCell::new(consumer)),
                weak: weak.clone(),
                status: CaptureStatus {
                    state: PulseState::Connecting,
                    ..CaptureStatus::idle()
                },
                active: false,
                playing: PlayingState::new(),
                link: Link {
                    generation: 0,
                    connected_once: false,
                    backoff: BACKOFF_MIN,
                    failures_logged: false,
                    reconnect_timer: None,
                },
                devices: DeviceState::default(),
                read_buf: Vec::with_capacity(64 * 1024),
                stopped: false,
                stream: None,
                context: None,
                mainloop,
            })
        });
        inner.borrow_mut().connect();
        Ok(Capture { inner })
    }

    pub fn status(&self) -> CaptureStatus {
        self.inner.borrow().status.clone()
    }

    /// Runs the stream while someone listens and something plays; corks it otherwise (no
    /// work for anyone).
    pub fn set_active(&self, active: bool) {
        let mut inner = self.inner.borrow_mut();
        if inner.active == active {
            return;
        }
        inner.active = active;
        inner.apply_run();
    }

    /// Disconnects cleanly. Sinks are left alone: applications may be playing into them.
    pub fn stop(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.stopped = true;
        if let Some(t) = inner.link.reconnect_timer.take() {
            t.remove();
        }
        inner.drop_context();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn emit(&mut self, event: CaptureEvent<'_>) {
        let consumer = self.consumer.clone();
        // The consumer never calls back into the capture synchronously.
        if let Ok(mut c) = consumer.try_borrow_mut() {
            c(event);
        };
    }
}
