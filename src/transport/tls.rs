//! `--tls-cert` / `--tls-key`: the rustls server configuration (ring provider).

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::WebSocketConfig;

/// The certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read --tls-cert {}: {source}", path.display())]
    ReadCert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("--tls-cert {}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("cannot read --tls-key {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS setup: {0}")]
    Setup(#[source] rustls::Error),
    #[error("--tls-cert/--tls-key do not make a usable pair: {0}")]
    Pair(#[source] rustls::Error),
}

/// Loads `--tls-cert` / `--tls-key` (PEM) into a rustls server configuration.
pub fn load_tls(config: &WebSocketConfig) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::ReadCert {
            path: cert_path.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsError::ReadKey {
        path: key_path.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Pair)?;
    Ok(Some(Arc::new(server)))
}
