//! Admission limits for QUIC connections that are not yet an enrolled
//! device's (issue 13, item 2): handshakes in progress, enrolments, and
//! strangers. Enrolment needs clients without a certificate to pass the
//! TLS handshake, so without limits anyone could hold connections, tasks
//! and memory for free.
//!
//! [`Admission`] decides, as a plain state machine with the time passed in:
//! - at the `Incoming` stage (before any handshake work): a cap on all
//!   connections, a cap on unauthenticated ones, address validation (a QUIC
//!   Retry) once those are many, a cap on unauthenticated connections per
//!   source address, and a rate of handshakes per address per minute;
//! - after the handshake: a rate of enrolment attempts per address per minute.
//!
//! A connection counts as unauthenticated from its `Incoming` until it is
//! admitted as an enrolled device's sync connection; then it leaves the
//! per-address count and its handshake is given back to the address's rate,
//! so many devices behind one NAT never use up each other's allowance.
//! Before the handshake a device cannot be told from a stranger, so a device
//! that reconnects from an address that strangers are flooding competes for
//! that address's handshake slots (for at most the unauthenticated deadline).
//!
//! [`Gate`] is the thin shared wrapper the driver uses, and [`Slot`] gives a
//! connection's place back when its task ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;

/// The limits, from `config.toml` (see `docs/SERVER.md`, "Connection limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// QUIC connections of every kind at once.
    pub max_connections: usize,
    /// Connections not yet authenticated as a device (handshakes in
    /// progress, enrolments, strangers) at once.
    pub max_unauthenticated: usize,
    /// Unauthenticated connections at once from one source address.
    pub max_unauthenticated_per_address: usize,
    /// Handshakes per source address per minute that did not become an
    /// enrolled device's connection.
    pub handshakes_per_address_per_minute: u32,
    /// Enrolment attempts per source address per minute.
    pub enrolments_per_address_per_minute: u32,
    /// How long a connection may stay unauthenticated: the handshake and,
    /// on the enrolment ALPN, reading the request must be done by then.
    pub unauthenticated_timeout: Duration,
}

impl Limits {
    /// The limits `cfg` sets.
    pub fn from_config(cfg: &Config) -> Limits {
        Limits {
            max_connections: cfg.max_connections,
            max_unauthenticated: cfg.max_unauthenticated,
            max_unauthenticated_per_address: cfg.max_unauthenticated_per_address,
            handshakes_per_address_per_minute: cfg.handshakes_per_address_per_minute,
            enrolments_per_address_per_minute: cfg.enrolments_per_address_per_minute,
            unauthenticated_timeout: Duration::from_secs(cfg.unauthenticated_timeout_secs),
        }
    }

    /// Unauthenticated connections from which on a client must prove its
    /// address (QUIC Retry) before it is counted: half the cap. Below it a
    /// Retry would only cost every device a round trip; above it the server
    /// is being filled, and a spoofed source must not take an address's slots.
    fn validate_above(&self) -> usize {
        self.max_unauthenticated / 2
    }
}

/// What to do with an `Incoming`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go on with the handshake; the connection is counted.
    Accept,
    /// Ask the client to prove its address (QUIC Retry); not counted.
    Retry,
    /// Refuse before the handshake.
    Refuse(Refusal),
}

/// Why a connection was refused. `label` names it in `/metrics` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_unauthenticated` reached.
    Unauthenticated,
    /// `max_unauthenticated_per_address` reached for this address.
    PerAddress,
    /// `handshakes_per_address_per_minute` used up for this address.
    HandshakeRate,
    /// The table of addresses is full (a flood from very many addresses).
    Busy,
    /// `enrolments_per_address_per_minute` used up for this address.
    EnrolmentRate,
}

impl Refusal {
    /// Its label; also its place in [`crate::metrics::REFUSAL_REASONS`].
    pub fn label(self) -> &'static str {
        crate::metrics::REFUSAL_REASONS[self.index()]
    }

    /// Its place in [`crate::metrics::REFUSAL_REASONS`].
    pub fn index(self) -> usize {
        match self {
            Refusal::Total => 0,
            Refusal::Unauthenticated => 1,
            Refusal::PerAddress => 2,
            Refusal::HandshakeRate => 3,
            Refusal::Busy => 4,
            Refusal::EnrolmentRate => 5,
        }
    }
}

