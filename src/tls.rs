//! HTTPS without a proxy: the server's certificate and key, read from PEM files, held so that
//! they can be replaced while the server runs (SIGHUP) without dropping a connection.
//!
//! rustls asks [`CertStore`] (a `ResolvesServerCert`) for the certificate at each handshake, so a
//! reload swaps one `Arc<CertifiedKey>`: handshakes after it present the new certificate,
//! established connections keep the session they negotiated. A reload that cannot read or
//! parse the new files, or whose key does not match the certificate, keeps the old pair.
//!
//! The crypto provider is rustls' `ring`, the one reqwest already builds in (no second one).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The certificate chain and key files to serve HTTPS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the first certificate.
    pub key: PathBuf,
}

/// Why a certificate or key could not be used; names the file so an operator knows which.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("cannot use the TLS certificate {}: {reason}", .path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key file could not be read, holds no PEM private key, or a key rustls cannot use.
    #[error("cannot use the TLS key {}: {reason}", .path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key is not the key of the first certificate.
    #[error(
        "the TLS key {} does not belong to the certificate {}: {reason}",
        .key.display(),
        .cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// rustls refused the server configuration.
    #[error("cannot configure TLS: {0}")]
    Config(String),
}

/// The certificate the server presents, replaceable while it runs.
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Reads and checks both files (a start error when they are unusable).
    pub fn load(files: TlsFiles) -> Result<Arc<CertStore>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = read_pair(&files, &provider)?;
        Ok(Arc::new(CertStore {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Re-reads both files and presents them to new connections; on any error the certificate
    /// in use stays and the error is returned (and logged).
    pub fn reload(&self) -> Result<(), TlsError> {
        match read_pair(&self.files, &self.provider) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                tracing::info!(
                    cert = %self.files.cert.display(),
                    "reloaded the TLS certificate; new connections use it"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate");
                Err(e)
            }
        }
    }

    /// The files this store reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The rustls server configuration resolving through this store (ALPN `http/1.1`: the
    /// connection layer serves HTTP/1 only).
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Reads the chain and the key and checks that they belong together.
fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
    let pair = CertifiedKey::new(certs, signing);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(e) => Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        }),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Cert {
        path: path.to_owned(),
        reason,
    };
    // Read first, so a missing file says so (the PEM reader would call it a parse error).
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(err("no PEM `CERTIFICATE` block in it".into()));
    }
    // Parse the end-entity certificate now, so garbage inside a PEM block fails at start.
    webpki_check(&certs[0]).map_err(err)?;
    Ok(certs)
}

fn webpki_check(cert: &CertificateDer<'_>) -> Result<(), String> {
    rustls::server::ParsedCertificate::try_from(cert)
        .map(|_| ())
        .map_err(|e| format!("not a valid X.509 certificate ({e})"))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |reason: String| TlsError::Key {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => err("no PEM private key block in it".into()),
        e => err(format!("not a PEM private key file ({e})")),
    })
}
