//! `fieldseal-loadgen`: the network load driver of `make bench`
//! (`scripts/bench/net.sh`). Every mode talks to a real `fieldseal-server run`
//! (or, for `sink`, stands in for one) over QUIC with the agent's own sync
//! client, `fieldseal_agent::sync`.
//!
//! ```text
//! upload  --server HOST:PORT --server-data DIR --media DIR --seed N [--max-uploads K]
//!     enrol a fresh device, sign one segment entry per file of DIR (sorted),
//!     then time `sync_until_drained`: every entry receipted and verified,
//!     every segment verified and durable on the server and acknowledged.
//!     `--max-uploads` overrides the sync client's uploads at once (for
//!     experiments; the benchmark uses the agent's default).
//! ceiling --server HOST:PORT --server-data DIR --media DIR --seed N
//!     the same files over one quinn connection to `sink`, with the sync
//!     client's TLS and transport settings and as many streams at once as the
//!     sync client uses: no entries, no storage, no hashing.
//! sink    --listen ADDR --server-data DIR --seed N
//!     the other end of `ceiling`: reads each stream and discards it.
//! devices --server HOST:PORT --server-data DIR --work DIR --counts 10,50,...
//!         [--seconds 24] [--warmup 8] [--rate-bps 2000000] [--segment-secs 4]
//!         [--server-pid PID]
//!     simulated devices, each on its own QUIC connection, each signing a
//!     segment entry every segment-secs and uploading rate-bps of media;
//!     steps up the count until receipts' p99 reaches 1 s or the backlog grows.
//!     Each step's line gives the CPU (in cores) the load generator and, with
//!     --server-pid, the server used over its window.
//! ```
//!
//! Results go to standard output as `key=value` lines that the script reads.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ed25519_dalek::SigningKey;
use fieldseal_agent::sync::{self, tls, Enrollment, MediaRef, Progress, SyncConfig, SyncStore};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::entry::{
    Body, ChainHead, Clock, CodecParams, Event, SegmentBody, SignedEntry, PTS_HZ,
};
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::receipt::Receipt;
use fieldseal_server::control::{self, Request, Response};
use fieldseal_server::pki;
use fieldseal_tests::SplitMix;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    fieldseal_tests::init_tracing();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = argv.split_first() else {
        bail!("usage: fieldseal-loadgen upload|ceiling|sink|devices --flag value ...");
    };
    let args = Args::parse(rest)?;
    // Two workers: the machine the benchmark is written for has two cores,
    // shared with the server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match mode.as_str() {
            "upload" => upload(&args).await,
            "ceiling" => ceiling(&args).await,
            "sink" => sink(&args).await,
            "devices" => devices(&args).await,
            other => bail!("unknown mode {other}"),
        }
    })
}

/// `--flag value` pairs.
#[derive(Debug)]
struct Args(HashMap<String, String>);

impl Args {
    fn parse(rest: &[String]) -> anyhow::Result<Args> {
        let mut m = HashMap::new();
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| anyhow!("expected --flag, got {flag}"))?;
            let value = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
            m.insert(name.to_string(), value.clone());
        }
        Ok(Args(m))
    }
    fn get(&self, name: &str) -> anyhow::Result<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("--{name} is required"))
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow!("--{name}: not a number: {v}")),
        }
    }
    fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        Ok(PathBuf::from(self.get(name)?))
    }
}

/// A device key derived from a seed, so that `sink` and `ceiling` agree on it.
fn device_key(seed: u64) -> SigningKey {
    let mut rng = SplitMix(seed ^ 0x5eed_f1e1_d5ea_1000);
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rng, &mut b);
    SigningKey::from_bytes(&b)
}

/// Enrol `key` with the running server whose data folder is `server_data`
/// (a token through its control socket, then the enrolment handshake).
async fn enroll(key: &SigningKey, server: &str, server_data: &Path) -> anyhow::Result<Enrollment> {
    let dir = server_data.to_path_buf();
    let resp = tokio::task::spawn_blocking(move || {
        control::request(
            &dir,
            Request::DeviceAdd {
                name: "loadgen".into(),
                ttl_secs: Some(3600),
            },
        )
    })
    .await??;
    let Response::Token(t) = resp else {
        bail!("device add: unexpected answer {resp:?}");
    };
    Ok(sync::enroll(key, server, &t.token, Some(server_data.join("ca.crt"))).await?)
}

