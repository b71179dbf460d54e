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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::transport::Transport;
    use crate::web::Codecs;

    #[test]
    fn a_bad_token_file_is_a_token_error_with_its_source() {
        let mut config = Config::default();
        config.websocket.host = "127.0.0.1".into();
        config.websocket.port = 1;
        config.websocket.token_file = Some("/nonexistent/novnc-audio-token".into());
        let codecs = Codecs {
            default: crate::audio::Codec::Opus,
            opus: true,
        };
        let hooks = crate::transport::TransportHooks {
            on_listening: Box::new(|_| {}),
            render_stats: Box::new(|_, _| String::new()),
        };
        let err = match Transport::start(config.websocket.clone(), codecs, config.format(), hooks) {
            Ok(_) => panic!("started with a missing token file"),
            Err(e) => e,
        };
        assert!(matches!(err, Error::Token(_)), "{err:?}");
        assert_eq!(err.exit_code(), 1);
        let message = err.to_string();
        assert!(
            message.starts_with("cannot read --token-file /nonexistent/novnc-audio-token: "),
            "{message}"
        );
        // `transparent`: the source is the io error underneath the token error.
        let source = std::error::Error::source(&err).expect("keeps its source");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
    }
}
