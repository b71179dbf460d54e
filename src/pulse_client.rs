//! What the daemon's two libpulse clients (the capture and the microphone's source) share:
//! how a callback reaches their state, and how they ask for their context.

use std::cell::RefCell;
use std::rc::Weak;
use std::time::Duration;

use libpulse_binding::context::{Context, State as ContextState};

/// Runs `f` on the client's state if it still exists and nothing borrows it (a callback must
/// never panic: a panic across the C boundary aborts).
pub(crate) fn with_inner<T>(weak: &Weak<RefCell<T>>, f: impl FnOnce(&mut T)) {
    if let Some(inner) = weak.upgrade() {
        if let Ok(mut inner) = inner.try_borrow_mut() {
            f(&mut inner);
        }
    }
}

/// Runs `f` on the main loop soon, outside whatever libpulse call is on the stack.
pub(crate) fn defer<T: 'static>(weak: &Weak<RefCell<T>>, f: impl FnOnce(&mut T) + 'static) {
    let weak = weak.clone();
    glib::timeout_add_local_once(Duration::ZERO, move || with_inner(&weak, f));
}

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
