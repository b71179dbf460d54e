//! Is anything playing into the recorded sink? The server's playback streams (sink
//! inputs), the pure [`decide_run`] that says whether the record stream should run, and
//! the effect of its answer: uncork or cork. While nothing plays, a silent desktop costs
//! neither us nor PulseAudio anything, even with clients connected.
//!
//! Starting again is the delicate part: PulseAudio renders a new stream's first samples
//! into the sink within milliseconds of creating it, and a monitor stream that is corked
//! at that moment never sees them. So a new client (a player connects a few round trips
//! before it opens its stream) and a new sink input uncork the record stream straight from
//! the subscription callback, before anyone knows where it plays; the listing that
//! follows decides again. Measured in `make bench` (20 fresh pacat players of a 100 ms
//! burst, ms that arrived, min / median): uncorked on the sink input alone 62 / 78 (47-66
//! with the uncork deferred to the next loop iteration), with the client's head start
//! 82 / 93, as many as a stream that never corks (81 / 92; the rest is the null sink's own:
//! it drops the first ~0.7 x latency of a new stream for every monitor recorder). A
//! player that opens a stream on a connection it already had (a browser) only has the
//! sink input's event, and races. The null-sink kick is not used here: a corked stream
//! still holds the sink at our latency, and suspending the sink while the newcomer plays
//! cut its beginning further. The rest of the loss goes with a short fragment from the
//! newcomer's event for a second ([`START_FRAGMENT_US`]): 96 ms of 100 arrive (min and
//! median over 20 bursts, two runs; 81-83 / 88-96 with 20 ms fragments).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use libpulse_binding::callbacks::ListResult;
use libpulse_binding::stream::State as StreamState;
use log::{debug, warn};

use super::connection::ready;
use super::{defer, with_inner, CaptureEvent, Inner};
use crate::stats::Run;

/// How long the record stream keeps running after the last playback stream stopped: the
/// end of the sound still reaches the clients, and a player that stops and starts again
/// (one stream per notification sound) does not cork and uncork it each time.
const CORK_DELAY: Duration = Duration::from_millis(500);

/// The record fragment while a new playback stream may be starting. The sink renders
/// ahead by its latency, which our (even corked) stream sets; a stream that starts
/// rewinds the sink to mix itself in, and what of that rewound span the monitor already
/// delivered cannot be taken back, so every monitor recorder loses the start of a new
/// stream in proportion to its fragment (a bare recorder, 100 ms bursts: 1 ms fragments
/// 100-101 ms arrive, 5 ms 95-100, 20 ms 80-96). A short fragment from the newcomer's
/// first event until [`START_WINDOW`] later keeps the start whole, and costs the wakeups
/// of a short fragment only then: never while nothing plays, nor while a sound lasts.
const START_FRAGMENT_US: u32 = 5_000;
/// How long the short fragment lasts after a newcomer appeared: a player connects, opens
/// its stream and writes its first samples well within it.
const START_WINDOW: Duration = Duration::from_millis(1000);

/// A playback stream of the server (copied out of the introspection callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SinkInputRecord {
    pub(super) sink: u32,
    pub(super) corked: bool,
}

/// What the run decision remembers between listings.
pub(super) struct PlayingState {
    /// Sink index by monitor source name, from the last device snapshot.
    pub(super) monitored_sink: Vec<(String, u32)>,
    /// The server's playback streams, from the last listing.
    inputs: Vec<SinkInputRecord>,
    /// A client or sink input appeared that the last listing does not hold yet.
    unlisted: bool,
    in_flight: bool,
    again: bool,
    /// What we last asked of the stream (it is created corked).
    pub(super) corked: bool,
    cork_timer: Option<glib::SourceId>,
    /// Running while the short start fragment is in effect; ends it when it fires.
    start_timer: Option<glib::SourceId>,
}

impl PlayingState {
    pub(super) fn new() -> PlayingState {
        PlayingState {
            monitored_sink: Vec::new(),
            inputs: Vec::new(),
            unlisted: false,
            in_flight: false,
            again: false,
            corked: true,
            cork_timer: None,
            start_timer: None,
        }
    }

