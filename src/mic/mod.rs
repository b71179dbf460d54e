//! The way back: the browser's microphone becomes a source of the desktop.
//!
//! A speaker (one `/mic` WebSocket client at a time) sends audio frames; they are checked
//! and decoded ([`message`], [`decode`]), paced ([`pace`]), buffered ([`jitter`]) by the
//! [`speaker`] path, and played by a libpulse playback stream into a virtual source
//! ([`source`]) that applications record as their microphone.
//!
//! Stages run one way: the transport hands messages to [`Microphone::receive`] and closes
//! the speaker with the [`Rejection`] it gets back; nothing here knows about sockets.

pub mod decode;
pub mod jitter;
pub mod message;
pub mod pace;
pub mod source;
pub mod speaker;

pub use message::Rejection;

/// The microphone could not even be set up (a lost server is not an error: it reconnects).
#[derive(Debug, thiserror::Error)]
pub enum MicError {
    #[error("microphone: cannot create the libpulse glib main loop")]
    Mainloop,
    #[error("microphone: {0}")]
    Decoder(String),
}
pub use source::{feed_sink_name, MicConfig, MicStatus, Microphone};
pub use speaker::SpeakerStats;
