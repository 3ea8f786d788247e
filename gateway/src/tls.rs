//! TLS on both sides: server configurations for the client listeners, client configurations
//! for broker connections (rustls with the ring provider; TLS 1.2 and 1.3).
//!
//! Certificates and keys are read from PEM files at start: a bad file is a start-up error
//! with the file named, never a failure on the first connection. The listeners' certificate
//! and key are then watched ([`ReloadingCert`]): when either file changes (a certificate
//! renewed by cert-manager, certbot or an agent), new handshakes use the new pair; open
//! connections keep theirs. A changed pair that does not load or match is logged and the
//! previous one kept, so a half-written renewal never takes the listener down. The mTLS
//! client CA bundle is watched the same way ([`ReloadingClientVerifier`]).

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{ClientAuth, ServerTls, UpstreamTls};
use crate::pem::load_certs;
use crate::pem::load_key;

/// ring, with the AES-128-GCM suites first: as safe for this use and about a third cheaper per
/// byte than AES-256 (10 rounds instead of 14), which matters on a proxy that encrypts every
/// byte twice.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::CipherSuite::*;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(p)
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn load_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("adding a CA certificate from {}", path.display()))?;
    }
    Ok(roots)
}

/// The server configuration of the client listeners.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS protocol versions")?;
    let builder = match (tls.client_auth, &tls.client_ca_file) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => bail!("security.tls.clientCaFile is required for client certificates"),
        (auth, Some(ca)) => {
            builder.with_client_cert_verifier(Arc::new(ReloadingClientVerifier::load(ca, auth)?))
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(ReloadingCert::load(
        &tls.cert_file,
        &tls.key_file,
    )?));
    // Choose by the gateway's preference (AES-128-GCM first, see `provider`) rather than the
    // client's (OpenSSL asks for AES-256 first).
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// How often, at most, a handshake looks at the certificate files' modification times.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// The listeners' certificate and key, re-read when their files change.
///
/// The check happens on a handshake (a `stat` of both files, at most once per
/// `RELOAD_CHECK`), so an idle gateway does no work and there is no task to manage; the
/// first handshake after a renewal already presents the new certificate.
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
    watch: FileWatch,
}

/// Modification times of some files, looked at no more than once per [`RELOAD_CHECK`].
struct FileWatch {
    files: Vec<PathBuf>,
    /// The times last loaded (or last tried and refused: a bad file is reported once, not on
    /// every handshake).
    seen: Mutex<Vec<Option<SystemTime>>>,
    /// When the files were last looked at.
    checked: Mutex<Instant>,
}

impl FileWatch {
    fn new(files: &[&Path]) -> FileWatch {
        let files: Vec<PathBuf> = files.iter().map(|f| f.to_path_buf()).collect();
        FileWatch {
            seen: Mutex::new(files.iter().map(|f| modified(f)).collect()),
            files,
            checked: Mutex::new(Instant::now()),
        }
    }

    /// Whether the last look is [`RELOAD_CHECK`] old (and this call is the new look).
    fn due(&self) -> bool {
        let mut checked = self.checked.lock().expect("file watch lock");
        let due = checked.elapsed() >= RELOAD_CHECK;
        if due {
            *checked = Instant::now();
        }
        due
    }

    /// Whether any file changed since the last call that said so (or since the start).
    fn changed(&self) -> bool {
        let now: Vec<Option<SystemTime>> = self.files.iter().map(|f| modified(f)).collect();
        let mut seen = self.seen.lock().expect("file watch lock");
        if *seen == now {
            return false;
        }
        *seen = now;
        true
    }
}

impl ReloadingCert {
    /// Loads the pair now: an error names the file at fault or says they do not match.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<ReloadingCert> {
        let watch = FileWatch::new(&[cert_file, key_file]);
        let key = certified_key(cert_file, key_file)?;
        Ok(ReloadingCert {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: ArcSwap::from_pointee(key),
            watch,
        })
    }

    /// The pair handshakes use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Re-reads the files if their modification times changed. Returns whether a new pair
    /// was taken.
    pub fn reload_if_changed(&self) -> bool {
        if !self.watch.changed() {
            return false;
        }
        match certified_key(&self.cert_file, &self.key_file) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Often a renewal caught between writing the certificate and the key: the next
                // change of either file is tried again.
                tracing::warn!(cert = %self.cert_file.display(),
                    "TLS certificate not reloaded, keeping the previous one: {e:#}");
                false
            }
        }
    }
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.watch.due() {
            self.reload_if_changed();
        }
        Some(self.current())
    }
}

/// The client-certificate verifier of an mTLS listener, rebuilt when `clientCaFile` changes
/// (a CA rotated, or a second CA added for a migration): new handshakes are judged by the new
/// bundle, a bundle that does not load is logged and the last good one kept.
pub struct ReloadingClientVerifier {
    ca_file: PathBuf,
    auth: ClientAuth,
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    /// The CA names offered to clients. rustls borrows them for the verifier's lifetime, so
    /// each bundle's names are kept for good (a few hundred bytes per CA change).
    hints: Mutex<&'static [DistinguishedName]>,
    watch: FileWatch,
}