/// Signs a device's chain: the entries a recording of segments makes.
#[derive(Debug)]
struct ChainWriter {
    key: SigningKey,
    head: ChainHead,
    recording: [u8; 16],
    part: u32,
    mono_us: u64,
    segment_secs: u32,
}

impl ChainWriter {
    fn new(key: SigningKey, segment_secs: u32) -> Self {
        let mut recording = [0u8; 16];
        recording.copy_from_slice(&key.verifying_key().to_bytes()[..16]);
        ChainWriter {
            key,
            head: ChainHead::GENESIS,
            recording,
            part: 0,
            mono_us: 1_000_000,
            segment_secs,
        }
    }

    fn clock(&self) -> Clock {
        let wall_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Clock {
            wall_us,
            mono_us: self.mono_us,
            boot: 1,
        }
    }

    fn event(&mut self, event: Event) -> anyhow::Result<SignedEntry> {
        self.mono_us += 1000;
        let clock = self.clock();
        Ok(self
            .head
            .append(&self.key, clock, None, Body::Event(event))?)
    }

    /// The entries that open a chain and a recording.
    fn start(&mut self) -> anyhow::Result<Vec<SignedEntry>> {
        Ok(vec![
            self.event(Event::AgentStarted {
                software: "fieldseal-loadgen".into(),
            })?,
            self.event(Event::RecordingStarted {
                recording: self.recording,
                case: None,
                activity: None,
            })?,
        ])
    }

    fn segment(&mut self, media_sha256: Hash32, media_len: u64) -> anyhow::Result<SignedEntry> {
        let secs = i64::from(self.segment_secs);
        let start_pts = i64::from(self.part) * secs * PTS_HZ;
        let start_mono_us = self.mono_us;
        self.mono_us += u64::from(self.segment_secs) * 1_000_000;
        let clock = self.clock();
        let body = Body::Segment(SegmentBody {
            recording: self.recording,
            part: self.part,
            media_sha256,
            media_len,
            start_pts,
            end_pts: start_pts + secs * PTS_HZ,
            start_mono_us,
            video_frames: 30 * self.segment_secs,
            audio_samples: 48_000 * u64::from(self.segment_secs),
            codec: CodecParams {
                video: "h264".into(),
                width: 1280,
                height: 720,
                fps_num: 30,
                fps_den: 1,
                audio: "aac".into(),
                sample_rate: 48_000,
                channels: 1,
            },
            flags: 0,
            case: None,
            activity: None,
        });
        self.part += 1;
        Ok(self.head.append(&self.key, clock, None, body)?)
    }
}

#[derive(Debug, Default)]
struct StoreInner {
    entries: Vec<Vec<u8>>,
    pushed_at: Vec<Instant>,
    media: BTreeMap<u64, MediaRef>,
    receipts: BTreeMap<u64, ()>,
    acked: std::collections::BTreeSet<u64>,
}

/// Receipt latencies of every device, collected while a window is open.
#[derive(Debug, Default)]
struct Latencies {
    open: std::sync::atomic::AtomicBool,
    micros: Mutex<Vec<u64>>,
}

/// The agent's store as the sync client sees it, in memory, over media files
/// that already exist; it notes when each entry became durable and when its
/// receipt came back. Unlike the agent's `FsSyncStore` it does not fsync
/// receipts and acknowledgements (that is the agent's cost, not the link's
/// or the server's).
#[derive(Debug)]
struct BenchStore {
    inner: Mutex<StoreInner>,
    head: watch::Sender<Option<u64>>,
    latencies: Arc<Latencies>,
    /// Delete a media file once acknowledged (the device simulation makes
    /// one per segment and must not fill the disk).
    delete_acked: bool,
}

impl BenchStore {
    fn new(latencies: Arc<Latencies>, delete_acked: bool) -> Self {
        BenchStore {
            inner: Mutex::default(),
            head: watch::channel(None).0,
            latencies,
            delete_acked,
        }
    }