/// Addresses tracked at most (their rates and counts), ~4 MiB. Entries
/// without live connections leave once their rates have recovered (within a
/// minute); only a flood from more addresses than this in a minute fills it,
/// and then new addresses are refused ([`Refusal::Busy`]) until some expire.
const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// An address's key: IPv4 as is, IPv6 by its /64 (one subscriber's prefix;
/// a host can take any address in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddrKey {
    V4(u32),
    V6(u64),
}

impl AddrKey {
    fn of(ip: IpAddr) -> AddrKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let [a, b, c, d, e, f, g, h, ..] = v6.octets();
                AddrKey::V6(u64::from_be_bytes([a, b, c, d, e, f, g, h]))
            }
        }
    }
}

/// One address: its unauthenticated connections and its two rates, kept as
/// the theoretical arrival time of GCRA (a token bucket in one number): a
/// new event is allowed while it is at most a minute ahead of now.
#[derive(Debug, Clone, Copy)]
struct PerAddr {
    unauthenticated: usize,
    handshakes: Instant,
    enrolments: Instant,
}

/// Take one event of a `per_minute` rate whose arrival time is `tat`.
fn take(tat: &mut Instant, per_minute: u32, now: Instant) -> bool {
    let step = MINUTE / per_minute.max(1);
    let next = (*tat).max(now) + step;
    if next.saturating_duration_since(now) > MINUTE {
        return false;
    }
    *tat = next;
    true
}

/// Give one event of `per_minute` back.
fn refund(tat: &mut Instant, per_minute: u32, now: Instant) {
    let step = MINUTE / per_minute.max(1);
    *tat = tat.checked_sub(step).unwrap_or(now).max(now);
}

const MINUTE: Duration = Duration::from_secs(60);

/// The admission state (see the module doc).
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    total: usize,
    unauthenticated: usize,
    per: HashMap<AddrKey, PerAddr>,
}

impl Admission {
    /// No connections yet.
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            total: 0,
            unauthenticated: 0,
            per: HashMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Connections counted now: (all, unauthenticated).
    pub fn counts(&self) -> (usize, usize) {
        (self.total, self.unauthenticated)
    }

    /// A new connection from `ip` (`validated`: it came back with a Retry
    /// token). On [`Admit::Accept`] it is counted as unauthenticated until
    /// [`Admission::handle_authenticated`] or [`Admission::handle_closed`].
    pub fn handle_incoming(&mut self, ip: IpAddr, validated: bool, now: Instant) -> Admit {
        let l = &self.limits;
        if self.total >= l.max_connections {
            return Admit::Refuse(Refusal::Total);
        }
        if self.unauthenticated >= l.max_unauthenticated {
            return Admit::Refuse(Refusal::Unauthenticated);
        }
        if !validated && self.unauthenticated >= l.validate_above() {
            return Admit::Retry;
        }
        let (per_address, rate) = (
            l.max_unauthenticated_per_address,
            l.handshakes_per_address_per_minute,
        );
        let Some(e) = self.entry(ip, now) else {
            return Admit::Refuse(Refusal::Busy);
        };
        if e.unauthenticated >= per_address {
            return Admit::Refuse(Refusal::PerAddress);
        }
        if !take(&mut e.handshakes, rate, now) {
            return Admit::Refuse(Refusal::HandshakeRate);
        }
        e.unauthenticated += 1;
        self.unauthenticated += 1;
        self.total += 1;
        Admit::Accept
    }

    /// The connection from `ip` is an enrolled device's: it leaves the
    /// unauthenticated counts and its handshake is given back.
    pub fn handle_authenticated(&mut self, ip: IpAddr, now: Instant) {
        let rate = self.limits.handshakes_per_address_per_minute;
        self.unauthenticated = self.unauthenticated.saturating_sub(1);
        if let Some(e) = self.per.get_mut(&AddrKey::of(ip)) {
            e.unauthenticated = e.unauthenticated.saturating_sub(1);
            refund(&mut e.handshakes, rate, now);
        }
        self.forget_if_idle(ip, now);
    }

    /// The connection from `ip` ended.
    pub fn handle_closed(&mut self, ip: IpAddr, authenticated: bool, now: Instant) {
        self.total = self.total.saturating_sub(1);
        if !authenticated {
            self.unauthenticated = self.unauthenticated.saturating_sub(1);
            if let Some(e) = self.per.get_mut(&AddrKey::of(ip)) {
                e.unauthenticated = e.unauthenticated.saturating_sub(1);
            }
        }
        self.forget_if_idle(ip, now);
    }

