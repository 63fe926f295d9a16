//! TLS for Herald's listeners and trust for its HTTP clients.
//!
//! [`ServerTls`] is one listener's certificate chain and key, read from PEM files and read
//! again whenever either file changes (certificate rotation without a restart): new
//! connections get the new pair, open ones keep theirs, and a pair that does not load (a
//! half-written file, a key that does not match) keeps the last good one, logged with why.
//! [`ca_certificates`] reads the extra CAs an HTTP client trusts (`--ca-file`).

use arc_swap::ArcSwap;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A certificate chain (leaf first) and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {path}: {source}")]
    Cert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read TLS private key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate {cert} and key {key} are not a usable pair: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot watch {path} for certificate changes: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {path} holds no PEM certificate")]
    CaEmpty { path: PathBuf },
    #[error("CA file {path} is not valid PEM: {source}")]
    CaPemFormat {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA file {path} holds no usable PEM certificate: {source}")]
    CaPem {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
}

/// Herald's one crypto provider (ring; rustls' default, aws-lc, is not built).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One listener's TLS configuration, swapped whole when its files change.
pub struct ServerTls {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
    /// The certificate chain served now, to tell a real change from a touched file.
    chain: ArcSwap<Vec<CertificateDer<'static>>>,
}

impl ServerTls {
    /// Reads the pair; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let (config, chain) = server_config(&files)?;
        Ok(Arc::new(Self {
            files,
            current: ArcSwap::from(config),
            chain: ArcSwap::from_pointee(chain),
        }))
    }

    /// The acceptor for a new connection: the pair loaded last.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Reads the files again; on failure the current pair stays. Whether it changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (config, chain) = server_config(&self.files)?;
        if **self.chain.load() == chain {
            return Ok(false);
        }
        self.current.store(config);
        self.chain.store(Arc::new(chain));
        Ok(true)
    }

    /// Reloads on every change to the files until `stop`. The directories are watched, not
    /// the files: rotation usually renames a new file over the old one (and a Kubernetes
    /// Secret volume swaps a symlink), which a watch on the old file would miss.
    pub fn watch(self: &Arc<Self>, stop: CancellationToken) -> Result<(), TlsError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        // Debounced: a cert and a key written one after the other are one reload, not a
        // warning about a mismatched pair in between.
        let mut debouncer = new_debouncer(
            Duration::from_millis(200),
            move |result: DebounceEventResult| match result {
                Ok(_) => {
                    let _ = tx.send(());
                }
                Err(e) => tracing::warn!(error = %e, "certificate watch error"),
            },
        )
        .map_err(|source| TlsError::Watch {
            path: self.files.cert.clone(),
            source,
        })?;
        let mut dirs: Vec<PathBuf> = [&self.files.cert, &self.files.key]
            .into_iter()
            .map(|f| directory_of(f))
            .collect();
        dirs.dedup();
        for dir in &dirs {
            debouncer
                .watcher()
                .watch(dir, notify::RecursiveMode::NonRecursive)
                .map_err(|source| TlsError::Watch {
                    path: dir.clone(),
                    source,
                })?;
        }
        let tls = self.clone();
        tokio::spawn(async move {
            // Owned by the task: dropping the debouncer ends the watch.
            let _debouncer = debouncer;
            loop {
                tokio::select! {
                    changed = rx.recv() => {
                        if changed.is_none() { return; }
                        while rx.try_recv().is_ok() {}
                        tls.reload_logged();
                    }
                    _ = stop.cancelled() => return,
                }
            }
        });
        Ok(())
    }

    fn reload_logged(&self) {
        let cert = self.files.cert.display();
        match self.reload() {
            Ok(true) => tracing::info!(%cert, "TLS certificate reloaded: new connections use it"),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                %cert,
                error = %e,
                "TLS certificate not reloaded: keeping the last good one"
            ),
        }
    }
}

fn directory_of(file: &Path) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn server_config(
    files: &TlsFiles,
) -> Result<(Arc<ServerConfig>, Vec<CertificateDer<'static>>), TlsError> {
    let cert_err = |source| TlsError::Cert {
        path: files.cert.clone(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(cert_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key {
        path: files.key.clone(),
        source,
    })?;
    let pair = |source| TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        // Also checks that the key is the certificate's.
        .with_single_cert(chain.clone(), key)
        .map_err(pair)?;
    // HTTP/2 when the client offers it, as on a plaintext connection.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), chain))
}

/// The CA certificates in a PEM file, for an HTTP client to trust besides the public roots.
pub fn ca_certificates_der(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::CaPemFormat {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        // A file without any certificate would trust nothing new, which would only surface
        // later as an unknown-issuer error.
        return Err(TlsError::CaEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// [`ca_certificates_der`] for a reqwest client (the CLI's).
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    ca_certificates_der(path)?
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der).map_err(|source| TlsError::CaPem {
                path: path.to_path_buf(),
                source,
            })
        })
        .collect()
}
