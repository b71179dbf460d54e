//! The microphone's own context on the daemon's glib loop: connect, follow its state,
//! reconnect with backoff after the server went away (a fresh context each time).

use std::time::Duration;

use libpulse_binding::context::subscribe::{Facility, InterestMaskSet, Operation as SubOp};
use libpulse_binding::context::{Context, FlagSet as ContextFlags, State as ContextState};
use libpulse_binding::proplist::Proplist;
use log::{debug, error, warn};

use super::{defer, with_inner, Inner};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The first delay before reconnecting.
pub(super) const FIRST_BACKOFF: Duration = BACKOFF_MIN;

/// Both libpulse clients ask for their context this way (src/pulse_client.rs).
pub(super) use crate::pulse_client::{ready, ready_mut};

impl Inner {
    pub(super) fn connect(&mut self) {
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

    pub(super) fn on_context_state(&mut self, generation: u64) {
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

    pub(super) fn connection_failed(&mut self, reason: &str) {
        if self.ready {
            warn!("microphone: lost the connection to PulseAudio ({reason}); reconnecting");
        } else if !self.failures_logged {
            warn!("microphone: cannot connect to PulseAudio ({reason}); retrying");
            self.failures_logged = true;
        }
        self.drop_context();
        self.schedule_reconnect();
    }

    pub(super) fn schedule_reconnect(&mut self) {
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

    pub(super) fn drop_context(&mut self) {
        self.drop_stream();
        if let Some(mut ctx) = self.context.take() {
            ctx.set_state_callback(None);
            ctx.set_subscribe_callback(None);
            ctx.disconnect();
        }
        self.refresh_in_flight = false;
        self.refresh_again = false;
    }
}
