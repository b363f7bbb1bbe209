//! Article 27 compliance end to end, from real recordings: the agent binary
//! records a synthetic camera in real time (1 s segments), syncs to a
//! server in this process, and the case is set up and judged over the
//! server's HTTP API on loopback, as a custodian's program would do it.
//!
//! A seizure (`continuous-av`) recorded without interruption, with the
//! officer's identity shown, is compliant; each fault below yields exactly
//! the finding that names it:
//!
//! | scenario | findings |
//! | --- | --- |
//! | stop in the middle | `uncovered` explained by `user-stop`, and `split-coverage` for the second run |
//! | power loss (SIGKILL) | `uncovered` explained by `power-loss`, and `split-coverage` |
//! | storage full | `uncovered` explained by `storage-full`, and `split-coverage` |
//! | certificate expired | `certificate-invalid` |
//! | uploaded after the deadline | `late-upload` |
//! | no identity-shown mark | `no-identity-shown` |
//!
//! (A second run after a break is a second recording: Art. 27 asks for one
//! unbroken record, so the seconds only it covers are `split-coverage`.)

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use fieldseal_proto::identity::DeviceId;
use fieldseal_server::datadir::DataDir;
use fieldseal_server::now_us;
use fieldseal_tests::http::{login, request};
use fieldseal_tests::procs::{self, ok, Agent};
use fieldseal_tests::{Harness, ADMIN_PASSWORD};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);
const SECOND_US: i64 = 1_000_000;

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A server, its admin's session, and a temporary folder for devices.
struct Office {
    h: Harness,
    http: SocketAddr,
    token: String,
    tmp: tempfile::TempDir,
}

