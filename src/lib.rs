//! novnc-audio: the sound of a remote desktop, for noVNC.
//!
//! Stages, one folder or file each: `capture` (PulseAudio) → `pipeline` (frames,
//! timestamps, `encoder`) → `transport` (sockets and clients) and `web` (what each request
//! gets); `server` wires them on one glib main loop. The library API is the configuration
//! ([`config`]), the server ([`Server`]), its [`stats`] and the [`Error`].
//!
//! ```no_run
//! let config = novnc_audio::Config::default();
//! let server = novnc_audio::Server::start(config, None).unwrap();
//! server.run(); // until SIGINT/SIGTERM or server.stop()
//! ```

mod audio;
mod capture;
pub mod config;
mod encoder;
mod error;
mod mic;
mod notify;
mod pipeline;
pub mod playout;
mod pulse_client;
mod server;
pub mod stats;
mod transport;
mod web;
mod wire;

pub use audio::{Codec, Device, OpusApplication, StreamFormat};
pub use config::{Config, ConfigError};
pub use error::Error;
pub use server::{Reloader, Server};
pub use stats::Stats;

/// The errors of each stage, which [`Error`] wraps (and gives as its `source`).
pub mod errors {
    pub use crate::capture::CaptureError;
    pub use crate::config::ConfigError;
    pub use crate::encoder::EncodeError;
    pub use crate::mic::MicError;
    pub use crate::transport::{ListenError, TlsError};
    pub use crate::web::TokenError;
}

/// The pure parsers the fuzz targets (fuzz/) exercise. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::mic::speaker::Speaker;
    pub use crate::web::http;
}
