//! The sync client: enrolment, then hash-first sync of the chain over QUIC.
//!
//! - [`enroll`] / [`enroll_cmd`]: trade a one-time token for a client
//!   certificate for the device key (the chain key is the TLS key).
//! - [`sync_until_drained`]: sync until every entry has a verified receipt
//!   and every held segment is acknowledged (`fieldseal-agent sync --until-drained`).
//! - [`run_sync`]: the long-running client inside `fieldseal-agent run`.
//! - [`standing`]: the certificate it connects with (renewed over the
//!   connection before it expires) and the server's refusal of the device
//!   (revoked, or its certificate expired), after which it stops retrying.
//!
//! The decisions live in [`machine`]; [`driver`] moves bytes.

pub mod driver;
pub mod machine;
pub mod standing;
pub mod store;
pub mod tls;
mod upload;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use ed25519_dalek::VerifyingKey;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::enroll::{
    EnrollRequest, EnrollResponse, EnrollStatus, EnrollToken, MAX_ENROLL_RESPONSE, MAX_TOKEN,
};
use fieldseal_proto::identity::{sha256, DeviceId, Signer};
use rustls::pki_types::CertificateDer;

use crate::devicekey::{self, pin::PinSource, DeviceKey};
use crate::spoolfs::{write_atomic, SpoolFs, StdFs};

pub use driver::{run_sync, sync_until_drained, Progress, Stats};
pub use machine::MachineConfig;
pub use standing::{Credentials, DirCredentials, MemCredentials, Refusal, RefusalKind};
pub use store::{MediaRef, MemStore, SyncStore};

/// Default idle timeout of sync connections.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Sync and enrolment errors.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server could not be reached or the connection broke.
    #[error("connection: {0}")]
    Connect(String),
    /// The server refused the enrolment.
    #[error("enrolment refused ({status:?}): {detail}")]
    Enroll {
        /// Why.
        status: EnrollStatus,
        /// The server's hint.
        detail: String,
    },
    /// The server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server refused an entry for good.
    #[error(transparent)]
    Fatal(#[from] machine::Fatal),
    /// The server refused the device (revoked, unknown, or its certificate
    /// expired): kept in the data folder, not retried.
    #[error("{} (the server said: {})", .0.advice(), .0.reason)]
    Refused(Refusal),
    /// Files in the data folder.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Bad contents of a file in the data folder.
    #[error("data folder: {0}")]
    Config(String),
    /// The device key could not be loaded or opened.
    #[error(transparent)]
    Key(#[from] devicekey::StoreError),
}

impl From<rustls::Error> for SyncError {
    fn from(e: rustls::Error) -> Self {
        SyncError::Tls(e.to_string())
    }
}

/// What enrolment yields.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The device id the server registered.
    pub device_id: DeviceId,
    /// The client certificate (DER) for the device key.
    pub client_cert: Vec<u8>,
    /// The server's CA certificate (DER).
    pub ca_cert: Vec<u8>,
    /// The server's receipt-signing key.
    pub receipt_key: VerifyingKey,
}

/// Resolve `host:port`, returning the address and the host name for TLS.
async fn resolve(server: &str) -> Result<(SocketAddr, String), SyncError> {
    let host = match server.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => return Err(SyncError::Config(format!("{server}: expected HOST:PORT"))),
    };
    let addr = tokio::net::lookup_host(server)
        .await
        .map_err(|e| SyncError::Connect(format!("{server}: {e}")))?
        .next()
        .ok_or_else(|| SyncError::Connect(format!("{server}: no address")))?;
    Ok((addr, host))
}

fn client_endpoint(server: SocketAddr) -> Result<quinn::Endpoint, SyncError> {
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    quinn::Endpoint::client(bind).map_err(SyncError::Io)
}

/// Enrol the public key of `key` with the server at `server`: see
/// [`enroll_public`]. Nothing is signed.
///
/// # Errors
/// As [`enroll_public`].
pub async fn enroll(
    key: &(impl Signer + ?Sized),
    server: &str,
    token: &str,
    ca: Option<PathBuf>,
) -> Result<Enrollment, SyncError> {
    enroll_public(&key.public_key(), server, token, ca).await
}

