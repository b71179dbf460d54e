//! One error type for the crate; each variant names the stage that failed and keeps the
//! error underneath as its source.

use crate::capture::CaptureError;
use crate::config::ConfigError;
use crate::encoder::EncodeError;
use crate::transport::{ListenError, TlsError};
use crate::web::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line or config file: exit status 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening socket could not be set up.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// `--token-file` could not be used.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// `--tls-cert` / `--tls-key` could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// libpulse could not even be set up (a lost server is not an error: we reconnect).
    #[error("PulseAudio: {0}")]
    Pulse(#[from] CaptureError),
    #[error(transparent)]
    Encoder(#[from] EncodeError),
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}