    /// A new connection: nothing is known about its streams yet.
    pub(super) fn reset(&mut self) {
        self.inputs.clear();
        self.unlisted = false;
        self.in_flight = false;
        self.again = false;
        if let Some(t) = self.cork_timer.take() {
            t.remove();
        }
        if let Some(t) = self.start_timer.take() {
            t.remove();
        }
    }
}

/// Should the record stream run? `follow_inputs` is false with `--send-silence`;
/// `recorded_sink` is `None` when the recorded source is no sink's monitor (then we
/// cannot tell whether something plays, and record). Pure: the caller applies it.
pub(super) fn decide_run(
    listening: bool,
    follow_inputs: bool,
    recorded_sink: Option<u32>,
    inputs: &[SinkInputRecord],
    unlisted: bool,
) -> Run {
    if !listening {
        return Run::NoListener;
    }
    let Some(sink) = recorded_sink.filter(|_| follow_inputs) else {
        return Run::Record;
    };
    if unlisted || inputs.iter().any(|i| i.sink == sink && !i.corked) {
        Run::Record
    } else {
        Run::NothingPlays
    }
}

impl Inner {
    /// The sink whose monitor we record, if we record a monitor.
    fn recorded_sink(&self) -> Option<u32> {
        let device = self.status.device.as_deref()?;
        self.playing
            .monitored_sink
            .iter()
            .find(|(monitor, _)| monitor == device)
            .map(|(_, index)| *index)
    }

    fn decide_run(&self) -> Run {
        decide_run(
            self.active,
            !self.config.send_silence,
            self.recorded_sink(),
            &self.playing.inputs,
            self.playing.unlisted,
        )
    }

    /// A client or a sink input appeared: run at once, without waiting for the listing.
    /// Called from the subscription callback (dispatched by the main loop, never from
    /// inside one of our libpulse calls); it only corks or uncorks.
    pub(super) fn on_newcomer(&mut self) {
        self.playing.unlisted = true;
        // Before the uncork: the server applies both in this order.
        self.short_fragment_for_a_start();
        self.apply_run();
    }

    /// Records in [`START_FRAGMENT_US`] fragments for [`START_WINDOW`] (or longer, if
    /// newcomers keep coming), then in the configured ones again.
    fn short_fragment_for_a_start(&mut self) {
        let normal = self.config.latency_us;
        let ready = self
            .stream
            .as_ref()
            .is_some_and(|s| s.get_state() == StreamState::Ready);
        if normal <= START_FRAGMENT_US || !ready {
            return;
        }
        match self.playing.start_timer.take() {
            Some(t) => t.remove(),
            None => self.set_fragment(START_FRAGMENT_US),
        }
        let weak = self.weak.clone();
        self.playing.start_timer = Some(glib::timeout_add_local_once(START_WINDOW, move || {
            with_inner(&weak, |inner| {
                inner.playing.start_timer = None;
                inner.set_fragment(inner.config.latency_us);
            })
        }));
    }

    /// Lists the server's playback streams, then decides again.
    pub(super) fn refresh_inputs(&mut self) {
        if self.playing.in_flight {
            self.playing.again = true;
            return;
        }
        let Some(ctx) = ready(&self.context) else {
            return;
        };
        self.playing.in_flight = true;
        let generation = self.link.generation;
        let list = Rc::new(RefCell::new(Some(Vec::new())));
        let weak = self.weak.clone();
        ctx.introspect()
            .get_sink_input_info_list(move |result| match result {
                ListResult::Item(input) => {
                    if let Some(l) = list.borrow_mut().as_mut() {
                        l.push(SinkInputRecord {
                            sink: input.sink,
                            corked: input.corked,
                        });
                    }
                }
                ListResult::End | ListResult::Error => {
                    let listed = match result {
                        ListResult::End => list.borrow_mut().take(),
                        _ => None,
                    };
                    defer(&weak, move |inner| {
                        if inner.link.generation == generation {
                            inner.on_inputs(listed);
                        }
                    });
                }
            });
    }

