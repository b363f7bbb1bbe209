//! Device certificates that expire, renew and get refused (issue 13), with
//! the real binaries as an operator runs them: `fieldseal-server run` (its
//! log kept, `/metrics` read over HTTP) and `fieldseal-agent run` recording
//! the synthetic camera in real time. Needs the workspace binaries built
//! (`make test` builds them first).
//!
//! Certificates live seconds here (`device_cert_secs`); every wait is
//! bounded by a generous limit and never asserted as a duration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fieldseal_proto::x509::{Certificate, Validity};
use fieldseal_server::datadir::DataDir;
use fieldseal_tests::procs::{self, bin, Agent};

const LIMIT: Duration = Duration::from_secs(90);

struct Server {
    dir: PathBuf,
    quic: String,
    http: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// `init`, with certificates valid `cert_secs` (if given), and `run`.
    fn start(dir: &Path, cert_secs: Option<u64>) -> Server {
        procs::ok(
            &Command::new(bin("fieldseal-server"))
                .args(["init", "--data"])
                .arg(dir)
                .env("FIELDSEAL_ADMIN_PASSWORD", "correct horse battery staple")
                .output()
                .unwrap(),
        );
        if let Some(s) = cert_secs {
            let cfg = DataDir::new(dir).config();
            let text = std::fs::read_to_string(&cfg).unwrap();
            std::fs::write(&cfg, format!("{text}\ndevice_cert_secs = {s}\n")).unwrap();
        }
        let log = dir.with_extension("log");
        let http: SocketAddr = format!("127.0.0.1:{}", procs::stable_udp_port())
            .parse()
            .unwrap();
        let quic = format!("127.0.0.1:{}", procs::stable_udp_port());
        let child = Command::new(bin("fieldseal-server"))
            .args([
                "run",
                "--quic",
                &quic,
                "--http",
                &http.to_string(),
                "--data",
            ])
            .arg(dir)
            .env("RUST_LOG", "fieldseal_server=info,warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Server {
            dir: dir.to_path_buf(),
            quic,
            http,
            log,
            child: Some(child),
        };
        let t0 = Instant::now();
        while fieldseal_tests::http::request(s.http, "GET", "/metrics", None, None).is_err() {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the server exited at start: {st}: {}", s.log_text());
            }
            assert!(t0.elapsed() < LIMIT, "the server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn admin(&self, args: &[&str]) -> String {
        procs::ok(
            &Command::new(bin("fieldseal-server"))
                .args(args)
                .arg("--data")
                .arg(&self.dir)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap(),
        )
    }

    fn token(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        out.lines()
            .find_map(|l| l.strip_prefix("token:").map(|t| t.trim().to_string()))
            .unwrap_or_else(|| panic!("no token in {out}"))
    }

    /// The value of one metric line (`name{labels}`) of `/metrics`.
    fn metric(&self, line: &str) -> u64 {
        let a = fieldseal_tests::http::request(self.http, "GET", "/metrics", None, None).unwrap();
        let text = String::from_utf8(a.body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {line} in /metrics:\n{text}"))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ca(&self) -> PathBuf {
        DataDir::new(&self.dir).ca_cert()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

/// A running `fieldseal-agent run` on the synthetic camera, recording.
struct Recorder {
    child: Option<Child>,
}

impl Recorder {
    fn start(a: &Agent) -> Recorder {
        let child = a
            .command(&["run", "--source", "synthetic", "--pre-event", "0"])
            .spawn()
            .unwrap();
        let r = Recorder { child: Some(child) };
        let t0 = Instant::now();
        loop {
            let out = a.run(&["start", "--case", "CJ-13"], LIMIT);
            if out.status.success() {
                return r;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("no agent is running") && t0.elapsed() < LIMIT,
                "start: {err}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM: a clean stop (exit 0).
    fn finish(mut self) -> Output {
        let child = self.child.take().unwrap();
        procs::ok(
            &Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .output()
                .unwrap(),
        );
        procs::wait_limited(child, LIMIT, "run")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn status(a: &Agent) -> serde_json::Value {
    serde_json::from_str(&procs::ok(&a.run(&["status", "--json"], LIMIT))).unwrap()
}

fn client_cert(a: &Agent) -> Validity {
    let der = fieldseal_agent::sync::read_pem_cert(&a.dir.join("client.crt")).unwrap();
    Certificate::parse(der.as_ref())
        .unwrap()
        .validity()
        .unwrap()
}

fn now_secs() -> i64 {
    fieldseal_server::now_us().div_euclid(1_000_000)
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < LIMIT, "{what}: not within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn past(t: i64) {
    // A certificate that should end in seconds and does not is a failure,
    // not a wait.
    let wait = u64::try_from(t - now_secs()).unwrap_or(0);
    assert!(wait < LIMIT.as_secs(), "{t} is {wait} s away");
    while now_secs() <= t {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn device_id(a: &Agent) -> String {
    status(a)["device"].as_str().unwrap().to_string()
}

/// The server's chain log of the device is the device's, byte for byte.
fn server_holds_the_chain(s: &Server, a: &Agent) {
    let id = device_id(a).parse().unwrap();
    let theirs = std::fs::read(DataDir::new(&s.dir).chain_log(id)).unwrap();
    let ours = std::fs::read(a.dir.join("chain.log")).unwrap();
    assert_eq!(theirs, ours, "the server's copy of the chain differs");
}

#[test]
fn a_recording_device_renews_and_syncs_past_its_first_certificates() {
    let t = tempfile::tempdir().unwrap();
    // 8 s certificates: the agent asks after 5⅓ s, the server allows after 4.
    let s = Server::start(&t.path().join("server"), Some(8));
    let a = Agent::init(&t.path().join("device"));
    a.enroll(
        &s.quic,
        &s.token(&["device", "add", "--name", "cam-13"]),
        &s.ca(),
    );
    let first = client_cert(&a);
    assert_eq!(first.length(), 8);
    let r = Recorder::start(&a);

    // Past the first certificate's end, then past the one that replaced
    // it: receipts keep coming for what is recorded after each.
    let receipts_at = |t: i64| {
        past(t);
        s.metric("fieldseal_receipts_total")
    };
    let n1 = receipts_at(first.not_after + 1);
    until("receipts after the first certificate expired", || {
        s.metric("fieldseal_receipts_total") > n1
    });
    let second = client_cert(&a);
    assert!(second.not_after > first.not_after, "client.crt renewed");
    let n2 = receipts_at(second.not_after + 1);
    until("receipts after the second certificate expired", || {
        s.metric("fieldseal_receipts_total") > n2
    });
    assert!(client_cert(&a).not_after > second.not_after);
    let st = status(&a);
    assert_eq!(st["sync"], "enabled", "{st}");
    assert_eq!(st["certificate"]["expired"], false, "{st}");
    assert!(st["refused"].is_null(), "{st}");

    let out = r.finish();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    procs::ok(&a.run(&["sync", "--until-drained"], LIMIT));
    server_holds_the_chain(&s, &a);
    assert!(s.metric("fieldseal_device_certs_issued_total{how=\"renew\"}") >= 2);
    assert_eq!(
        s.metric("fieldseal_device_handshakes_refused_total{reason=\"expired\"}"),
        0
    );
    assert!(
        s.log_text().contains("device certificate renewed"),
        "{}",
        s.log_text()
    );
}

#[test]
fn after_revoke_a_recording_agent_says_revoked_and_stops_connecting() {
    let t = tempfile::tempdir().unwrap();
    let s = Server::start(&t.path().join("server"), None);
    let a = Agent::init(&t.path().join("device"));
    a.enroll(
        &s.quic,
        &s.token(&["device", "add", "--name", "cam-14"]),
        &s.ca(),
    );
    let id = device_id(&a);
    let r = Recorder::start(&a);
    until("the first receipts", || {
        s.metric("fieldseal_receipts_total") >= 3
    });

    s.admin(&["device", "revoke", &id]);
    until("status says revoked", || status(&a)["sync"] == "revoked");
    let human = procs::ok(&a.run(&["status"], LIMIT));
    assert!(human.contains("SYNC REFUSED: REVOKED"), "{human}");
    assert!(human.contains("device reenrol"), "{human}");
    assert!(a.dir.join("sync-refused.json").exists());

    // A window in which a retrying agent would have made several attempts
    // (its backoff starts at half a second): none reaches the server, and
    // the recording goes on.
    let attempts = || {
        s.metric("fieldseal_device_handshakes_refused_total{reason=\"revoked\"}")
            + s.metric("fieldseal_live_connections")
    };
    let (before, seq_before) = (attempts(), status(&a)["next_seq"].as_u64().unwrap());
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(attempts(), before, "the revoked agent kept connecting");
    assert!(
        status(&a)["next_seq"].as_u64().unwrap() > seq_before,
        "recording went on"
    );

    // `sync` says so at once and fails, without a connection attempt.
    let out = a.run(&["sync", "--until-drained"], LIMIT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("revoked") && err.contains("enroll"), "{err}");
    assert_eq!(attempts(), before);

    // Trusted again: a re-enrolment token for this device clears it all,
    // and the running recorder syncs again by itself, backlog included.
    let token = s.token(&["device", "reenrol", &id]);
    a.enroll(&s.quic, &token, &s.ca());
    assert!(!a.dir.join("sync-refused.json").exists());
    let st = status(&a);
    assert_eq!(st["sync"], "enabled", "{st}");
    let backlog = st["entries_without_receipt"].as_u64().unwrap();
    assert!(backlog > 0, "{st}");
    let received = s.metric("fieldseal_receipts_total");
    until("the recorder's own sync catches up", || {
        s.metric("fieldseal_receipts_total") >= received + backlog
    });
    let out = r.finish();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What was recorded while revoked is all there and verifies.
    procs::ok(&a.run(&["verify"], LIMIT));
    procs::ok(&a.run(&["sync", "--until-drained"], LIMIT));
    server_holds_the_chain(&s, &a);
}

#[test]
fn an_expired_certificate_is_refused_with_its_reason_and_status_says_what_to_do() {
    let t = tempfile::tempdir().unwrap();
    let s = Server::start(&t.path().join("server"), Some(3));
    let a = Agent::init(&t.path().join("device"));
    a.enroll(
        &s.quic,
        &s.token(&["device", "add", "--name", "cam-15"]),
        &s.ca(),
    );
    let id = device_id(&a);
    assert_eq!(
        client_cert(&a).length(),
        3,
        "device_cert_secs is the validity"
    );
    // The device was switched off until its certificate had ended.
    past(client_cert(&a).not_after + 1);
    let st = status(&a);
    assert_eq!(st["certificate"]["expired"], true, "{st}");
    let human = procs::ok(&a.run(&["status"], LIMIT));
    assert!(
        human.contains("CERTIFICATE EXPIRED") && human.contains("device reenrol"),
        "{human}"
    );

    let out = a.run(&["sync", "--until-drained"], LIMIT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expired") && err.contains("enroll"), "{err}");
    assert_eq!(status(&a)["sync"], "certificate expired");
    assert_eq!(
        s.metric("fieldseal_device_handshakes_refused_total{reason=\"expired\"}"),
        1
    );
    let log = s.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("certificate has expired") && l.contains(&id)),
        "{log}"
    );
    // And the operator's list says it too.
    let list = s.admin(&["device", "list"]);
    assert!(list.contains("certificate expired"), "{list}");

    // A second `sync` does not even try.
    let out = a.run(&["sync", "--until-drained"], LIMIT);
    assert!(!out.status.success());
    assert_eq!(
        s.metric("fieldseal_device_handshakes_refused_total{reason=\"expired\"}"),
        1
    );

    let token = s.token(&["device", "reenrol", &id, "--ttl-secs", "600"]);
    a.enroll(&s.quic, &token, &s.ca());
    let st = status(&a);
    assert_eq!(st["sync"], "enabled", "{st}");
    assert_eq!(st["certificate"]["expired"], false, "{st}");
    procs::ok(&a.run(&["sync", "--until-drained"], LIMIT));
    assert_eq!(
        s.metric("fieldseal_device_handshakes_refused_total{reason=\"expired\"}"),
        1
    );
}
