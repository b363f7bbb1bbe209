//! A UDP relay with fault knobs, standing in for netem (which the test
//! kernel lacks): loss, delay, jitter, reordering, duplication, corruption,
//! cuts (partitions) in either direction, and an address change of the
//! client as the server sees it ([`Relay::rebind`], a NAT rebinding). One
//! relay serves one client address at a time; the server sees every
//! datagram coming from the relay's current upstream socket.
//!
//! Randomness comes from a seeded SplitMix64, so a failing run can be
//! replayed with the same seed (timing still varies).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// SplitMix64: tiny, seedable, good enough to decide which packet to drop.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// True with probability `permille / 1000`.
    pub fn chance(&mut self, permille: u32) -> bool {
        self.next_u64() % 1000 < u64::from(permille)
    }
}

impl rand_core::RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        SplitMix::next_u64(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for c in dest.chunks_mut(8) {
            let v = SplitMix::next_u64(self).to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The relay's knobs, changeable while it runs.
#[derive(Debug, Default)]
pub struct Knobs {
    /// Drop each datagram with this probability, per mille.
    pub loss_permille: AtomicU32,
    /// Delay every datagram by this many milliseconds (one way).
    pub delay_ms: AtomicU32,
    /// Delay a datagram by up to this many extra milliseconds, per packet
    /// at random, so that datagrams overtake each other.
    pub reorder_ms: AtomicU32,
    /// Send a datagram twice with this probability, per mille.
    pub duplicate_permille: AtomicU32,
    /// Drop everything in both directions while set.
    pub cut: AtomicBool,
    /// Drop everything client → server while set (a one-way partition).
    pub cut_up: AtomicBool,
    /// Drop everything server → client while set.
    pub cut_down: AtomicBool,
    /// Flip one to three random bytes of a datagram with this probability,
    /// per mille (a link that corrupts what its checksum missed).
    pub corrupt_permille: AtomicU32,
    /// Delay each datagram by up to this many extra milliseconds at random
    /// while keeping the order (a datagram waits for the one before it).
    pub jitter_ms: AtomicU32,
    /// Datagrams corrupted.
    pub corrupted: AtomicU64,
    /// Datagram bytes forwarded client → server.
    pub up_bytes: AtomicU64,
    /// Datagram bytes forwarded server → client.
    pub down_bytes: AtomicU64,
    /// Datagrams dropped.
    pub dropped: AtomicU64,
}

/// The state the relay's tasks share.
#[derive(Debug)]
struct Inner {
    knobs: Arc<Knobs>,
    front: Arc<UdpSocket>,
    /// The socket toward the server; replaced by [`Relay::rebind`].
    back: Mutex<Arc<UdpSocket>>,
    server: SocketAddr,
    client: Mutex<Option<SocketAddr>>,
    rng: Mutex<SplitMix>,
    up_q: mpsc::UnboundedSender<Delayed>,
    down_q: mpsc::UnboundedSender<Delayed>,
    /// Tasks reading the upstream sockets (one per rebinding).
    down_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The knobs.
    pub knobs: Arc<Knobs>,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        for t in self.inner.down_tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}

impl Relay {
    /// Start a relay on 127.0.0.1 forwarding to `server`.
    ///
    /// # Errors
    /// Binding the sockets.
    pub async fn start(server: SocketAddr, seed: u64) -> std::io::Result<Relay> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        back.connect(server).await?;
        let addr = front.local_addr()?;
        let knobs = Arc::new(Knobs::default());
        let (up_q, up_rx) = mpsc::unbounded_channel();
        let (down_q, down_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            knobs: knobs.clone(),
            front: front.clone(),
            back: Mutex::new(back.clone()),
            server,
            client: Mutex::new(None),
            rng: Mutex::new(SplitMix(seed)),
            up_q,
            down_q,
            down_tasks: Mutex::default(),
        });
        let up = {
            let inner = inner.clone();
            async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = inner.front.recv_from(&mut buf).await {
                    *inner.client.lock().expect("lock") = Some(from);
                    inner.knobs.up_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    let back = inner.back.lock().expect("lock").clone();
                    forward(&inner, true, buf[..n].to_vec(), back, None);
                }
            }
        };
        inner
            .down_tasks
            .lock()
            .expect("lock")
            .push(tokio::spawn(down_loop(inner.clone(), back)));
        let task = tokio::spawn(async move {
            tokio::join!(up, pace(up_rx), pace(down_rx));
        });
        Ok(Relay {
            addr,
            knobs,
            inner,
            task,
        })
    }

    /// Set loss (per mille), delay and reorder spread (ms), duplication (per mille).
    pub fn set(&self, loss_permille: u32, delay_ms: u32, reorder_ms: u32, duplicate_permille: u32) {
        self.knobs
            .loss_permille
            .store(loss_permille, Ordering::Relaxed);
        self.knobs.delay_ms.store(delay_ms, Ordering::Relaxed);
        self.knobs.reorder_ms.store(reorder_ms, Ordering::Relaxed);
        self.knobs
            .duplicate_permille
            .store(duplicate_permille, Ordering::Relaxed);
    }

    /// Corruption (per mille of datagrams) and order-keeping jitter (ms).
    pub fn set_corruption_jitter(&self, corrupt_permille: u32, jitter_ms: u32) {
        self.knobs
            .corrupt_permille
            .store(corrupt_permille, Ordering::Relaxed);
        self.knobs.jitter_ms.store(jitter_ms, Ordering::Relaxed);
    }

    /// Partition on or off.
    pub fn cut(&self, on: bool) {
        self.knobs.cut.store(on, Ordering::Relaxed);
    }

    /// One-way partitions: `up` drops client → server, `down` server → client.
    pub fn cut_one_way(&self, up: bool, down: bool) {
        self.knobs.cut_up.store(up, Ordering::Relaxed);
        self.knobs.cut_down.store(down, Ordering::Relaxed);
    }

    /// The client's address as the server sees it (the upstream socket).
    ///
    /// # Panics
    /// If the socket has no local address (it is bound).
    pub fn upstream_addr(&self) -> SocketAddr {
        self.inner
            .back
            .lock()
            .expect("lock")
            .local_addr()
            .expect("bound")
    }

    /// Change the client's address as the server sees it, like a NAT that
    /// rebinds: datagrams toward the server leave from a new port from now
    /// on. Replies to the old port are still forwarded (the old mapping
    /// lingers, as in a real NAT) until the relay is dropped.
    ///
    /// # Errors
    /// Binding the new socket.
    pub async fn rebind(&self) -> std::io::Result<SocketAddr> {
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        back.connect(self.inner.server).await?;
        let addr = back.local_addr()?;
        *self.inner.back.lock().expect("lock") = back.clone();
        self.inner
            .down_tasks
            .lock()
            .expect("lock")
            .push(tokio::spawn(down_loop(self.inner.clone(), back)));
        Ok(addr)
    }
}

