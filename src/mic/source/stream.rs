//! The playback stream into the feed: fed by its write callback from the speaker's
//! jitter buffer, corked while nobody speaks, flushed when the speaker leaves.

use std::time::Duration;

use libpulse_binding::def::BufferAttr;
use libpulse_binding::proplist::Proplist;
use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::{FlagSet as StreamFlags, SeekMode, State as StreamState, Stream};
use log::{debug, error, info, warn};

use super::connection::ready_mut;
use super::{defer, with_inner, Inner, RATE};

/// What the playback stream keeps queued in the server: small, the jitter buffer is ours.
const STREAM_TARGET_MS: u32 = 20;
const STREAM_REQUEST_MS: u32 = 10;
const BYTES_PER_MS: u32 = RATE / 1000 * 2;

impl Inner {
    pub(super) fn create_stream(&mut self) {
        let feed = self.config.feed_sink_name();
        let spec = Spec {
            format: Format::S16le,
            rate: RATE,
            channels: 1,
        };
        let Some(ctx) = ready_mut(&mut self.context) else {
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

    pub(super) fn on_stream_state(&mut self, generation: u64) {
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
                // A speaker who came while the stream was connecting found it neither
                // ready nor able to uncork (`apply_cork` needs Ready): the stream was
                // created corked and would stay silent. Cork it as things are now.
                let speaking = self.speaking;
                if let Some(stream) = self.stream.as_mut() {
                    stream.set_corked_state(!speaking, None);
                }
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
    pub(super) fn kick_feed(&mut self) {
        let feed = self.config.feed_sink_name();
        if let Some(ctx) = ready_mut(&mut self.context) {
            let mut introspect = ctx.introspect();
            introspect.suspend_sink_by_name(&feed, true, None);
            introspect.suspend_sink_by_name(&feed, false, None);
        }
    }

    pub(super) fn apply_cork(&mut self) {
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
    pub(super) fn write(&mut self, len: usize) {
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

    pub(super) fn drop_stream(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            stream.set_write_callback(None);
            stream.set_state_callback(None);
            let _ = stream.disconnect();
        }
        self.status.source = None;
    }
}
