//! The server's side of tests/tests/powercut.rs: `init` cut at its exact
//! operations, then `fieldseal-server run` on the power-cut filesystem under
//! simulated devices (real signed chains in memory, the real sync client)
//! while its folder is cut at random moments and at exact writes and fsyncs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
use fieldseal_tests::faults::{iterations, Scenario, Verdict};
use fieldseal_tests::lazyfs::LazyFs;
use fieldseal_tests::powercut::{exact_cuts, merge_counts, one_exact_cut, Tally};
use fieldseal_tests::procs::{self, bin};
use fieldseal_tests::Harness;
use serde_json::Value;

const ORIGIN: &str = "fieldseal/localhost";
const PASSWORD: &str = "test-password";

fn init_cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin("fieldseal-server"));
    c.args(["init", "--data"])
        .arg(dir)
        .env("FIELDSEAL_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// `fieldseal-server run` on the model.
struct Server {
    dir: PathBuf,
    addr: String,
    log: PathBuf,
}

impl Server {
    /// Start it and wait for its control socket; `Err` with its log if it
    /// exits first.
    fn start(&self) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn run");
        let sock = DataDir::new(&self.dir).control_socket();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            if let Some(s) = child.try_wait().expect("wait") {
                return Err(format!("run exited at start: {s}\n{}", self.stderr()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("run did not come up\n{}", self.stderr()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }

    fn stderr(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        s.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn request(&self, req: Request) -> String {
        match control::request(&self.dir, req.clone()) {
            Ok(Response::Output { code: 0, text }) => text,
            other => panic!("{req:?}: {other:?}\n{}", self.stderr()),
        }
    }
}

/// `init` cut at its operations; `init` again must succeed and `run` start.
fn init_cuts(fs: &mut LazyFs, sc: &Scenario, log: &Path, tally: &mut Tally) {
    let dir = fs.path().join("server");
    fs.reset_counts();
    procs::ok(&procs::wait_limited(
        init_cmd(&dir).spawn().unwrap(),
        Duration::from_secs(120),
        "init",
    ));
    let counts = fs.counts();
    let budget = usize::try_from(iterations("FIELDSEAL_POWER_CUTS", 6)).unwrap_or(6);
    let cuts = exact_cuts(&counts, "server", budget, &mut sc.rng(31));
    eprintln!(
        "server init: {} operations counted, {} cuts",
        counts.values().sum::<u64>(),
        cuts.len()
    );
    for cut in cuts {
        wipe(&dir);
        fs.arm(cut.clone());
        let mut child = init_cmd(&dir).spawn().unwrap();
        // Until the cut fires or init ends: the operations of a run are not
        // the same every time (sled writes in the background).
        let deadline = Instant::now() + Duration::from_secs(120);
        while fs.off().is_none() && Instant::now() < deadline && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let reached = fs.off().is_some();
        let what = fs.cut(&mut [&mut child]).unwrap();
        if !reached {
            eprintln!("init ended before {cut:?}: not a cut");
            tally.unreached += 1;
            continue;
        }
        tally.add(true, cut.torn);
        let out = procs::wait_limited(
            init_cmd(&dir).spawn().unwrap(),
            Duration::from_secs(120),
            "init",
        );
        assert!(
            out.status.success(),
            "after a cut of init ({what}), init again failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = Server {
            dir: dir.clone(),
            addr: format!("127.0.0.1:{}", procs::stable_udp_port()),
            log: log.to_path_buf(),
        };
        let mut child = s
            .start()
            .unwrap_or_else(|e| panic!("after a cut of init ({what}) and init again: {e}"));
        let _ = child.kill();
        let _ = child.wait();
    }
    wipe(&dir);
}

fn wipe(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove");
    }
    std::fs::File::open(dir.parent().expect("mount"))
        .and_then(|f| f.sync_all())
        .expect("fsync mount");
}

/// A simulated device: a real signed chain fed into its store over time.
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

    fn feed_one(&self) -> bool {
        let i = self
            .store
            .head()
            .map_or(0, |h| usize::try_from(h).unwrap() + 1);
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
        self.store.head().map(|h| h + 1) == Some(self.chain.entries.len() as u64)
            && self.store.receipts().len() == self.chain.entries.len()
            && self.store.acked().len() == self.chain.media.len()
    }
}

fn hashes(v: &Value) -> Vec<Hash32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| {
            hex::decode(h.as_str().expect("hex"))
                .unwrap()
                .try_into()
                .expect("32 bytes")
        })
        .collect()
}

/// After a restart: every receipt and acknowledgement a device holds is in
/// the archive (the same receipt, its leaf in the log, the blob with the
/// signed hash), and the log extends every checkpoint published before.
fn check(
    s: &Server,
    devices: &[Device],
    receipt_key: &VerifyingKey,
    published: &[Checkpoint],
    v: &mut Verdict,
) {
    let latest = Checkpoint::verify(&s.request(Request::LogCheckpoint), ORIGIN, receipt_key)
        .expect("checkpoint verifies");
    for cp in published.iter().filter(|c| c.size > 0) {
        let c: Value = serde_json::from_str(&s.request(Request::LogConsistency { from: cp.size }))
            .unwrap_or_else(|e| panic!("consistency from {}: {e}", cp.size));
        let to =
            Checkpoint::verify(c["checkpoint"].as_str().unwrap(), ORIGIN, receipt_key).unwrap();
        if let Err(e) =
            verify_consistency(cp.size, to.size, &cp.root, &to.root, &hashes(&c["proof"]))
        {
            v.lost.push(format!(
                "the log does not extend the checkpoint of size {} published before a cut: {e}",
                cp.size
            ));
        }
    }
    for d in devices {
        v.acknowledged += d.store.receipts().len() as u64;
        for (seq, r) in d.store.receipts() {
            let prove = || {
                control::request(
                    &s.dir,
                    Request::LogProve {
                        device: d.id().to_string(),
                        seq,
                    },
                )
            };
            let mut p = prove();
            // The devices go on syncing during the check: a receipt newer
            // than the checkpoint taken above is proved against a new one.
            if matches!(&p, Ok(Response::Error { message }) if message.contains("not in the latest checkpoint"))
            {
                s.request(Request::LogCheckpoint);
                p = prove();
            }
            let p: Value = match p {
                Ok(Response::Output { code: 0, text }) => serde_json::from_str(&text).unwrap(),
                other => {
                    v.lost.push(format!(
                        "device {} seq {seq}: receipted, not provable: {other:?}",
                        d.id()
                    ));
                    continue;
                }
            };
            if p["receipt"].as_str() != Some(hex::encode(r.to_bytes()).as_str()) {
                v.lost.push(format!(
                    "device {} seq {seq}: the stored receipt differs",
                    d.id()
                ));
            }
            let cp =
                Checkpoint::verify(p["checkpoint"].as_str().unwrap(), ORIGIN, receipt_key).unwrap();
            let leaf = Leaf::Entry {
                device: r.device_id,
                seq: r.seq,
                entry_hash: r.entry_hash,
                server_time_us: r.server_time_us,
            };
            if let Err(e) = verify_inclusion(
                &leaf.hash(),
                r.log_index,
                cp.size,
                &hashes(&p["proof"]),
                &cp.root,
            ) {
                v.lost.push(format!(
                    "device {} seq {seq}: leaf not in the log: {e}",
                    d.id()
                ));
            }
        }
        for seq in d.store.acked() {
            let seg = d.chain.entries[usize::try_from(seq).unwrap()]
                .entry
                .segment()
                .unwrap();
            let path = DataDir::new(&s.dir).blob(&seg.media_sha256);
            if std::fs::read(&path).map(|b| sha256(&b)).ok() != Some(seg.media_sha256) {
                v.lost.push(format!(
                    "device {} seq {seq}: acknowledged blob missing or wrong",
                    d.id()
                ));
            }
        }
    }
    let _ = latest;
}

/// The scenario: init cut at its operations, then ingest under cuts.
pub fn run(fs: &mut LazyFs, cuts: u64) {
    let sc = Scenario::new("server_folder_power_cuts_lose_nothing");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.stderr");
    let mut tally = Tally::default();
    init_cuts(fs, &sc, &log, &mut tally);

    fieldseal_tests::init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = fs.path().join("server");
    procs::ok(&procs::wait_limited(
        init_cmd(&dir).spawn().unwrap(),
        Duration::from_secs(120),
        "init",
    ));
    let s = Server {
        dir: dir.clone(),
        addr: format!("127.0.0.1:{}", procs::stable_udp_port()),
        log: log.clone(),
    };
    let mut child = s.start().unwrap();
    let devices: Vec<Device> = (0..2u8)
        .map(|i| {
            let key = SigningKey::from_bytes(&[0x70 + i; 32]);
            let token = match control::request(
                &dir,
                Request::DeviceAdd {
                    name: format!("cam-{i}"),
                    ttl_secs: Some(3600),
                },
            ) {
                Ok(Response::Token(t)) => t.token,
                other => panic!("device add: {other:?}"),
            };
            let enrollment = rt
                .block_on(sync::enroll(
                    &key,
                    &s.addr,
                    &token,
                    Some(DataDir::new(&dir).ca_cert()),
                ))
                .unwrap();
            let chain = sample::build(&key, &[8; 40], 6 * 1024 + usize::from(i) * 100);
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
    let clients: Vec<_> = devices
        .iter()
        .map(|d| {
            let cfg = Harness::sync_config(&s.addr, &d.key, &d.enrollment);
            let store = d.store.clone();
            rt.spawn(async move {
                let (_tx, rx) = tokio::sync::watch::channel(false);
                let _ = sync::run_sync(store, cfg, Arc::new(Progress::default()), rx).await;
            })
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (devices, stop) = (devices.clone(), stop.clone());
        let mut r = sc.rng(32);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let i = usize::try_from(r.next_u64() % devices.len() as u64).unwrap();
                devices[i].feed_one();
                std::thread::sleep(Duration::from_millis(10 + r.next_u64() % 30));
            }
        })
    };

    let mut r = sc.rng(33);
    let mut seen = std::collections::BTreeMap::new();
    let mut published = Vec::new();
    let mut verdict = Verdict::default();
    for i in 0..cuts {
        // A checkpoint published before the cut: the log must extend it.
        published.push(
            Checkpoint::verify(&s.request(Request::LogCheckpoint), ORIGIN, &receipt_key).unwrap(),
        );
        let exact = if i > 0 && r.next_u64() % 2 == 0 {
            one_exact_cut(&seen, "server", &mut r)
        } else {
            None
        };
        let reached = if let Some(c) = &exact {
            fs.arm(c.clone());
            let reached = fs.wait_off(Duration::from_secs(15)).is_some();
            if !reached {
                tally.unreached += 1;
            }
            reached
        } else {
            fs.reset_counts();
            std::thread::sleep(Duration::from_millis(300 + r.next_u64() % 2500));
            fs.power_off((r.next_u64() % 2 == 0).then(|| r.next_u64()));
            false
        };
        assert!(
            child.try_wait().unwrap().is_none(),
            "cut {i}: run exited by itself\n{}",
            s.stderr()
        );
        merge_counts(&mut seen, &fs.counts());
        let what = fs.cut(&mut [&mut child]).unwrap();
        tally.add(reached, what.starts_with("torn"));
        eprintln!("cut {i}: {what}");
        child = s
            .start()
            .unwrap_or_else(|e| panic!("cut {i} ({what}): the server does not start again: {e}"));
        check(&s, &devices, &receipt_key, &published, &mut verdict);
        assert!(
            verdict.lost.is_empty(),
            "cut {i} ({what}): {:#?}\n{}",
            verdict.lost,
            s.stderr()
        );
    }
    // Everything else, then the final check.
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    for d in devices.iter() {
        while d.feed_one() {}
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !devices.iter().all(Device::drained) {
        assert!(
            Instant::now() < deadline,
            "the devices did not drain\n{}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut end = Verdict::default();
    check(&s, &devices, &receipt_key, &published, &mut end);
    let out = Command::new(bin("fieldseal-server"))
        .args(["verify", "--json", "--data"])
        .arg(&dir)
        .output()
        .unwrap();
    if !out.status.success() {
        end.problem(format!("verify: {}", String::from_utf8_lossy(&out.stdout)));
    }
    end.durable = end.acknowledged;
    for c in clients {
        c.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "{} cuts ({tally:?}); {} entries receipted",
        tally.cuts(),
        end.acknowledged
    );
    sc.record(&end, tally.cuts(), &tally.extras("server"));
    end.assert_ok();
}
