//! The server's small PKI: a CA, the server's TLS certificate, device
//! certificates issued at enrolment, and the rustls configuration that
//! enforces them (mutual TLS for sync, no client certificate for enrolment).
//!
//! Every key is Ed25519. A device's certificate certifies its chain key, so
//! the key that signs the chain is the key that authenticates the connection.
//!
//! Device certificates expire (`device_cert_days`, [`Ca::issue_timed`]) and
//! are renewed over the sync connection (`crate::renew`); the verifier
//! refuses an expired one with the TLS alert `certificate_expired` and a
//! revoked or unknown device with `certificate_revoked`, each logged with
//! the device and counted ([`CertCounters`]), so that the agent can tell
//! them apart and say what to do.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use fieldseal_proto::enroll::{ALPN_ENROLL, ALPN_SYNC};
use fieldseal_proto::identity::{sha256, DeviceId, Hash32};
use fieldseal_proto::x509::Validity;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
    SignatureAlgorithm, PKCS_ED25519,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName as TlsDn, SignatureScheme};

use crate::datadir::DataDir;
use crate::metrics::CertCounters;

/// Subject common name of the CA. The issued certificates name it as issuer,
/// so it must never change for a data folder.
const CA_NAME: &str = "fieldseal device CA";

/// Errors of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A PEM file did not hold what it should.
    #[error("bad PEM in {0}")]
    Pem(String),
    /// Reading a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The client verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// The crypto provider used everywhere (ring; see the workspace Cargo.toml).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// The CA: its key and a certificate object to issue with.