/// Enrol the device key `public` with the server at `server` using `token`
/// (`SECRET.CA_SHA256`, [`EnrollToken`]): connect trusting only the CA the
/// token names (its certificate must hash to it and sign the server's), send
/// the secret and the public key (only that: the private key, in a file or a
/// token, is not needed), and check the answer. `ca`, if given, is the same
/// CA certificate read from a file: it must match the token.
///
/// # Errors
/// A malformed token or one that names no CA; a `ca` file that is not the
/// token's CA; a server that is not under that CA (the handshake fails
/// before anything is sent); a refusal; a malformed answer.
pub async fn enroll_public(
    public: &VerifyingKey,
    server: &str,
    token: &str,
    ca: Option<PathBuf>,
) -> Result<Enrollment, SyncError> {
    if token.len() > 2 * MAX_TOKEN || token.chars().any(char::is_control) {
        return Err(SyncError::Config("malformed token".into()));
    }
    let token = EnrollToken::parse(token).map_err(|e| SyncError::Config(e.to_string()))?;
    if let Some(p) = &ca {
        let file = read_pem_cert(p)?;
        if sha256(file.as_ref()) != token.ca_sha256 {
            return Err(SyncError::Config(format!(
                "{} is CA {}, but the token names CA {}",
                p.display(),
                tls::fingerprint(&sha256(file.as_ref())),
                tls::fingerprint(&token.ca_sha256)
            )));
        }
    }
    let (addr, host) = resolve(server).await?;
    let endpoint = client_endpoint(addr)?;
    let cfg = tls::enroll_client(token.ca_sha256)?;
    let conn = endpoint
        .connect_with(cfg, addr, &host)
        .map_err(|e| SyncError::Connect(e.to_string()))?
        .await
        .map_err(|e| SyncError::Connect(e.to_string()))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| SyncError::Connect(e.to_string()))?;
    let req = EnrollRequest {
        token: token.secret.clone(),
        public_key: public.to_bytes(),
    };
    let io = |e: &dyn std::fmt::Display| SyncError::Connect(e.to_string());
    send.write_all(&req.to_bytes()).await.map_err(|e| io(&e))?;
    send.finish().map_err(|e| io(&e))?;
    let bytes = recv
        .read_to_end(MAX_ENROLL_RESPONSE)
        .await
        .map_err(|e| io(&e))?;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    enrolled(public, &token, &bytes)
}

/// Check the server's answer to an enrolment.
fn enrolled(
    public: &VerifyingKey,
    token: &EnrollToken,
    bytes: &[u8],
) -> Result<Enrollment, SyncError> {
    match EnrollResponse::from_bytes(bytes).map_err(|e| SyncError::Protocol(e.to_string()))? {
        EnrollResponse::Ok {
            device_id,
            receipt_key,
            client_cert,
            ca_cert,
        } => {
            if device_id != DeviceId::from_key(public) {
                return Err(SyncError::Protocol("server named another device id".into()));
            }
            if sha256(&ca_cert) != token.ca_sha256 {
                return Err(SyncError::Protocol(
                    "server returned another CA than the token names".into(),
                ));
            }
            let receipt_key = VerifyingKey::from_bytes(&receipt_key)
                .map_err(|_| SyncError::Protocol("bad receipt key".into()))?;
            Ok(Enrollment {
                device_id,
                client_cert,
                ca_cert,
                receipt_key,
            })
        }
        EnrollResponse::Refused { status, detail } => Err(SyncError::Enroll {
            status,
            detail: detail.as_str().to_string(),
        }),
    }
}

/// PEM-encode a DER certificate.
pub fn cert_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Read the first certificate of a PEM file.
///
/// # Errors
/// I/O errors, or no certificate in it.
pub fn read_pem_cert(path: &Path) -> Result<CertificateDer<'static>, SyncError> {
    let pem = fs::read(path)?;
    let mut slice = pem.as_slice();
    let mut certs = rustls_pemfile::certs(&mut slice);
    let first = certs.next().and_then(Result::ok);
    first.ok_or_else(|| SyncError::Config(format!("{}: no certificate", path.display())))
}

/// Keep what enrolment returned in data folder `dir`: `client.crt`, `ca.crt`,
/// `receipt.pub` and `server.txt`, each with [`write_atomic`] (its folder
/// fsync makes the new names durable, as DESIGN.md's write order demands).
///
/// # Errors
/// The OS error of a write; the files before it are kept.
pub fn save_enrollment(
    fs: &dyn SpoolFs,
    dir: &Path,
    server: &str,
    e: &Enrollment,
) -> std::io::Result<()> {
    write_atomic(
        fs,
        &dir.join("client.crt"),
        cert_pem(&e.client_cert).as_bytes(),
    )?;
    write_atomic(fs, &dir.join("ca.crt"), cert_pem(&e.ca_cert).as_bytes())?;
    write_atomic(
        fs,
        &dir.join("receipt.pub"),
        format!("{}\n", hex::encode(e.receipt_key.to_bytes())).as_bytes(),
    )?;
    write_atomic(
        fs,
        &dir.join("server.txt"),
        format!("{server}\n").as_bytes(),
    )
}