/// Forward what the server sends to `back` toward the client.
async fn down_loop(inner: Arc<Inner>, back: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = back.recv(&mut buf).await {
        let to = *inner.client.lock().expect("lock");
        if let Some(to) = to {
            inner
                .knobs
                .down_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            forward(
                &inner,
                false,
                buf[..n].to_vec(),
                inner.front.clone(),
                Some(to),
            );
        }
    }
}

/// A datagram due at an instant.
type Delayed = (Instant, Vec<u8>, Arc<UdpSocket>, Option<SocketAddr>);

/// Send delayed datagrams in FIFO order. A constant delay must not reorder
/// packets (one timer task per packet would: timers that fire in the same
/// millisecond wake in any order, and QUIC takes reordering for loss).
/// Jitter delays a datagram and, by the FIFO, every one behind it.
async fn pace(mut rx: mpsc::UnboundedReceiver<Delayed>) {
    while let Some((at, data, sock, to)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        send(&sock, &data, to).await;
    }
}

async fn send(sock: &UdpSocket, data: &[u8], to: Option<SocketAddr>) {
    let _ = match to {
        Some(to) => sock.send_to(data, to).await,
        None => sock.send(data).await,
    };
}

fn forward(
    inner: &Inner,
    up: bool,
    mut data: Vec<u8>,
    sock: Arc<UdpSocket>,
    to: Option<SocketAddr>,
) {
    let knobs = &inner.knobs;
    let (drop, dup, extra, jitter, corrupt) = {
        let mut r = inner.rng.lock().expect("lock");
        let drop = r.chance(knobs.loss_permille.load(Ordering::Relaxed));
        let dup = r.chance(knobs.duplicate_permille.load(Ordering::Relaxed));
        let spread = u64::from(knobs.reorder_ms.load(Ordering::Relaxed));
        let extra = if spread > 0 {
            r.next_u64() % (spread + 1)
        } else {
            0
        };
        let j = u64::from(knobs.jitter_ms.load(Ordering::Relaxed));
        let jitter = if j > 0 { r.next_u64() % (j + 1) } else { 0 };
        let mut corrupt = Vec::new();
        if r.chance(knobs.corrupt_permille.load(Ordering::Relaxed)) && !data.is_empty() {
            for _ in 0..=(r.next_u64() % 3) {
                let at = usize::try_from(r.next_u64() % data.len() as u64).unwrap_or(0);
                let mask = u8::try_from(r.next_u64() % 255 + 1).unwrap_or(1);
                corrupt.push((at, mask));
            }
        }
        (drop, dup, extra, jitter, corrupt)
    };
    let one_way = if up {
        knobs.cut_up.load(Ordering::Relaxed)
    } else {
        knobs.cut_down.load(Ordering::Relaxed)
    };
    if drop || one_way || knobs.cut.load(Ordering::Relaxed) {
        knobs.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !corrupt.is_empty() {
        for (at, mask) in corrupt {
            data[at] ^= mask;
        }
        knobs.corrupted.fetch_add(1, Ordering::Relaxed);
    }
    let queue = if up { &inner.up_q } else { &inner.down_q };
    let at = Instant::now()
        + Duration::from_millis(u64::from(knobs.delay_ms.load(Ordering::Relaxed)) + jitter);
    let copies = if dup { 2 } else { 1 };
    for _ in 0..copies {
        if extra == 0 {
            let _ = queue.send((at, data.clone(), sock.clone(), to));
        } else {
            // Reordered: this one overtakes nothing and is overtaken.
            let (data, sock) = (data.clone(), sock.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(at + Duration::from_millis(extra)).await;
                send(&sock, &data, to).await;
            });
        }
    }
}
