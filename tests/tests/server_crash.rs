//! Restart safety of the real `fieldseal-server` binary: simulated devices
//! submit signed entries and upload segments without pause while the server
//! is killed with SIGKILL at random moments and restarted. After every
//! restart, and at the end, nothing the server acknowledged may be missing
//! and its transparency log must extend every checkpoint it published:
//!
//! - every entry receipt a device holds is the one the server stored, byte
//!   for byte, and its leaf is in the log (inclusion proof);
//! - every acknowledged segment's blob is there and hashes to the signed hash;
//! - `verify --json` finds nothing but media not uploaded yet;
//! - every note in `checkpoints.log` verifies, and a consistency proof from
//!   its size to the latest checkpoint verifies against the roots of both
//!   signed notes, with `fieldseal-proto` alone.
//!
//! Two scenarios: SIGKILL at 12 random moments (plus on-demand checkpoints
//! between them, some kills early in the following restart, and a `reindex` at the end that must give the same
//! verification report and log root), and an abort at each named crash point
//! of `fieldseal_server::fault` (`FIELDSEAL_CRASH_AT=NAME:N`). Both end with
//! the devices drained, a clean shutdown whose checkpoint covers the whole
//! log, and a restart that finds everything.
//!
//! The schedule comes from a seed printed at the start; `FIELDSEAL_SEED=N`
//! replays it (the timing of the traffic still varies). Needs the server
//! binary built (`cargo build -p fieldseal-server`; `make test` builds it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_agent::sync::{self, Enrollment, MemStore, Progress, SyncStore};
use fieldseal_proto::checkpoint::Checkpoint;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::{sha256, DeviceId, Hash32};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{verify_consistency, verify_inclusion};
use fieldseal_proto::sample::{self, SampleChain};
use fieldseal_server::control::{self, Request, Response};
use fieldseal_server::datadir::DataDir;
use fieldseal_tests::{procs, Harness, SplitMix};
use serde_json::Value;