impl Office {
    async fn open(edit: impl FnOnce(String) -> String) -> Office {
        let h = Harness::start_configured(edit).await.unwrap();
        let http = h.server.http_addr;
        let token = block(|| login(http, "admin", ADMIN_PASSWORD));
        Office {
            h,
            http,
            token,
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let a =
            block(|| request(self.http, method, path, Some(&self.token), body.as_deref())).unwrap();
        assert!(
            (200..300).contains(&a.status),
            "{method} {path}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
        if a.body.is_empty() {
            Value::Null
        } else {
            a.json()
        }
    }

    /// A new device folder (small camera, 1 s segments).
    fn device(&self, name: &str) -> Agent {
        block(|| Agent::init(&self.tmp.path().join(name)))
    }

    fn enroll(&self, a: &Agent, name: &str) {
        let token = self.h.token(name, 3600).unwrap();
        let ca = DataDir::new(self.h.path()).ca_cert();
        block(|| a.enroll(&self.h.server_addr(), &token, &ca));
    }

    /// An officer whose certificate runs from `from` to `until` (days).
    fn officer(&self, cert: &str, from: &str, until: &str) {
        self.call(
            "POST",
            "/api/officers",
            Some(
                json!({"certificate": cert, "name": format!("Officer {cert}"),
                "valid_from": from, "valid_until": until}),
            ),
        );
    }

    /// `cert` carries the device of `a` from an hour ago on.
    fn custody(&self, a: &Agent, cert: &str) {
        self.call(
            "POST",
            "/api/custody",
            Some(json!({"device": device_id(a).to_string(), "officer": cert,
                "from_us": now_us() - 3600 * SECOND_US})),
        );
    }

    /// A case with one seizure by `cert` over `window`; its compliance.
    fn judge(&self, number: &str, cert: &str, window: (i64, i64)) -> Value {
        self.call(
            "POST",
            "/api/cases",
            Some(json!({"number": number, "body": "Test District Bureau", "officers": [cert]})),
        );
        self.call(
            "POST",
            &format!("/api/cases/{number}/activities"),
            Some(
                json!({"id": "A1", "kind": "seizure", "place": "12 Test Road",
                "start_us": window.0, "end_us": window.1, "officers": [cert]}),
            ),
        );
        let c = self.call("GET", &format!("/api/cases/{number}/compliance"), None);
        eprintln!("{number}: {}", serde_json::to_string_pretty(&c).unwrap());
        c
    }
}

fn device_id(a: &Agent) -> DeviceId {
    let k: ed25519_dalek::SigningKey = fieldseal_agent::keyfile::load(&a.dir).unwrap();
    DeviceId::from_key(&k.verifying_key())
}

/// A running `fieldseal-agent run` (no pre-event buffer: the recording is
/// exactly what was started).
struct Recorder<'a> {
    agent: &'a Agent,
    child: Option<Child>,
}

impl<'a> Recorder<'a> {
    fn spawn(agent: &'a Agent) -> Recorder<'a> {
        let child = agent.command(&["run", "--pre-event", "0"]).spawn().unwrap();
        Recorder {
            agent,
            child: Some(child),
        }
    }

    fn ctl(&self, args: &[&str]) {
        ok(&block(|| self.agent.run(args, MINUTE)));
    }

    /// `start`, retried while the recorder is still coming up.
    fn start(&self, case: &str) -> i64 {
        let args = ["start", "--case", case, "--activity", "seizure"];
        let until = Instant::now() + MINUTE;
        loop {
            let out = block(|| self.agent.run(&args, MINUTE));
            if out.status.success() {
                return now_us();
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("no agent is running") && Instant::now() < until,
                "start: {err}"
            );
            sleep(0.2);
        }
    }

    fn identity(&self, cert: &str) {
        self.ctl(&["mark", "identity-shown", "--officer", cert]);
    }

    /// `stop`; returns when it was asked.
    fn stop(&self) -> i64 {
        let t = now_us();
        self.ctl(&["stop"]);
        t
    }

    /// SIGTERM and wait: a clean exit.
    fn finish(mut self) {
        let child = self.child.take().unwrap();
        let pid = child.id().to_string();
        ok(&block(|| {
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .output()
                .unwrap()
        }));
        let out = block(|| procs::wait_limited(child, MINUTE, "run"));
        assert!(
            out.status.success(),
            "run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL: the power goes.
    fn power_cut(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sleep(secs: f64) {
    block(|| std::thread::sleep(Duration::from_secs_f64(secs)));
}

fn drain(a: &Agent) {
    ok(&block(|| a.run(&["sync", "--until-drained"], 2 * MINUTE)));
}

/// The activity: from 1.5 s after the recording started to 0.5 s before
/// the stop was asked (a stop ends the segment in progress, so the media
/// runs past it).
fn window(started: i64, stopped: i64) -> (i64, i64) {
    (started + 3 * SECOND_US / 2, stopped - SECOND_US / 2)
}

/// The findings of the case's one activity, as (kind, signed reason).
fn findings(c: &Value) -> Vec<(String, Option<String>)> {
    let a = &c["activities"][0];
    assert_eq!(a["kind"], "seizure");
    a["verdict"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["explained_by"]["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn kinds(c: &Value) -> Vec<String> {
    let mut k: Vec<String> = findings(c).into_iter().map(|f| f.0).collect();
    k.sort();
    k
}

/// One uncovered stretch explained by `reason`, and the second run as
/// split coverage: nothing else.
fn assert_break_explained_by(c: &Value, reason: &str) {
    let f = findings(c);
    let uncovered: Vec<_> = f.iter().filter(|x| x.0 == "uncovered").collect();
    assert_eq!(uncovered.len(), 1, "one uncovered stretch: {f:?}");
    assert_eq!(uncovered[0].1.as_deref(), Some(reason), "{f:?}");
    assert_eq!(kinds(c), ["split-coverage", "uncovered"], "{f:?}");
    assert_eq!(c["compliant"], false);
}

/// An officer valid all this year and next.
fn valid_officer(o: &Office, cert: &str) {
    o.officer(cert, "2020-01-01", "2099-12-31");
}

/// Record `secs` of one seizure with the identity shown; returns the window.
fn record_plainly(a: &Agent, case: &str, cert: &str, secs: f64, mark: bool) -> (i64, i64) {
    let r = Recorder::spawn(a);
    let started = r.start(case);
    if mark {
        r.identity(cert);
    }
    sleep(secs);
    let stopped = r.stop();
    sleep(1.5);
    r.finish();
    drain(a);
    window(started, stopped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninterrupted_seizure_is_compliant() {
    let o = Office::open(|c| c).await;
    valid_officer(&o, "CJ-100");
    let a = o.device("cam");
    o.enroll(&a, "cam");
    o.custody(&a, "CJ-100");
    let w = record_plainly(&a, "CJ-2026-0100", "CJ-100", 6.0, true);
    let c = o.judge("CJ-2026-0100", "CJ-100", w);
    assert_eq!(kinds(&c), Vec::<String>::new());
    assert_eq!(c["compliant"], true);
    let covered = c["activities"][0]["verdict"]["best_run_seconds"]
        .as_f64()
        .unwrap();
    let want = (w.1 - w.0) as f64 / 1e6;
    assert!(
        (covered - want).abs() < 0.01,
        "{covered} of {want} s in one run"
    );
    o.h.server.shutdown().await;
}

/// (A mark shortly before the activity counts, on arrival: so this device
/// has never marked at all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seizure_without_identity_shown_is_named() {
    let o = Office::open(|c| c).await;
    valid_officer(&o, "CJ-600");
    let a = o.device("cam");
    o.enroll(&a, "cam");
    o.custody(&a, "CJ-600");
    let w = record_plainly(&a, "CJ-2026-0600", "CJ-600", 4.0, false);
    let c = o.judge("CJ-2026-0600", "CJ-600", w);
    assert_eq!(kinds(&c), ["no-identity-shown"]);
    o.h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_in_the_middle_is_an_explained_break() {
    let o = Office::open(|c| c).await;
    valid_officer(&o, "CJ-200");
    let a = o.device("cam");
    o.enroll(&a, "cam");
    o.custody(&a, "CJ-200");
    let r = Recorder::spawn(&a);
    let started = r.start("CJ-2026-0200");
    r.identity("CJ-200");
    sleep(4.0);
    r.stop();
    sleep(4.0);
    r.start("CJ-2026-0200");
    sleep(4.0);
    let stopped = r.stop();
    sleep(1.5);
    r.finish();
    drain(&a);
    let c = o.judge("CJ-2026-0200", "CJ-200", window(started, stopped));
    assert_break_explained_by(&c, "user-stop");
    o.h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_is_an_explained_break() {
    let o = Office::open(|c| c).await;
    valid_officer(&o, "CJ-300");
    let a = o.device("cam");
    o.enroll(&a, "cam");
    o.custody(&a, "CJ-300");
    let r = Recorder::spawn(&a);
    let started = r.start("CJ-2026-0300");
    r.identity("CJ-300");
    sleep(4.0);
    r.power_cut();
    sleep(3.0);
    let r = Recorder::spawn(&a);
    r.start("CJ-2026-0300");
    sleep(4.0);
    let stopped = r.stop();
    sleep(1.5);
    r.finish();
    drain(&a);
    let c = o.judge("CJ-2026-0300", "CJ-300", window(started, stopped));
    assert_break_explained_by(&c, "power-loss");
    o.h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_named() {
    let o = Office::open(|c| c).await;
    o.officer("CJ-400", "2020-01-01", "2021-12-31");
    let a = o.device("cam");
    o.enroll(&a, "cam");
    o.custody(&a, "CJ-400");
    let w = record_plainly(&a, "CJ-2026-0400", "CJ-400", 4.0, true);
    let c = o.judge("CJ-2026-0400", "CJ-400", w);
    assert_eq!(kinds(&c), ["certificate-invalid"]);
    o.h.server.shutdown().await;
}

/// Segments must reach the server within the deadline (3 s here): a device
/// that records offline and syncs later is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_upload_is_named() {
    let o = Office::open(|c| {
        let c = c.replace("upload_deadline_secs = 86400", "upload_deadline_secs = 3");
        assert!(c.contains("upload_deadline_secs = 3"), "{c}");
        c
    })
    .await;
    valid_officer(&o, "CJ-500");
    let a = o.device("cam");
    // Recorded before the device is enrolled: nothing can leave it.
    let r = Recorder::spawn(&a);
    let started = r.start("CJ-2026-0500");
    r.identity("CJ-500");
    sleep(4.0);
    let stopped = r.stop();
    sleep(1.5);
    r.finish();
    sleep(4.0);
    o.enroll(&a, "cam");
    o.custody(&a, "CJ-500");
    drain(&a);
    let c = o.judge("CJ-2026-0500", "CJ-500", window(started, stopped));
    assert_eq!(kinds(&c), ["late-upload"]);
    o.h.server.shutdown().await;
}

/// A spool of at most `bytes`, released as soon as the server acknowledges.
fn limit_spool(dir: &Path, bytes: u64) {
    let p = dir.join("config.toml");
    let cfg = std::fs::read_to_string(&p).unwrap();
    let mut out = String::new();
    for line in cfg.lines() {
        if line.trim_start().starts_with("limit_bytes") {
            out.push_str(&format!("limit_bytes = {bytes}\n"));
        } else if line.trim_start().starts_with("keep_after_ack_seconds") {
            out.push_str("keep_after_ack_seconds = 0\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_ne!(cfg, out, "the config has a limit_bytes");
    std::fs::write(p, out).unwrap();
}

fn signed(a: &Agent, event: &str) -> bool {
    let view = fieldseal_tests::faults::AgentView::from_dir(&a.dir).unwrap();
    view.entries
        .values()
        .any(|e| e.entry.event().is_some_and(|ev| ev.name() == event))
}

/// The spool fills while the device is out of reach: the agent signs
/// storage-full and stops; once the server has taken the segments and the
/// device has freed them, recording goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_is_an_explained_break() {
    let o = Office::open(|c| c).await;
    valid_officer(&o, "CJ-700");
    let a = o.device("cam");
    limit_spool(&a.dir, 300_000);
    let r = Recorder::spawn(&a);
    let started = r.start("CJ-2026-0700");
    r.identity("CJ-700");
    let until = Instant::now() + MINUTE;
    while !block(|| signed(&a, "storage-full")) {
        assert!(Instant::now() < until, "the spool did not fill");
        sleep(0.5);
    }
    sleep(2.0);
    r.finish();
    o.enroll(&a, "cam");
    o.custody(&a, "CJ-700");
    drain(&a);
    let r = Recorder::spawn(&a);
    r.start("CJ-2026-0700");
    sleep(4.0);
    let stopped = r.stop();
    sleep(1.5);
    r.finish();
    drain(&a);
    let c = o.judge("CJ-2026-0700", "CJ-700", window(started, stopped));
    assert_break_explained_by(&c, "storage-full");
    // The media released to make room went on a signed acknowledgement of
    // the server, kept as proof of hand-over: the device's own verify
    // accepts the absence (a release without proof is missing-media).
    let released = std::fs::read_to_string(a.dir.join("released.log")).unwrap_or_default();
    assert!(
        released.lines().count() > 0,
        "the full spool released media"
    );
    ok(&block(|| a.run(&["verify", "--json"], MINUTE)));
    o.h.server.shutdown().await;
}
