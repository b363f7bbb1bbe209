//! The QUIC endpoint and admission: transport settings, binding the socket,
//! the accept loop with the limits of `limits.rs` (refuse, Retry, deadline
//! of the handshake), and deciding who a connection is (ALPN, the peer's
//! certificate key, enrolled and not revoked, one connection per device).
//! What a connection then says is `enroll.rs`'s and `session.rs`'s.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fieldseal_proto::enroll::{ALPN_ENROLL, ALPN_SYNC};
use fieldseal_proto::identity::DeviceId;
use quinn::VarInt;
use tokio::time::Instant;

use super::limits::{Admit, Refusal, Slot};
use super::{registry, CLOSE_FORBIDDEN, CLOSE_PROTOCOL, CLOSE_REVOKED, CLOSE_SUPERSEDED};
use super::{ConnError, EndpointError};
use crate::{pki, Shared};

/// Transport settings for lossy, high-latency mobile links; see
/// `docs/FORMAT.md` §7.9 "Transport settings" for the reasoning. The agent uses the same values.
pub fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // Bandwidth × RTT at 10 Mbit/s and 300 ms is ~375 KB; a window of 1 MiB
    // per stream (~2.5 × BDP) keeps one upload from stalling while losses are
    // recovered, and 4 MiB per connection lets a few uploads and the control
    // stream run side by side.
    t.stream_receive_window(VarInt::from_u32(1024 * 1024));
    t.receive_window(VarInt::from_u32(4 * 1024 * 1024));
    t.send_window(4 * 1024 * 1024);
    // Start from a mobile RTT, not quinn's 333 ms default guess nor a LAN value.
    t.initial_rtt(Duration::from_millis(300));
    // Keep NAT bindings of mobile carriers (often 30 s for UDP) alive.
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    // Survive a minute of radio shadow before giving up the connection.
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(60)).expect("in range"),
    ));
    // BBR, as the agent (FORMAT.md 7.9): the server sends little, but acks
    // and receipts should not stall behind a loss-based window either.
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    t.max_concurrent_bidi_streams(VarInt::from_u32(64));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t
}

/// Bind the QUIC endpoint.
///
/// # Errors
/// TLS configuration errors; the address is in use.
pub fn endpoint(shared: &Shared, addr: SocketAddr) -> Result<quinn::Endpoint, EndpointError> {
    let tls = pki::server_tls(
        &shared.dir,
        shared.allowed.clone(),
        shared.counters.certs.clone(),
    )?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(Arc::new(transport_config()));
    server_endpoint(sc, addr)
}

/// Receive buffer asked of the kernel for the server's UDP socket.
///
/// Linux's default (`net.core.rmem_default`, 208 KiB) holds about 140 full
/// datagrams; an upload burst on loopback overflowed it and the kernel
/// dropped 7–15 % of the packets (quinn's path statistics, 2026-11-28), each
/// one resent and counted as congestion. The kernel caps the request at
/// `net.core.rmem_max` (and doubles it for its own bookkeeping); start-up
/// logs what was granted when it is less than asked.
pub const RECV_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Bind a QUIC server endpoint on `addr` with `sc` and a receive buffer of
/// [`RECV_BUFFER_BYTES`].
///
/// # Errors
/// The address is in use or not local; no tokio runtime.
pub fn server_endpoint(
    sc: quinn::ServerConfig,
    addr: SocketAddr,
) -> Result<quinn::Endpoint, EndpointError> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&socket);
    if let Err(e) = sock.set_recv_buffer_size(RECV_BUFFER_BYTES) {
        tracing::warn!("could not enlarge the UDP receive buffer: {e}");
    }
    match sock.recv_buffer_size() {
        // Linux reports twice what it grants to the payload.
        Ok(got) if got < RECV_BUFFER_BYTES => tracing::info!(
            "UDP receive buffer is {got} bytes ({RECV_BUFFER_BYTES} asked); \
             raise net.core.rmem_max for bursts of many devices"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("UDP receive buffer size unknown: {e}"),
    }
    let rt = quinn::default_runtime().ok_or(EndpointError::NoRuntime)?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(sc),
        socket,
        rt,
    )?)
}

pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        // Decided here, before a task or any handshake state exists.
        let Some((incoming, slot)) = admit_incoming(&shared, incoming) else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let deadline = Instant::now() + shared.gate.lock().limits().unauthenticated_timeout;
            let Some(conn) = handshake(incoming, &shared, deadline).await else {
                return;
            };
            if let Err(e) = handle_connection(conn, shared, slot, deadline).await {
                tracing::debug!(%remote, "connection ended: {e}");
            }
        });
    }
}

/// Apply the admission limits to `incoming`: it with its counted place, or
/// `None` when it was refused or asked to prove its address (and told so).
fn admit_incoming(
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
) -> Option<(quinn::Incoming, Slot)> {
    let remote = incoming.remote_address();
    let validated = incoming.remote_address_validated();
    let decision =
        shared
            .gate
            .lock()
            .handle_incoming(remote.ip(), validated, std::time::Instant::now());
    match decision {
        Admit::Accept => Some((incoming, Slot::new(shared.gate.clone(), remote.ip()))),
        Admit::Retry => {
            // Stateless: nothing is kept until the client comes back with
            // the token (then `validated`). Only an already validated
            // `Incoming` cannot be retried, and those are not sent here.
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            shared
                .counters
                .quic_address_validations
                .fetch_add(1, Ordering::Relaxed);
            shared.gate.log(
                "address validation",
                format_args!("many unauthenticated connections: asking {remote} to prove its address (QUIC Retry)"),
            );
            None
        }
        Admit::Refuse(r) => {
            // A small CONNECTION_REFUSED packet: a device backs off and
            // retries; no amplification towards a spoofed source.
            incoming.refuse();
            refused(shared, r, remote);
            None
        }
    }
}

