//! The real binaries together, as an operator would run them: a server, an
//! enrolled agent recording the synthetic camera, live sync, a server outage,
//! `sync --until-drained`, a cut chain tail caught by the receipts, and a
//! revoked device. Needs the workspace binaries built (`cargo test --workspace`
//! and `make test` build them first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fieldseal_proto::chainlog;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::{sha256, DeviceId};
use fieldseal_server::datadir::DataDir;
use fieldseal_tests::procs::{self, bin};

fn run(cmd: &mut Command) -> Output {
    cmd.env("RUST_LOG", "warn").output().expect("spawn")
}

struct Server {
    dir: PathBuf,
    addr: String,
    child: Option<Child>,
}

impl Server {
    fn init(dir: &Path) -> Server {
        procs::ok(&run(Command::new(bin("fieldseal-server"))
            .args(["init", "--data"])
            .arg(dir)
            .env("FIELDSEAL_ADMIN_PASSWORD", "correct horse battery staple")));
        Server {
            dir: dir.to_path_buf(),
            addr: format!("127.0.0.1:{}", procs::stable_udp_port()),
            child: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(bin("fieldseal-server"))
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when its control socket accepts a connection (a stale socket
        // left by a killed server refuses); fail at once if the server exits.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(DataDir::new(&self.dir).control_socket())
                .is_ok()
            {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the server exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL: an outage, not a clean stop
            c.wait().unwrap();
        }
    }

    fn admin(&self, args: &[&str]) -> Output {
        run(Command::new(bin("fieldseal-server"))
            .args(args)
            .arg("--data")
            .arg(&self.dir))
    }

    fn token(&self, name: &str) -> String {
        let out = procs::ok(&self.admin(&["device", "add", "--name", name]));
        out.lines()
            .find_map(|l| l.strip_prefix("token:").map(|t| t.trim().to_string()))
            .unwrap_or_else(|| panic!("no token in {out}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// Run the agent; a command still running after two minutes is killed and
/// fails the test (a sync that cannot reach its server retries forever).
fn agent(args: &[&str], dir: &Path) -> Output {
    let mut child = Command::new(bin("fieldseal-agent"))
        .args(args)
        .arg("--data")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("fieldseal-agent {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn entries(path: &Path) -> Vec<SignedEntry> {
    let bytes = std::fs::read(path).unwrap();
    chainlog::split(&bytes)
        .unwrap()
        .records
        .iter()
        .map(|r| SignedEntry::from_bytes(r).unwrap())
        .collect()
}

fn status(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&procs::ok(&agent(&["status", "--json"], dir))).unwrap()
}

/// The server holds every entry (its chain log is the agent's, byte for byte)
/// and every segment's bytes (a blob whose SHA-256 is the signed hash).
fn assert_server_holds_everything(server: &Path, device_dir: &Path) {
    let id = procs::ok(&agent(&["status", "--json"], device_dir));
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id: DeviceId = id["device"].as_str().unwrap().parse().unwrap();
    let server = DataDir::new(server);
    let theirs = std::fs::read(server.chain_log(id)).unwrap();
    let ours = std::fs::read(device_dir.join("chain.log")).unwrap();
    assert_eq!(theirs, ours, "the server's copy of the chain differs");
    for e in entries(&device_dir.join("chain.log")) {
        if let Some(s) = e.entry.segment() {
            let blob = server.blob(&s.media_sha256);
            let bytes = std::fs::read(&blob)
                .unwrap_or_else(|err| panic!("seq {}: no blob {}: {err}", e.seq(), blob.display()));
            assert_eq!(sha256(&bytes), s.media_sha256, "seq {}", e.seq());
        }
    }
}

fn small_camera(dir: &Path) {
    let cfg = std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .replace("width = 1280", "width = 320")
        .replace("height = 720", "height = 240")
        .replace("segment_seconds = 4", "segment_seconds = 1")
        .replace("video_bitrate = 2000000", "video_bitrate = 300000");
    std::fs::write(dir.join("config.toml"), cfg).unwrap();
}

#[test]
fn record_sync_outage_and_catch_up() {
    let t = tempfile::tempdir().unwrap();
    let mut server = Server::init(&t.path().join("server"));
    server.start();
    let dev = t.path().join("device");
    procs::ok(&agent(&["init"], &dev));
    small_camera(&dev);
    let token = server.token("cam-1");
    let ca = DataDir::new(&server.dir).ca_cert();
    procs::ok(&agent(
        &[
            "enroll",
            "--server",
            &server.addr,
            "--token",
            &token,
            "--ca",
            ca.to_str().unwrap(),
        ],
        &dev,
    ));
    // A token is single use.
    let again = agent(
        &[
            "enroll",
            "--server",
            &server.addr,
            "--token",
            &token,
            "--ca",
            ca.to_str().unwrap(),
        ],
        &dev,
    );
    assert!(!again.status.success(), "a used token was accepted twice");

    // Record with the server up: everything arrives while recording.
    procs::ok(&agent(
        &["record", "--fast", "--duration", "5", "--case", "CJ-1"],
        &dev,
    ));
    procs::ok(&agent(&["sync", "--until-drained"], &dev));
    let s = status(&dev);
    assert_eq!(s["entries_without_receipt"], 0, "{s}");
    assert_eq!(s["segments_not_acknowledged"], 0, "{s}");
    assert_server_holds_everything(&server.dir, &dev);

    // Outage: the server dies; the device records on regardless.
    server.kill();
    procs::ok(&agent(&["record", "--fast", "--duration", "4"], &dev));
    let s = status(&dev);
    assert!(s["entries_without_receipt"].as_u64().unwrap() > 0, "{s}");
    assert!(s["segments_not_acknowledged"].as_u64().unwrap() > 0, "{s}");
    let v = agent(&["verify"], &dev);
    assert!(
        v.status.success(),
        "recording without a server still verifies"
    );

    // The server comes back: the backlog drains.
    server.start();
    procs::ok(&agent(&["sync", "--until-drained"], &dev));
    let s = status(&dev);
    assert_eq!(s["entries_without_receipt"], 0, "{s}");
    assert_eq!(s["segments_not_acknowledged"], 0, "{s}");
    assert_server_holds_everything(&server.dir, &dev);

    // Cutting off the chain's tail cannot hide: the receipts prove its length.
    let cut = t.path().join("cut");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(&dev)
        .arg(&cut)
        .status()
        .unwrap()
        .success());
    let bytes = std::fs::read(cut.join("chain.log")).unwrap();
    let log = chainlog::split(&bytes).unwrap();
    let last = log.records.last().unwrap().len() + chainlog::RECORD_HEADER;
    std::fs::write(cut.join("chain.log"), &bytes[..bytes.len() - last]).unwrap();
    let out = agent(&["verify", "--json"], &cut);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "truncated-chain"),
        "{report}"
    );

    // A revoked device records, but the server no longer takes its uploads.
    let id = status(&dev)["device"].as_str().unwrap().to_string();
    procs::ok(&server.admin(&["device", "revoke", &id]));
    procs::ok(&agent(&["record", "--fast", "--duration", "2"], &dev));
    let out = agent(&["sync", "--until-drained"], &dev);
    assert!(!out.status.success(), "a revoked device synced");
    assert!(status(&dev)["entries_without_receipt"].as_u64().unwrap() > 0);
    assert!(agent(&["verify"], &dev).status.success());
}
