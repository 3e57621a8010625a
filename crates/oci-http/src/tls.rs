//! TLS (HTTPS) for [`crate::server`]: rustls with the aws-lc-rs provider,
//! TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 offered over ALPN (`h2`,
//! `http/1.1`), optional client-certificate authentication (mTLS).
//!
//! A [`Tls`] is loaded from PEM files ([`TlsFiles`], the `[server.tls]`
//! section: `cert`, `key`, optional `client_ca`) and is cheap to clone:
//! every clone shares the configuration in service.
//!
//! # Reloading
//!
//! [`Tls::reload`] reads the files again and, only if all of them are
//! good (the certificate chain parses, the key matches the certificate,
//! the client CA bundle holds a usable certificate), puts the new
//! configuration in service. Each handshake takes the configuration in
//! service when it starts, so:
//!
//! - connections already open keep their session and certificate until
//!   they close (nothing is dropped);
//! - new handshakes use the new certificate, key and client CAs;
//! - a bad replacement (garbage, a key of another certificate, a file
//!   half written) is refused with a [`TlsError`] naming the file at
//!   fault, and the previous configuration stays in service.
//!
//! Reloads are triggered by the caller (the binary on `SIGHUP`, through
//! [`reload_on_sighup`]) or by [`Tls::watch`], which polls the files'
//! metadata (modification and change times, size, inode, and the target
//! of symlinks, so a Kubernetes secret volume swapping its `..data`
//! symlink counts) and reloads on any change; failures of these are
//! logged at `error`.
//!
//! Sessions are not resumed across a reload: each configuration has its
//! own session cache and tickets, so a client that resumes after a reload
//! does a full handshake and sees (and, with mTLS, is checked against) the
//! new configuration.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::reload::Reload;
pub use crate::reload::Watcher;

/// A PEM file larger than this is refused (a bundle of thousands of CA
/// certificates still fits).
pub const MAX_PEM_BYTES: u64 = 4 << 20;

/// The ALPN protocols offered, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where the server's certificate, its key and the optional client CA
/// bundle are: the `[server.tls]` configuration section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first
    /// (`tls.cert`).
    pub cert: PathBuf,
    /// PEM private key of that certificate: PKCS#8, PKCS#1 (RSA) or SEC1
    /// (EC) (`tls.key`).
    pub key: PathBuf,
    /// PEM bundle of CA certificates: when set, every client must present
    /// a certificate signed by one of them, or the handshake fails
    /// (`tls.client_ca`).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// A certificate and its key, without client authentication.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
        }
    }

    /// Requires client certificates signed by a CA in the `client_ca`
    /// PEM bundle.
    pub fn with_client_ca(mut self, client_ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(client_ca.into());
        self
    }

    /// The files with the configuration key each is set by.
    fn each(&self) -> impl Iterator<Item = (TlsFile, &Path)> {
        [
            (TlsFile::Cert, Some(self.cert.as_path())),
            (TlsFile::Key, Some(self.key.as_path())),
            (TlsFile::ClientCa, self.client_ca.as_deref()),
        ]
        .into_iter()
        .filter_map(|(file, path)| path.map(|p| (file, p)))
    }
}

/// Which of the [`TlsFiles`] an error is about, displayed as its
/// configuration key (`tls.cert`, `tls.key`, `tls.client_ca`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
    /// The client CA bundle.
    ClientCa,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Cert => "tls.cert",
            TlsFile::Key => "tls.key",
            TlsFile::ClientCa => "tls.client_ca",
        })
    }
}

/// Why a TLS configuration could not be loaded; each names the file at
/// fault and its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("{file} {}: {source}", path.display())]
    Read {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What reading it gave.
        source: io::Error,
    },
    /// The file is larger than [`MAX_PEM_BYTES`].
    #[error("{file} {}: larger than {MAX_PEM_BYTES} bytes", path.display())]
    TooLarge {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
    },
    /// The file is not valid PEM.
    #[error("{file} {}: not valid PEM: {source}", path.display())]
    Pem {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What the PEM parser said.
        source: pem::Error,
    },
    /// The file holds no PEM section of the kind it must hold.
    #[error("{file} {}: no {expected} found", path.display())]
    Missing {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What was looked for: `certificate` or `private key`.
        expected: &'static str,
    },
    /// The file holds a certificate or key rustls cannot use (bad DER, an
    /// unsupported algorithm).
    #[error("{file} {}: unusable: {source}", path.display())]
    Unusable {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The private key is not the key of the certificate.
    #[error("tls.key {}: does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The key's path.
        key: PathBuf,
        /// The certificate's path.
        cert: PathBuf,
    },
    /// No client verifier could be built from the client CA bundle.
    #[error("tls.client_ca {}: {source}", path.display())]
    ClientCa {
        /// The bundle's path.
        path: PathBuf,
        /// What the verifier builder said.
        source: VerifierBuilderError,
    },
    /// The crypto provider does not support the protocol versions (a
    /// build problem, not a file's).
    #[error("TLS provider: {0}")]
    Provider(rustls::Error),
}