    fn push(&self, e: &SignedEntry, media: Option<PathBuf>) {
        let mut g = self.inner.lock().expect("lock");
        assert_eq!(e.seq(), g.entries.len() as u64, "entries in seq order");
        if let (Some(seg), Some(path)) = (e.entry.segment(), media) {
            g.media.insert(
                e.seq(),
                MediaRef {
                    path,
                    len: seg.media_len,
                    sha256: seg.media_sha256,
                },
            );
        }
        g.entries.push(e.to_bytes());
        g.pushed_at.push(Instant::now());
        let head = g.entries.len() as u64 - 1;
        drop(g);
        self.head.send_replace(Some(head));
    }

    /// (entries without a receipt, segments not acknowledged)
    fn pending(&self) -> (u64, u64) {
        let g = self.inner.lock().expect("lock");
        (
            g.entries.len() as u64 - g.receipts.len() as u64,
            g.media.len() as u64 - g.acked.len() as u64,
        )
    }
}

impl SyncStore for BenchStore {
    fn head(&self) -> Option<u64> {
        let g = self.inner.lock().expect("lock");
        (g.entries.len() as u64).checked_sub(1)
    }
    fn entry(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let g = self.inner.lock().expect("lock");
        Ok(usize::try_from(seq)
            .ok()
            .and_then(|i| g.entries.get(i))
            .cloned())
    }
    fn media(&self, seq: u64) -> io::Result<Option<MediaRef>> {
        Ok(self.inner.lock().expect("lock").media.get(&seq).cloned())
    }
    fn save_receipt(&self, r: &Receipt) -> io::Result<()> {
        let mut g = self.inner.lock().expect("lock");
        let at = usize::try_from(r.seq)
            .ok()
            .and_then(|i| g.pushed_at.get(i).copied());
        g.receipts.insert(r.seq, ());
        drop(g);
        if let Some(at) = at {
            if self.latencies.open.load(Ordering::Relaxed) {
                let us = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.latencies.micros.lock().expect("lock").push(us);
            }
        }
        Ok(())
    }
    fn media_acked(&self, seq: u64) -> io::Result<()> {
        let mut g = self.inner.lock().expect("lock");
        g.acked.insert(seq);
        let path = g.media.get(&seq).map(|m| m.path.clone());
        drop(g);
        if self.delete_acked {
            if let Some(p) = path {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(())
    }
    fn is_acked(&self, seq: u64) -> bool {
        self.inner.lock().expect("lock").acked.contains(&seq)
    }
    fn has_receipt(&self, seq: u64) -> bool {
        self.inner.lock().expect("lock").receipts.contains_key(&seq)
    }
    fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.head.subscribe()
    }
}

/// The media files of `dir`, sorted by name, with their lengths.
fn media_files(dir: &Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let e = e?;
        if e.file_type()?.is_file() {
            v.push((e.path(), e.metadata()?.len()));
        }
    }
    v.sort();
    if v.is_empty() {
        bail!("{}: no media files", dir.display());
    }
    Ok(v)
}

fn hash_file(path: &Path) -> anyhow::Result<Hash32> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

async fn upload(args: &Args) -> anyhow::Result<()> {
    let server = args.get("server")?;
    let server_data = args.path("server-data")?;
    let files = media_files(&args.path("media")?)?;
    let key = device_key(args.num("seed", 1)?);
    // What the agent did while recording, before the backlog formed: hash
    // and sign each segment. Not timed.
    let mut writer = ChainWriter::new(key.clone(), 4);
    let store = Arc::new(BenchStore::new(Arc::default(), false));
    for e in writer.start()? {
        store.push(&e, None);
    }
    let mut bytes = 0;
    for (path, len) in &files {
        let e = writer.segment(hash_file(path)?, *len)?;
        store.push(&e, Some(path.clone()));
        bytes += len;
    }
    let enrollment = enroll(&key, server, &server_data).await?;
    let mut cfg = SyncConfig::from_enrollment(server, key, &enrollment);
    cfg.machine.max_uploads = args.num("max-uploads", cfg.machine.max_uploads)?;
    let progress = Arc::new(Progress::default());
    let t0 = Instant::now();
    let stats = sync::sync_until_drained(store.clone(), cfg, progress).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (no_receipt, unacked) = store.pending();
    if no_receipt != 0 || unacked != 0 {
        bail!(
            "drained with {no_receipt} entries unreceipted and {unacked} segments unacknowledged"
        );
    }
    println!("files={}", files.len());
    println!("bytes={bytes}");
    println!("seconds={secs:.3}");
    println!("mbit_s={:.1}", bytes as f64 * 8.0 / secs / 1e6);
    println!("media_bytes_sent={}", stats.media_bytes_sent);
    println!("connections={}", stats.connections);
    Ok(())
}

