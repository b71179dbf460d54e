//! The record stream: created on the chosen source, moved when the choice changes,
//! corked while nobody listens or nothing plays (playing.rs); what it reads goes to the
//! consumer.

use std::time::Duration;

use libpulse_binding as pulse;
use log::{debug, error, info, warn};
use pulse::def::BufferAttr;
use pulse::proplist::Proplist;
use pulse::sample::{Format, Spec};
use pulse::stream::{FlagSet as StreamFlags, PeekResult, State as StreamState, Stream};

use super::connection::ready_mut;
use super::{defer, with_inner, CaptureEvent, Inner};

impl Inner {
    pub(super) fn drop_stream(&mut self) {
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

    /// Buffer attributes for fragments of `fragment_us`; everything else is the server's
    /// choice. With ADJUST_LATENCY the fragment is also the latency we ask of the source,
    /// and so of the sink we record the monitor of.
    fn buffer_attr(&self, fragment_us: u32) -> BufferAttr {
        BufferAttr {
            maxlength: u32::MAX,
            tlength: u32::MAX,
            prebuf: u32::MAX,
            minreq: u32::MAX,
            fragsize: self.format.bytes_for_us(fragment_us) as u32,
        }
    }

    /// Asks for fragments of `fragment_us` from now on (see playing.rs for why).
    pub(super) fn set_fragment(&mut self, fragment_us: u32) {
        let attr = self.buffer_attr(fragment_us);
        if let Some(stream) = self.stream.as_mut() {
            debug!("record fragment {} us", fragment_us);
            stream.set_buffer_attr(&attr, |_| {});
        }
    }

    pub(super) fn create_stream(&mut self, source: &str) {
        let config = &self.config;
        let spec = Spec {
            format: Format::S16le,
            rate: self.format.rate,
            channels: self.format.channels,
        };
        let Some(ctx) = ready_mut(&mut self.context) else {
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
        let attr = self.buffer_attr(config.latency_us);
        // Corked until it is ready and apply_run says it should run. A corked stream still
        // holds the sink at our latency, which keeps the start of a sound whole.
        let flags = StreamFlags::ADJUST_LATENCY | StreamFlags::START_CORKED;
        self.playing.corked = true;
        let generation = self.link.generation;
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
        if generation != self.link.generation {
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
                self.kick_null_sink();
                self.apply_run();
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
                        if inner.link.generation == generation {
                            inner.refresh();
                        }
                    })
                });
            }
            _ => {}
        }
    }

    fn on_stream_moved(&mut self, generation: u64) {
        if generation != self.link.generation {
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
            self.kick_null_sink();
            self.apply_run();
        }
        self.refresh();
    }

    pub(super) fn move_stream(&mut self, target: &str) {
        let Some(index) = self.stream.as_ref().and_then(|s| s.get_index()) else {
            return;
        };
        let Some(ctx) = ready_mut(&mut self.context) else {
            return;
        };
        info!("default sink changed: moving the recording to {target}");
        let weak = self.weak.clone();
        let generation = self.link.generation;
        let target_owned = target.to_string();
        ctx.introspect().move_source_output_by_name(
            index,
            target,
            Some(Box::new(move |ok| {
                let target = target_owned.clone();
                defer(&weak, move |inner| {
                    if inner.link.generation != generation {
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
                    inner.kick_null_sink();
                    inner.apply_run();
                });
            })),
        );
    }

    /// A null sink renders in blocks of up to 2 s while nobody asks for low latency;
    /// suspending and resuming it makes it pick up our latency at once instead of
    /// swallowing the first block of audio. Done when the stream attaches to a sink (from
    /// then on our stream, corked or not, holds the sink at our latency), never when it
    /// uncorks for a new player: suspending the sink then cuts the player's beginning.
    pub(super) fn kick_null_sink(&mut self) {
        let Some(device) = self.status.device.clone() else {
            return;
        };
        let Some(sink) = self
            .devices
            .null_sink_of_monitor
            .iter()
            .find(|(monitor, _)| *monitor == device)
            .map(|(_, sink)| sink.clone())
        else {
            return;
        };
        let Some(ctx) = ready_mut(&mut self.context) else {
            return;
        };
        debug!("suspending and resuming null sink {sink} so it renders at our latency");
        let mut introspect = ctx.introspect();
        introspect.suspend_sink_by_name(&sink, true, None);
        introspect.suspend_sink_by_name(&sink, false, None);
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
        // Corked means nothing to send: what the server still had queued at the cork is
        // the end of a silence.
        if !buf.is_empty() && self.active && !self.playing.corked {
            self.emit(CaptureEvent::Audio(&buf));
        }
        self.read_buf = buf;
    }
}
