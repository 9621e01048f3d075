//! The API's TLS server configuration: a certificate and key from PEM files (a Secret in the
//! chart, from cert-manager or by hand), re-read when they change, or a self-signed pair
//! generated at start when no files are given (as controller-runtime's metrics server does).
//!
//! A rotated certificate is picked up without a restart: the files' modification times are
//! checked at most every [`RELOAD_CHECK_EVERY`] during handshakes; a pair that does not load
//! keeps the previous one in service and is logged.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

/// How often the certificate files are checked for a rotation, at most.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(10);

/// The largest PEM file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Where the server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: a certificate chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// A pair generated at start for these DNS names and IP addresses.
    SelfSigned { names: Vec<String> },
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {why}")]
    BadPem { path: PathBuf, why: String },
    #[error("the private key in {path} is not usable: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A server configuration for `source` (HTTP/1.1 only, TLS 1.2 and 1.3, ring).
pub fn server_config(source: &TlsSource) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver: Arc<dyn ResolvesServerCert> = match source {
        TlsSource::Files { cert, key } => Arc::new(FileCertResolver::load(cert, key)?),
        TlsSource::SelfSigned { names } => Arc::new(FixedCert(Arc::new(self_signed(names)?))),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A fresh self-signed pair for `names` (at least `localhost`).
fn self_signed(names: &[String]) -> Result<CertifiedKey, TlsError> {
    let mut names = names.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let generated = rcgen::generate_simple_self_signed(names.clone())?;
    let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)?;
    info!(
        ?names,
        "serving a self-signed certificate generated at start"
    );
    Ok(CertifiedKey::new(
        vec![generated.cert.der().clone()],
        signing_key,
    ))
}

/// Reads and parses a certificate chain and key.
fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_bounded(cert_path)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::BadPem {
            path: cert_path.to_path_buf(),
            why: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key_pem = read_bounded(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::BadPem {
        path: key_path.to_path_buf(),
        why: error.to_string(),
    })?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| TlsError::Key {
            path: key_path.to_path_buf(),
            source,
        })?;
    let pair = CertifiedKey::new(certs, signing_key);
    pair.keys_match().map_err(|source| TlsError::Key {
        path: key_path.to_path_buf(),
        source,
    })?;
    Ok(pair)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The modification times of the pair's files (a Secret volume swaps a symlink, which changes
/// them).
fn modified(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let cert = std::fs::metadata(cert).and_then(|m| m.modified()).ok()?;
    let key = std::fs::metadata(key).and_then(|m| m.modified()).ok()?;
    Some((cert, key))
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The pair from files, re-read when the files change.
struct FileCertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    state: Mutex<Loaded>,
}

struct Loaded {
    pair: Arc<CertifiedKey>,
    modified: Option<(SystemTime, SystemTime)>,
    checked: Instant,
}

impl fmt::Debug for FileCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCertResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl FileCertResolver {
    fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let modified = modified(cert, key);
        let pair = load_pair(cert, key)?;
        info!(cert = %cert.display(), key = %key.display(), "serving the certificate from files");
        Ok(Self {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            state: Mutex::new(Loaded {
                pair: Arc::new(pair),
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// The current pair, re-read first when the files changed since the last check.
    fn current(&self, now: Instant) -> Arc<CertifiedKey> {
        let mut state = self.state.lock();
        if now.saturating_duration_since(state.checked) >= RELOAD_CHECK_EVERY {
            state.checked = now;
            let modified = modified(&self.cert_path, &self.key_path);
            if modified.is_some() && modified != state.modified {
                match load_pair(&self.cert_path, &self.key_path) {
                    Ok(pair) => {
                        info!(cert = %self.cert_path.display(), "reloaded the rotated certificate");
                        state.pair = Arc::new(pair);
                        state.modified = modified;
                    }
                    // Half-written files during a rotation: keep serving the old pair and
                    // try again at the next check.
                    Err(error) => {
                        warn!(%error, "cannot reload the certificate; keeping the previous one")
                    }
                }
            }
        }
        state.pair.clone()
    }
}

impl ResolvesServerCert for FileCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
        let generated = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("generate");
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, generated.cert.pem()).expect("write cert");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
        (cert, key, generated.cert.der().to_vec())
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netreach-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn self_signed_config_builds() {
        server_config(&TlsSource::SelfSigned {
            names: vec!["node-1".into(), "10.244.0.1".into()],
        })
        .expect("self-signed config");
    }

    #[test]
    fn file_pairs_load_and_bad_files_are_named() {
        let dir = temp_dir("load");
        let (cert, key, _) = write_pair(&dir, &["netreach"]);
        server_config(&TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .expect("pair from files");

        let missing = dir.join("missing.crt");
        let empty = dir.join("empty.crt");
        std::fs::write(&empty, "not a pem\n").expect("write");
        let huge = dir.join("huge.crt");
        std::fs::File::create(&huge)
            .and_then(|f| f.set_len(MAX_PEM_BYTES + 10))
            .expect("sparse file");
        let other = temp_dir("other");
        let (_, other_key, _) = write_pair(&other, &["other"]);
        let cases: [(&Path, &Path, &str); 4] = [
            (&missing, &key, "cannot read"),
            (&empty, &key, "holds no PEM certificate"),
            (&huge, &key, "larger than"),
            (&cert, &other_key, "not usable"),
        ];
        for (cert, key, expected) in cases {
            let error = load_pair(cert, key).expect_err("bad pair refused");
            assert!(
                error.to_string().contains(expected),
                "{}: {error}",
                cert.display()
            );
            assert!(
                error.to_string().contains(&*cert.to_string_lossy())
                    || error.to_string().contains(&*key.to_string_lossy()),
                "names the file: {error}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(other);
    }

    #[test]
    fn a_rotated_pair_is_served_after_the_next_check_and_a_broken_one_is_not() {
        let dir = temp_dir("rotate");
        let (cert, key, first) = write_pair(&dir, &["first"]);
        let resolver = FileCertResolver::load(&cert, &key).expect("load");
        let start = Instant::now();
        assert_eq!(resolver.current(start).cert[0].as_ref(), first.as_slice());

        // mtime granularity: make sure the rewrite is seen as a change.
        std::thread::sleep(Duration::from_millis(20));
        let (_, _, second) = write_pair(&dir, &["second"]);
        assert_eq!(
            resolver.current(start).cert[0].as_ref(),
            first.as_slice(),
            "not re-checked before RELOAD_CHECK_EVERY"
        );
        let later = start + RELOAD_CHECK_EVERY;
        assert_eq!(resolver.current(later).cert[0].as_ref(), second.as_slice());

        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&cert, "half-written").expect("write");
        let even_later = later + RELOAD_CHECK_EVERY;
        assert_eq!(
            resolver.current(even_later).cert[0].as_ref(),
            second.as_slice(),
            "a broken rotation keeps the previous pair"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