/// Streams at once in `ceiling`: what the sync client allows
/// (`MachineConfig::max_uploads`), so that the ceiling differs from the real
/// upload only by what the server does with the bytes.
fn ceiling_streams() -> usize {
    sync::MachineConfig::default().max_uploads
}

async fn ceiling(args: &Args) -> anyhow::Result<()> {
    let server = args.get("server")?;
    let server_data = args.path("server-data")?;
    let files = media_files(&args.path("media")?)?;
    let key = device_key(args.num("seed", 1)?);
    let ca = pki::Ca::load(&server_data)?;
    let cert = ca.issue_device_cert(&key.verifying_key().to_bytes())?;
    let ca_cert = pki::read_cert(&server_data.join("ca.crt"))?;
    let qcfg = tls::sync_client_with(
        &key,
        rustls::pki_types::CertificateDer::from(cert),
        &ca_cert,
        sync::DEFAULT_IDLE_TIMEOUT,
    )?;
    let (host, _) = server
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--server: HOST:PORT"))?;
    let addr: SocketAddr = tokio::net::lookup_host(server)
        .await?
        .next()
        .ok_or_else(|| anyhow!("{server}: no address"))?;
    let endpoint = quinn::Endpoint::client("0.0.0.0:0".parse()?)?;
    let t0 = Instant::now();
    let conn = endpoint.connect_with(qcfg, addr, host)?.await?;
    let total: u64 = files.iter().map(|f| f.1).sum();
    let sem = Arc::new(tokio::sync::Semaphore::new(ceiling_streams()));
    let mut tasks = tokio::task::JoinSet::new();
    for (path, len) in files {
        let permit = sem.clone().acquire_owned().await?;
        let conn = conn.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let (mut send, mut recv) = conn.open_bi().await?;
            let mut file = tokio::fs::File::open(&path).await?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await?;
                if n == 0 {
                    break;
                }
                send.write_all(&buf[..n]).await?;
            }
            send.finish()?;
            let got = recv.read_to_end(8).await?;
            let got = u64::from_be_bytes(got.try_into().map_err(|_| anyhow!("short answer"))?);
            if got != len {
                bail!("sink got {got} of {len} bytes");
            }
            Ok::<_, anyhow::Error>(())
        });
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let path = conn.stats().path;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    println!("bytes={total}");
    println!("seconds={secs:.3}");
    println!("mbit_s={:.1}", total as f64 * 8.0 / secs / 1e6);
    // Packets the path lost (on loopback: receive-buffer overflows).
    println!(
        "lost_packets={} of {}",
        path.lost_packets, path.sent_packets
    );
    Ok(())
}

async fn sink(args: &Args) -> anyhow::Result<()> {
    let listen: SocketAddr = args.get("listen")?.parse()?;
    let server_data = args.path("server-data")?;
    let allowed = pki::Allowed::default();
    allowed.insert(device_key(args.num("seed", 1)?).verifying_key().to_bytes());
    let tls = pki::server_tls(&server_data, allowed)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(Arc::new(fieldseal_server::quic::transport_config()));
    let endpoint = fieldseal_server::quic::server_endpoint(sc, listen)?;
    println!("listening={}", endpoint.local_addr()?);
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let conn = incoming.await?;
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let mut n = 0u64;
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Some(k) = recv.read(&mut buf).await? {
                        n += k as u64;
                    }
                    send.write_all(&n.to_be_bytes()).await?;
                    send.finish()?;
                    Ok::<_, anyhow::Error>(())
                });
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    Ok(())
}

/// One simulated device.
#[derive(Debug)]
struct Device {
    store: Arc<BenchStore>,
    writer: Mutex<ChainWriter>,
    cfg: SyncConfig,
    media_dir: PathBuf,
    segments: AtomicU64,
}

/// Media of the simulated devices: one random body shared by all, made
/// unique per segment by a suffix (the server stores by content, so equal
/// files would not be uploaded twice). The body's SHA-256 state is computed
/// once, so a segment costs the load generator a file write, not a hash.
#[derive(Debug)]
struct Media {
    body: Vec<u8>,
    state: Sha256,
}

