//! The QUIC driver: accepts connections, serves enrolment on ALPN
//! `fieldseal-enroll/1` and the sync protocol on ALPN `fieldseal/1`. It
//! moves bytes and carries out the decisions of [`crate::ingest`]; it
//! decides nothing about entries or uploads itself.
//!
//! - `endpoint.rs`: transport settings, the endpoint, the accept loop and
//!   admission (ALPN, the peer's key, one connection per device).
//! - `enroll.rs`: the enrolment exchange.
//! - `session.rs`: a sync connection's control stream (Hello, Welcome,
//!   entries, pings).
//! - `committer.rs`: the queue in front of the group commit.
//! - `upload.rs`: upload streams.
//! - `frames.rs`: framed messages on a stream.
//! - `registry.rs`: live connections and uploads in progress, which a panic
//!   elsewhere must not lock up.
//! - `limits.rs`: admission limits before authentication (caps, rates,
//!   address validation), decided as a state machine.

mod committer;
mod endpoint;
mod enroll;
mod frames;
pub mod limits;
pub(crate) mod registry;
mod session;
mod upload;

use fieldseal_proto::codec::DecodeError;
use quinn::VarInt;

pub(crate) use committer::committer;
pub use committer::{Pending, INGEST_QUEUE};
pub(crate) use endpoint::accept_loop;
pub use endpoint::{endpoint, server_endpoint, transport_config, RECV_BUFFER_BYTES};
pub use frames::FrameError;
// The ingest entry points kept under their old path (tests fill archives
// through them).
pub use crate::ingest::{submit_blocking, submit_group_blocking};

/// Application close code: the device was revoked.
pub const CLOSE_REVOKED: VarInt = VarInt::from_u32(0x10);
/// Application close code: the server shuts down.
pub const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0x11);
/// Application close code: the peer broke the protocol.
pub const CLOSE_PROTOCOL: VarInt = VarInt::from_u32(0x12);
/// Application close code: not allowed (no or unknown certificate).
pub const CLOSE_FORBIDDEN: VarInt = VarInt::from_u32(0x13);
/// Application close code: the device opened a newer connection.
pub const CLOSE_SUPERSEDED: VarInt = VarInt::from_u32(0x14);
/// Application close code: the connection was not authenticated (enrolment
/// request read) within `unauthenticated_timeout_secs`.
pub const CLOSE_TIMEOUT: VarInt = VarInt::from_u32(0x15);
/// Application close code: too many attempts from this address; try later.
pub const CLOSE_BUSY: VarInt = VarInt::from_u32(0x16);
/// Application close code: the certificate the connection was made with
/// has expired (a connection outlived it without renewing).
pub const CLOSE_EXPIRED: VarInt = VarInt::from_u32(0x17);

/// Binding the QUIC endpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The server's TLS configuration (keys, certificates).
    #[error(transparent)]
    Tls(#[from] crate::pki::PkiError),
    /// The TLS configuration does not suit QUIC.
    #[error("TLS configuration for QUIC: {0}")]
    Crypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The UDP socket (address in use, not local).
    #[error("UDP socket: {0}")]
    Io(#[from] std::io::Error),
    /// Called outside a tokio runtime.
    #[error("no async runtime")]
    NoRuntime,
}

/// Why a connection or stream ended other than by the peer's clean close.
/// Logged at debug level: devices come and go.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The connection was lost or closed.
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
    /// A framed message could not be read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Raw upload bytes could not be read.
    #[error("upload stream: {0}")]
    Read(#[from] quinn::ReadError),
    /// The enrolment request could not be read.
    #[error("enrolment request: {0}")]
    ReadToEnd(#[from] quinn::ReadToEndError),
    /// A message could not be sent.
    #[error(transparent)]
    Write(#[from] quinn::WriteError),
    /// The stream was already finished.
    #[error(transparent)]
    Closed(#[from] quinn::ClosedStream),
    /// The device records failed.
    #[error(transparent)]
    Devices(#[from] crate::db::DbError),
    /// The chain index failed.
    #[error(transparent)]
    Index(#[from] crate::chainindex::IndexError),
    /// An upload step failed on the index or the disk.
    #[error(transparent)]
    Upload(#[from] crate::ingest::UploadError),
    /// A partial file failed while the connection was lost.
    #[error("partial upload: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking task panicked or was cancelled.
    #[error("blocking task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The peer's certificate key is not an Ed25519 key.
    #[error("device key: {0}")]
    Key(#[from] ed25519_dalek::SignatureError),
    /// A message to send did not encode (a list too long).
    #[error("message: {0}")]
    Encode(#[from] DecodeError),
    /// An enrolled device's record could not be read.
    #[error("enrolled device: {0}")]
    Enrolled(String),
    /// The peer may not sync (no certificate, unknown or revoked); the
    /// connection was closed with a code saying so.
    #[error("refused: {0}")]
    Forbidden(String),
    /// The peer broke the protocol; the connection was closed.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A step before authentication did not finish by its deadline, or a
    /// rate limit refused it; the connection was closed.
    #[error("limit: {0}")]
    Limit(String),
}
