//! One error type for the crate; each variant names the stage that failed.

use crate::config::ConfigError;
use crate::encoder::EncodeError;

#[derive(Debug)]
pub enum Error {
    /// Bad command line or config file: exit status 2.
    Config(ConfigError),
    /// The WebSocket listener could not be set up.
    Listen(String),
    /// libpulse could not even be set up (a lost server is not an error: we reconnect).
    Pulse(String),
    Encoder(EncodeError),
    /// Daemonizing, pid file, privileges.
    Daemon(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Listen(e) => write!(f, "{e}"),
            Error::Pulse(e) => write!(f, "PulseAudio: {e}"),
            Error::Encoder(e) => write!(f, "{e}"),
            Error::Daemon(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<EncodeError> for Error {
    fn from(e: EncodeError) -> Self {
        Error::Encoder(e)
    }
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
