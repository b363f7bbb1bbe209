//! TLS and QUIC client configuration: the device authenticates with a
//! certificate for its chain key (Ed25519), and trusts only the server's CA.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use fieldseal_proto::enroll::{ALPN_ENROLL, ALPN_SYNC};
use quinn::VarInt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::SyncError;

/// The crypto provider (ring; see the workspace Cargo.toml).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// PKCS#8 (RFC 8410) encoding of an Ed25519 secret seed, as rustls wants a
/// private key: a fixed 16-byte header, then the 32-byte seed.
pub fn ed25519_pkcs8(key: &SigningKey) -> PrivateKeyDer<'static> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&key.to_bytes());
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))
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

/// The QUIC client configuration for sync: mutual TLS with the device key.
///
/// # Errors
/// Unusable certificate or key.
pub fn sync_client_with(
    key: &SigningKey,
    client_cert: CertificateDer<'static>,
    ca: &CertificateDer<'static>,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, SyncError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(vec![client_cert], ed25519_pkcs8(key))?;
    tls.alpn_protocols = vec![ALPN_SYNC.to_vec()];
    // No 0-RTT: every request changes state.
    tls.enable_early_data = false;
    quic(tls, idle_timeout)
}

/// The server certificate seen during a trust-on-first-use enrolment.
pub type SeenCert = Arc<std::sync::Mutex<Option<CertificateDer<'static>>>>;

/// The QUIC client configuration for enrolment: no client certificate; the
/// server is verified against `ca` if given, else accepted on first use (its
/// certificate is kept in the returned [`SeenCert`], so that it can be checked
/// against the CA the server then returns).
///
/// # Errors
/// Unusable certificate.
pub fn enroll_client(
    ca: Option<&CertificateDer<'static>>,
) -> Result<(quinn::ClientConfig, SeenCert), SyncError> {
    let seen = SeenCert::default();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match ca {
        Some(ca) => builder
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(FirstUse(provider(), seen.clone())))
            .with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    tls.enable_early_data = false;
    Ok((quic(tls, Duration::from_secs(30))?, seen))
}

/// Check that `server_cert` is valid for `host` under `ca`: after a
/// trust-on-first-use enrolment, the server must at least be consistent with
/// the CA it handed out (which is pinned from then on).
///
/// # Errors
/// [`SyncError::Tls`] when it is not.
pub fn check_server_cert(
    ca: &CertificateDer<'static>,
    server_cert: &CertificateDer<'static>,
    host: &str,
) -> Result<(), SyncError> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(ca)?),
        provider(),
    )
    .build()
    .map_err(|e| SyncError::Tls(e.to_string()))?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| SyncError::Tls(e.to_string()))?;
    verifier.verify_server_cert(server_cert, &[], &name, &[], UnixTime::now())?;
    Ok(())
}

/// Trust on first use: accepts any server certificate (but still checks
/// that the server holds its key). Used only to enrol without `--ca`; the
/// CA learned then is pinned for every later connection.
#[derive(Debug)]
struct FirstUse(Arc<rustls::crypto::CryptoProvider>, SeenCert);

impl ServerCertVerifier for FirstUse {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.1.lock().expect("lock") = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