/// SIGKILLs in the random scenario: the issue asks for at least 10 in
/// `make test`; `make soak` sets `FIELDSEAL_SERVER_KILLS` (≥ 100).
fn kills() -> usize {
    std::env::var("FIELDSEAL_SERVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// Recordings of 10 segments per device: enough entries that the devices
/// are still recording at the last kill (about 60 entries are fed per
/// round); sample chains tell at most 256 recordings apart.
fn recordings(kills: usize) -> usize {
    (kills * 3 / 2).clamp(20, 250)
}
/// Simulated devices syncing at once.
const DEVICES: u8 = 4;
/// The checkpoints' origin for a server initialised without names.
const ORIGIN: &str = "fieldseal/localhost";

fn bin(name: &str) -> PathBuf {
    // target/debug/deps/server_crash-… → target/debug/NAME
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p fieldseal-server` (make test does)",
        path.display()
    );
    path
}

fn seed() -> u64 {
    match std::env::var("FIELDSEAL_SEED") {
        Ok(s) => s.parse().expect("FIELDSEAL_SEED is a number"),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (t.as_secs() << 30) ^ u64::from(t.subsec_nanos())
        }
    }
}

/// The server binary on a data folder, started and killed by the test.
struct Server {
    dir: PathBuf,
    addr: String,
    child: Option<Child>,
    /// Its standard error, kept across restarts for a failing run.
    log: PathBuf,
}

impl Server {
    fn init(dir: &Path, checkpoint_secs: u64) -> Server {
        let out = Command::new(bin("fieldseal-server"))
            .args(["init", "--data"])
            .arg(dir)
            .env("FIELDSEAL_ADMIN_PASSWORD", "test-password")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let config = DataDir::new(dir).config();
        let cfg = std::fs::read_to_string(&config).unwrap();
        let line = format!("checkpoint_interval_secs = {checkpoint_secs}\n");
        let cfg = cfg.replace("checkpoint_interval_secs = 300\n", &line);
        assert!(
            cfg.contains(&line),
            "config.toml has no checkpoint interval"
        );
        std::fs::write(&config, cfg).unwrap();
        // Restarted on the same address while clients dial it: a port no
        // other socket of the machine is given in the meantime.
        let port = procs::stable_udp_port();
        Server {
            dir: dir.to_path_buf(),
            addr: format!("127.0.0.1:{port}"),
            child: None,
            log: dir.with_extension("stderr"),
        }
    }

    /// Start the server, with `FIELDSEAL_CRASH_AT=crash` if given.
    fn start(&mut self, crash: Option<&str>) {
        assert!(self.child.is_none(), "the server runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bin("fieldseal-server"));
        cmd.args([
            "run",
            "--quic",
            &self.addr,
            "--http",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&self.dir)
        .env("RUST_LOG", "warn")
        .env_remove("FIELDSEAL_CRASH_AT")
        .stdout(Stdio::null())
        .stderr(log);
        if let Some(c) = crash {
            cmd.env("FIELDSEAL_CRASH_AT", c);
        }
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
        // Ready when its control socket accepts a connection (a stale socket
        // left by a killed server refuses); fail at once if the server exits.
        let deadline = Instant::now() + Duration::from_secs(30);
        let sock = DataDir::new(&self.dir).control_socket();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the server exited at start: {status}\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the server and kill it `after` later, whether or not it is up
    /// yet: a crash during the start's own recovery (roll-forward).
    fn start_and_kill(&mut self, after: Duration) {
        assert!(self.child.is_none(), "the server runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(bin("fieldseal-server"))
            .args([
                "run",
                "--quic",
                &self.addr,
                "--http",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .env_remove("FIELDSEAL_CRASH_AT")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGKILL: no chance to flush, sign or clean up.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Wait until the server exits by itself (a crash point); `None` if it
    /// still runs after `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM, and wait for the clean shutdown.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            let status = c.wait().unwrap();
            assert!(status.success(), "clean shutdown: {status}");
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("fieldseal-server"))
            .args(args)
            .arg("--data")
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// A control-socket request, as the command line makes it.
    fn request(&self, req: Request) -> String {
        match control::request(&self.dir, req.clone()).unwrap() {
            Response::Output { code: 0, text } => text,
            other => panic!("{req:?}: {other:?}"),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simulated device: a real signed chain, fed into its store over time.
struct Device {
    key: SigningKey,
    enrollment: Enrollment,
    chain: SampleChain,
    store: Arc<MemStore>,
    _media: tempfile::TempDir,
}

impl Device {
    fn id(&self) -> DeviceId {
        DeviceId::from_key(&self.key.verifying_key())
    }

    fn fed(&self) -> usize {
        self.store
            .head()
            .map_or(0, |h| usize::try_from(h).unwrap() + 1)
    }

    fn feed_one(&self) -> bool {
        let i = self.fed();
        match self.chain.entries.get(i) {
            Some(e) => {
                let media = self.chain.media.get(&e.seq()).map(Vec::as_slice);
                self.store.push(e, media).unwrap();
                true
            }
            None => false,
        }
    }

    fn drained(&self) -> bool {
        self.fed() == self.chain.entries.len()
            && self.store.receipts().len() == self.chain.entries.len()
            && self.store.acked().len() == self.chain.media.len()
    }
}

fn hash_hex(v: &Value) -> Hash32 {
    hex::decode(v.as_str().expect("hex string"))
        .unwrap()
        .try_into()
        .expect("32 bytes")
}

fn hashes(v: &Value) -> Vec<Hash32> {
    v.as_array().expect("array").iter().map(hash_hex).collect()
}

/// The notes of `checkpoints.log`, read independently of the server's own
/// reader: each note (text, empty line, signature lines) is followed by one
/// empty line, and nothing else may be in the file (no torn note).
fn notes(dir: &Path) -> Vec<String> {
    let read = || match std::fs::read_to_string(DataDir::new(dir).checkpoints_log()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => panic!("{e}"),
    };
    let whole = |t: &str| {
        t.is_empty()
            || (t.ends_with("\n\n") && t.split("\n\n").filter(|p| !p.is_empty()).count() % 2 == 0)
    };
    let mut text = read();
    if !whole(&text) {
        // The running server's timer may be appending right now.
        std::thread::sleep(Duration::from_millis(300));
        text = read();
    }
    assert!(whole(&text), "checkpoints.log holds a torn note: {text:?}");
    let pieces: Vec<&str> = text.split("\n\n").filter(|p| !p.is_empty()).collect();
    pieces
        .chunks(2)
        .map(|c| format!("{}\n\n{}\n", c[0], c[1]))
        .collect()
}

/// What the checks found, for the final comparison.
struct Checked {
    /// The latest checkpoint after the check.
    latest: Checkpoint,
}

/// The invariants, on a running server whose devices are paused.
fn check(
    server: &Server,
    devices: &[Device],
    receipt_key: &VerifyingKey,
    published: &mut Vec<String>,
    complete: bool,
) -> Checked {
    // Every checkpoint ever stored verifies; every one printed by
    // `log checkpoint` is still there; sizes never shrink.
    let stored = notes(&server.dir);
    let cps: Vec<Checkpoint> = stored
        .iter()
        .map(|n| {
            Checkpoint::verify(n, ORIGIN, receipt_key)
                .unwrap_or_else(|e| panic!("stored checkpoint does not verify: {e}\n{n}"))
        })
        .collect();
    for p in published.iter() {
        assert!(stored.contains(p), "published checkpoint lost:\n{p}");
    }
    for w in cps.windows(2) {
        assert!(w[0].size <= w[1].size, "checkpoint sizes shrink: {cps:?}");
    }

    // A checkpoint of the log as it now is: the log must extend every
    // stored one (the server refuses to sign otherwise, which fails here).
    let now = server.request(Request::LogCheckpoint);
    let latest = Checkpoint::verify(&now, ORIGIN, receipt_key).unwrap();
    published.push(now);

    // Consistency from every stored checkpoint to the latest, checked
    // against the roots of the signed notes (not the roots the server
    // sends along).
    let mut sizes = BTreeSet::new();
    for (note, cp) in stored.iter().zip(&cps) {
        if cp.size == 0 || !sizes.insert((cp.size, cp.root)) {
            continue;
        }
        let c: Value =
            serde_json::from_str(&server.request(Request::LogConsistency { from: cp.size }))
                .unwrap();
        let to =
            Checkpoint::verify(c["checkpoint"].as_str().unwrap(), ORIGIN, receipt_key).unwrap();
        assert!(to.size >= latest.size);
        verify_consistency(cp.size, to.size, &cp.root, &to.root, &hashes(&c["proof"]))
            .unwrap_or_else(|e| {
                panic!(
                    "the log does not extend checkpoint {} -> {}: {e}\n{note}",
                    cp.size, to.size
                )
            });
    }
    // The same through the command line, from the first stored checkpoint.
    if let Some(first) = cps.iter().find(|c| c.size > 0) {
        let out = server.cli(&["log", "consistency", "--from", &first.size.to_string()]);
        assert!(out.status.success(), "{out:?}");
        let c: Value = serde_json::from_slice(&out.stdout).unwrap();
        let to =
            Checkpoint::verify(c["checkpoint"].as_str().unwrap(), ORIGIN, receipt_key).unwrap();
        verify_consistency(
            first.size,
            to.size,
            &first.root,
            &to.root,
            &hashes(&c["proof"]),
        )
        .unwrap();
    }

    for d in devices {
        let id = d.id();
        // Every receipt the device holds: the server stored the same bytes,
        // and its leaf is in the latest checkpoint.
        let receipts = d.store.receipts();
        for (seq, r) in &receipts {
            let p: Value = serde_json::from_str(&server.request(Request::LogProve {
                device: id.to_string(),
                seq: *seq,
            }))
            .unwrap();
            assert_eq!(
                p["receipt"].as_str().unwrap(),
                hex::encode(r.to_bytes()),
                "device {id} seq {seq}: the stored receipt differs from the one sent"
            );
            let cp =
                Checkpoint::verify(p["checkpoint"].as_str().unwrap(), ORIGIN, receipt_key).unwrap();
            let leaf = Leaf::Entry {
                device: r.device_id,
                seq: r.seq,
                entry_hash: r.entry_hash,
                server_time_us: r.server_time_us,
            };
            verify_inclusion(
                &leaf.hash(),
                r.log_index,
                cp.size,
                &hashes(&p["proof"]),
                &cp.root,
            )
            .unwrap_or_else(|e| panic!("device {id} seq {seq}: leaf not in the log: {e}"));
        }
        // Every acknowledged segment: its blob, with the signed hash.
        let acked = d.store.acked();
        for seq in &acked {
            let seg = d.chain.entries[usize::try_from(*seq).unwrap()]
                .entry
                .segment()
                .unwrap();
            // The path alone, not the server's blob store, whose opening
            // would clean up the running server's temp files.
            let path = DataDir::new(&server.dir).blob(&seg.media_sha256);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("device {id} seq {seq}: acknowledged blob missing: {e}")
            });
            assert_eq!(sha256(&bytes), seg.media_sha256, "device {id} seq {seq}");
        }
        if complete {
            assert!(d.drained(), "device {id} did not drain");
        }
    }

    // `verify --json`: nothing wrong but media not uploaded yet, never the
    // media of an acknowledged segment.
    let out = server.cli(&["verify", "--json"]);
    let code = out.status.code();
    assert!(matches!(code, Some(0 | 1)), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in v["receipts"].as_array().unwrap() {
        assert_eq!(r["problems"].as_array().unwrap().len(), 0, "{r}");
    }
    for report in v["devices"].as_array().unwrap() {
        let d = devices
            .iter()
            .find(|d| report["device"] == d.id().to_string())
            .unwrap_or_else(|| panic!("a device nobody enrolled: {report}"));
        let acked = d.store.acked();
        for f in report["findings"].as_array().unwrap() {
            let seq = f["seq"].as_u64();
            assert!(
                f["kind"] == "missing-media" && seq.is_some_and(|s| !acked.contains(&s)),
                "device {}: {f}",
                d.id()
            );
        }
    }
    if complete {
        assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    }
    Checked { latest }
}

/// One sync client per device, following its store as it grows.
fn start_clients(
    rt: &tokio::runtime::Runtime,
    devices: &[Device],
    addr: &str,
) -> Vec<tokio::task::JoinHandle<()>> {
    devices
        .iter()
        .map(|d| {
            let cfg = Harness::sync_config(addr, &d.key, &d.enrollment);
            let store = d.store.clone();
            rt.spawn(async move {
                let (_tx, rx) = tokio::sync::watch::channel(false);
                let r = sync::run_sync(store, cfg, Arc::new(Progress::default()), rx).await;
                panic!("sync client ended: {r:?}");
            })
        })
        .collect()
}

/// Stop the clients abruptly, as a device losing its link would.
fn stop_clients(rt: &tokio::runtime::Runtime, clients: Vec<tokio::task::JoinHandle<()>>) {
    for c in clients {
        c.abort();
        let r = rt.block_on(c);
        assert!(r.as_ref().is_err_and(|e| e.is_cancelled()), "{r:?}");
    }
}

/// A server with `DEVICES` enrolled devices, their sync clients and a feeder
/// that records on their behalf.
struct Scenario {
    rt: tokio::runtime::Runtime,
    server: Server,
    devices: Arc<Vec<Device>>,
    receipt_key: VerifyingKey,
    /// Checkpoints printed by `log checkpoint`: each must stay stored.
    published: Vec<String>,
    feeding: Arc<AtomicBool>,
    stop_feeding: Arc<AtomicBool>,
    feeder: Option<std::thread::JoinHandle<()>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl Scenario {
    fn new(seed: u64, key_base: u8, recordings: usize) -> Scenario {
        fieldseal_tests::init_tracing();
        let t0 = Instant::now();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut server = Server::init(&tmp.path().join("server"), 1);
        server.start(None);
        let devices: Vec<Device> = (0..DEVICES)
            .map(|i| {
                let key = SigningKey::from_bytes(&[key_base + i; 32]);
                let out = server.cli(&["device", "add", "--name", &format!("cam-{i}")]);
                assert!(out.status.success(), "{out:?}");
                let token = String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .find_map(|l| l.strip_prefix("token:").map(|t| t.trim().to_string()))
                    .unwrap();
                let enrollment = rt
                    .block_on(sync::enroll(
                        &key,
                        &server.addr,
                        &token,
                        Some(DataDir::new(&server.dir).ca_cert()),
                    ))
                    .unwrap();
                // Lengths differ per device, so no two devices share a blob.
                let chain =
                    sample::build(&key, &vec![10; recordings], 8 * 1024 + usize::from(i) * 100);
                let media = tempfile::tempdir().unwrap();
                let store = Arc::new(MemStore::new(media.path()));
                Device {
                    key,
                    enrollment,
                    chain,
                    store,
                    _media: media,
                }
            })
            .collect();
        let devices = Arc::new(devices);
        let receipt_key = devices[0].enrollment.receipt_key;

        // The devices record on while the server lives and dies: an entry
        // every few tens of milliseconds each. Paused while the test checks,
        // so that the chains last through every crash.
        let stop_feeding = Arc::new(AtomicBool::new(false));
        let feeding = Arc::new(AtomicBool::new(false));
        let feeder = {
            let devices = devices.clone();
            let (stop, feeding) = (stop_feeding.clone(), feeding.clone());
            let mut rng = SplitMix(seed ^ 0x5eed);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if feeding.load(Ordering::Relaxed) {
                        let i = rng.next_u64() % devices.len() as u64;
                        devices[usize::try_from(i).unwrap()].feed_one();
                    }
                    std::thread::sleep(Duration::from_millis(5 + rng.next_u64() % 20));
                }
            })
        };
        eprintln!("set up in {:?}", t0.elapsed());
        Scenario {
            rt,
            server,
            devices,
            receipt_key,
            published: Vec::new(),
            feeding,
            stop_feeding,
            feeder: Some(feeder),
            clients: Vec::new(),
            _tmp: tmp,
        }
    }

    /// Devices sync and record.
    fn go(&mut self) {
        self.clients = start_clients(&self.rt, &self.devices, &self.server.addr);
        self.feeding.store(true, Ordering::Relaxed);
    }

    /// Devices lose their link and stop recording.
    fn pause(&mut self) {
        stop_clients(&self.rt, std::mem::take(&mut self.clients));
        self.feeding.store(false, Ordering::Relaxed);
    }

    fn progress(&self) -> String {
        let receipts: usize = self.devices.iter().map(|d| d.store.receipts().len()).sum();
        let acked: usize = self.devices.iter().map(|d| d.store.acked().len()).sum();
        format!("{receipts} receipts, {acked} segments acknowledged so far")
    }

    fn check(&mut self, complete: bool) -> Checked {
        check(
            &self.server,
            &self.devices,
            &self.receipt_key,
            &mut self.published,
            complete,
        )
    }

    /// The rest of every chain, until everything is receipted and
    /// acknowledged; then a clean shutdown, which signs the last leaves.
    /// Returns that last checkpoint.
    fn drain_and_stop(&mut self) -> Checkpoint {
        self.stop_feeding.store(true, Ordering::Relaxed);
        if let Some(f) = self.feeder.take() {
            f.join().unwrap();
        }
        for d in self.devices.iter() {
            while d.feed_one() {}
        }
        self.go();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.devices.iter().all(Device::drained) {
            if Instant::now() > deadline {
                let state: Vec<String> = self
                    .devices
                    .iter()
                    .zip(&self.clients)
                    .map(|(d, c)| {
                        format!(
                            "{}: {} entries, {} receipts, {} acked of {}, client ended: {}",
                            d.id(),
                            d.fed(),
                            d.store.receipts().len(),
                            d.store.acked().len(),
                            d.chain.media.len(),
                            c.is_finished()
                        )
                    })
                    .collect();
                panic!(
                    "the devices did not drain:\n{}\nserver: {}",
                    state.join("\n"),
                    self.server.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.pause();
        self.server.stop();
        let last = notes(&self.server.dir).pop().expect("a checkpoint");
        Checkpoint::verify(&last, ORIGIN, &self.receipt_key).unwrap()
    }

    /// After [`Scenario::drain_and_stop`]: restart, everything is there, and
    /// the log is exactly what the shutdown's checkpoint says.
    fn final_check(&mut self, last: &Checkpoint) {
        self.server.start(None);
        let c = self.check(true);
        assert_eq!(
            (c.latest.size, c.latest.root),
            (last.size, last.root),
            "the shutdown checkpoint does not cover the whole log"
        );
        let entries: usize = self.devices.iter().map(|d| d.chain.entries.len()).sum();
        assert!(c.latest.size >= entries as u64);
        self.server.stop();
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.stop_feeding.store(true, Ordering::Relaxed);
        for c in &self.clients {
            c.abort();
        }
    }
}

/// `verify --json` and a fresh checkpoint's size and root, with the server
/// stopped (the commands open the folder).
fn offline_state(server: &Server, receipt_key: &VerifyingKey) -> (Value, u64, Hash32) {
    let out = server.cli(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = server.cli(&["log", "checkpoint"]);
    assert!(out.status.success(), "{out:?}");
    let cp =
        Checkpoint::verify(&String::from_utf8(out.stdout).unwrap(), ORIGIN, receipt_key).unwrap();
    (v, cp.size, cp.root)
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let seed = seed();
    eprintln!("server_crash seed {seed} (FIELDSEAL_SEED={seed} replays the kill schedule)");
    let mut rng = SplitMix(seed);
    let kills = kills();
    let mut sc = Scenario::new(seed, 40, recordings(kills));
    let t0 = Instant::now();
    for round in 0..kills {
        sc.go();
        let live = Duration::from_millis(200 + rng.next_u64() % 1300);
        if rng.chance(500) {
            // An on-demand checkpoint somewhere in the middle.
            let before = live.mul_f64((rng.next_u64() % 1000) as f64 / 1000.0);
            std::thread::sleep(before);
            let out = sc.server.cli(&["log", "checkpoint"]);
            assert!(out.status.success(), "{out:?}");
            sc.published.push(String::from_utf8(out.stdout).unwrap());
            std::thread::sleep(live.saturating_sub(before));
        } else {
            std::thread::sleep(live);
        }
        sc.server.kill();
        sc.pause();
        eprintln!("kill {} after {live:?}: {}", round + 1, sc.progress());
        let t = Instant::now();
        if rng.chance(300) {
            let after = Duration::from_millis(rng.next_u64() % 150);
            eprintln!("  and again {after:?} into the restart");
            sc.server.start_and_kill(after);
        }
        sc.server.start(None);
        sc.check(false);
        eprintln!("  restart and check: {:?}", t.elapsed());
    }
    eprintln!("{kills} kills in {:?}", t0.elapsed());
    let last = sc.drain_and_stop();

    // The index rebuilt from the files alone gives the same verification
    // report and the same log.
    let before = offline_state(&sc.server, &sc.receipt_key);
    let out = sc.server.cli(&["reindex"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let after = offline_state(&sc.server, &sc.receipt_key);
    assert_eq!(before, after, "reindex changed the verification or the log");
    assert_eq!((after.1, after.2), (last.size, last.root));

    sc.final_check(&last);
    eprintln!(
        "done in {:?}: {} checkpoints",
        t0.elapsed(),
        notes(&sc.server.dir).len()
    );
}

#[test]
fn crash_at_every_named_point_loses_nothing_acknowledged() {
    let seed = seed();
    eprintln!("server_crash seed {seed} (FIELDSEAL_SEED={seed} replays the crash schedule)");
    let mut rng = SplitMix(seed);
    let mut sc = Scenario::new(seed, 60, 20);
    let t0 = Instant::now();
    for point in fieldseal_server::fault::POINTS {
        // Not always the first pass, so that some work precedes the crash.
        let n = 1 + rng.next_u64() % 4;
        sc.server.kill();
        sc.server.start(Some(&format!("{point}:{n}")));
        sc.go();
        let status = sc
            .server
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| {
                panic!(
                    "crash point {point}:{n} not reached in 30 s; {}",
                    sc.progress()
                )
            });
        sc.pause();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(6),
            "{point}: {status}\n{}",
            sc.server.stderr()
        );
        assert!(
            sc.server
                .stderr()
                .contains(&format!("crash point {point} reached")),
            "{}",
            sc.server.stderr()
        );
        eprintln!("crashed at {point}:{n}: {}", sc.progress());
        sc.server.start(None);
        sc.check(false);
    }
    let last = sc.drain_and_stop();
    sc.final_check(&last);
    eprintln!("done in {:?}", t0.elapsed());
}
