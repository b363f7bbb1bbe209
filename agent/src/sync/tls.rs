//! TLS and QUIC client configuration: the device authenticates with a
//! certificate for its chain key (Ed25519), and trusts only the server's CA.
//!
//! The handshake's signature is made by the device's [`DeviceKey`], as its
//! chain entries are ([`DeviceTlsKey`]): rustls never sees a private key, so
//! a key inside a token works as the key file does.

use std::sync::Arc;
use std::time::Duration;

use fieldseal_proto::enroll::{ALPN_ENROLL, ALPN_SYNC};
use fieldseal_proto::identity::{sha256, Hash32, Signer};
use quinn::VarInt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureAlgorithm, SignatureScheme};

use super::SyncError;
use crate::devicekey::DeviceKey;

/// The crypto provider (ring; see the workspace Cargo.toml).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The device key as rustls's signing key: TLS 1.3's CertificateVerify is
/// signed by [`Signer::try_sign`] (Ed25519 is the one scheme offered; the
/// server's CA certifies nothing else).
#[derive(Debug)]
pub struct DeviceTlsKey(pub DeviceKey);

impl rustls::sign::SigningKey for DeviceTlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(DeviceTlsSigner(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        // RFC 8410: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING key }.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(self.0.public_key().as_bytes());
        Some(SubjectPublicKeyInfoDer::from(spki))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

#[derive(Debug)]
struct DeviceTlsSigner(DeviceKey);

impl rustls::sign::Signer for DeviceTlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        // Blocking: a token's signature takes milliseconds, once per
        // handshake, on the sync client's own runtime (never the capture's).
        self.0
            .try_sign(message)
            .map(|s| s.to_bytes().to_vec())
            .map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// The client certificate and the device key behind it, for every handshake.
#[derive(Debug)]
struct DeviceCert(Arc<CertifiedKey>);

impl ResolvesClientCert for DeviceCert {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        schemes
            .contains(&SignatureScheme::ED25519)
            .then(|| Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Transport settings for lossy, high-latency mobile links, the same as the
/// server's; see `docs/FORMAT.md` §7.9 "Transport settings" for the reasons.
///
/// `idle_timeout` is the longest silence before the connection is given up
/// (the peers use the smaller of their two values); keep-alives go out at a
/// third of it, at most every 10 s.
pub fn transport_config(idle_timeout: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(1024 * 1024));
    t.receive_window(VarInt::from_u32(4 * 1024 * 1024));
    t.send_window(4 * 1024 * 1024);
    t.initial_rtt(Duration::from_millis(300));
    t.keep_alive_interval(Some((idle_timeout / 3).min(Duration::from_secs(10))));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok());
    // BBR instead of quinn's default Cubic: loss-based control collapses on
    // radio links where loss is not congestion (measured through the test
    // relay at 300 ms RTT and 2 % loss: Cubic moved 4 MiB in over 45 s, BBR
    // in ~7 s). See FORMAT.md 7.9.
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    t
}

fn roots(ca: &CertificateDer<'static>) -> Result<rustls::RootCertStore, rustls::Error> {
    let mut r = rustls::RootCertStore::empty();
    r.add(ca.clone())?;
    Ok(r)
}

fn quic(
    tls: rustls::ClientConfig,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, SyncError> {
    let q = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| SyncError::Tls(e.to_string()))?;
    let mut c = quinn::ClientConfig::new(Arc::new(q));
    c.transport_config(Arc::new(transport_config(idle_timeout)));
    Ok(c)
}

/// The QUIC client configuration for sync: mutual TLS with the device key
/// (a [`DeviceKey`], or anything that becomes one: an in-memory key).
///
/// # Errors
/// Unusable certificate, or a certificate for another key than `key`.
pub fn sync_client_with(
    key: impl Into<DeviceKey>,
    client_cert: CertificateDer<'static>,
    ca: &CertificateDer<'static>,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, SyncError> {
    let certified = CertifiedKey::new(vec![client_cert], Arc::new(DeviceTlsKey(key.into())));
    // As rustls's own with_client_auth_cert does: a certificate for another
    // key would only fail later, at the server, with a vaguer message.
    certified.keys_match()?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_cert_resolver(Arc::new(DeviceCert(Arc::new(certified))));
    tls.alpn_protocols = vec![ALPN_SYNC.to_vec()];
    // No 0-RTT: every request changes state.
    tls.enable_early_data = false;
    quic(tls, idle_timeout)
}

/// The QUIC client configuration for enrolment: no client certificate; the
/// server is trusted only if its certificate chain includes the CA whose
/// SHA-256 the token names and its certificate verifies under that CA
/// ([`PinnedCa`]), so the token's secret never reaches another server.
///
/// # Errors
/// Unusable TLS settings.
pub fn enroll_client(ca_sha256: Hash32) -> Result<quinn::ClientConfig, SyncError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            provider: provider(),
            ca_sha256,
        }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    tls.enable_early_data = false;
    quic(tls, Duration::from_secs(30))
}

/// Hex of a SHA-256, for messages.
pub fn fingerprint(h: &Hash32) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Trust anchored in an enrolment token: the server must present, among
/// its chain, the CA certificate whose SHA-256 the token names, and its
/// own certificate must verify under that CA for the name dialled (the
/// usual WebPKI checks). There is no mode that trusts the first server met.
#[derive(Debug)]
struct PinnedCa {
    provider: Arc<rustls::crypto::CryptoProvider>,
    ca_sha256: Hash32,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| sha256(c.as_ref()) == self.ca_sha256)
        else {
            return Err(rustls::Error::General(format!(
                "the server's certificate is not signed by CA {} (the CA the token names): \
                 it is another server, or the token is for another server",
                fingerprint(&self.ca_sha256)
            )));
        };
        let roots = roots(&ca.clone().into_owned())?;
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?
        .verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
