//! The connection to the audio server: a fresh `Context` per attempt, its states, and
//! reconnection with backoff. The daemon never exits because the server went away.

use std::time::Duration;

use libpulse_binding as pulse;
use log::{debug, error, info, warn};
use pulse::context::subscribe::{Facility, InterestMaskSet, Operation as SubOp};
use pulse::context::{Context, FlagSet as ContextFlags, State as ContextState};
use pulse::proplist::Proplist;

use super::{defer, with_inner, Inner};
use crate::stats::PulseState;

pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Cap of the reconnection backoff: the daemon is back within this of the server's return.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The state of the connection.
pub(super) struct Link {
    /// Bumped for every new context, so late callbacks of an old one are ignored.
    pub(super) generation: u64,
    pub(super) connected_once: bool,
    pub(super) backoff: Duration,
    pub(super) failures_logged: bool,
    pub(super) reconnect_timer: Option<glib::SourceId>,
}

/// Both libpulse clients ask for their context this way (src/pulse_client.rs).
pub(super) use crate::pulse_client::{ready, ready_mut};

impl Inner {
    pub(super) fn connect(&mut self) {
        self.link.reconnect_timer = None;
        if self.stopped {
            return;
        }
        self.link.generation += 1;
        let generation = self.link.generation;
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
            // A new client may be a player about to open its stream: run now (the
            // listing that follows corks again if nothing plays). A few round trips before
            // its first samples, which a corked stream would miss.
            if matches!(facility, Some(Facility::Client) | Some(Facility::SinkInput)) {
                let new = op == Some(SubOp::New);
                if new {
                    // At once, not deferred: see playing.rs. Dispatched by the main loop,
                    // so nothing of ours is borrowed (with_inner checks all the same).
                    with_inner(&weak, |inner| {
                        if inner.link.generation == generation {
                            inner.on_newcomer();
                        }
                    });
                }
                // A client only matters when it appears; any change of a sink input does.
                if new || facility == Some(Facility::SinkInput) {
                    defer(&weak, move |inner| {
                        if inner.link.generation == generation {
                            inner.refresh_inputs();
                        }
                    });
                }
                return;
            }
            let relevant = match facility {
                Some(Facility::Server) => true,
                Some(Facility::Sink) | Some(Facility::Source) => {
                    matches!(op, Some(SubOp::New) | Some(SubOp::Removed))
                }
                _ => false,
            };
            if relevant {
                defer(&weak, move |inner| {
                    if inner.link.generation == generation {
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
        if generation != self.link.generation || self.stopped {
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
                if self.link.connected_once {
                    self.status.reconnects += 1;
                    info!("reconnected to PulseAudio at {server}");
                } else {
                    info!("connected to PulseAudio at {server}");
                }
                self.link.connected_once = true;
                self.link.failures_logged = false;
                self.link.backoff = BACKOFF_MIN;
                self.status.state = PulseState::Ready;
                self.devices.sink_load_pending = false;
                // A restarted server may allow what the previous one refused.
                self.devices.sink_load_refused = false;
                if let Some(ctx) = self.context.as_mut() {
                    let mask = InterestMaskSet::SERVER
                        | InterestMaskSet::SINK
                        | InterestMaskSet::SOURCE
                        | InterestMaskSet::SINK_INPUT
                        | InterestMaskSet::CLIENT;
                    ctx.subscribe(mask, |_| {});
                }
                self.refresh();
                self.refresh_inputs();
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
        } else if !self.link.failures_logged {
            warn!(
                "cannot connect to PulseAudio ({reason}); retrying every {} ms (is PULSE_SERVER right?)",
                BACKOFF_MAX.as_millis()
            );
            self.link.failures_logged = true;
        } else {
            debug!("PulseAudio still unreachable ({reason})");
        }
        self.drop_context();
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        self.status.state = PulseState::Disconnected;
        if self.stopped || self.link.reconnect_timer.is_some() {
            return;
        }
        let delay = self.link.backoff;
        self.link.backoff = (self.link.backoff * 2).min(BACKOFF_MAX);
        let weak = self.weak.clone();
        self.link.reconnect_timer = Some(glib::timeout_add_local_once(delay, move || {
            with_inner(&weak, |inner| {
                inner.link.reconnect_timer = None;
                inner.connect();
            })
        }));
    }

    pub(super) fn drop_context(&mut self) {
        self.drop_stream();
        if let Some(mut ctx) = self.context.take() {
            ctx.set_state_callback(None);
            ctx.set_subscribe_callback(None);
            ctx.disconnect();
        }
        self.devices.forget_server();
        self.playing.reset();
    }
}