impl Media {
    fn new(len: usize) -> Self {
        let mut body = vec![0u8; len];
        rand_core::RngCore::fill_bytes(&mut SplitMix(0x006d_6564_6961), &mut body);
        let mut state = Sha256::new();
        state.update(&body);
        Media { body, state }
    }
}

async fn new_device(
    i: usize,
    server: &str,
    server_data: &Path,
    work: &Path,
    segment_secs: u32,
    latencies: &Arc<Latencies>,
) -> anyhow::Result<Arc<Device>> {
    let key = device_key(1_000_000 + i as u64);
    let e = enroll(&key, server, server_data).await?;
    let mut cfg = SyncConfig::from_enrollment(server, key.clone(), &e);
    cfg.machine.backoff_base = Duration::from_millis(200);
    cfg.machine.backoff_max = Duration::from_secs(2);
    let media_dir = work.join(format!("device-{i:05}"));
    std::fs::create_dir_all(&media_dir)?;
    let store = Arc::new(BenchStore::new(latencies.clone(), true));
    let mut writer = ChainWriter::new(key, segment_secs);
    for e in writer.start()? {
        store.push(&e, None);
    }
    Ok(Arc::new(Device {
        store,
        writer: Mutex::new(writer),
        cfg,
        media_dir,
        segments: AtomicU64::new(0),
    }))
}

/// Record one segment: write its file, sign its entry, make both "durable".
fn record_segment(d: &Device, media: &Media) -> anyhow::Result<()> {
    let n = d.segments.fetch_add(1, Ordering::Relaxed);
    let suffix =
        Sha256::digest([d.media_dir.as_os_str().as_encoded_bytes(), &n.to_be_bytes()].concat());
    let path = d.media_dir.join(format!("{n:08}.ts"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&media.body)?;
        f.write_all(&suffix)?;
    }
    let mut h = media.state.clone();
    h.update(suffix);
    let len = (media.body.len() + suffix.len()) as u64;
    let mut w = d.writer.lock().expect("lock");
    let e = w.segment(h.finalize().into(), len)?;
    // Under the writer's lock: entries reach the store in seq order.
    d.store.push(&e, Some(path));
    Ok(())
}