    /// An enrolment attempt from `ip`: allowed, or [`Refusal::EnrolmentRate`].
    ///
    /// # Errors
    /// The address used up its enrolment attempts of the last minute.
    pub fn handle_enrolment(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let rate = self.limits.enrolments_per_address_per_minute;
        let e = self.entry(ip, now).ok_or(Refusal::Busy)?;
        if take(&mut e.enrolments, rate, now) {
            Ok(())
        } else {
            Err(Refusal::EnrolmentRate)
        }
    }

    /// The entry of `ip`, made if need be; `None` when the table is full of
    /// addresses that are still limited.
    fn entry(&mut self, ip: IpAddr, now: Instant) -> Option<&mut PerAddr> {
        let key = AddrKey::of(ip);
        if !self.per.contains_key(&key) && self.per.len() >= MAX_TRACKED_ADDRESSES {
            self.per.retain(|_, e| !idle(e, now));
            if self.per.len() >= MAX_TRACKED_ADDRESSES {
                return None;
            }
        }
        Some(self.per.entry(key).or_insert(PerAddr {
            unauthenticated: 0,
            handshakes: now,
            enrolments: now,
        }))
    }

    fn forget_if_idle(&mut self, ip: IpAddr, now: Instant) {
        let key = AddrKey::of(ip);
        if self.per.get(&key).is_some_and(|e| idle(e, now)) {
            self.per.remove(&key);
        }
    }
}

/// No live connection and both rates fully recovered: nothing to remember.
fn idle(e: &PerAddr, now: Instant) -> bool {
    e.unauthenticated == 0 && e.handshakes <= now && e.enrolments <= now
}

/// Seconds between two log lines of one kind of limit event: a flood must
/// not flood the log too. The lines in between are counted and the next
/// line says how many.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The admission state shared by the accept loop and the connection tasks,
/// and a throttle for the log lines of limits that bite.
#[derive(Debug)]
pub struct Gate {
    admission: Mutex<Admission>,
    logged: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Gate {
    /// A gate with `limits`.
    pub fn new(limits: Limits) -> Gate {
        Gate {
            admission: Mutex::new(Admission::new(limits)),
            logged: Mutex::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.lock().limits().clone()
    }

    /// Lock the admission state (taken over if a panic poisoned it: every
    /// method leaves it consistent).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        super::registry::lock(&self.admission)
    }

    /// Log `what` (a limit that bit) unless one like it was logged within
    /// [`LOG_EVERY`]; the line says how many were left out since.
    pub(crate) fn log(&self, kind: &'static str, what: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        let mut logged = super::registry::lock(&self.logged);
        let (last, held) = logged.entry(kind).or_insert((now - LOG_EVERY, 0));
        if now.duration_since(*last) < LOG_EVERY {
            *held += 1;
            return;
        }
        let more = std::mem::take(held);
        *last = now;
        drop(logged);
        tracing::warn!(limit = kind, more_since_last_line = more, "{what}");
    }
}

/// A counted connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Arc<Gate>,
    ip: IpAddr,
    authenticated: bool,
}

impl Slot {
    /// The place of a connection from `ip` that `gate` admitted.
    pub(crate) fn new(gate: Arc<Gate>, ip: IpAddr) -> Slot {
        Slot {
            gate,
            ip,
            authenticated: false,
        }
    }

