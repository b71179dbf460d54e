//! What the daemon's two libpulse clients (the capture and the microphone's source) share
//! about their contexts.

use libpulse_binding::context::{Context, State as ContextState};

/// The context, only while it is ready for requests. A deferred task (a subscription
/// event, a timer) can run after the server went away and before the failure is handled:
/// libpulse then returns no operation, which libpulse-binding turns into a panic, an abort
/// inside the main loop (pulseaudio_killed_and_restarted, cycle 4 of one loaded run:
/// refresh_inputs after the SIGKILL).
pub(crate) fn ready(context: &Option<Context>) -> Option<&Context> {
    context
        .as_ref()
        .filter(|c| c.get_state() == ContextState::Ready)
}

/// [`ready`], mutable.
pub(crate) fn ready_mut(context: &mut Option<Context>) -> Option<&mut Context> {
    context
        .as_mut()
        .filter(|c| c.get_state() == ContextState::Ready)
}