impl TlsError {
    /// The file at fault, if the error is about one.
    pub fn file(&self) -> Option<TlsFile> {
        match self {
            TlsError::Read { file, .. }
            | TlsError::TooLarge { file, .. }
            | TlsError::Pem { file, .. }
            | TlsError::Missing { file, .. }
            | TlsError::Unusable { file, .. } => Some(*file),
            TlsError::KeyMismatch { .. } => Some(TlsFile::Key),
            TlsError::ClientCa { .. } => Some(TlsFile::ClientCa),
            TlsError::Provider(_) => None,
        }
    }
}

/// The server's TLS configuration, reloadable in place; clones share it.
#[derive(Debug, Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    /// The configuration new handshakes use.
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads and checks the files; the result is ready to serve.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = build(&files, &provider)?;
        Ok(Tls {
            inner: Arc::new(Inner {
                files,
                provider,
                current: RwLock::new(Arc::new(config)),
            }),
        })
    }

    /// Reads the files again and puts the new configuration in service
    /// for new handshakes; on error the configuration in service stays.
    /// Open connections are never affected. Blocking file I/O: from async
    /// code, call it in `spawn_blocking` (as [`Tls::watch`] does).
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.inner.files, &self.inner.provider)?;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    /// The files this configuration is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.inner.files
    }

    /// The configuration in service: what a handshake starting now uses.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(
            &self
                .inner
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// An acceptor for one handshake with the configuration in service.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config())
    }

    /// Polls the files' metadata every `interval` and reloads when any
    /// changed (see [`crate::reload::watch`]). Runs until the returned
    /// [`Watcher`] is dropped. Needs a tokio runtime.
    pub fn watch(&self, interval: Duration) -> Watcher {
        crate::reload::watch(Arc::new(self.clone()), interval)
    }
}

impl Reload for Tls {
    fn what(&self) -> &'static str {
        "TLS"
    }

    fn files(&self) -> Vec<PathBuf> {
        self.inner
            .files
            .each()
            .map(|(_, path)| path.to_owned())
            .collect()
    }

    fn reload(&self) -> Result<(), String> {
        Tls::reload(self).map_err(|e| e.to_string())
    }
}

/// Reloads `tls` on every `SIGHUP` the process receives (see
/// [`crate::reload::on_sighup`]).
#[cfg(unix)]
pub fn reload_on_sighup(tls: Tls) -> io::Result<JoinHandle<()>> {
    crate::reload::on_sighup(vec![Arc::new(tls)])
}

/// Reads one PEM file, at most [`MAX_PEM_BYTES`].
fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read_err = |source| TlsError::Read {
        file,
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    f.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            file,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// Every certificate of a PEM file (other sections are skipped); at
/// least one.
fn certificates(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(file, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            file,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            file,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(TlsFile::Key, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Missing {
            file: TlsFile::Key,
            path: path.to_owned(),
            expected: "private key",
        },
        source => TlsError::Pem {
            file: TlsFile::Key,
            path: path.to_owned(),
            source,
        },
    })
}

/// The server configuration of `files`, every file checked.
fn build(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<ServerConfig, TlsError> {
    let chain = certificates(TlsFile::Cert, &files.cert)?;
    let key = private_key(&files.key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::Unusable {
            file: TlsFile::Key,
            path: files.key.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key type whose public key rustls cannot derive: nothing to
        // compare, the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                key: files.key.clone(),
                cert: files.cert.clone(),
            });
        }
        Err(source) => {
            return Err(TlsError::Unusable {
                file: TlsFile::Cert,
                path: files.cert.clone(),
                source,
            });
        }
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Provider)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(TlsFile::ClientCa, path)? {
                roots.add(cert).map_err(|source| TlsError::Unusable {
                    file: TlsFile::ClientCa,
                    path: path.clone(),
                    source,
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .build()
                    .map_err(|source| TlsError::ClientCa {
                        path: path.clone(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_the_config_keys() {
        assert_eq!(TlsFile::Cert.to_string(), "tls.cert");
        assert_eq!(TlsFile::Key.to_string(), "tls.key");
        assert_eq!(TlsFile::ClientCa.to_string(), "tls.client_ca");
    }

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join(format!("oci-http-tls-{}", std::process::id()));
        let e = Tls::load(TlsFiles::new(dir.join("nope.crt"), dir.join("nope.key"))).unwrap_err();
        assert_eq!(e.file(), Some(TlsFile::Cert));
        let text = e.to_string();
        assert!(
            text.starts_with("tls.cert ") && text.contains("nope.crt"),
            "{text}"
        );
    }

    #[test]
    fn garbage_is_no_certificate() {
        let dir = tempdir();
        let cert = dir.join("c.pem");
        std::fs::write(&cert, "hello\n").unwrap();
        let e = Tls::load(TlsFiles::new(&cert, &cert)).unwrap_err();
        assert!(e.to_string().ends_with(": no certificate found"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("oci-http-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