/// The `p`-th percentile (nearest rank) of sorted microseconds, in milliseconds.
fn percentile(sorted: &[u64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len()).div_ceil(100);
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn devices(args: &Args) -> anyhow::Result<()> {
    let server = args.get("server")?.to_string();
    let server_data = args.path("server-data")?;
    let work = args.path("work")?;
    let counts: Vec<usize> = args
        .get("counts")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("--counts: comma-separated numbers"))?;
    let seconds: f64 = args.num("seconds", 24.0)?;
    let warmup: f64 = args.num("warmup", 8.0)?;
    let rate_bps: u64 = args.num("rate-bps", 2_000_000)?;
    let segment_secs: u32 = args.num("segment-secs", 4)?;
    // The server's process, to report the CPU it used in each window.
    let server_pid: Option<u32> = match args.get("server-pid") {
        Ok(p) => Some(
            p.parse()
                .map_err(|_| anyhow!("--server-pid: a process id"))?,
        ),
        Err(_) => None,
    };
    let seg_len = usize::try_from(rate_bps * u64::from(segment_secs) / 8)? - 32;
    let media = Arc::new(Media::new(seg_len));
    let latencies: Arc<Latencies> = Arc::default();
    let mut all: Vec<Arc<Device>> = Vec::new();
    let mut rng = SplitMix(42);
    for &count in &counts {
        // Enrol the devices this step adds, a few at a time.
        let t_enroll = Instant::now();
        while all.len() < count {
            let mut set = tokio::task::JoinSet::new();
            for i in all.len()..count.min(all.len() + 16) {
                let (server, server_data, work, latencies) = (
                    server.clone(),
                    server_data.clone(),
                    work.clone(),
                    latencies.clone(),
                );
                set.spawn(async move {
                    new_device(i, &server, &server_data, &work, segment_secs, &latencies)
                        .await
                        .map(|d| (i, d))
                });
            }
            let mut got = Vec::new();
            while let Some(r) = set.join_next().await {
                got.push(r??);
            }
            got.sort_by_key(|(i, _)| *i);
            all.extend(got.into_iter().map(|(_, d)| d));
        }
        eprintln!(
            "loadgen: {count} devices enrolled ({:.1} s for the new ones)",
            t_enroll.elapsed().as_secs_f64()
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let period = Duration::from_secs(u64::from(segment_secs));
        for d in all.iter().take(count) {
            let (d2, stop) = (d.clone(), stop_rx.clone());
            tasks.spawn(async move {
                sync::run_sync(d2.store.clone(), d2.cfg.clone(), Arc::default(), stop)
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            });
            // Devices start their segments at random phases, as real ones would.
            let phase =
                Duration::from_micros(rng.next_u64() % (u64::from(segment_secs) * 1_000_000));
            let (d2, media, mut stop) = (d.clone(), media.clone(), stop_rx.clone());
            tasks.spawn(async move {
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let (d3, m) = (d2.clone(), media.clone());
                            tokio::task::spawn_blocking(move || record_segment(&d3, &m)).await??;
                        }
                        _ = stop.changed() => return Ok(()),
                    }
                }
            });
        }
        let pending = |all: &[Arc<Device>]| {
            all.iter().take(count).fold((0, 0), |(a, b), d| {
                let (x, y) = d.store.pending();
                (a + x, b + y)
            })
        };
        tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
        latencies.micros.lock().expect("lock").clear();
        latencies.open.store(true, Ordering::Relaxed);
        let load0 = loadavg();
        let cpu0 = (
            cpu_seconds("self"),
            server_pid.and_then(|p| cpu_seconds(&p.to_string())),
        );
        let start = pending(&all);
        let mut worst = start;
        let t0 = Instant::now();
        let mut samples = Vec::new();
        while t0.elapsed().as_secs_f64() < seconds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let p = pending(&all);
            worst = (worst.0.max(p.0), worst.1.max(p.1));
            samples.push(p.1);
        }
        latencies.open.store(false, Ordering::Relaxed);
        let window = t0.elapsed().as_secs_f64();
        // CPU used over the window, in cores (1.0 = one core busy throughout).
        let cores = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", (b - a) / window),
            _ => "-".to_string(),
        };
        let loadgen_cores = cores(cpu0.0, cpu_seconds("self"));
        let server_cores = cores(cpu0.1, server_pid.and_then(|p| cpu_seconds(&p.to_string())));
        let end = pending(&all);
        let _ = stop_tx.send(true);
        let mut lat = std::mem::take(&mut *latencies.micros.lock().expect("lock"));
        lat.sort_unstable();
        let (p50, p99) = (percentile(&lat, 50), percentile(&lat, 99));
        // Sustained: receipts' p99 under a second, and the segment backlog at
        // the end of the window no larger than at its start plus one segment
        // in flight per device (the recording of one just finished).
        let half = samples.len() / 2;
        let first: u64 = samples[..half].iter().copied().max().unwrap_or(0);
        let second: u64 = samples[half..].iter().copied().max().unwrap_or(0);
        let growing = end.1 > start.1 + count as u64 && second > first + count as u64 / 2;
        let ok = p99 < 1000.0 && !growing && !lat.is_empty();
        println!(
            "devices={count} receipts={} p50_ms={p50:.1} p99_ms={p99:.1} max_ms={:.1} \
             unreceipted_start={} unreceipted_end={} unacked_start={} unacked_end={} \
             unacked_max={} loadavg={load0} loadgen_cores={loadgen_cores} \
             server_cores={server_cores} ok={}",
            lat.len(),
            lat.last().map_or(f64::NAN, |v| *v as f64 / 1000.0),
            start.0,
            end.0,
            start.1,
            end.1,
            worst.1,
            u8::from(ok),
        );
        let t_stop = Instant::now();
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r? {
                eprintln!("loadgen: a device task failed: {e:#}");
            }
        }
        eprintln!(
            "loadgen: stopped in {:.1} s",
            t_stop.elapsed().as_secs_f64()
        );
        if !ok {
            break;
        }
    }
    Ok(())
}

/// User plus system CPU seconds of process `pid` ("self" for this one), all
/// its threads, from /proc/PID/stat; `None` if it cannot be read.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line (11 and 12 of `rest`),
    // in clock ticks: USER_HZ, 100 on Linux whatever the kernel's HZ.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}