pub struct Ca {
    key: KeyPair,
    cert: Certificate,
    /// The DER of the CA certificate as published in `ca.crt`.
    pub cert_der: Vec<u8>,
    /// Device certificates signed since this process loaded the CA.
    issued: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// What `init` writes: PEM texts of the CA and server certificates and keys.
#[derive(Debug)]
pub struct Generated {
    /// CA certificate, PEM.
    pub ca_cert_pem: String,
    /// CA key, PEM (PKCS#8).
    pub ca_key_pem: String,
    /// Server certificate, PEM.
    pub server_cert_pem: String,
    /// Server key, PEM (PKCS#8).
    pub server_key_pem: String,
}

/// Generate a CA and a server certificate for `names` (DNS names or IP
/// addresses) signed by it.
///
/// # Errors
/// rcgen failures.
pub fn generate(names: &[String]) -> Result<Generated, PkiError> {
    let ca_key = KeyPair::generate_for(&PKCS_ED25519)?;
    let ca_cert = ca_params()?.self_signed(&ca_key)?;
    let server_key = KeyPair::generate_for(&PKCS_ED25519)?;
    let mut sp = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fieldseal server");
    sp.distinguished_name = dn;
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = sp.signed_by(&server_key, &ca_cert, &ca_key)?;
    Ok(Generated {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

/// A CA of a fixed Ed25519 key, from its 32-byte secret seed: the PEM of
/// its certificate and of its key, as `init` writes them. For tests that
/// need the same bytes every run (the golden export package): rcgen makes
/// certificates deterministically (Ed25519 signatures are deterministic,
/// the serial is derived from the certified key, the validity is fixed
/// at 1975-01-01 to 4096-01-01).
///
/// # Errors
/// rcgen failures.
pub fn ca_from_seed(seed: &[u8; 32]) -> Result<(String, String), PkiError> {
    // PKCS#8 v1 (RFC 8410 §7) of an Ed25519 key: a fixed 16-byte prefix,
    // then the seed.
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    let key = KeyPair::try_from(der.as_slice())?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `SEQUENCE { INTEGER 0, SEQUENCE { id-Ed25519 }, OCTET STRING { OCTET
/// STRING (32 bytes) } }` up to the seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// SHA-256 of the CA certificate (DER) in `DIR/ca.crt`: what enrolment
/// tokens name.
///
/// # Errors
/// The file is missing or holds no certificate.
pub fn ca_sha256(dir: &Path) -> Result<Hash32, PkiError> {
    Ok(sha256(read_cert(&DataDir::new(dir).ca_cert())?.as_ref()))
}

/// Read the first certificate of a PEM file.
///
/// # Errors
/// I/O errors, or no certificate in the file.
pub fn read_cert(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    let pem = std::fs::read(path)?;
    let mut slice = pem.as_slice();
    let mut certs = rustls_pemfile::certs(&mut slice);
    let first = certs.next().and_then(Result::ok);
    first.ok_or_else(|| PkiError::Pem(path.display().to_string()))
}

/// Read a PKCS#8 private key from a PEM file.
///
/// # Errors
/// I/O errors, or no key in the file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let pem = std::fs::read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| PkiError::Pem(path.display().to_string()))
}

impl Ca {
    /// Load the CA from `ca.key` and `ca.crt` in `dir`.
    ///
    /// The issuing certificate object is rebuilt from the fixed CA parameters
    /// and the stored key: issued certificates name the issuer by its subject
    /// and key identifier, both of which are the same as in `ca.crt`.
    ///
    /// # Errors
    /// I/O or PEM errors.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let dir = DataDir::new(dir);
        let key_pem = std::fs::read_to_string(dir.ca_key())?;
        let key = KeyPair::from_pem(&key_pem)?;
        let cert = ca_params()?.self_signed(&key)?;
        let cert_der = read_cert(&dir.ca_cert())?.to_vec();
        Ok(Ca {
            key,
            cert,
            cert_der,
            issued: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Issue a certificate for a device's Ed25519 public key with rcgen's
    /// fixed validity (1975 to 4096): the binding of a key to the CA that
    /// an export package carries (a court checks it years later, and the
    /// golden package needs the same bytes every run), and tests. A
    /// device's certificate for syncing comes from [`Ca::issue_timed`].
    ///
    /// # Errors
    /// rcgen failures.
    pub fn issue_device_cert(&self, public_key: &[u8; 32]) -> Result<Vec<u8>, PkiError> {
        self.issue(public_key, None)
    }

    /// Issue a device's client certificate valid over `validity` (seconds
    /// since the epoch, both ends included): at enrolment and at each
    /// renewal, for the same key. Its serial number is derived from the key
    /// and `not_before`, so that each certificate of a device has its own.
    ///
    /// # Errors
    /// rcgen failures; a validity outside what X.509 can say.
    pub fn issue_timed(
        &self,
        public_key: &[u8; 32],
        validity: Validity,
    ) -> Result<Vec<u8>, PkiError> {
        self.issue(public_key, Some(validity))
    }

    fn issue(
        &self,
        public_key: &[u8; 32],
        validity: Option<Validity>,
    ) -> Result<Vec<u8>, PkiError> {
        let vk = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| PkiError::Verifier("not an Ed25519 public key".into()))?;
        let id = DeviceId::from_key(&vk);
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        if let Some(v) = validity {
            let t = |s: i64| {
                time::OffsetDateTime::from_unix_timestamp(s)
                    .map_err(|e| PkiError::Verifier(format!("certificate validity: {e}")))
            };
            p.not_before = t(v.not_before)?;
            p.not_after = t(v.not_after)?;
            let mut seed = public_key.to_vec();
            seed.extend_from_slice(&v.not_before.to_be_bytes());
            // 16 bytes, the top bit clear: a positive INTEGER (RFC 5280
            // §4.1.2.2 allows up to 20 octets).
            let mut serial = sha256(&seed)[..16].to_vec();
            serial[0] &= 0x7f;
            p.serial_number = Some(SerialNumber::from_slice(&serial));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.to_string());
        p.distinguished_name = dn;
        p.subject_alt_names = vec![SanType::DnsName(
            format!("{id}.device.fieldseal.invalid").try_into()?,
        )];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&Ed25519Public(*public_key), &self.cert, &self.key)?;
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(cert.der().to_vec())
    }

    /// Device certificates signed since the CA was loaded (so a test can
    /// see that a refused enrolment made the CA sign nothing).
    pub fn issued(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A bare Ed25519 public key, for rcgen to certify.
struct Ed25519Public([u8; 32]);

impl PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ED25519
    }
}

/// The Ed25519 public key certified by a DER certificate.
///
/// # Errors
/// When the certificate does not parse or its key is not Ed25519.
pub fn cert_ed25519_key(cert: &CertificateDer<'_>) -> Result<[u8; 32], PkiError> {
    // SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): this 12-byte header
    // (SEQUENCE, AlgorithmIdentifier id-Ed25519, BIT STRING of 33 bytes with 0
    // unused bits), then the 32 key bytes.
    const HEADER: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| PkiError::Verifier(format!("certificate: {e:?}")))?;
    let spki = ee.subject_public_key_info();
    let spki = spki.as_ref();
    if spki.len() != 44 || spki[..12] != HEADER {
        return Err(PkiError::Verifier("certificate key is not Ed25519".into()));
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&spki[12..]);
    Ok(k)
}

/// Which devices may complete a sync handshake: the enrolled, unrevoked
/// ones. Shared between the verifier and the admin commands that change it.
#[derive(Debug, Default, Clone)]
pub struct Allowed(Arc<RwLock<HashSet<[u8; 32]>>>);

impl Allowed {
    /// Allow a device key.
    pub fn insert(&self, key: [u8; 32]) {
        self.0.write().expect("lock").insert(key);
    }
    /// Disallow a device key.
    pub fn remove(&self, key: &[u8; 32]) {
        self.0.write().expect("lock").remove(key);
    }
    /// Is this key allowed?
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.0.read().expect("lock").contains(key)
    }
}

/// A client verifier: the certificate must chain to our CA (webpki), be
/// within its validity **and** certify the key of an enrolled, unrevoked
/// device. A connection without a certificate is let through the
/// handshake; the driver then serves it only enrolment (ALPN
/// `fieldseal-enroll/1`).
///
/// A revoked or unknown key is refused with `certificate_revoked` whatever
/// else is wrong with its certificate (it is what the device must be told:
/// only an administrator can help); an enrolled device's expired
/// certificate with `certificate_expired`.
#[derive(Debug)]
pub struct DeviceVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Allowed,
    counters: Arc<CertCounters>,
}

impl DeviceVerifier {
    fn refuse_revoked(&self, key: &[u8; 32]) -> rustls::Error {
        let id = device_of(key);
        self.counters
            .refused_revoked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(device = %id, "handshake refused: the device is revoked or not enrolled (TLS alert certificate_revoked)");
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
    }
}

fn device_of(key: &[u8; 32]) -> String {
    ed25519_dalek::VerifyingKey::from_bytes(key)
        .map(|k| DeviceId::from_key(&k).to_string())
        .unwrap_or_else(|_| "(not an Ed25519 key)".into())
}

/// Seconds since the epoch of a rustls time.
fn secs(t: UnixTime) -> u64 {
    t.as_secs()
}

impl ClientCertVerifier for DeviceVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[TlsDn] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key =
            cert_ed25519_key(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(_) if !self.allowed.contains(&key) => Err(self.refuse_revoked(&key)),
            Ok(ok) => Ok(ok),
            Err(rustls::Error::InvalidCertificate(
                e @ (rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. }),
            )) => {
                if !self.allowed.contains(&key) {
                    return Err(self.refuse_revoked(&key));
                }
                let not_after = fieldseal_proto::x509::Certificate::parse(end_entity)
                    .ok()
                    .and_then(|c| c.validity().ok())
                    .map(|v| v.not_after);
                self.counters
                    .refused_expired
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    device = %device_of(&key),
                    not_after = ?not_after,
                    expired_secs_ago = ?not_after.map(|t| i64::try_from(secs(now)).unwrap_or(i64::MAX) - t),
                    "handshake refused: the device's certificate has expired (TLS alert certificate_expired); \
                     it was not renewed in time: re-enrol it (`fieldseal-server device reenrol ID`)"
                );
                Err(rustls::Error::InvalidCertificate(e))
            }
            Err(e) => Err(e),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls server configuration for the QUIC endpoint.