    fn on_inputs(&mut self, listed: Option<Vec<SinkInputRecord>>) {
        self.playing.in_flight = false;
        if self.playing.again {
            // Something changed while we were asking: ask again before acting.
            self.playing.again = false;
            self.refresh_inputs();
            return;
        }
        match listed {
            Some(inputs) => {
                self.playing.inputs = inputs;
                self.playing.unlisted = false;
            }
            // Keep what we knew; an unlisted newcomer keeps the stream running.
            None => {
                warn!("PulseAudio did not list its playback streams; will retry on the next change")
            }
        }
        self.apply_run();
    }

    /// Corks or uncorks the record stream as [`decide_run`] says.
    pub(super) fn apply_run(&mut self) {
        let run = self.decide_run();
        let ready = self
            .stream
            .as_ref()
            .is_some_and(|s| s.get_state() == StreamState::Ready);
        if !ready {
            return;
        }
        self.apply(run);
        self.show_run();
    }

    /// What /stats says: recording, or why not (the stream corked).
    fn show_run(&mut self) {
        self.status.run = match (self.playing.corked, self.decide_run()) {
            (false, _) => Run::Record,
            (true, Run::Record) => Run::Record,
            (true, why) => why,
        };
    }

    fn apply(&mut self, run: Run) {
        match run {
            Run::Record => {
                if let Some(t) = self.playing.cork_timer.take() {
                    t.remove();
                }
                if self.playing.corked {
                    self.set_corked(false);
                    self.emit(CaptureEvent::Discontinuity);
                    debug!("recording");
                }
            }
            Run::NoListener => {
                if let Some(t) = self.playing.cork_timer.take() {
                    t.remove();
                }
                if !self.playing.corked {
                    self.set_corked(true);
                    debug!("nobody listens: corked the record stream");
                }
            }
            Run::NothingPlays => {
                if self.playing.corked || self.playing.cork_timer.is_some() {
                    return;
                }
                let weak = self.weak.clone();
                self.playing.cork_timer =
                    Some(glib::timeout_add_local_once(CORK_DELAY, move || {
                        with_inner(&weak, |inner| {
                            inner.playing.cork_timer = None;
                            if inner.decide_run() == Run::NothingPlays && !inner.playing.corked {
                                inner.set_corked(true);
                                inner.show_run();
                                debug!("nothing plays: corked the record stream");
                            }
                        })
                    }));
            }
        }
    }

    fn set_corked(&mut self, corked: bool) {
        // Only a ready stream takes requests: libpulse returns no operation for one whose
        // server just went away, and libpulse-binding panics on that (an abort).
        if let Some(stream) = self
            .stream
            .as_mut()
            .filter(|s| s.get_state() == libpulse_binding::stream::State::Ready)
        {
            stream.set_corked_state(corked, None);
            self.playing.corked = corked;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(sink: u32, corked: bool) -> SinkInputRecord {
        SinkInputRecord { sink, corked }
    }

    #[test]
    fn runs_only_while_clients_listen_and_something_plays_into_the_recorded_sink() {
        let playing = [input(3, false)];
        assert_eq!(
            decide_run(false, true, Some(3), &playing, false),
            Run::NoListener
        );
        assert_eq!(
            decide_run(true, true, Some(3), &playing, false),
            Run::Record
        );
        assert_eq!(
            decide_run(true, true, Some(3), &[], false),
            Run::NothingPlays
        );
        // Corked streams and streams into other sinks do not count.
        let elsewhere = [input(3, true), input(4, false)];
        assert_eq!(
            decide_run(true, true, Some(3), &elsewhere, false),
            Run::NothingPlays
        );
        // A stream that appeared but is not listed yet does: it may play into ours.
        assert_eq!(
            decide_run(true, true, Some(3), &elsewhere, true),
            Run::Record
        );
        assert_eq!(
            decide_run(false, true, Some(3), &elsewhere, true),
            Run::NoListener
        );
    }

    #[test]
    fn records_whenever_clients_listen_with_send_silence_or_a_plain_source() {
        // --send-silence: the old behaviour, a frame every frame duration.
        assert_eq!(decide_run(true, false, Some(3), &[], false), Run::Record);
        // A source that is no sink's monitor (--no-monitor): nothing to follow.
        assert_eq!(decide_run(true, true, None, &[], false), Run::Record);
        assert_eq!(decide_run(false, false, None, &[], false), Run::NoListener);
    }
}
