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

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use libpulse_binding as pulse;
use libpulse_glib_binding::Mainloop;
use pulse::callbacks::ListResult;
use pulse::context::subscribe::{Facility, InterestMaskSet, Operation as SubOp};
use pulse::context::{Context, FlagSet as ContextFlags, State as ContextState};
use pulse::def::BufferAttr;
use pulse::proplist::Proplist;
use pulse::sample::{Format, Spec};
use pulse::stream::{FlagSet as StreamFlags, SeekMode, State as StreamState, Stream};

use super::decode::RATE;
use super::message::Rejection;
use super::speaker::{Speaker, SpeakerStats};
use super::MicError;
use log::{debug, error, info, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// What the playback stream keeps queued in the server: small, the jitter buffer is ours.
const STREAM_TARGET_MS: u32 = 20;
const STREAM_REQUEST_MS: u32 = 10;
const BYTES_PER_MS: u32 = RATE / 1000 * 2;
/// How long a loaded module's device may take to show up before we load it again.
const AWAIT_DEVICE: Duration = Duration::from_secs(2);

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

// ---------------------------------------------------------------------------
// What to do, from what the server has (pure)
// ---------------------------------------------------------------------------

/// The server's devices, as far as the microphone cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicSnapshot {
    pub default_sink: Option<String>,
    pub default_source: Option<String>,
    pub sinks: Vec<String>,
    /// (name, is a monitor)
    pub sources: Vec<(String, bool)>,
    /// The monitor of the feed sink, if the feed exists.
    pub feed_monitor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub load_feed: bool,
    /// Load the remap source of this monitor.
    pub load_source_of: Option<String>,
    /// Feed and source exist: the stream can play.
    pub ready: bool,
    pub make_default_source: bool,
    /// The feed became the default sink: make this one default instead.
    pub default_sink_instead: Option<String>,
}

pub fn plan(config: &MicConfig, snap: &MicSnapshot) -> Plan {
    let feed = config.feed_sink_name();
    let source = &config.source_name;
    let feed_exists = snap.sinks.contains(&feed);
    let source_exists = snap.sources.iter().any(|(s, _)| s == source);
    let only_monitors_besides = snap
        .sources
        .iter()
        .filter(|(s, _)| s != source)
        .all(|(_, monitor)| *monitor);
    Plan {
        load_feed: !feed_exists,
        load_source_of: match (&snap.feed_monitor, source_exists) {
            (Some(monitor), false) if feed_exists => Some(monitor.clone()),
            _ => None,
        },
        ready: feed_exists && source_exists,
        make_default_source: source_exists
            && only_monitors_besides
            && snap.default_source.as_deref() != Some(source.as_str()),
        default_sink_instead: if snap.default_sink.as_deref() == Some(feed.as_str()) {
            snap.sinks.iter().find(|s| **s != feed).cloned()
        } else {
            None
        },
    }
}

// ---------------------------------------------------------------------------
// The libpulse side
// ---------------------------------------------------------------------------

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

fn with_inner(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner)) {
    if let Some(inner) = weak.upgrade() {
        if let Ok(mut inner) = inner.try_borrow_mut() {
            f(&mut inner);
        }
    }
}

fn defer(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner) + 'static) {
    let weak = weak.clone();
    glib::timeout_add_local_once(Duration::ZERO, move || with_inner(&weak, f));
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
                backoff: BACKOFF_MIN,
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