/// Count and log a refusal.
pub(super) fn refused(shared: &Shared, r: Refusal, remote: SocketAddr) {
    shared.counters.quic_refused[r.index()].fetch_add(1, Ordering::Relaxed);
    shared.gate.log(
        r.label(),
        format_args!(
            "connection from {remote} refused: limit {} reached",
            r.label()
        ),
    );
}

/// Carry out the decision on `incoming` and finish its handshake by
/// `deadline`; `None` if it was refused, retried, failed or too slow.
async fn handshake(
    incoming: quinn::Incoming,
    shared: &Shared,
    deadline: Instant,
) -> Option<quinn::Connection> {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%remote, "handshake failed: {e}");
            return None;
        }
    };
    match tokio::time::timeout_at(deadline, connecting).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => {
            tracing::info!(%remote, "handshake failed: {e}");
            None
        }
        // Dropping the handshake closes the connection.
        Err(_) => {
            timed_out(shared, 0, remote, "the handshake");
            None
        }
    }
}

/// Count and log a step before authentication that missed its deadline.
pub(super) fn timed_out(shared: &Shared, stage: usize, remote: SocketAddr, what: &str) {
    shared.counters.quic_timeouts[stage].fetch_add(1, Ordering::Relaxed);
    shared.gate.log(
        crate::metrics::TIMEOUT_STAGES[stage],
        format_args!("connection from {remote} closed: {what} was not done in time"),
    );
}

fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn peer_cert(conn: &quinn::Connection) -> Option<rustls::pki_types::CertificateDer<'static>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().cloned()
}

fn peer_key(conn: &quinn::Connection) -> Option<[u8; 32]> {
    pki::cert_ed25519_key(&peer_cert(conn)?).ok()
}

async fn handle_connection(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    mut slot: Slot,
    deadline: Instant,
) -> Result<(), ConnError> {
    match alpn(&conn).as_deref() {
        Some(p) if p == ALPN_ENROLL => super::enroll::serve(conn, shared, slot, deadline).await,
        Some(p) if p == ALPN_SYNC => sync_connection(conn, shared, &mut slot).await,
        _ => {
            conn.close(CLOSE_PROTOCOL, b"unknown ALPN");
            Err(ConnError::Protocol("unknown ALPN".into()))
        }
    }
}

/// Admit a sync connection, make it its device's only live one, and run
/// the session.
async fn sync_connection(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    slot: &mut Slot,
) -> Result<(), ConnError> {
    let (vk, key) = admit(&conn, &shared)?;
    // An enrolled device: no longer limited as a stranger.
    slot.authenticated();
    let device = DeviceId::from_key(&vk);
    // One agent per device: a new connection supersedes older ones
    // (after a network change the old one may linger until its idle
    // timeout, holding a half-written upload).
    for c in registry::supersede(&shared.live, device, conn.clone()) {
        tracing::info!(%device, "new connection supersedes an older one");
        c.close(CLOSE_SUPERSEDED, b"superseded by a newer connection");
    }
    // A revocation between the admission and the registration would have
    // missed this connection: look again.
    if !shared.allowed.contains(&key) {
        conn.close(CLOSE_REVOKED, b"device revoked");
        return Err(ConnError::Forbidden(format!(
            "device {device} revoked while connecting"
        )));
    }
    // The certificate it authenticated with: what renewal renews, and
    // when the connection must end if it outlives it.
    let presented = peer_cert(&conn).and_then(|c| crate::renew::Presented::from_der(&c).ok());
    let res = super::session::run(&conn, &shared, vk, presented).await;
    registry::forget(&shared.live, device, |c| c.stable_id() == conn.stable_id());
    res
}

/// The device key of an enrolled, unrevoked peer; otherwise the connection
/// is closed with [`CLOSE_FORBIDDEN`].
fn admit(
    conn: &quinn::Connection,
    shared: &Shared,
) -> Result<(ed25519_dalek::VerifyingKey, [u8; 32]), ConnError> {
    let Some(key) = peer_key(conn) else {
        conn.close(CLOSE_FORBIDDEN, b"client certificate required");
        return Err(ConnError::Forbidden(
            "sync without client certificate".into(),
        ));
    };
    // The verifier checked the allow-list during the handshake; check the
    // index too, in case a revocation raced the handshake.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key)?;
    let device = DeviceId::from_key(&vk);
    let rec = shared.db.device(device)?;
    if !matches!(&rec, Some(d) if d.revoked_us.is_none()) || !shared.allowed.contains(&key) {
        conn.close(CLOSE_FORBIDDEN, b"device not enrolled or revoked");
        return Err(ConnError::Forbidden(format!(
            "device {device} not enrolled or revoked"
        )));
    }
    Ok((vk, key))
}
