//! novnc-audio: the sound of a remote desktop, for noVNC.
//!
//! Stages, one module each: [`capture`] (PulseAudio) → [`pipeline`] (frames, timestamps,
//! [`encoder`]) → [`transport`] (WebSocket clients, [`http`], [`wire`]); [`server`] wires
//! them on one glib main loop; [`config`], [`daemon`], [`log`] and [`notify`] are the
//! process around it.
//!
//! ```no_run
//! let config = novnc_audio::Config::default();
//! let server = novnc_audio::Server::start(config, None).unwrap();
//! server.run(); // until SIGINT/SIGTERM or server.stop()
//! ```

pub mod log;

pub mod capture;
pub mod config;
pub mod daemon;
pub mod encoder;
pub mod error;
pub mod http;
pub mod mic;
pub mod notify;
pub mod pipeline;
pub mod server;
pub mod transport;
pub mod wire;

pub use config::{Codec, Config, Device};
pub use error::Error;
pub use server::{Server, Stats};
