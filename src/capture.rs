//! Capture stage: an async libpulse context on the glib main loop that records the
//! monitor of the (default) sink and hands the bytes to a callback.
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

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use libpulse_binding as pulse;
use libpulse_glib_binding::Mainloop;
use pulse::callbacks::ListResult;
use pulse::context::subscribe::{Facility, InterestMaskSet, Operation as SubOp};
use pulse::context::{Context, FlagSet as ContextFlags, State as ContextState};
use pulse::def::BufferAttr;
use pulse::proplist::Proplist;
use pulse::sample::{Format, Spec};
use pulse::stream::{FlagSet as StreamFlags, PeekResult, State as StreamState, Stream};

use crate::audio::{Device, StreamFormat};
use crate::config::CaptureConfig;
use crate::stats::{CaptureStatus, PulseState};
use log::{debug, error, info, warn};

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

const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Cap of the reconnection backoff: the daemon is back within this of the server's return.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// One record stream from PulseAudio, kept alive across server restarts.
pub struct Capture {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Snapshot {
    default_sink: Option<String>,
    sinks: Vec<SinkRecord>,
    sources: Vec<SourceRecord>,
    pending: u8,
    failed: bool,
}

struct SinkRecord {
    name: String,
    monitor: String,
    is_null: bool,
}

struct SourceRecord {
    name: String,
}

struct Inner {
    config: CaptureConfig,
    /// Rate and channels of the record stream.
    format: StreamFormat,
    consumer: Consumer,
    weak: Weak<RefCell<Inner>>,
    status: CaptureStatus,
    /// Clients are listening: the stream runs; otherwise it is corked.
    active: bool,
    /// Bumped for every new context, so late callbacks of an old one are ignored.
    generation: u64,
    connected_once: bool,
    backoff: Duration,
    failures_logged: bool,
    reconnect_timer: Option<glib::SourceId>,
    refresh_in_flight: bool,
    refresh_again: bool,
    sink_load_pending: bool,
    sink_load_refused: bool,
    waiting_logged: Option<String>,
    /// The source the stream should record, from the last snapshot.
    target: Option<String>,
    /// Sinks known to be null sinks, by monitor source name (for the suspend kick).
    null_sink_of_monitor: Vec<(String, String)>,
    read_buf: Vec<u8>,
    stopped: bool,
    // Drop order matters: the stream, then the context, then the main loop.
    stream: Option<Stream>,
    context: Option<Context>,
    mainloop: Mainloop,
}

/// Runs `f` on `Inner` if it still exists and nothing borrows it (a callback must never
/// panic: a panic across the C boundary aborts).
fn with_inner(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner)) {
    if let Some(inner) = weak.upgrade() {
        if let Ok(mut inner) = inner.try_borrow_mut() {
            f(&mut inner);
        }
    }
}

/// Runs `f` on the main loop soon, outside whatever libpulse call is on the stack.
fn defer(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner) + 'static) {
    let weak = weak.clone();
    glib::timeout_add_local_once(Duration::ZERO, move || with_inner(&weak, f));
}

