//! The simulated network between the agents and the server: per-stream
//! ordered delivery with random delay (so streams overtake each other), lost
//! messages that break their connection, replayed submissions, and
//! partitions. Everything is decided by the pair's seeded RNG.

use std::collections::{BTreeMap, BinaryHeap};

use fieldseal_proto::codec::Encode;
use fieldseal_proto::frame::FrameBuffer;
use fieldseal_proto::msg::Message;

use crate::SplitMix;

/// Which side a packet goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum To {
    /// Agent number `i` of the pair.
    Agent(usize),
    /// The server.
    Server,
}

/// A stream of one connection. QUIC keeps each stream in order and never
/// loses or repeats its bytes; different streams overtake each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    /// The control stream (Hello, entries, receipts).
    Control,
    /// Upload stream `n` of the connection.
    Upload(u64),
}

/// What travels.
#[derive(Debug, Clone)]
pub enum Body {
    /// A protocol message (encoded and decoded through the real codec).
    Msg(Message),
    /// Raw segment bytes after `UploadBegin`.
    Data(Vec<u8>),
    /// The sender finished the stream.
    Fin,
    /// The connection is closed (server: revoked, superseded, restarting).
    Close(&'static str),
    /// The connection broke (a lost packet that QUIC could not recover in
    /// time, a partition, a restart): the receiver notices after its idle
    /// timeout.
    Broken,
}

/// One packet in flight.
#[derive(Debug, Clone)]
pub struct Packet {
    /// The connection it belongs to (unique across the run).
    pub conn: u64,
    /// Its stream.
    pub stream: Stream,
    /// The receiver.
    pub to: To,
    /// What it carries.
    pub body: Body,
}

/// Fault rates, in permille per packet unless said otherwise.
#[derive(Debug, Clone)]
pub struct Faults {
    /// A packet is lost for good: its connection breaks.
    pub lose: u32,
    /// A `SubmitEntry` or `UploadQuery` reaches the server a second time,
    /// later (an application-level replay: the server must be idempotent).
    pub replay: u32,
    /// One-way delay, µs (min, max): random per packet, so packets of
    /// different streams reorder.
    pub delay_us: (u64, u64),
    /// Per connection attempt: a partition starts and lasts `partition_us`.
    pub partition: u32,
    /// Length of a partition, µs (min, max).
    pub partition_us: (u64, u64),
    /// Per step: the server restarts (loses every connection, what was not
    /// yet durable, and the entries waiting for a group commit).
    pub restart: u32,
}

impl Faults {
    /// A perfect network.
    pub fn none() -> Faults {
        Faults {
            lose: 0,
            replay: 0,
            delay_us: (500, 500),
            partition: 0,
            partition_us: (0, 0),
            restart: 0,
        }
    }

    /// A bad mobile link with a flaky server.
    pub fn rough() -> Faults {
        Faults {
            lose: 8,
            replay: 20,
            delay_us: (200, 80_000),
            partition: 30,
            partition_us: (1_000_000, 20_000_000),
            restart: 2,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    // Min-heap by (time, order of scheduling): deterministic ties.
    at: std::cmp::Reverse<(u64, u64)>,
}

/// Packets in flight, in delivery order.
#[derive(Debug, Default)]
pub struct Wire {
    heap: BinaryHeap<(Due, u64)>,
    packets: BTreeMap<u64, Packet>,
    next_id: u64,
    /// Latest delivery time per (conn, stream, receiver): a stream stays in order.
    tail: BTreeMap<(u64, Stream, To), u64>,
    /// Until when the network is cut (virtual µs).
    pub partitioned_until: u64,
    /// Packets sent, lost and replayed (for the report).
    pub sent: u64,
    /// Packets lost.
    pub lost: u64,
    /// Submissions replayed.
    pub replayed: u64,
}

/// A message through the real codec, as the receiver would decode it.
///
/// # Panics
/// If the codec does not give back a message it encoded: a codec bug.
pub fn roundtrip(m: &Message) -> Message {
    let bytes = m.to_bytes();
    let mut fb = FrameBuffer::new();
    assert_eq!(fb.push(&bytes), bytes.len(), "one frame fits the buffer");
    fb.next_message()
        .expect("a message we encoded decodes")
        .expect("a whole frame")
}

impl Wire {
    /// Is the network cut at `now`?
    pub fn is_partitioned(&self, now: u64) -> bool {
        now < self.partitioned_until
    }

    /// Queue `body` for delivery after the link's delay, behind everything
    /// already queued on the same stream. Faults are applied by the caller
    /// ([`Wire::send`]); this one always delivers.
    pub fn deliver(&mut self, now: u64, delay: u64, p: Packet) {
        let key = (p.conn, p.stream, p.to);
        let at = (now + delay).max(self.tail.get(&key).copied().unwrap_or(0));
        self.tail.insert(key, at);
        let id = self.next_id;
        self.next_id += 1;
        self.heap.push((
            Due {
                at: std::cmp::Reverse((at, id)),
            },
            id,
        ));
        self.packets.insert(id, p);
    }

    /// Queue a packet at `now + delay` regardless of its stream's order.
    fn deliver_unordered(&mut self, now: u64, delay: u64, p: Packet) {
        let id = self.next_id;
        self.next_id += 1;
        self.heap.push((
            Due {
                at: std::cmp::Reverse((now + delay, id)),
            },
            id,
        ));
        self.packets.insert(id, p);
    }

    /// Send a packet through the faulty link. Returns false when it was
    /// lost (the caller breaks the connection on both ends).
    pub fn send(&mut self, now: u64, rng: &mut SplitMix, faults: &Faults, p: Packet) -> bool {
        self.sent += 1;
        if self.is_partitioned(now) || rng.chance(faults.lose) {
            self.lost += 1;
            return false;
        }
        let delay = span(rng, faults.delay_us);
        let replayable = matches!(
            &p.body,
            Body::Msg(Message::SubmitEntry(_) | Message::UploadQuery(_))
        ) && p.to == To::Server;
        self.deliver(now, delay, p.clone());
        if replayable && rng.chance(faults.replay) {
            // The copy comes up to a second later on a stream of its own (a
            // replayed query is followed by the end of its stream, as a
            // replaying peer's would be).
            self.replayed += 1;
            let mut copy = p;
            copy.stream = match copy.stream {
                Stream::Control => Stream::Control,
                Stream::Upload(n) => Stream::Upload(n | 1 << 62),
            };
            let at = delay + span(rng, (0, 1_000_000));
            let fin = matches!(copy.stream, Stream::Upload(_)).then(|| Packet {
                body: Body::Fin,
                ..copy.clone()
            });
            self.deliver_unordered(now, at, copy);
            if let Some(fin) = fin {
                self.deliver_unordered(now, at + 1, fin);
            }
        }
        true
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|(d, _)| d.at.0 .0)
    }

    /// Take the next packet if it is due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Packet> {
        if self.next_due()? > now {
            return None;
        }
        let (_, id) = self.heap.pop()?;
        self.packets.remove(&id)
    }

    /// Drop every packet of connection `conn` still in flight.
    pub fn forget_conn(&mut self, conn: u64) {
        self.packets.retain(|_, p| p.conn != conn);
        self.heap.retain(|(_, id)| self.packets.contains_key(id));
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.packets.len()
    }
}

/// A random value in `[lo, hi]`.
pub fn span(rng: &mut SplitMix, (lo, hi): (u64, u64)) -> u64 {
    if hi <= lo {
        lo
    } else {
        lo + rng.next_u64() % (hi - lo + 1)
    }
}
