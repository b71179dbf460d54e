//! The way back: the browser's microphone becomes a source of the desktop.
pub mod decode;
pub mod jitter;
pub mod message;
pub mod pace;
pub mod speaker;