impl Capture {
    /// Starts connecting; audio flows to `consumer` once clients make it active.
    pub fn start(
        config: CaptureConfig,
        format: StreamFormat,
        consumer: impl FnMut(CaptureEvent<'_>) + 'static,
    ) -> Result<Capture, CaptureError> {
        let mainloop = Mainloop::new(None).ok_or(CaptureError::Mainloop)?;
        let inner = Rc::new_cyclic(|weak| {
            RefCell::new(Inner {
                config,
                format,
                consumer: Rc::new(RefCell::new(consumer)),
                weak: weak.clone(),
                status: CaptureStatus {
                    state: PulseState::Connecting,
                    device: None,
                    sink_created: false,
                    reconnects: 0,
                    recording: false,
                },
                active: false,
                generation: 0,
                connected_once: false,
                backoff: BACKOFF_MIN,
                failures_logged: false,
                reconnect_timer: None,
                refresh_in_flight: false,
                refresh_again: false,
                sink_load_pending: false,
                sink_load_refused: false,
                waiting_logged: None,
                target: None,
                null_sink_of_monitor: Vec::new(),
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

    /// Runs the stream while someone listens; corks it otherwise (no work for anyone).
    pub fn set_active(&self, active: bool) {
        let mut inner = self.inner.borrow_mut();
        if inner.active == active {
            return;
        }
        inner.active = active;
        inner.apply_cork();
    }

    /// Disconnects cleanly. Sinks are left alone: applications may be playing into them.
    pub fn stop(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.stopped = true;
        if let Some(t) = inner.reconnect_timer.take() {
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

    fn connect(&mut self) {
        self.reconnect_timer = None;
        if self.stopped {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        self.status.state = PulseState::Connecting;
        let mut props = Proplist::new().expect("proplist");
        let _ = props.set_str("application.name", "novnc-audio");
        let _ = props.set_str("application.id", "org.novnc.audio");
        let _ = props.set_str("application.icon_name", "audio-card");
        let Some(mut context) = Context::new_with_proplist(&self.mainloop, "novnc-audio", &props)
        else {
            error!("cannot create a PulseAudio context");
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
        // The state callback runs inside connect(): it only defers, so this is safe.
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
            ContextState::Ready if self.status.state == PulseState::Ready => {}
            ContextState::Ready => {
                let server = self
                    .context
                    .as_ref()
                    .and_then(|c| c.get_server())
                    .unwrap_or_default();
                if self.connected_once {
                    self.status.reconnects += 1;
                    info!("reconnected to PulseAudio at {server}");
                } else {
                    info!("connected to PulseAudio at {server}");
                }
                self.connected_once = true;
                self.failures_logged = false;
                self.backoff = BACKOFF_MIN;
                self.status.state = PulseState::Ready;
                self.sink_load_pending = false;
                // A restarted server may allow what the previous one refused.
                self.sink_load_refused = false;
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
        if self.status.state == PulseState::Ready {
            warn!("lost the connection to PulseAudio ({reason}); reconnecting");
        } else if !self.failures_logged {
            warn!(
                "cannot connect to PulseAudio ({reason}); retrying every {} ms (is PULSE_SERVER right?)",
                BACKOFF_MAX.as_millis()
            );
            self.failures_logged = true;
        } else {
            debug!("PulseAudio still unreachable ({reason})");
        }
        self.drop_context();
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        self.status.state = PulseState::Disconnected;
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
            stream.set_read_callback(None);
            stream.set_state_callback(None);
            stream.set_moved_callback(None);
            stream.set_overflow_callback(None);
            let _ = stream.disconnect();
        }
        if self.status.recording {
            self.status.recording = false;
            self.emit(CaptureEvent::Discontinuity);
        }
        self.status.device = None;
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

    /// Reads the server's default sink, sinks and sources, then decides what to record.
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
        let snap = Rc::new(RefCell::new(Snapshot {
            pending: 3,
            ..Default::default()
        }));
        let introspect = ctx.introspect();

        let done = {
            let weak = self.weak.clone();
            move |snap: &Rc<RefCell<Snapshot>>| {
                let finished = {
                    let mut s = snap.borrow_mut();
                    s.pending -= 1;
                    s.pending == 0
                };
                if finished {
                    let snap = snap.clone();
                    defer(&weak, move |inner| {
                        if inner.generation == generation {
                            let snapshot = std::mem::take(&mut *snap.borrow_mut());
                            inner.on_snapshot(snapshot);
                        }
                    });
                }
            }
        };
        {
            let snap = snap.clone();
            let done = done.clone();
            introspect.get_server_info(move |info| {
                snap.borrow_mut().default_sink =
                    info.default_sink_name.as_ref().map(|n| n.to_string());
                done(&snap);
            });
        }
        {
            let snap = snap.clone();
            let done = done.clone();
            introspect.get_sink_info_list(move |result| match result {
                ListResult::Item(sink) => {
                    if let (Some(name), Some(monitor)) = (&sink.name, &sink.monitor_source_name) {
                        let is_null = sink.driver.as_deref().is_some_and(|d| d.contains("null"));
                        snap.borrow_mut().sinks.push(SinkRecord {
                            name: name.to_string(),
                            monitor: monitor.to_string(),
                            is_null,
                        });
                    }
                }
                ListResult::End => done(&snap),
                ListResult::Error => {
                    snap.borrow_mut().failed = true;
                    done(&snap);
                }
            });
        }
        {
            let snap = snap.clone();
            introspect.get_source_info_list(move |result| match result {
                ListResult::Item(source) => {
                    if let Some(name) = &source.name {
                        snap.borrow_mut().sources.push(SourceRecord {
                            name: name.to_string(),
                        });
                    }
                }
                ListResult::End => done(&snap),
                ListResult::Error => {
                    snap.borrow_mut().failed = true;
                    done(&snap);
                }
            });
        }
    }

    fn on_snapshot(&mut self, snap: Snapshot) {
        self.refresh_in_flight = false;
        if self.refresh_again {
            // Something changed while we were asking: ask again before acting.
            self.refresh_again = false;
            self.refresh();
            return;
        }
        if snap.failed {
            warn!("PulseAudio did not list its devices; will retry on the next change");
            return;
        }
        self.null_sink_of_monitor = snap
            .sinks
            .iter()
            .filter(|s| s.is_null)
            .map(|s| (s.monitor.clone(), s.name.clone()))
            .collect();

        let wants_own_sink = match &self.config.device {
            Device::FollowDefault => true,
            Device::Named(n) => *n == self.config.sink_name && self.config.monitor,
        };
        let own_sink_exists = snap.sinks.iter().any(|s| s.name == self.config.sink_name);
        if snap.sinks.is_empty() && wants_own_sink && !own_sink_exists {
            self.load_null_sink();
            return;
        }
        if self.status.sink_created
            && own_sink_exists
            && snap
                .default_sink
                .as_deref()
                .is_none_or(|d| !snap.sinks.iter().any(|s| s.name == d))
        {
            self.set_default_sink();
        }

        let target = match &self.config.device {
            Device::FollowDefault => {
                let default = snap
                    .default_sink
                    .as_deref()
                    .and_then(|d| snap.sinks.iter().find(|s| s.name == d))
                    .or_else(|| snap.sinks.first());
                default.map(|s| s.monitor.clone())
            }
            Device::Named(name) => {
                let wanted = if self.config.monitor {
                    // The monitor of sink NAME (its real name, which is NAME.monitor on
                    // PulseAudio and PipeWire alike).
                    snap.sinks
                        .iter()
                        .find(|s| s.name == *name)
                        .map(|s| s.monitor.clone())
                        .or_else(|| {
                            let m = format!("{name}.monitor");
                            snap.sources.iter().any(|s| s.name == m).then_some(m)
                        })
                } else {
                    snap.sources
                        .iter()
                        .any(|s| s.name == *name)
                        .then(|| name.clone())
                };
                if wanted.is_none() && self.waiting_logged.as_deref() != Some(name) {
                    info!(
                        "waiting for {} '{name}' to appear",
                        if self.config.monitor {
                            "sink"
                        } else {
                            "source"
                        }
                    );
                    self.waiting_logged = Some(name.clone());
                }
                wanted
            }
        };
        self.target = target.clone();
        let Some(target) = target else {
            if matches!(self.config.device, Device::FollowDefault) {
                info!("no sink to record yet; waiting for one");
            }
            return;
        };
        self.waiting_logged = None;
        match self.stream.as_ref() {
            None => self.create_stream(&target),
            Some(stream) => {
                let current = stream.get_device_name().map(|n| n.to_string());
                let ready = stream.get_state() == StreamState::Ready;
                if ready && current.as_deref() != Some(target.as_str()) {
                    self.move_stream(&target);
                }
            }
        }
    }

    fn load_null_sink(&mut self) {
        if self.sink_load_pending || self.sink_load_refused {
            return;
        }
        let Some(ctx) = self.context.as_mut() else {
            return;
        };
        self.sink_load_pending = true;
        let name = self.config.sink_name.clone();
        let args = format!(
            "sink_name={name} sink_properties=device.description=\"noVNC\\ audio\" rate={} channels={}",
            self.format.rate, self.format.channels
        );
        info!("the server has no sink: creating null sink {name}");
        let weak = self.weak.clone();
        let generation = self.generation;
        ctx.introspect()
            .load_module("module-null-sink", &args, move |index| {
                // Read the error now: it belongs to this operation.
                let errno = weak.upgrade().and_then(|i| {
                    i.try_borrow()
                        .ok()
                        .and_then(|i| i.context.as_ref().map(|c| c.errno()))
                });
                defer(&weak, move |inner| {
                    if inner.generation != generation {
                        return;
                    }
                    inner.sink_load_pending = false;
                    if index == u32::MAX {
                        inner.sink_load_refused = true;
                        let why = errno.map(|e| format!("{e}")).unwrap_or_default();
                        error!(
                            "PulseAudio refused to load module-null-sink ({why}): module loading \
                             is disabled in system mode; copy \
                             /usr/share/novnc-audio/pulse/system.pa.d/novnc-audio.pa to \
                             /etc/pulse/system.pa.d/ and restart PulseAudio"
                        );
                        return;
                    }
                    inner.status.sink_created = true;
                    info!(
                        "created null sink {} (module #{index})",
                        inner.config.sink_name
                    );
                    inner.set_default_sink();
                    inner.refresh();
                });
            });
    }

    fn set_default_sink(&mut self) {
        let name = self.config.sink_name.clone();
        if let Some(ctx) = self.context.as_mut() {
            info!("making {name} the default sink");
            ctx.set_default_sink(&name, |_| {});
        }
    }

    fn create_stream(&mut self, source: &str) {
        let config = &self.config;
        let spec = Spec {
            format: Format::S16le,
            rate: self.format.rate,
            channels: self.format.channels,
        };
        let Some(ctx) = self.context.as_mut() else {
            return;
        };
        let mut props = Proplist::new().expect("proplist");
        let _ = props.set_str("media.name", "novnc-audio capture");
        let _ = props.set_str("media.role", "production");
        let Some(mut stream) =
            Stream::new_with_proplist(ctx, "novnc-audio capture", &spec, None, &mut props)
        else {
            error!("cannot create a record stream: {}", ctx.errno());
            return;
        };
        let fragsize = self.format.bytes_for_us(config.latency_us) as u32;
        let attr = BufferAttr {
            maxlength: u32::MAX,
            tlength: u32::MAX,
            prebuf: u32::MAX,
            minreq: u32::MAX,
            fragsize,
        };
        let mut flags = StreamFlags::ADJUST_LATENCY;
        if !self.active {
            flags |= StreamFlags::START_CORKED;
        }
        let generation = self.generation;
        let weak = self.weak.clone();
        stream.set_read_callback(Some(Box::new(move |_len| {
            with_inner(&weak, Inner::read_available)
        })));
        let weak = self.weak.clone();
        stream.set_overflow_callback(Some(Box::new(move || {
            // The server dropped audio we did not read in time: the timeline has a gap.
            with_inner(&weak, |inner| inner.emit(CaptureEvent::Discontinuity))
        })));
        let weak = self.weak.clone();
        stream.set_state_callback(Some(Box::new(move || {
            defer(&weak, move |inner| inner.on_stream_state(generation));
        })));
        let weak = self.weak.clone();
        stream.set_moved_callback(Some(Box::new(move || {
            defer(&weak, move |inner| inner.on_stream_moved(generation));
        })));
        debug!("connecting a record stream to {source}");
        if let Err(e) = stream.connect_record(Some(source), Some(&attr), flags) {
            error!("cannot record from {source}: {e}");
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
            StreamState::Ready if self.status.recording => {}
            StreamState::Ready => {
                let device = self
                    .stream
                    .as_ref()
                    .and_then(|s| s.get_device_name())
                    .map(|n| n.to_string());
                info!("recording from {}", device.as_deref().unwrap_or("?"));
                self.status.device = device;
                self.status.recording = true;
                self.emit(CaptureEvent::Discontinuity);
                if self.active {
                    self.kick_null_sink();
                }
                // The default may have changed while the stream was connecting.
                self.refresh();
            }
            StreamState::Failed | StreamState::Terminated => {
                let why = self
                    .context
                    .as_ref()
                    .map(|c| format!("{}", c.errno()))
                    .unwrap_or_default();
                warn!("the record stream ended ({why}); recreating it");
                self.drop_stream();
                let weak = self.weak.clone();
                // A short pause so a source that keeps failing cannot spin the loop.
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

    fn on_stream_moved(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        let device = self
            .stream
            .as_ref()
            .and_then(|s| s.get_device_name())
            .map(|n| n.to_string());
        if device != self.status.device {
            info!(
                "PulseAudio moved the recording to {}",
                device.as_deref().unwrap_or("?")
            );
            self.status.device = device;
            self.emit(CaptureEvent::Discontinuity);
            if self.active {
                self.kick_null_sink();
            }
        }
        self.refresh();
    }

    fn move_stream(&mut self, target: &str) {
        let Some(index) = self.stream.as_ref().and_then(|s| s.get_index()) else {
            return;
        };
        let Some(ctx) = self.context.as_mut() else {
            return;
        };
        info!("default sink changed: moving the recording to {target}");
        let weak = self.weak.clone();
        let generation = self.generation;
        let target_owned = target.to_string();
        ctx.introspect().move_source_output_by_name(
            index,
            target,
            Some(Box::new(move |ok| {
                let target = target_owned.clone();
                defer(&weak, move |inner| {
                    if inner.generation != generation {
                        return;
                    }
                    if !ok {
                        warn!("PulseAudio refused to move the recording to {target}; recreating the stream");
                        inner.drop_stream();
                        inner.refresh();
                        return;
                    }
                    inner.status.device = Some(target.clone());
                    inner.emit(CaptureEvent::Discontinuity);
                    if inner.active {
                        inner.kick_null_sink();
                    }
                });
            })),
        );
    }

    /// A null sink renders in blocks of up to 2 s while nobody asks for low latency;
    /// suspending and resuming it makes it pick up our latency at once instead of
    /// swallowing the first block of audio.
    fn kick_null_sink(&mut self) {
        let Some(device) = self.status.device.clone() else {
            return;
        };
        let Some(sink) = self
            .null_sink_of_monitor
            .iter()
            .find(|(monitor, _)| *monitor == device)
            .map(|(_, sink)| sink.clone())
        else {
            return;
        };
        let Some(ctx) = self.context.as_mut() else {
            return;
        };
        debug!("suspending and resuming null sink {sink} so it renders at our latency");
        let mut introspect = ctx.introspect();
        introspect.suspend_sink_by_name(&sink, true, None);
        introspect.suspend_sink_by_name(&sink, false, None);
    }

    fn apply_cork(&mut self) {
        let active = self.active;
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if stream.get_state() != StreamState::Ready {
            return;
        }
        stream.set_corked_state(!active, None);
        if active {
            self.emit(CaptureEvent::Discontinuity);
            self.kick_null_sink();
        } else {
            debug!("nobody listens: corked the record stream");
        }
    }

    /// Peeks, copies and discards everything readable, then hands it on.
    fn read_available(&mut self) {
        let mut buf = std::mem::take(&mut self.read_buf);
        buf.clear();
        let mut hole = false;
        if let Some(stream) = self.stream.as_mut() {
            loop {
                match stream.peek() {
                    Ok(PeekResult::Empty) => break,
                    Ok(PeekResult::Hole(_)) => {
                        hole = true;
                        let _ = stream.discard();
                    }
                    Ok(PeekResult::Data(data)) => {
                        buf.extend_from_slice(data);
                        let _ = stream.discard();
                    }
                    Err(_) => break,
                }
            }
        }
        if hole {
            self.emit(CaptureEvent::Discontinuity);
        }
        if !buf.is_empty() && self.active {
            self.emit(CaptureEvent::Audio(&buf));
        }
        self.read_buf = buf;
    }
}