impl Inner {
    fn connect(&mut self) {
        self.reconnect_timer = None;
        if self.stopped {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        self.ready = false;
        let mut props = Proplist::new().expect("proplist");
        let _ = props.set_str("application.name", "novnc-audio microphone");
        let _ = props.set_str("application.id", "org.novnc.audio");
        let Some(mut context) =
            Context::new_with_proplist(&self.mainloop, "novnc-audio microphone", &props)
        else {
            error!("microphone: cannot create a PulseAudio context");
            self.schedule_reconnect();
            return;
        };
        let weak = self.weak.clone();
        context.set_state_callback(Some(Box::new(move || {
            defer(&weak, move |inner| inner.on_context_state(generation));
        })));
        let weak = self.weak.clone();
        context.set_subscribe_callback(Some(Box::new(move |facility, op, _index| {
            let relevant = match facility {
                Some(Facility::Server) => true,
                Some(Facility::Sink) | Some(Facility::Source) => {
                    matches!(op, Some(SubOp::New) | Some(SubOp::Removed))
                }
                _ => false,
            };
            if relevant {
                defer(&weak, move |inner| {
                    if inner.generation == generation {
                        inner.refresh();
                    }
                });
            }
        })));
        // The state callback runs inside connect(): it only defers.
        let result = context.connect(None, ContextFlags::NOAUTOSPAWN, None);
        self.context = Some(context);
        if let Err(e) = result {
            self.connection_failed(&format!("{e}"));
        }
    }

    fn on_context_state(&mut self, generation: u64) {
        if generation != self.generation || self.stopped {
            return;
        }
        let Some(state) = self.context.as_ref().map(|c| c.get_state()) else {
            return;
        };
        match state {
            ContextState::Ready if self.ready => {}
            ContextState::Ready => {
                debug!("microphone: connected to PulseAudio");
                self.ready = true;
                self.failures_logged = false;
                self.backoff = BACKOFF_MIN;
                self.load_pending = false;
                self.load_refused = false;
                self.default_source_claimed = false;
                self.awaiting = None;
                if let Some(ctx) = self.context.as_mut() {
                    let mask =
                        InterestMaskSet::SERVER | InterestMaskSet::SINK | InterestMaskSet::SOURCE;
                    ctx.subscribe(mask, |_| {});
                }
                self.refresh();
            }
            ContextState::Failed | ContextState::Terminated => {
                let reason = self
                    .context
                    .as_ref()
                    .map(|c| format!("{}", c.errno()))
                    .unwrap_or_default();
                self.connection_failed(&reason);
            }
            _ => {}
        }
    }

    fn connection_failed(&mut self, reason: &str) {
        if self.ready {
            warn!("microphone: lost the connection to PulseAudio ({reason}); reconnecting");
        } else if !self.failures_logged {
            warn!("microphone: cannot connect to PulseAudio ({reason}); retrying");
            self.failures_logged = true;
        }
        self.drop_context();
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        self.ready = false;
        if self.stopped || self.reconnect_timer.is_some() {
            return;
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        let weak = self.weak.clone();
        self.reconnect_timer = Some(glib::timeout_add_local_once(delay, move || {
            with_inner(&weak, |inner| {
                inner.reconnect_timer = None;
                inner.connect();
            })
        }));
    }

    fn drop_stream(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            stream.set_write_callback(None);
            stream.set_state_callback(None);
            let _ = stream.disconnect();
        }
        self.status.source = None;
    }

    fn drop_context(&mut self) {
        self.drop_stream();
        if let Some(mut ctx) = self.context.take() {
            ctx.set_state_callback(None);
            ctx.set_subscribe_callback(None);
            ctx.disconnect();
        }
        self.refresh_in_flight = false;
        self.refresh_again = false;
    }

    /// Reads the server's defaults, sinks and sources, then acts on [`plan`].
    fn refresh(&mut self) {
        if self.refresh_in_flight {
            self.refresh_again = true;
            return;
        }
        let Some(ctx) = self.context.as_ref() else {
            return;
        };
        self.refresh_in_flight = true;
        let generation = self.generation;
        let feed = self.config.feed_sink_name();
        let snap = Rc::new(RefCell::new((MicSnapshot::default(), 3u8, false)));
        let introspect = ctx.introspect();
        let done = {
            let weak = self.weak.clone();
            move |snap: &Rc<RefCell<(MicSnapshot, u8, bool)>>| {
                let finished = {
                    let mut s = snap.borrow_mut();
                    s.1 -= 1;
                    s.1 == 0
                };
                if finished {
                    let snap = snap.clone();
                    defer(&weak, move |inner| {
                        if inner.generation == generation {
                            let (snapshot, _, failed) = std::mem::take(&mut *snap.borrow_mut());
                            inner.on_snapshot(snapshot, failed);
                        }
                    });
                }
            }
        };
        {
            let snap = snap.clone();
            let done = done.clone();
            introspect.get_server_info(move |info| {
                {
                    let s = &mut snap.borrow_mut().0;
                    s.default_sink = info.default_sink_name.as_ref().map(|n| n.to_string());
                    s.default_source = info.default_source_name.as_ref().map(|n| n.to_string());
                }
                done(&snap);
            });
        }
        {
            let snap = snap.clone();
            let done = done.clone();
            introspect.get_sink_info_list(move |result| match result {
                ListResult::Item(sink) => {
                    if let Some(name) = &sink.name {
                        let s = &mut snap.borrow_mut().0;
                        if *name == feed {
                            s.feed_monitor =
                                sink.monitor_source_name.as_ref().map(|m| m.to_string());
                        }
                        s.sinks.push(name.to_string());
                    }
                }
                ListResult::End => done(&snap),
                ListResult::Error => {
                    snap.borrow_mut().2 = true;
                    done(&snap);
                }
            });
        }
        {
            let snap = snap.clone();
            introspect.get_source_info_list(move |result| match result {
                ListResult::Item(source) => {
                    if let Some(name) = &source.name {
                        let monitor = source.monitor_of_sink.is_some()
                            || source.proplist.get_str("device.class").as_deref()
                                == Some("monitor");
                        snap.borrow_mut()
                            .0
                            .sources
                            .push((name.to_string(), monitor));
                    }
                }
                ListResult::End => done(&snap),
                ListResult::Error => {
                    snap.borrow_mut().2 = true;
                    done(&snap);
                }
            });
        }
    }

    fn on_snapshot(&mut self, snap: MicSnapshot, failed: bool) {
        self.refresh_in_flight = false;
        if self.refresh_again {
            self.refresh_again = false;
            self.refresh();
            return;
        }
        if failed {
            warn!("microphone: PulseAudio did not list its devices; will retry on the next change");
            return;
        }
        let plan = plan(&self.config, &snap);
        let awaited_is_there = match self.awaiting {
            Some(("module-null-sink", _)) => !plan.load_feed,
            Some(_) => plan.ready,
            None => false,
        };
        if awaited_is_there {
            self.awaiting = None;
        }
        if let Some(other) = &plan.default_sink_instead {
            info!(
                "the microphone's feed became the default sink: making {other} the default again"
            );
            if let Some(ctx) = self.context.as_mut() {
                ctx.set_default_sink(other, |_| {});
            }
        }
        // Quoted so that PulseAudio and pipewire-pulse both read the description with
        // its spaces (a backslash escape shows up verbatim on pipewire-pulse).
        if plan.load_feed {
            let feed = self.config.feed_sink_name();
            let args = format!(
                "sink_name={feed} rate={RATE} channels=1 channel_map=mono \
                 sink_properties='device.description=\"noVNC microphone feed\"'"
            );
            self.load_module("module-null-sink", args);
            return;
        }
        if let Some(monitor) = &plan.load_source_of {
            let args = format!(
                "source_name={} master={monitor} rate={RATE} channels=1 channel_map=mono \
                 source_properties='device.description=\"noVNC microphone\"'",
                self.config.source_name
            );
            self.load_module("module-remap-source", args);
            return;
        }
        if plan.make_default_source && !self.default_source_claimed {
            self.default_source_claimed = true;
            let name = self.config.source_name.clone();
            info!("no microphone but {name}: making it the default source");
            if let Some(ctx) = self.context.as_mut() {
                ctx.set_default_source(&name, |_| {});
            }
        }
        if plan.ready && self.stream.is_none() {
            self.create_stream();
        }
    }

    fn load_module(&mut self, module: &'static str, args: String) {
        if self.load_pending || self.load_refused {
            return;
        }
        if let Some((awaited, since)) = self.awaiting {
            if awaited == module && since.elapsed() < AWAIT_DEVICE {
                let weak = self.weak.clone();
                let generation = self.generation;
                // Look again soon even if no event says it appeared.
                glib::timeout_add_local_once(Duration::from_millis(100), move || {
                    with_inner(&weak, |inner| {
                        if inner.generation == generation {
                            inner.refresh();
                        }
                    })
                });
                return;
            }
        }
        let Some(ctx) = self.context.as_mut() else {
            return;
        };
        self.load_pending = true;
        debug!("microphone: loading {module} {args}");
        let weak = self.weak.clone();
        let generation = self.generation;
        ctx.introspect().load_module(module, &args, move |index| {
            let errno = weak.upgrade().and_then(|i| {
                i.try_borrow()
                    .ok()
                    .and_then(|i| i.context.as_ref().map(|c| c.errno()))
            });
            defer(&weak, move |inner| {
                if inner.generation != generation {
                    return;
                }
                inner.load_pending = false;
                if index == u32::MAX {
                    inner.load_refused = true;
                    let why = errno.map(|e| format!("{e}")).unwrap_or_default();
                    error!(
                        "PulseAudio refused to load {module} for the microphone ({why}): module \
                         loading is disabled in system mode; copy \
                         /usr/share/novnc-audio/pulse/system.pa.d/novnc-audio.pa to \
                         /etc/pulse/system.pa.d/, uncomment its microphone lines and restart \
                         PulseAudio"
                    );
                    return;
                }
                inner.status.source_created = true;
                inner.awaiting = Some((module, Instant::now()));
                info!("microphone: loaded {module} (module #{index})");
                inner.refresh();
            });
        });
    }

    fn create_stream(&mut self) {
        let feed = self.config.feed_sink_name();
        let spec = Spec {
            format: Format::S16le,
            rate: RATE,
            channels: 1,
        };
        let Some(ctx) = self.context.as_mut() else {
            return;
        };
        let mut props = Proplist::new().expect("proplist");
        let _ = props.set_str("media.name", "novnc-audio microphone");
        let Some(mut stream) =
            Stream::new_with_proplist(ctx, "novnc-audio microphone", &spec, None, &mut props)
        else {
            error!(
                "microphone: cannot create a playback stream: {}",
                ctx.errno()
            );
            return;
        };
        let attr = BufferAttr {
            maxlength: u32::MAX,
            tlength: STREAM_TARGET_MS * BYTES_PER_MS,
            // Play at once and never pause on an underrun: the write callback always
            // answers with audio, concealment or silence.
            prebuf: 0,
            minreq: STREAM_REQUEST_MS * BYTES_PER_MS,
            fragsize: u32::MAX,
        };
        // DONT_MOVE: if the feed goes away, the stream ends and is recreated with it,
        // rather than being moved to a real sink where the voice would be heard.
        let mut flags = StreamFlags::ADJUST_LATENCY | StreamFlags::DONT_MOVE;
        if !self.speaking {
            flags |= StreamFlags::START_CORKED;
        }
        let generation = self.generation;
        let weak = self.weak.clone();
        stream.set_write_callback(Some(Box::new(move |len| {
            with_inner(&weak, |inner| inner.write(len))
        })));
        let weak = self.weak.clone();
        stream.set_state_callback(Some(Box::new(move || {
            defer(&weak, move |inner| inner.on_stream_state(generation));
        })));
        debug!("microphone: connecting a playback stream to {feed}");
        if let Err(e) = stream.connect_playback(Some(&feed), Some(&attr), flags, None, None) {
            error!("microphone: cannot play into {feed}: {e}");
            return;
        }
        self.stream = Some(stream);
    }

    fn on_stream_state(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        let Some(state) = self.stream.as_ref().map(|s| s.get_state()) else {
            return;
        };
        match state {
            StreamState::Ready if self.status.source.is_some() => {}
            StreamState::Ready => {
                info!("microphone: {} is ready", self.config.source_name);
                self.status.source = Some(self.config.source_name.clone());
                // Audio that waited for the stream is stale now.
                self.speaker.flush();
                self.kick_feed();
                // Requests made before we were ready may have been skipped.
                if let Some(len) = self.stream.as_ref().and_then(|s| s.writable_size()) {
                    self.write(len);
                }
            }
            StreamState::Failed | StreamState::Terminated => {
                warn!("microphone: the playback stream ended; recreating it");
                self.drop_stream();
                let weak = self.weak.clone();
                glib::timeout_add_local_once(Duration::from_millis(100), move || {
                    with_inner(&weak, |inner| {
                        if inner.generation == generation {
                            inner.refresh();
                        }
                    })
                });
            }
            _ => {}
        }
    }

    /// A null sink renders in long blocks until somebody asks for low latency; suspending
    /// and resuming it makes it take our latency at once (as in `capture`).
    fn kick_feed(&mut self) {
        let feed = self.config.feed_sink_name();
        if let Some(ctx) = self.context.as_mut() {
            let mut introspect = ctx.introspect();
            introspect.suspend_sink_by_name(&feed, true, None);
            introspect.suspend_sink_by_name(&feed, false, None);
        }
    }

    fn apply_cork(&mut self) {
        let speaking = self.speaking;
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if stream.get_state() != StreamState::Ready {
            return;
        }
        if !speaking {
            // Nothing of the last speaker may be heard later.
            stream.flush(None);
        }
        stream.set_corked_state(!speaking, None);
        if speaking {
            self.kick_feed();
        }
    }

    /// PulseAudio asks for `len` bytes: the speaker's audio, concealment or silence.
    fn write(&mut self, len: usize) {
        let samples = len / 2;
        if samples == 0 {
            return;
        }
        self.samples.resize(samples, 0);
        self.speaker.fill(&mut self.samples);
        self.bytes.clear();
        self.bytes
            .extend(self.samples.iter().flat_map(|s| s.to_le_bytes()));
        if let Some(stream) = self.stream.as_mut() {
            if let Err(e) = stream.write(&self.bytes, None, 0, SeekMode::Relative) {
                debug!("microphone: write failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MicConfig {
        MicConfig {
            source_name: "novnc_mic".into(),
        }
    }

    fn snap(sinks: &[&str], sources: &[(&str, bool)]) -> MicSnapshot {
        MicSnapshot {
            sinks: sinks.iter().map(|s| s.to_string()).collect(),
            sources: sources.iter().map(|(s, m)| (s.to_string(), *m)).collect(),
            feed_monitor: sinks
                .contains(&"novnc_mic_feed")
                .then(|| "novnc_mic_feed.monitor".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_server_gets_the_feed_then_the_source() {
        let p = plan(&config(), &snap(&[], &[]));
        assert!(p.load_feed && !p.ready);
        let s = snap(&["novnc_mic_feed"], &[("novnc_mic_feed.monitor", true)]);
        let p = plan(&config(), &s);
        assert!(!p.load_feed);
        assert_eq!(p.load_source_of.as_deref(), Some("novnc_mic_feed.monitor"));
        assert!(!p.ready);
    }

    #[test]
    fn existing_feed_and_source_are_reused() {
        let s = snap(
            &["novnc", "novnc_mic_feed"],
            &[
                ("novnc.monitor", true),
                ("novnc_mic_feed.monitor", true),
                ("novnc_mic", false),
            ],
        );
        let p = plan(&config(), &s);
        assert!(!p.load_feed && p.load_source_of.is_none() && p.ready);
        assert!(p.make_default_source, "only monitors besides ours");
    }

    #[test]
    fn a_real_microphone_stays_the_default() {
        let mut s = snap(
            &["novnc_mic_feed"],
            &[
                ("novnc_mic_feed.monitor", true),
                ("novnc_mic", false),
                ("alsa_input.usb", false),
            ],
        );
        s.default_source = Some("alsa_input.usb".into());
        let p = plan(&config(), &s);
        assert!(p.ready && !p.make_default_source);
    }

    #[test]
    fn already_default_is_left_alone() {
        let mut s = snap(
            &["novnc_mic_feed"],
            &[("novnc_mic_feed.monitor", true), ("novnc_mic", false)],
        );
        s.default_source = Some("novnc_mic".into());
        assert!(!plan(&config(), &s).make_default_source);
    }

    #[test]
    fn the_feed_never_stays_the_default_sink_when_there_is_another() {
        let mut s = snap(&["novnc_mic_feed", "novnc"], &[]);
        s.default_sink = Some("novnc_mic_feed".into());
        assert_eq!(
            plan(&config(), &s).default_sink_instead.as_deref(),
            Some("novnc")
        );
        let mut s = snap(&["novnc_mic_feed"], &[]);
        s.default_sink = Some("novnc_mic_feed".into());
        assert_eq!(
            plan(&config(), &s).default_sink_instead,
            None,
            "no other sink yet: the capture creates one"
        );
        let mut s = snap(&["novnc_mic_feed", "novnc"], &[]);
        s.default_sink = Some("novnc".into());
        assert_eq!(plan(&config(), &s).default_sink_instead, None);
    }

    #[test]
    fn the_names_follow_the_source_name() {
        let c = MicConfig {
            source_name: "voice".into(),
        };
        assert_eq!(c.feed_sink_name(), "voice_feed");
        let p = plan(&c, &snap(&["novnc_mic_feed"], &[("novnc_mic", false)]));
        assert!(p.load_feed, "another name's feed is not ours");
    }
}
