//! Who may have what: the token, the allowed origins, the codec asked for.

use std::path::PathBuf;

use super::http::{constant_time_eq, Reply, Request};
use crate::audio::Codec;
use crate::config::WebSocketConfig;

/// `--token-file` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read --token-file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An empty token would match an empty `?token=`.
    #[error("--token-file {} is empty", path.display())]
    Empty { path: PathBuf },
}

/// The codecs this daemon can send.
#[derive(Debug, Clone, Copy)]
pub struct Codecs {
    /// For clients that do not ask (`?codec=`).
    pub default: Codec,
    /// Is Opus possible at the configured rate?
    pub opus: bool,
}

/// The access policy of the port.
pub struct Access {
    token: Option<String>,
    allowed_origins: Vec<String>,
    codecs: Codecs,
}

impl Access {
    /// Reads `--token-file` (if any) now.
    pub fn new(config: &WebSocketConfig, codecs: Codecs) -> Result<Access, TokenError> {
        Ok(Access {
            token: load_token(config)?,
            allowed_origins: config.allowed_origins.clone(),
            codecs,
        })
    }

    /// The token (`--token-file`), if one is needed.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Does the request present the token (or is none needed)?
    pub fn authorized(&self, req: &Request) -> bool {
        match &self.token {
            None => true,
            Some(t) => req
                .presented_token()
                .is_some_and(|p| constant_time_eq(p.as_bytes(), t.as_bytes())),
        }
    }

    /// May a page of this Origin open the stream?
    pub fn origin_allowed(&self, req: &Request) -> bool {
        if self.allowed_origins.is_empty() {
            return true;
        }
        let origin = req
            .header("origin")
            .unwrap_or("")
            .trim()
            .trim_end_matches('/');
        self.allowed_origins.iter().any(|o| o == origin)
    }

    /// The codec the client asks for (`?codec=`), if it can have it.
    pub fn codec(&self, req: &Request) -> Result<Codec, Reply> {
        match req.query_param("codec").as_deref() {
            None | Some("") => Ok(self.codecs.default),
            Some("pcm") => Ok(Codec::Pcm),
            Some("opus") if self.codecs.opus => Ok(Codec::Opus),
            Some(other) => Err(Reply::text(
                400,
                "Bad Request",
                &format!("Codec '{other}' is not available here (try pcm)."),
            )),
        }
    }
}

/// Reads `--token-file`.
fn load_token(config: &WebSocketConfig) -> Result<Option<String>, TokenError> {
    let Some(path) = &config.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.clone(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty { path: path.clone() });
    }
    Ok(Some(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::http::{parse_request, Parse};

    fn request(raw: &str) -> Request {
        match parse_request(raw.as_bytes()) {
            Parse::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    const CODECS: Codecs = Codecs {
        default: Codec::Opus,
        opus: true,
    };

    #[test]
    fn token_origin_and_codec() {
        let dir = std::env::temp_dir().join(format!("novnc-audio-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut config = WebSocketConfig {
            token_file: Some(file.clone()),
            allowed_origins: vec!["https://a".into()],
            ..crate::config::Config::default().websocket
        };
        let access = Access::new(&config, CODECS).unwrap();
        let good = request("GET /a?token=s3cret&codec=pcm HTTP/1.1\r\nOrigin: https://a/\r\n\r\n");
        assert!(access.authorized(&good));
        assert!(access.origin_allowed(&good));
        assert_eq!(access.codec(&good).unwrap(), Codec::Pcm);
        let bad = request("GET /a?token=s3cre&codec=mp3 HTTP/1.1\r\nOrigin: https://b\r\n\r\n");
        assert!(!access.authorized(&bad));
        assert!(!access.origin_allowed(&bad));
        assert_eq!(access.codec(&bad).unwrap_err().status, 400);

        std::fs::write(&file, " \n").unwrap();
        let err = Access::new(&config, CODECS).err().unwrap();
        assert!(err.to_string().ends_with("is empty"), "{err}");
        config.token_file = Some(dir.join("missing"));
        let err = Access::new(&config, CODECS).err().unwrap();
        assert!(
            err.to_string().starts_with("cannot read --token-file"),
            "{err}"
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "keeps the io error"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
