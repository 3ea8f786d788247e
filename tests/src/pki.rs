//! A throwaway PKI for TLS and mTLS tests, generated at test time (no key is ever committed).
//!
//! [`pki()`] builds one per test process, on first use, and writes PEM files into a fresh temp
//! dir: a CA, a server certificate for `127.0.0.1` and `localhost` signed by it, client
//! certificates signed by it (one per [`Identity`]), and a client certificate signed by a
//! different CA that nobody trusts. Keys are ECDSA P-256 in PKCS#8 PEM, which rustls and
//! OpenSSL (librdkafka) both read.
//!
//! Client subjects are encoded `O`, `OU`, `CN` so that the RFC 2253 form Kafka prints (last RDN
//! first) reads `CN=alice,OU=apps,O=acme`.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A certificate and its private key, as PEM files and as DER.
#[derive(Clone)]
pub struct Identity {
    /// PEM certificate (leaf only; the CA is in [`Pki::ca_file`]).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8).
    pub key_file: PathBuf,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The key, PKCS#8 DER.
    key_der: Vec<u8>,
    /// The subject in RFC 2253 order, as Kafka prints it (`CN=alice,OU=apps,O=acme`).
    pub subject: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of test output.
        f.debug_struct("Identity")
            .field("cert_file", &self.cert_file)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The private key, for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// The test PKI: see the module documentation.
#[derive(Debug)]
pub struct Pki {
    /// Directory holding every PEM file.
    pub dir: PathBuf,
    /// The trusted CA certificate (PEM): the bundle clients and servers verify against.
    pub ca_file: PathBuf,
    /// The trusted CA, DER.
    pub ca_der: CertificateDer<'static>,
    /// Server certificate for `127.0.0.1` and `localhost` (the gateway's and the mock
    /// broker's), signed by the CA.
    pub server: Identity,
    /// Client `CN=alice,OU=apps,O=acme`, signed by the CA.
    pub alice: Identity,
    /// Client `CN=bob,OU=apps,O=acme`, signed by the CA.
    pub bob: Identity,
    /// Client `CN=sluice-gateway,OU=infra,O=acme`, signed by the CA: the gateway's own
    /// identity towards brokers that require mTLS.
    pub gateway_client: Identity,
    /// Client `CN=mallory,OU=apps,O=acme`, signed by a CA nobody trusts.
    pub rogue: Identity,
    /// That untrusted CA (PEM), for tests that need to name it.
    pub rogue_ca_file: PathBuf,
}

/// The PKI of this test process, generated on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::generate(&crate::temp_dir("pki")))
}

/// A CA: its certificate and key, for signing.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "acme");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signing the CA");
        Ca { cert, key }
    }

    /// Issues a leaf certificate and writes `<name>.pem` / `<name>.key` into `dir`.
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        subject: &[(DnType, &str)],
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        let mut dn = DistinguishedName::new();
        for (ty, value) in subject {
            dn.push(ty.clone(), *value);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing a leaf");
        let cert_file = dir.join(format!("{name}.pem"));
        let key_file = dir.join(format!("{name}.key"));
        write_private(&cert_file, cert.pem().as_bytes());
        write_private(&key_file, key.serialize_pem().as_bytes());
        // RFC 2253 prints the RDNs last first.
        let rfc2253 = subject
            .iter()
            .rev()
            .map(|(ty, v)| format!("{}={v}", dn_keyword(ty)))
            .collect::<Vec<_>>()
            .join(",");
        Identity {
            cert_file,
            key_file,
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            subject: rfc2253,
        }
    }
}

fn dn_keyword(ty: &DnType) -> &'static str {
    match ty {
        DnType::CommonName => "CN",
        DnType::OrganizationalUnitName => "OU",
        DnType::OrganizationName => "O",
        DnType::CountryName => "C",
        _ => "?",
    }
}

/// Writes a file readable by the owner only (private keys).
fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    f.write_all(bytes).expect("writing a PEM file");
}

impl Pki {
    /// Generates a PKI into `dir` (prefer [`pki()`], which does it once per process).
    pub fn generate(dir: &Path) -> Pki {
        let ca = Ca::new("sluice test CA");
        let rogue_ca = Ca::new("rogue CA");
        let ca_file = dir.join("ca.pem");
        write_private(&ca_file, ca.cert.pem().as_bytes());
        let rogue_ca_file = dir.join("rogue-ca.pem");
        write_private(&rogue_ca_file, rogue_ca.cert.pem().as_bytes());

        let server = ca.issue(
            dir,
            "server",
            &[
                (DnType::OrganizationName, "acme"),
                (DnType::CommonName, "localhost"),
            ],
            vec![
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                SanType::DnsName("localhost".try_into().expect("DNS name")),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = |ca: &Ca, file: &str, ou: &str, cn: &str| {
            ca.issue(
                dir,
                file,
                &[
                    (DnType::OrganizationName, "acme"),
                    (DnType::OrganizationalUnitName, ou),
                    (DnType::CommonName, cn),
                ],
                Vec::new(),
                ExtendedKeyUsagePurpose::ClientAuth,
            )
        };
        Pki {
            dir: dir.to_path_buf(),
            ca_der: ca.cert.der().clone(),
            ca_file,
            alice: client(&ca, "alice", "apps", "alice"),
            bob: client(&ca, "bob", "apps", "bob"),
            gateway_client: client(&ca, "gateway", "infra", "sluice-gateway"),
            rogue: client(&rogue_ca, "mallory", "apps", "mallory"),
            rogue_ca_file,
            server,
        }
    }

    /// A root store holding the trusted CA.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("adding the test CA");
        roots
    }

    /// A rustls server configuration presenting [`Pki::server`]; with `client_auth`, client
    /// certificates chaining to the CA are required (and no CA names are hinted).
    pub fn server_config(&self, client_auth: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if client_auth {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots()),
                provider,
            )
            // No CA hints: OpenSSL clients then present their certificate whoever issued
            // it, so an unknown CA is rejected by the server's verification rather than
            // silently withheld by the client.
            .clear_root_hint_subjects()
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(
            builder
                .with_single_cert(vec![self.server.cert_der.clone()], self.server.key_der())
                .expect("server certificate"),
        )
    }

    /// A rustls client configuration trusting the CA, presenting `identity` if given.
    pub fn client_config(&self, identity: Option<&Identity>) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(self.roots());
        Arc::new(match identity {
            Some(id) => builder
                .with_client_auth_cert(vec![id.cert_der.clone()], id.key_der())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        })
    }
}