impl ReloadingClientVerifier {
    /// Loads the bundle now: an error names the file or says what is wrong with it.
    pub fn load(ca_file: &Path, auth: ClientAuth) -> Result<ReloadingClientVerifier> {
        let watch = FileWatch::new(&[ca_file]);
        let verifier = client_verifier(ca_file, auth)?;
        let hints = Box::leak(verifier.root_hint_subjects().to_vec().into_boxed_slice());
        Ok(ReloadingClientVerifier {
            ca_file: ca_file.to_path_buf(),
            auth,
            current: ArcSwap::from_pointee(verifier),
            hints: Mutex::new(hints),
            watch,
        })
    }

    /// Re-reads the bundle if the file changed. Returns whether a new one was taken.
    pub fn reload_if_changed(&self) -> bool {
        if !self.watch.changed() {
            return false;
        }
        match client_verifier(&self.ca_file, self.auth) {
            Ok(verifier) => {
                *self.hints.lock().expect("CA hints lock") =
                    Box::leak(verifier.root_hint_subjects().to_vec().into_boxed_slice());
                self.current.store(Arc::new(verifier));
                tracing::info!(ca = %self.ca_file.display(), "client CA bundle reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(ca = %self.ca_file.display(),
                    "client CA bundle not reloaded, keeping the previous one: {e:#}");
                false
            }
        }
    }

    fn refresh(&self) {
        if self.watch.due() {
            self.reload_if_changed();
        }
    }
}

impl std::fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingClientVerifier")
            .field("ca_file", &self.ca_file)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current.load().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current.load().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Asked first in a handshake (for the CertificateRequest): look at the file here.
        self.refresh();
        *self.hints.lock().expect("CA hints lock")
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.refresh();
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// The WebPKI verifier of `ca` (required or requested client certificates).
fn client_verifier(ca: &Path, auth: ClientAuth) -> Result<Arc<dyn ClientCertVerifier>> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider());
    let verifier = if auth == ClientAuth::Requested {
        verifier.allow_unauthenticated()
    } else {
        verifier
    };
    verifier.build().context("client CA bundle")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey> {
    CertifiedKey::from_der(load_certs(cert_file)?, load_key(key_file)?, &provider())
        .context("server certificate and key do not match or are unsupported")
}

/// The client configuration for broker connections.
pub fn client_config(tls: &UpstreamTls) -> Result<Arc<ClientConfig>> {
    let roots = match &tls.ca_file {
        Some(ca) => load_roots(ca)?,
        None => {
            // No private CA given: trust the platform's store (managed services use public CAs).
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                bail!("upstream.tls.caFile is not set and the platform has no CA certificates");
            }
            roots
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .context("client certificate and key do not match or are unsupported")?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name a broker's certificate is checked against: the configured override, else the
/// host of `addr` (`host:port`).
pub fn server_name(override_name: Option<&str>, addr: &str) -> Result<ServerName<'static>> {
    let host = match override_name {
        Some(n) => n,
        None => addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']'),
    };
    ServerName::try_from(host.to_string())
        .with_context(|| format!("`{host}` is not a TLS server name"))
}

/// A broker connection: plain TCP or TLS over TCP.
pub enum Stream {
    /// Plaintext.
    Tcp(TcpStream),
    /// TLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The read half of a connection, whatever its transport.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection, whatever its transport.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

impl Stream {
    /// Splits into halves that can be used from two tasks. Plain TCP splits without a lock.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` written to `dir/<name>.pem|.key`.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().clone())
    }

    /// Sets a file's modification time to `secs` after the epoch, so that a change is seen
    /// whatever the file system's timestamp granularity.
    fn touch(path: &Path, secs: u64) {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn changed_files_are_reloaded_and_bad_pairs_refused() {
        let dir = crate::state::test_dir("tls-reload");
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key, first) = self_signed(&dir, "live");
        let (next_cert, next_key, second) = self_signed(&dir, "next");
        let served = ReloadingCert::load(&cert, &key).unwrap();
        assert_eq!(served.current().cert[0], first);
        assert!(!served.reload_if_changed(), "nothing changed");

        // Half a renewal: the new certificate with the old key does not match.
        std::fs::copy(&next_cert, &cert).unwrap();
        touch(&cert, 1_000);
        assert!(!served.reload_if_changed());
        assert_eq!(served.current().cert[0], first, "the last good pair stays");
        // Unchanged since the refusal: not tried (and not logged) again.
        assert!(!served.reload_if_changed());

        // The key arrives: the new pair is taken.
        std::fs::copy(&next_key, &key).unwrap();
        touch(&key, 2_000);
        assert!(served.reload_if_changed());
        assert_eq!(served.current().cert[0], second);

        // A vanished key file keeps the pair too.
        std::fs::remove_file(&key).unwrap();
        assert!(!served.reload_if_changed());
        assert_eq!(served.current().cert[0], second);

        // A bad pair at start is an error naming what is wrong.
        let err = ReloadingCert::load(&cert, &dir.join("missing.key")).unwrap_err();
        assert!(format!("{err:#}").contains("missing.key"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
