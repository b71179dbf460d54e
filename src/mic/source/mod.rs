//! The virtual microphone in PulseAudio and the playback stream that feeds it.
//!
//! The source is a null sink (the *feed*, `<name>_feed`) plus `module-remap-source` of
//! its monitor, named `<name>` (`novnc_mic`): the daemon plays the speaker's voice into
//! the feed, applications record it from the source. Why this and not
//! `module-virtual-source`: tried on PulseAudio 16.1 and pipewire-pulse 0.3.65,
//! - pipewire-pulse has no `module-virtual-source` (nor `module-null-source`, which it
//!   would need as a silent master), so it would not work there at all;
//! - on PulseAudio it needs three objects (a null source as master, the virtual source,
//!   its uplink sink, in float32), against two here;
//! - the remap source is a real source (`device.class = "filter"`), not a monitor, so
//!   applications list it as a microphone and PulseAudio prefers it as default.
//!
//! The feed is a sink like any other, so the server may pick it as default sink when it
//! has no other (pipewire-pulse even drops its `auto_null` once it exists): whenever the
//! default sink is the feed, it is moved back to another sink, and the capture never
//! records the feed (see `capture`'s list of sinks it ignores).
//!
//! Found or created by name, idempotently, when the daemon starts with `--microphone` (not
//! on the first speaker, for two reasons found by the tests: applications list their input
//! devices when they start, so the source should be there before anyone speaks; and a
//! change of the default source makes PulseAudio move every record stream that sits on
//! the old default, the capture's own stream on a sink's monitor included, which costs
//! the listeners a few frames: better at start than while they listen). Kept, and
//! recreated after a server restart; never unloaded, like the null sink of the capture:
//! applications may be recording from it. It becomes the default source only when every
//! other source is a monitor: a real microphone is never taken over.
//!
//! Callback rules are those of `capture`: callbacks capture a `Weak`, only record or
//! [`defer`] work to the main loop; the write callback borrows with `try_borrow_mut`; no
//! `Context` or `Stream` is dropped inside its own callback; the `Mainloop` is declared
//! last, so it outlives the context.
//!
//! Files: [`connection`] (the context and its reconnection), [`devices`] (the pure
//! `plan` from a snapshot of the server's devices, and loading the modules), [`stream`]
//! (the playback stream, its write callback, cork and flush).

mod connection;
mod devices;
mod stream;

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use libpulse_binding::context::Context;
use libpulse_binding::stream::Stream;
use libpulse_glib_binding::Mainloop;

use super::decode::RATE;
use super::message::Rejection;
use super::speaker::{Speaker, SpeakerStats};
use super::MicError;
// Shared with the other libpulse client; the submodules reach them as `super::`.
use crate::pulse_client::{defer, with_inner};

/// The names the microphone lives under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicConfig {
    /// The source applications record (`--mic-source-name`).
    pub source_name: String,
}

impl MicConfig {
    /// The null sink the daemon plays into; the source is the remap of its monitor.
    pub fn feed_sink_name(&self) -> String {
        feed_sink_name(&self.source_name)
    }
}

/// The feed sink of source `source_name`.
pub fn feed_sink_name(source_name: &str) -> String {
    format!("{source_name}_feed")
}

/// What `/stats` and `/metrics` show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicStatus {
    pub speaker_connected: bool,
    /// The source, once the stream into its feed is ready.
    pub source: Option<String>,
    /// Did this process load the feed sink or the remap source (since it started)?
    pub source_created: bool,
    /// Audio waiting in the jitter buffer.
    pub buffered_ms: u64,
    pub speaker: SpeakerStats,
}

/// The microphone: a speaker's audio in, a PulseAudio source out.
pub struct Microphone {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    config: MicConfig,
    weak: Weak<RefCell<Inner>>,
    speaker: Speaker,
    speaking: bool,
    /// A speaker came once: the source is kept from then on.
    started: bool,
    status: MicStatus,
    generation: u64,
    ready: bool,
    backoff: Duration,
    failures_logged: bool,
    reconnect_timer: Option<glib::SourceId>,
    refresh_in_flight: bool,
    refresh_again: bool,
    load_pending: bool,
    load_refused: bool,
    /// The default source was set once on this connection; never fight the user after.
    default_source_claimed: bool,
    /// A module loaded on this connection whose device has not shown up yet
    /// (pipewire-pulse answers the load before the device exists): not loaded twice.
    awaiting: Option<(&'static str, Instant)>,
    samples: Vec<i16>,
    bytes: Vec<u8>,
    stopped: bool,
    // Drop order matters: the stream, then the context, then the main loop.
    stream: Option<Stream>,
    context: Option<Context>,
    mainloop: Mainloop,
}

impl Microphone {
    /// Nothing happens in PulseAudio until [`Microphone::start`] or the first speaker.
    pub fn new(config: MicConfig) -> Result<Microphone, MicError> {
        let mainloop = Mainloop::new(None).ok_or(MicError::Mainloop)?;
        let speaker = Speaker::new().map_err(MicError::Decoder)?;
        let inner = Rc::new_cyclic(|weak| {
            RefCell::new(Inner {
                config,
                weak: weak.clone(),
                speaker,
                speaking: false,
                started: false,
                status: MicStatus::default(),
                generation: 0,
                ready: false,
                backoff: connection::FIRST_BACKOFF,
                failures_logged: false,
                reconnect_timer: None,
                refresh_in_flight: false,
                refresh_again: false,
                load_pending: false,
                load_refused: false,
                default_source_claimed: false,
                awaiting: None,
                samples: Vec::new(),
                bytes: Vec::new(),
                stopped: false,
                stream: None,
                context: None,
                mainloop,
            })
        });
        Ok(Microphone { inner })
    }

    pub fn status(&self) -> MicStatus {
        let inner = self.inner.borrow();
        MicStatus {
            speaker: inner.speaker.stats(),
            buffered_ms: inner.speaker.buffered() as u64 * 1000 / RATE as u64,
            ..inner.status.clone()
        }
    }

    /// Connects to the audio server and makes the source ready (silent until a speaker
    /// comes).
    pub fn start(&self) {
        let mut inner = self.inner.borrow_mut();
        if !inner.started {
            inner.started = true;
            inner.connect();
        }
    }

    /// A speaker connected: the stream runs.
    pub fn speaker_joined(&self) {
        self.start();
        let mut inner = self.inner.borrow_mut();
        inner.speaker.reset();
        inner.speaking = true;
        inner.status.speaker_connected = true;
        inner.apply_cork();
    }

    /// One binary message from the speaker; an error says how to close it.
    pub fn receive(&self, msg: &[u8], now: Instant) -> Result<(), Rejection> {
        self.inner.borrow_mut().speaker.receive(msg, now)
    }

    /// The speaker left: silence from now on, nothing stale left in any buffer.
    pub fn speaker_left(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.speaking = false;
        inner.status.speaker_connected = false;
        inner.speaker.reset();
        inner.apply_cork();
    }

    pub fn stop(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.stopped = true;
        if let Some(t) = inner.reconnect_timer.take() {
            t.remove();
        }
        inner.drop_context();
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        self.stop();
    }
}