/// `fieldseal-agent enroll --data DIR --server HOST:PORT --token T [--ca FILE]`:
/// enrol the device key of `DIR` (its public key: [`devicekey::public_key`],
/// no PIN needed) and write `DIR/client.crt`, `DIR/ca.crt`, `DIR/server.txt`
/// and `DIR/receipt.pub` (the server's receipt key, hex); remove the refusal
/// marker of a revoked or expired device ([`standing::REFUSAL_FILE`]).
///
/// # Errors
/// As [`enroll_public`]; [`SyncError::Key`] for the key; I/O errors writing the files.
pub async fn enroll_cmd(
    data_dir: &Path,
    server: &str,
    token: &str,
    ca: Option<PathBuf>,
) -> Result<Enrollment, SyncError> {
    let public = devicekey::public_key(data_dir)?;
    let e = enroll_public(&public, server, token, ca).await?;
    save_enrollment(&StdFs, data_dir, server, &e)?;
    // Enrolled (again): whatever refusal was on record is over.
    standing::clear_refusal(&StdFs, data_dir)?;
    Ok(e)
}

/// Everything the sync client needs to connect.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `HOST:PORT` of the server.
    pub server: String,
    /// The device key: it signs the TLS handshakes.
    pub key: DeviceKey,
    /// The client certificate (DER).
    pub client_cert: Vec<u8>,
    /// The CA certificate (DER).
    pub ca_cert: Vec<u8>,
    /// The server's receipt-signing key.
    pub receipt_key: VerifyingKey,
    /// Tuning of the state machine.
    pub machine: MachineConfig,
    /// Longest silence before a connection is given up (default 60 s: a
    /// minute of radio shadow; tests use a few seconds).
    pub idle_timeout: Duration,
    /// Where a renewed certificate and a refusal of the device are kept.
    pub credentials: Arc<dyn Credentials>,
}

impl SyncConfig {
    /// Build from an enrolment.
    pub fn from_enrollment(server: &str, key: impl Into<DeviceKey>, e: &Enrollment) -> Self {
        SyncConfig {
            server: server.to_string(),
            key: key.into(),
            client_cert: e.client_cert.clone(),
            ca_cert: e.ca_cert.clone(),
            receipt_key: e.receipt_key,
            machine: MachineConfig::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            credentials: Arc::new(MemCredentials::default()),
        }
    }

    /// Read what [`enroll_cmd`] wrote in `dir`, and open its device key
    /// ([`devicekey::open_dir`]) with the PIN from `pin` for a token.
    ///
    /// # Errors
    /// Missing or malformed files; the key's errors.
    pub fn open_data_dir(dir: &Path, pin: Option<&PinSource>) -> Result<Self, SyncError> {
        Self::from_data_dir_with(dir, devicekey::open_dir(dir, pin)?)
    }

    /// [`SyncConfig::open_data_dir`] without a PIN given (a key file, or a
    /// token whose `pin_file` is in `config.toml`).
    ///
    /// # Errors
    /// As [`SyncConfig::open_data_dir`].
    pub fn from_data_dir(dir: &Path) -> Result<Self, SyncError> {
        Self::open_data_dir(dir, None)
    }

    /// Read what [`enroll_cmd`] wrote in `dir`, for the device key `key`
    /// already open (the running recorder's, shared with its chain writer).
    ///
    /// # Errors
    /// Missing or malformed files.
    pub fn from_data_dir_with(dir: &Path, key: DeviceKey) -> Result<Self, SyncError> {
        let server = fs::read_to_string(dir.join("server.txt"))?
            .trim()
            .to_string();
        let rk: [u8; 32] = hex::decode(fs::read_to_string(dir.join("receipt.pub"))?.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| SyncError::Config("receipt.pub: expected 64 hex digits".into()))?;
        Ok(SyncConfig {
            server,
            key,
            client_cert: read_pem_cert(&dir.join("client.crt"))?.to_vec(),
            ca_cert: read_pem_cert(&dir.join("ca.crt"))?.to_vec(),
            receipt_key: VerifyingKey::from_bytes(&rk)
                .map_err(|_| SyncError::Config("receipt.pub: not a key".into()))?,
            machine: MachineConfig::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            credentials: Arc::new(DirCredentials::new(dir)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spoolfs::MemFs;
    use ed25519_dalek::SigningKey;

    #[test]
    fn enrolment_files_survive_power_loss() {
        let fs = MemFs::new(4);
        let dir = Path::new("/data");
        fs.create_dir_all(dir).unwrap();
        let server = SigningKey::from_bytes(&[8; 32]);
        let e = Enrollment {
            device_id: DeviceId::from_key(&SigningKey::from_bytes(&[7; 32]).verifying_key()),
            client_cert: vec![1, 2, 3],
            ca_cert: vec![4, 5, 6],
            receipt_key: server.verifying_key(),
        };
        save_enrollment(&fs, dir, "example.invalid:4433", &e).unwrap();
        // Renames whose folder was not fsynced are lost with the power
        // (the twin models POSIX): each file must still be there.
        fs.power_loss(false);
        let files = fs.files();
        for name in ["client.crt", "ca.crt", "receipt.pub", "server.txt"] {
            assert!(files.contains_key(&dir.join(name)), "{name} lost");
        }
        assert_eq!(files[&dir.join("ca.crt")], cert_pem(&e.ca_cert).as_bytes());
    }
}
