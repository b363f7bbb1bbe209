//! What a custodian reads from `status` and `verify`: the case, activity,
//! start and stop of recordings and the events in local time (the `TZ` of
//! the command, a zone other than UTC here), machine values unchanged in
//! `--json`; and the acknowledgements that prove nothing, counted in
//! `status`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fieldseal_agent::acks::KeptAck;
use fieldseal_agent::localtime::format_us_in;
use fieldseal_proto::ack::MediaAck;
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::{Event, SignedEntry};
use jiff::tz::TimeZone;

const BIN: &str = env!("CARGO_BIN_EXE_fieldseal-agent");

/// China Standard Time as a POSIX rule: needs no time zone database.
const TZ_CST: &str = "CST-8";
/// New York's rule: a negative offset, and daylight saving time.
const TZ_NY: &str = "EST5EDT,M3.2.0,M11.1.0";

fn agent(tz: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("TZ", tz)
        .output()
        .expect("run fieldseal-agent")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An initialised folder with a 3 s recording of case CJ-2026-0001.
fn recorded(dir: &Path) {
    let d = dir.to_str().unwrap();
    ok(&agent(TZ_CST, &["init", "--data", d]));
    let cfg = std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .replace("width = 1280", "width = 320")
        .replace("height = 720", "height = 240")
        .replace("segment_seconds = 4", "segment_seconds = 1");
    std::fs::write(dir.join("config.toml"), cfg).unwrap();
    ok(&agent(
        TZ_CST,
        &[
            "record",
            "--data",
            d,
            "--duration",
            "3",
            "--case",
            "CJ-2026-0001",
            "--activity",
            "seizure",
            "--fast",
        ],
    ));
}

fn entries(dir: &Path) -> Vec<SignedEntry> {
    let bytes = std::fs::read(dir.join("chain.log")).unwrap();
    chainlog::split(&bytes)
        .unwrap()
        .records
        .iter()
        .map(|r| SignedEntry::from_bytes(r).unwrap())
        .collect()
}

/// The wall times of the recording's start and stop events.
fn start_stop(dir: &Path) -> (i64, i64) {
    let es = entries(dir);
    let at = |f: &dyn Fn(&Event) -> bool| {
        es.iter()
            .find(|e| e.entry.event().is_some_and(f))
            .expect("event")
            .entry
            .wall_us
    };
    (
        at(&|e| matches!(e, Event::RecordingStarted { .. })),
        at(&|e| matches!(e, Event::RecordingStopped { .. })),
    )
}

#[test]
fn status_and_verify_show_the_recording_in_local_time() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a");
    recorded(&dir);
    let d = dir.to_str().unwrap();
    let (start, stop) = start_stop(&dir);
    for tz in [TZ_CST, TZ_NY] {
        let zone = TimeZone::posix(tz).unwrap();
        let (start_l, stop_l) = (format_us_in(start, &zone), format_us_in(stop, &zone));
        let offset = if tz == TZ_CST { "+08:00" } else { "-0" };
        assert!(start_l.contains(offset), "{start_l}");
        for cmd in ["status", "verify"] {
            let out = ok(&agent(tz, &[cmd, "--data", d]));
            for want in [
                "case CJ-2026-0001, activity seizure".to_owned(),
                format!("started {start_l}, stopped {stop_l} (user-stop)"),
                format!("{start_l}  seq 1  recording-started"),
                format!("{stop_l}  seq 5  recording-stopped: user-stop"),
            ] {
                assert!(
                    out.contains(&want),
                    "{cmd} with TZ={tz}: no {want:?} in\n{out}"
                );
            }
            assert!(
                !out.contains(&start.to_string()),
                "{cmd}: no µs since the epoch for people\n{out}"
            );
        }
    }
    // --json keeps machine values: µs since the epoch, whatever TZ says.
    let json = |tz: &str, cmd: &str| -> serde_json::Value {
        serde_json::from_slice(&agent(tz, &[cmd, "--json", "--data", d]).stdout).unwrap()
    };
    let status = json(TZ_CST, "status");
    let rec = &status["recent"]["recordings"][0];
    assert_eq!(rec["started_us"], start, "{status}");
    assert_eq!(rec["stopped_us"], stop, "{status}");
    assert_eq!(rec["case"], "CJ-2026-0001");
    assert_eq!(json(TZ_NY, "status")["recent"], status["recent"]);
    // verify's JSON is the report of FORMAT.md §5, nothing added.
    let report = json(TZ_CST, "verify");
    let mut keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert!(
        !keys.contains(&"recent") && !keys.contains(&"recordings"),
        "{keys:?}"
    );
    assert_eq!(json(TZ_NY, "verify"), report);
}

/// Append to `acks.log` an acknowledgement of the first segment signed by
/// a key that is not the server's, as if written behind the agent's back.
fn forge_ack(dir: &Path) {
    let seg = entries(dir)
        .into_iter()
        .find(|e| e.entry.segment().is_some())
        .unwrap();
    let s = seg.entry.segment().unwrap();
    let forger = ed25519_dalek::SigningKey::from_bytes(&[66; 32]);
    let ack = MediaAck::sign(
        seg.entry.device,
        seg.seq(),
        (s.media_sha256, s.media_len),
        1,
        &forger,
    );
    let k = KeptAck {
        ack,
        kept_run_us: 0,
        kept_wall_us: 0,
    };
    let mut rec = Vec::new();
    chainlog::put_record(&mut rec, &k.to_record());
    std::fs::write(dir.join("acks.log"), rec).unwrap();
}

#[test]
fn status_counts_acknowledgements_that_prove_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a");
    recorded(&dir);
    let d = dir.to_str().unwrap();
    let out = ok(&agent(TZ_CST, &["status", "--data", d]));
    assert!(
        out.contains("acks:  0 kept as proof of hand-over\n"),
        "{out}"
    );
    assert!(!out.contains("ALARM"), "{out}");
    forge_ack(&dir);

    // Not running: the command reads the folder.
    let out = ok(&agent(TZ_CST, &["status", "--data", d]));
    assert!(
        out.contains("ALARM 1 in acks.log prove nothing (bad-ack"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&agent(TZ_CST, &["status", "--json", "--data", d]).stdout).unwrap();
    assert_eq!(v["bad_acks"], 1, "{v}");
    let verify = agent(TZ_CST, &["verify", "--data", d]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("bad-ack"));

    // Running: the recorder answers status with the same count.
    let log = t.path().join("run.log");
    let mut child = Command::new(BIN)
        .args(["run", "--data", d])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // A hang guard, not a measurement: on a loaded machine the camera may
    // take a while to start.
    let deadline = Instant::now() + Duration::from_secs(180);
    let v = loop {
        let out = agent(TZ_CST, &["status", "--json", "--data", d]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["running"] == true {
            break v;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "run exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the recorder did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["bad_acks"], 1, "{v}");
    assert_eq!(v["recent"]["recordings"][0]["case"], "CJ-2026-0001", "{v}");
    let out = ok(&agent(TZ_CST, &["status", "--data", d]));
    assert!(out.contains("ALARM 1 in acks.log prove nothing"), "{out}");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