///
/// TLS 1.3 only (QUIC requires it), ALPNs for sync and enrolment, the
/// [`DeviceVerifier`], and no 0-RTT: `max_early_data_size` stays 0, so no
/// state-changing request can be replayed.
///
/// # Errors
/// When the certificates or keys are unusable.
pub fn server_tls(
    dir: &Path,
    allowed: Allowed,
    counters: Arc<CertCounters>,
) -> Result<rustls::ServerConfig, PkiError> {
    let dir = DataDir::new(dir);
    let ca = read_cert(&dir.ca_cert())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Verifier(e.to_string()))?;
    let verifier = Arc::new(DeviceVerifier {
        inner,
        allowed,
        counters,
    });
    let ca = read_cert(&dir.ca_cert())?;
    let cert = read_cert(&dir.server_cert())?;
    let key = read_key(&dir.server_key())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        // The CA goes with the server's certificate: a device enrolling
        // with a token finds it there, checks it against the hash the token
        // names, and verifies the server's certificate under it before it
        // sends anything (FORMAT.md §7.8).
        .with_single_cert(vec![cert, ca], key)?;
    cfg.alpn_protocols = vec![ALPN_SYNC.to_vec(), ALPN_ENROLL.to_vec()];
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// PKCS#8 (RFC 8410) encoding of an Ed25519 secret seed, as rustls wants a
/// private key: a fixed 16-byte header, then the 32-byte seed.
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> PrivateKeyDer<'static> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))
}
