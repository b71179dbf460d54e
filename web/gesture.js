// gesture.js: run a function on the user's first activation gesture anywhere on the page.
//
// Browsers start audio only from a gesture. Listening for 'click' on the document is not enough
// inside noVNC: noVNC 1.3 captures the pointer on its canvas (Firefox setCapture) and stops the
// propagation of its mouse events, and it swallows key events. So we listen on the window, in the
// capture phase (before any element's handler can stop the event), for the events that count as
// user activation: pointerdown, mousedown, keydown, touchend (Safari on iOS unlocks audio on
// touchend, not touchstart), plus click.
export const GESTURE_EVENTS = ['pointerdown', 'mousedown', 'keydown', 'touchend', 'click'];

/** Calls fn(event) on each gesture until the returned function is called. */
export function onGesture(fn, target = globalThis.window) {
  if (!target || typeof target.addEventListener !== 'function') return () => {};
  const opts = { capture: true, passive: true };
  const handler = (e) => fn(e);
  for (const ev of GESTURE_EVENTS) target.addEventListener(ev, handler, opts);
  return () => { for (const ev of GESTURE_EVENTS) target.removeEventListener(ev, handler, opts); };
}
