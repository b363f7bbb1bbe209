//! A simulated agent↔server pair, after quinn's `Pair`: the agents' real
//! sync [`Machine`](fieldseal_agent::sync::machine::Machine) against the
//! server's real ingest decisions over in-memory stores, with a virtual
//! clock, a seeded RNG and a wire that loses, delays, reorders and replays
//! messages, partitions the network and restarts the server. No socket, no
//! thread, no real time: a run of thousands of steps takes milliseconds and
//! the same seed replays it exactly.
//!
//! What it checks, while it runs and once every fault has healed:
//! - a device releases media only when the server holds it verified;
//! - every receipt a device keeps verifies and its log index names that entry;
//! - in the end the server's copy of each chain is byte-identical to the
//!   device's, every segment is held and hashes right, every entry has one
//!   leaf in the log, and no honest device was taken for an equivocator.
//!
//! What it does not model: QUIC itself (streams here never lose or repeat
//! bytes, a lost packet breaks its connection), a crash in the middle of a
//! group commit or a blob write (the real-process tests in
//! `tests/server_crash.rs` and the power-loss twins do that), TLS.

pub mod agent;
pub mod server;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::msg::Message;
use fieldseal_proto::sample;
use fieldseal_server::chainindex::ChainIndex;

use crate::SplitMix;
use agent::{Agent, Out};
use server::Server;
use wire::{roundtrip, span, Body, Faults, Packet, Stream, To, Wire};

/// A scenario.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seeds the RNG: network faults, restarts, backoff jitter.
    pub seed: u64,
    /// Devices, each recording its own sample chain.
    pub devices: usize,
    /// Segments per recording of each device's chain.
    pub recordings: Vec<u32>,
    /// Bytes per segment.
    pub media_len: usize,
    /// Virtual µs between two entries recorded by one device (jittered ±50 %).
    pub record_every_us: u64,
    /// Faults while the run is rough.
    pub faults: Faults,
    /// Steps with faults; then the network heals and the run goes on until
    /// every device is drained.
    pub steps: u64,
    /// The most steps allowed for healing before the run counts as stuck.
    pub heal_steps: u64,
    /// How long a side takes to notice a broken connection, µs.
    pub idle_timeout_us: u64,
    /// How long the server gathers entries into one group commit, µs.
    pub commit_delay_us: u64,
}

impl Config {
    /// A few devices on a rough network.
    pub fn rough(seed: u64) -> Config {
        Config {
            seed,
            devices: 3,
            recordings: vec![4, 3],
            media_len: 5000,
            record_every_us: 400_000,
            faults: Faults::rough(),
            steps: 2_000,
            heal_steps: 200_000,
            idle_timeout_us: 3_000_000,
            commit_delay_us: 300,
        }
    }

    /// One device on a perfect network.
    pub fn calm(seed: u64) -> Config {
        Config {
            faults: Faults::none(),
            devices: 1,
            ..Config::rough(seed)
        }
    }
}

/// Timers of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The server's group commit.
    Commit,
    /// Agent `i` records its next entry.
    Record(usize),
    /// Agent `i` notices that connection `conn` broke.
    AgentBroken(usize, u64),
    /// The server notices that connection `conn` broke.
    ServerBroken(u64),
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Events processed (packets delivered, timers fired).
    pub steps: u64,
    /// Virtual time at the end, µs.
    pub virtual_us: u64,
    /// Connections opened.
    pub connections: u64,
    /// Packets sent, lost, replayed.
    pub packets: (u64, u64, u64),
    /// Server restarts.
    pub restarts: u64,
    /// Entries and segments in the end.
    pub entries: u64,
    /// Segments held verified by the server in the end.
    pub segments: u64,
}

/// The pair.
#[derive(Debug)]
pub struct Pair {
    /// The scenario.
    pub cfg: Config,
    /// Virtual time, µs from the start.
    pub now: u64,
    base: Instant,
    /// The RNG everything random comes from.
    pub rng: SplitMix,
    /// The network.
    pub wire: Wire,
    /// The devices.
    pub agents: Vec<Agent>,
    /// The server.
    pub server: Server,
    /// Which agent each connection belongs to.
    conns: BTreeMap<u64, usize>,
    /// Connections whose packets vanish (broken, not yet noticed).
    dead: BTreeSet<u64>,
    /// Connections that take no new packets; those in flight still arrive.
    cut: BTreeSet<u64>,
    next_conn: u64,
    timers: BTreeSet<(u64, Timer)>,
    /// Faults in force (the config's until healing, then none).
    pub faults: Faults,
    /// Events processed.
    pub steps: u64,
    /// Upload bytes to let through before cutting the connection (for the
    /// resume-at-every-offset scenario); counts down.
    pub cut_upload_after: Option<u64>,
    /// Every answer of the server to an upload query: (device, seq, offset),
    /// the whole length when it held the media whole and acknowledged at once.
    pub offsets: Vec<(DeviceId, u64, u64)>,
}