    /// The source address.
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The connection is an enrolled device's sync connection.
    pub(crate) fn authenticated(&mut self) {
        if !self.authenticated {
            self.authenticated = true;
            self.gate
                .lock()
                .handle_authenticated(self.ip, Instant::now());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate
            .lock()
            .handle_closed(self.ip, self.authenticated, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 40,
            max_unauthenticated: 20,
            max_unauthenticated_per_address: 4,
            handshakes_per_address_per_minute: 6,
            enrolments_per_address_per_minute: 2,
            unauthenticated_timeout: Duration::from_secs(10),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn unauthenticated_connections_are_capped_per_address_but_devices_are_not() {
        let now = Instant::now();
        let mut a = Admission::new(limits());
        for _ in 0..4 {
            assert_eq!(a.handle_incoming(ip(1), false, now), Admit::Accept);
        }
        assert_eq!(
            a.handle_incoming(ip(1), false, now),
            Admit::Refuse(Refusal::PerAddress)
        );
        // Another address is not affected.
        assert_eq!(a.handle_incoming(ip(2), false, now), Admit::Accept);
        // Behind one NAT: the authenticated ones leave the address's count
        // and give their handshake back, so 30 devices connect one by one
        // within the minute (the rate allows 6 strangers).
        let mut b = Admission::new(limits());
        for i in 0..30 {
            assert_eq!(
                b.handle_incoming(ip(9), false, now),
                Admit::Accept,
                "device {i}"
            );
            b.handle_authenticated(ip(9), now);
        }
        assert_eq!(b.counts(), (30, 0));
    }

    #[test]
    fn handshakes_that_do_not_authenticate_are_rate_limited_per_minute() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits());
        for _ in 0..6 {
            assert_eq!(a.handle_incoming(ip(1), false, t0), Admit::Accept);
            a.handle_closed(ip(1), false, t0);
        }
        assert_eq!(
            a.handle_incoming(ip(1), false, t0),
            Admit::Refuse(Refusal::HandshakeRate)
        );
        // One more every 10 s (6 a minute).
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(a.handle_incoming(ip(1), false, t1), Admit::Accept);
        assert_eq!(
            a.handle_incoming(ip(1), false, t1),
            Admit::Refuse(Refusal::HandshakeRate)
        );
        // Once the rate has recovered and nothing is open, the address is
        // forgotten.
        a.handle_closed(ip(1), false, t1);
        assert_eq!(a.per.len(), 1, "still limited");
        let t2 = t1 + MINUTE;
        assert_eq!(a.handle_incoming(ip(1), false, t2), Admit::Accept);
        a.handle_closed(ip(1), false, t2 + MINUTE);
        assert!(a.per.is_empty());
        assert_eq!(a.counts(), (0, 0));
    }

    #[test]
    fn totals_are_capped_and_many_strangers_must_prove_their_address() {
        let now = Instant::now();
        let mut a = Admission::new(limits());
        // Half the unauthenticated cap without Retry…
        for i in 0..10 {
            assert_eq!(a.handle_incoming(ip(i), false, now), Admit::Accept);
        }
        // …then only validated addresses.
        assert_eq!(a.handle_incoming(ip(50), false, now), Admit::Retry);
        for i in 10..20 {
            assert_eq!(a.handle_incoming(ip(i), true, now), Admit::Accept);
        }
        assert_eq!(
            a.handle_incoming(ip(51), true, now),
            Admit::Refuse(Refusal::Unauthenticated)
        );
        // Authenticated devices fill the rest up to the total.
        for i in 0..20 {
            a.handle_authenticated(ip(i), now);
        }
        for i in 0..20 {
            assert_eq!(a.handle_incoming(ip(100 + i), false, now), Admit::Accept);
            a.handle_authenticated(ip(100 + i), now);
        }
        assert_eq!(
            a.handle_incoming(ip(200), true, now),
            Admit::Refuse(Refusal::Total)
        );
        a.handle_closed(ip(3), true, now);
        assert_eq!(a.handle_incoming(ip(200), true, now), Admit::Accept);
        assert_eq!(a.counts(), (40, 1));
    }

    #[test]
    fn enrolment_attempts_are_rate_limited_per_address() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits());
        assert_eq!(a.handle_enrolment(ip(1), t0), Ok(()));
        assert_eq!(a.handle_enrolment(ip(1), t0), Ok(()));
        assert_eq!(a.handle_enrolment(ip(1), t0), Err(Refusal::EnrolmentRate));
        assert_eq!(a.handle_enrolment(ip(2), t0), Ok(()));
        assert_eq!(
            a.handle_enrolment(ip(1), t0 + Duration::from_secs(30)),
            Ok(())
        );
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddrKey::of(a), AddrKey::of(b));
        assert_ne!(AddrKey::of(a), AddrKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(AddrKey::of(mapped), AddrKey::of(ip(1)));
        // An IPv6 prefix never collides with an IPv4 address.
        assert_ne!(
            AddrKey::of("0:0:0:1::".parse().unwrap()),
            AddrKey::of("0.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn refusal_labels_match_the_metric_labels() {
        for r in [
            Refusal::Total,
            Refusal::Unauthenticated,
            Refusal::PerAddress,
            Refusal::HandshakeRate,
            Refusal::Busy,
            Refusal::EnrolmentRate,
        ] {
            assert_eq!(crate::metrics::REFUSAL_REASONS[r.index()], r.label());
        }
    }
}
