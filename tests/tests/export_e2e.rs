//! Handing a case to a court, end to end with the real binaries: the agent
//! records a synthetic camera and syncs to a running server; a case with
//! custody is set up over the HTTP API; `fieldseal-server export` writes the
//! package through the running server's control socket; `tar` lists it;
//! `fieldseal-verify FILE` accepts it (exit 0) and prints the fingerprints
//! the export printed; the same package with its last segment cut out
//! (the tar rewritten without that member) is refused (exit 1) with the
//! finding named.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::{package, ustar};
use fieldseal_server::datadir::DataDir;
use fieldseal_server::now_us;
use fieldseal_tests::http::{login, request};
use fieldseal_tests::procs::{self, ok, Agent};
use fieldseal_tests::{Harness, ADMIN_PASSWORD};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);
const CASE: &str = "CJ-2026-0700";

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn call(http: std::net::SocketAddr, token: &str, method: &str, path: &str, body: Value) -> Value {
    let body = body.to_string();
    let a = block(|| request(http, method, path, Some(token), Some(&body))).unwrap();
    assert!(
        (200..300).contains(&a.status),
        "{method} {path}: {}",
        a.status
    );
    if a.body.is_empty() {
        Value::Null
    } else {
        a.json()
    }
}

/// Record about `secs` seconds of one seizure tagged with the case, then
/// stop cleanly and sync everything; returns (start, stop) in server time.
fn record(a: &Agent, secs: u64) -> (i64, i64) {
    let mut child = a.command(&["run", "--pre-event", "0"]).spawn().unwrap();
    let args = ["start", "--case", CASE, "--activity", "seizure"];
    let until = Instant::now() + MINUTE;
    let started = loop {
        let out = a.run(&args, MINUTE);
        if out.status.success() {
            break now_us();
        }
        assert!(
            Instant::now() < until,
            "start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    ok(&a.run(&["mark", "identity-shown", "--officer", "CJ-700"], MINUTE));
    std::thread::sleep(Duration::from_secs(secs));
    let stopped = now_us();
    ok(&a.run(&["stop"], MINUTE));
    std::thread::sleep(Duration::from_millis(1500));
    ok(&Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .output()
        .unwrap());
    let _ = child.wait();
    ok(&a.run(&["sync", "--until-drained"], 2 * MINUTE));
    (started, stopped)
}

fn server_export(data: &Path, out: &Path) -> Output {
    Command::new(procs::bin("fieldseal-server"))
        .args(["export", "--data"])
        .arg(data)
        .args(["--case", CASE, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

fn verify(file: &Path) -> Output {
    Command::new(procs::bin("fieldseal-verify"))
        .arg(file)
        .output()
        .unwrap()
}

/// The value after `label` on a line of `text`.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_exported_while_the_server_runs_verifies_and_a_cut_copy_does_not() {
    let h = Harness::start().await.unwrap();
    let http = h.server.http_addr;
    let admin = block(|| login(http, "admin", ADMIN_PASSWORD));
    let tmp = tempfile::tempdir().unwrap();
    let a = block(|| Agent::init(&tmp.path().join("cam")));
    let token = h.token("cam", 3600).unwrap();
    let ca = DataDir::new(h.path()).ca_cert();
    block(|| a.enroll(&h.server_addr(), &token, &ca));
    let key: ed25519_dalek::SigningKey = fieldseal_agent::keyfile::load(&a.dir).unwrap();
    let device = DeviceId::from_key(&key.verifying_key());
    call(
        http,
        &admin,
        "POST",
        "/api/officers",
        json!({"certificate": "CJ-700",
        "name": "Officer", "valid_from": "2020-01-01", "valid_until": "2099-12-31"}),
    );
    call(
        http,
        &admin,
        "POST",
        "/api/custody",
        json!({"device": device.to_string(),
        "officer": "CJ-700", "from_us": now_us() - 3_600_000_000i64}),
    );
    let (started, stopped) = block(|| record(&a, 4));
    call(
        http,
        &admin,
        "POST",
        "/api/cases",
        json!({"number": CASE, "body": "Test District Bureau", "officers": ["CJ-700"]}),
    );
    call(
        http,
        &admin,
        "POST",
        &format!("/api/cases/{CASE}/activities"),
        json!({"id": "A1", "kind": "seizure", "place": "12 Test Road",
            "start_us": started + 1_500_000, "end_us": stopped - 500_000, "officers": ["CJ-700"]}),
    );

    let file = tmp.path().join("case.tar");
    let out = block(|| server_export(h.path(), &file));
    let printed = ok(&out);
    let ca_fp = field(&printed, "CA key fingerprint:").to_owned();
    // Never overwrites.
    let again = block(|| server_export(h.path(), &file));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwriting"));
    // Any tar reads it.
    let listed = ok(&block(|| {
        Command::new("tar").arg("-tf").arg(&file).output().unwrap()
    }));
    assert!(
        listed.contains("fieldseal-package/manifest.sig"),
        "{listed}"
    );

    let v = block(|| verify(&file));
    let report = String::from_utf8_lossy(&v.stdout).into_owned();
    assert_eq!(v.status.code(), Some(0), "{report}");
    assert_eq!(field(&report, "CA key:"), ca_fp);

    // Cut the last segment out: the tar rewritten without that member.
    let bytes = std::fs::read(&file).unwrap();
    let mut members: Vec<(String, Vec<u8>)> = ustar::members(&bytes)
        .unwrap()
        .into_iter()
        .map(|(n, d)| (n, d.to_vec()))
        .collect();
    let last = members
        .iter()
        .rposition(|(n, _)| package::is_media(n))
        .unwrap();
    let cut_name = members.remove(last).0;
    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, ustar::build(&members, 0).unwrap()).unwrap();
    let v = block(|| verify(&cut));
    let report = String::from_utf8_lossy(&v.stdout).into_owned();
    assert_eq!(v.status.code(), Some(1), "{report}");
    assert!(
        report.contains("member-missing") && report.contains(&cut_name),
        "{report}"
    );
    assert!(report.contains("missing-media"), "{report}");
    h.server.shutdown().await;
}