impl Pair {
    /// Build the devices and the server of `cfg`, enrolled, nothing sent.
    pub fn new(cfg: Config) -> Pair {
        let base = Instant::now();
        let mut rng = SplitMix(cfg.seed);
        let receipt_key = SigningKey::from_bytes(&seed32(&mut rng));
        let mut server = Server::new(receipt_key);
        let mut agents = Vec::new();
        let mut timers = BTreeSet::new();
        for i in 0..cfg.devices {
            let key = SigningKey::from_bytes(&seed32(&mut rng));
            server.enroll(key.verifying_key());
            let chain = sample::build(&key, &cfg.recordings, cfg.media_len);
            let vk = server.receipt_key.verifying_key();
            agents.push(Agent::new(key, vk, chain, agent::machine_config(), base));
            timers.insert((0, Timer::Record(i)));
        }
        Pair {
            faults: cfg.faults.clone(),
            cfg,
            now: 0,
            base,
            rng,
            wire: Wire::default(),
            agents,
            server,
            conns: BTreeMap::new(),
            dead: BTreeSet::new(),
            cut: BTreeSet::new(),
            next_conn: 1,
            timers,
            steps: 0,
            cut_upload_after: None,
            offsets: Vec::new(),
        }
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_micros(self.now)
    }

    /// An instant as virtual µs, rounded up: a machine woken at the µs
    /// after its deadline has reached it.
    fn micros(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.base).as_nanos();
        u64::try_from(ns.div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// Run the rough phase, heal, and run until every device is drained.
    ///
    /// # Errors
    /// What went wrong, with the seed to replay it.
    pub fn run(&mut self) -> Result<Report, String> {
        while self.steps < self.cfg.steps {
            if !self.step()? {
                break;
            }
        }
        self.heal();
        let limit = self.steps + self.cfg.heal_steps;
        while !self.all_drained() {
            if self.steps >= limit || !self.step()? {
                return Err(self.fail(format!("not drained after healing: {}", self.describe())));
            }
        }
        self.check_final()?;
        Ok(self.report())
    }

    /// From now on the network is perfect and the server stays up.
    pub fn heal(&mut self) {
        self.faults = Faults::none();
        self.wire.partitioned_until = 0;
    }

    /// Every device recorded everything and is drained.
    pub fn all_drained(&self) -> bool {
        self.agents
            .iter()
            .all(|a| a.is_drained() || a.fatal.is_some())
    }

    /// The error text for a failure, with the seed.
    pub fn fail(&self, what: String) -> String {
        format!(
            "FIELDSEAL_SEED={} step {} at {} µs: {what}",
            self.cfg.seed, self.steps, self.now
        )
    }

    fn describe(&self) -> String {
        self.agents
            .iter()
            .map(|a| {
                format!(
                    "[device {}: head {:?}, receipts {}, acked {}, to record {}, conn {:?}, inflight {}, fatal {:?}, server next {}]",
                    a.device,
                    a.store.entries.len(),
                    a.store.receipts.len(),
                    a.store.acked.len(),
                    a.to_record(),
                    a.conn,
                    a.machine.inflight(),
                    a.fatal,
                    self.server.head(a.device).next_seq
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Process the next event (a packet or a timer). `Ok(false)` when
    /// nothing is left to happen.
    ///
    /// # Errors
    /// A broken invariant.
    pub fn step(&mut self) -> Result<bool, String> {
        self.pump_all();
        let next_timer = self.timers.first().map(|t| t.0);
        let next_packet = self.wire.next_due();
        let mut next_agent = None;
        for a in &self.agents {
            let Some(t) = a.poll_timeout().map(|t| self.micros(t)) else {
                continue;
            };
            if t <= self.now {
                // The pump just ran: a machine that still wants to be woken
                // in the past would make its driver spin.
                return Err(self.fail(format!("device {} asks to be woken in the past: at {t}, conn {:?}, connect {:?}, machine timeout {:?}", a.device, a.conn, a.machine.poll_connect().map(|t| self.micros(t)), a.machine.poll_timeout().map(|t| self.micros(t)))));
            }
            next_agent = Some(next_agent.map_or(t, |n: u64| n.min(t)));
        }
        let Some(at) = [next_timer, next_packet, next_agent]
            .into_iter()
            .flatten()
            .min()
        else {
            return Ok(false);
        };
        self.now = self.now.max(at);
        self.steps += 1;
        if self.rng.chance(self.faults.restart) {
            self.restart_server();
        }
        if next_packet == Some(at) {
            if let Some(p) = self.wire.pop_due(self.now) {
                self.deliver(p)?;
            }
        } else if next_timer == Some(at) {
            let (_, t) = self.timers.pop_first().expect("peeked");
            self.fire(t)?;
        }
        // An agent timeout: the pump at the next step acts on it.
        Ok(true)
    }

    /// The server process restarts.
    pub fn restart_server(&mut self) {
        for conn in self.server.restart() {
            self.break_conn(conn, self.cfg.idle_timeout_us / 10);
        }
        self.timers.retain(|(_, t)| *t != Timer::Commit);
    }

    fn fire(&mut self, t: Timer) -> Result<(), String> {
        match t {
            Timer::Commit => {
                let replies = self
                    .server
                    .commit(i64::try_from(self.now).unwrap_or(i64::MAX));
                self.send_replies(replies);
            }
            Timer::Record(i) => {
                let a = &mut self.agents[i];
                a.record_next();
                if a.to_record() > 0 {
                    let every = self.cfg.record_every_us;
                    let at = self.now + span(&mut self.rng, (every / 2, every * 3 / 2));
                    self.timers.insert((at, Timer::Record(i)));
                }
            }
            Timer::AgentBroken(i, conn) => {
                if self.agents[i].conn == Some(conn) {
                    let now = self.instant();
                    self.agents[i].disconnected(now, &mut self.rng);
                }
            }
            Timer::ServerBroken(conn) => self.server.drop_conn(conn),
        }
        Ok(())
    }

    /// A connection broke: packets in flight vanish, each side notices
    /// after `after` µs.
    pub fn break_conn(&mut self, conn: u64, after: u64) {
        if !self.dead.insert(conn) {
            return;
        }
        self.wire.forget_conn(conn);
        if let Some(&i) = self.conns.get(&conn) {
            self.timers
                .insert((self.now + after, Timer::AgentBroken(i, conn)));
        }
        self.timers
            .insert((self.now + after, Timer::ServerBroken(conn)));
    }

    fn send(&mut self, p: Packet) {
        if self.dead.contains(&p.conn) || self.cut.contains(&p.conn) {
            return;
        }
        let conn = p.conn;
        let faults = self.faults.clone();
        if !self.wire.send(self.now, &mut self.rng, &faults, p) {
            self.break_conn(conn, self.cfg.idle_timeout_us);
        }
    }

    fn send_replies(&mut self, replies: Vec<server::Reply>) {
        self.offsets.append(&mut self.server.query_answers);
        for (conn, stream, body) in replies {
            let Some(&i) = self.conns.get(&conn) else {
                continue;
            };
            if let Body::Close(_) = body {
                // The server closed it: the device learns at once (a
                // CONNECTION_CLOSE frame), and nothing more flows.
                let delay = self.cfg.faults.delay_us.0;
                self.dead.insert(conn);
                self.wire.forget_conn(conn);
                self.timers
                    .insert((self.now + delay, Timer::AgentBroken(i, conn)));
                continue;
            }
            self.send(Packet {
                conn,
                stream,
                to: To::Agent(i),
                body,
            });
        }
    }

    fn deliver(&mut self, p: Packet) -> Result<(), String> {
        if self.dead.contains(&p.conn) {
            return Ok(());
        }
        let body = match p.body {
            Body::Msg(m) => Body::Msg(roundtrip(&m)),
            b => b,
        };
        match p.to {
            To::Server => {
                let submit = matches!(body, Body::Msg(Message::SubmitEntry(_)));
                let replies = self.server.on_packet(p.conn, p.stream, body);
                self.send_replies(replies);
                if submit && !self.timers.iter().any(|(_, t)| *t == Timer::Commit) {
                    self.timers
                        .insert((self.now + self.cfg.commit_delay_us, Timer::Commit));
                }
            }
            To::Agent(i) => self.deliver_to_agent(i, p.conn, p.stream, body)?,
        }
        Ok(())
    }

    fn deliver_to_agent(
        &mut self,
        i: usize,
        conn: u64,
        stream: Stream,
        body: Body,
    ) -> Result<(), String> {
        if self.agents[i].conn != Some(conn) {
            return Ok(());
        }
        let now = self.instant();
        let keep = match (stream, body) {
            (Stream::Control, Body::Msg(m)) => {
                let receipt = match &m {
                    Message::EntryReceipt(r) => Some(r.clone()),
                    _ => None,
                };
                let keep = self.agents[i].on_control(m);
                if let Some(r) = receipt {
                    self.check_receipt(i, &r)?;
                }
                keep
            }
            (Stream::Upload(n), Body::Msg(m)) => {
                let (out, released, keep) = self.agents[i].on_upload(n, m, now);
                if let Some(seq) = released {
                    let (hash, _) = self.agents[i].store.signed_media[&seq];
                    if !self.server.holds_media(self.agents[i].device, seq, &hash) {
                        return Err(self.fail(format!(
                            "device {} released segment {seq} the server does not hold",
                            self.agents[i].device
                        )));
                    }
                }
                self.send_outs(i, conn, out);
                keep
            }
            _ => true,
        };
        if !keep {
            // The device drops the connection (the machine asked to, or a
            // refusal stopped it).
            self.agents[i].disconnected(now, &mut self.rng);
            self.break_conn(conn, 0);
        }
        Ok(())
    }

    /// A receipt the device kept must name its entry's leaf.
    fn check_receipt(&self, i: usize, r: &fieldseal_proto::receipt::Receipt) -> Result<(), String> {
        let a = &self.agents[i];
        if a.store.receipts.get(&r.seq) != Some(r) {
            return Ok(()); // refused by the device
        }
        let leaf = usize::try_from(r.log_index)
            .ok()
            .and_then(|k| self.server.leaves.get(k));
        match leaf {
            Some(
                l @ Leaf::Entry {
                    device,
                    seq,
                    entry_hash,
                    ..
                },
            ) if *device == r.device_id && *seq == r.seq && *entry_hash == r.entry_hash => {
                // And the index proves that leaf is in the log.
                let ix = &self.server.index;
                let size = ix.log_size().map_err(|e| e.to_string())?;
                let proof = ix
                    .log_inclusion(r.log_index, size)
                    .map_err(|e| e.to_string())?;
                let root = ix.log_root().map_err(|e| e.to_string())?;
                fieldseal_proto::merkle::verify_inclusion(
                    &l.hash(),
                    r.log_index,
                    size,
                    &proof,
                    &root,
                )
                .map_err(|e| self.fail(format!("receipt {}: leaf not in the log: {e}", r.seq)))
            }
            other => Err(self.fail(format!("receipt for {} names leaf {other:?}", r.seq))),
        }
    }

    fn pump_all(&mut self) {
        for i in 0..self.agents.len() {
            let now = self.instant();
            let mut opened = None;
            let next_conn = &mut self.next_conn;
            let outs = self.agents[i].pump(now, &mut || {
                let c = *next_conn;
                *next_conn += 1;
                opened = Some(c);
                c
            });
            let Some(conn) = self.agents[i].conn else {
                continue;
            };
            if let Some(c) = opened {
                self.conns.insert(c, i);
                if self.rng.chance(self.faults.partition) {
                    let len = span(&mut self.rng, self.faults.partition_us);
                    self.wire.partitioned_until = self.now + len;
                }
                let key = self.agents[i].key.verifying_key();
                if self.wire.is_partitioned(self.now) {
                    // The handshake times out.
                    self.break_conn(c, self.cfg.idle_timeout_us);
                    continue;
                }
                if !self.server.accept(c, &key) {
                    // Refused in the handshake (unknown or revoked).
                    self.break_conn(c, self.cfg.faults.delay_us.1.max(1));
                    continue;
                }
            }
            self.send_outs(i, conn, outs);
        }
    }

    fn send_outs(&mut self, i: usize, conn: u64, outs: Vec<Out>) {
        for o in outs {
            let (stream, body) = match o {
                Out::Connect(m) | Out::Control(m) => (Stream::Control, Body::Msg(m)),
                Out::Upload(n, m) => (Stream::Upload(n), Body::Msg(m)),
                Out::Data(n, bytes, fin) => {
                    self.send_data(i, conn, n, bytes, fin);
                    continue;
                }
            };
            self.send(Packet {
                conn,
                stream,
                to: To::Server,
                body,
            });
        }
    }

    fn send_data(&mut self, _i: usize, conn: u64, n: u64, mut bytes: Vec<u8>, fin: bool) {
        let mut cut = false;
        if let Some(left) = self.cut_upload_after {
            let len = bytes.len() as u64;
            if len >= left {
                bytes.truncate(usize::try_from(left).expect("small"));
                cut = true;
                self.cut_upload_after = None;
            } else {
                self.cut_upload_after = Some(left - len);
            }
        }
        let stream = Stream::Upload(n);
        if !bytes.is_empty() {
            self.send(Packet {
                conn,
                stream,
                to: To::Server,
                body: Body::Data(bytes),
            });
        }
        if cut {
            // Everything up to the cut arrives, then the connection dies.
            let at = self.wire.next_due().unwrap_or(self.now).max(self.now)
                + self.cfg.faults.delay_us.1
                + 1;
            self.timers.insert((at, Timer::ServerBroken(conn)));
            if let Some(&i) = self.conns.get(&conn) {
                self.timers.insert((at, Timer::AgentBroken(i, conn)));
            }
            self.dead_after_delivery(conn);
            return;
        }
        if fin {
            self.send(Packet {
                conn,
                stream,
                to: To::Server,
                body: Body::Fin,
            });
        }
    }

    /// The connection takes no more packets from either side; those in
    /// flight still arrive.
    fn dead_after_delivery(&mut self, conn: u64) {
        self.cut.insert(conn);
    }

    /// Check the end state (after healing and draining).
    ///
    /// # Errors
    /// The first difference found.
    pub fn check_final(&self) -> Result<(), String> {
        let mut leaves = BTreeSet::new();
        for l in &self.server.leaves {
            if let Leaf::Entry { device, seq, .. } = l {
                if !leaves.insert((*device, *seq)) {
                    return Err(self.fail(format!("entry {device}/{seq} has two leaves")));
                }
            }
        }
        for a in &self.agents {
            if let Some(f) = &a.fatal {
                return Err(self.fail(format!("device {} stopped: {f}", a.device)));
            }
            let server_chain = self
                .server
                .chain_logs
                .get(&a.device)
                .cloned()
                .unwrap_or_default();
            if server_chain != a.store.entries {
                return Err(self.fail(format!(
                    "device {}: server holds {} entries, device {}; or they differ",
                    a.device,
                    server_chain.len(),
                    a.store.entries.len()
                )));
            }
            for seq in 0..a.store.entries.len() as u64 {
                if !a.store.receipts.contains_key(&seq) {
                    return Err(self.fail(format!("device {}: no receipt for {seq}", a.device)));
                }
                if !leaves.contains(&(a.device, seq)) {
                    return Err(self.fail(format!("device {}: no leaf for {seq}", a.device)));
                }
            }
            for (seq, (hash, _)) in &a.store.signed_media {
                if !self.server.holds_media(a.device, *seq, hash) {
                    return Err(self.fail(format!("device {}: segment {seq} not held", a.device)));
                }
                if !a.store.acked.contains(seq) {
                    return Err(self.fail(format!("device {}: segment {seq} not acked", a.device)));
                }
            }
            if self.server.equivocations.contains_key(&a.device) {
                return Err(self.fail(format!(
                    "honest device {} taken for an equivocator",
                    a.device
                )));
            }
        }
        if leaves.len() != self.server.leaves.len() {
            return Err(self.fail("a leaf that is not an entry".into()));
        }
        Ok(())
    }

    /// Figures of the run so far.
    pub fn report(&self) -> Report {
        Report {
            steps: self.steps,
            virtual_us: self.now,
            connections: self.next_conn - 1,
            packets: (self.wire.sent, self.wire.lost, self.wire.replayed),
            restarts: self.server.restarts,
            entries: self
                .agents
                .iter()
                .map(|a| a.store.entries.len() as u64)
                .sum(),
            segments: self
                .agents
                .iter()
                .map(|a| a.store.signed_media.len() as u64)
                .sum(),
        }
    }
}

fn seed32(rng: &mut SplitMix) -> [u8; 32] {
    let mut s = [0u8; 32];
    for c in s.chunks_mut(8) {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    s
}
