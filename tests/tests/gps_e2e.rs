//! Positions from a real gpsd: `gpsfake` (Debian `gpsd-clients`, with
//! `gpsd`) replays `tests/gps/walk-tunnel.nmea` — a walk with fixes, 15 s
//! in a tunnel without, then fixes again — while a real agent records the
//! synthetic camera; and an agent whose gpsd is not there at all. Needs the
//! workspace binaries built and gpsd installed (`scripts/install-deps.sh`).
//!
//! What the log holds (its generator, `tests/gps/make_walk.py`, says the
//! same): epochs 08:00:00–08:00:14 with fixes, 08:00:15–08:00:29 without,
//! 08:00:30–08:00:44 with, on 2026-07-01, one a second at 1.4 m/s north-east
//! from 44.0110000 N, 87.3000000 E. gpsfake feeds it 1.7 times faster than
//! that (`-c 0.2`: a sentence every 0.2 s, three per epoch), from when the
//! agent asks for reports; gpsd misses the first few epochs while it
//! recognises the device.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fieldseal_proto::chainlog;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::{Event, NoFix, Position, SignedEntry};
use fieldseal_tests::procs::{self, Agent};

/// 2026-07-01T08:00:00Z, the log's first epoch.
const T0_US: i64 = 1_782_892_800_000_000;

fn entries(dir: &Path) -> Vec<SignedEntry> {
    let bytes = std::fs::read(dir.join("chain.log")).unwrap();
    chainlog::split(&bytes)
        .unwrap()
        .records
        .iter()
        .map(|r| SignedEntry::from_bytes(r).unwrap())
        .collect()
}

/// The position events of the chain, in order.
fn gps_events(all: &[SignedEntry]) -> Vec<Event> {
    all.iter()
        .filter_map(|e| e.entry.event())
        .filter(|e| {
            matches!(
                e,
                Event::FixAcquired { .. }
                    | Event::FixLost { .. }
                    | Event::ReceiverUnreachable { .. }
                    | Event::ReceiverBack
            )
        })
        .cloned()
        .collect()
}

fn segment_positions(all: &[SignedEntry]) -> Vec<(u64, Option<Position>)> {
    all.iter()
        .filter(|e| e.entry.segment().is_some())
        .map(|e| (e.seq(), e.entry.position))
        .collect()
}

/// Turn gps on in the agent's settings, at `port`.
fn gps_at(a: &Agent, port: u16, max_age: u32) {
    let path = a.dir.join("config.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("enabled = false", "enabled = true")
        .replace(
            "gpsd = \"127.0.0.1:2947\"",
            &format!("gpsd = \"127.0.0.1:{port}\""),
        )
        .replace(
            "max_fix_age_seconds = 5",
            &format!("max_fix_age_seconds = {max_age}"),
        );
    assert!(cfg.contains(&format!("127.0.0.1:{port}")), "{cfg}");
    std::fs::write(path, cfg).unwrap();
}

/// gpsfake replaying the walk on `port`, in a process group of its own so
/// that it and its gpsd stop together.
struct Gpsfake(Child);

impl Gpsfake {
    fn start(port: u16, log: &Path) -> Gpsfake {
        use std::os::unix::process::CommandExt;
        let nmea = Path::new(env!("CARGO_MANIFEST_DIR")).join("gps/walk-tunnel.nmea");
        let child = Command::new("gpsfake")
            // Once through the log; a sentence every 0.2 s; this port only.
            .args(["-1", "-q", "-c", "0.2", "-P", &port.to_string()])
            .arg(&nmea)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .process_group(0)
            .spawn()
            .expect("gpsfake runs: install gpsd and gpsd-clients (scripts/install-deps.sh)");
        // Ready when gpsd accepts a connection. A connection that asks for
        // nothing does not start the replay: that waits for the agent's WATCH.
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "gpsd did not come up on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Gpsfake(child)
    }
}

impl Drop for Gpsfake {
    fn drop(&mut self) {
        // SIGTERM to the group: gpsfake stops its gpsd and exits; SIGKILL if not.
        let group = format!("-{}", self.0.id());
        let kill = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                kill("-KILL");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Says {
    Fix,
    No(NoFix),
}

fn says(p: Option<Position>) -> Says {
    match p {
        Some(Position::Fix { .. }) => Says::Fix,
        Some(Position::NoFix(why)) => Says::No(why),
        other => panic!("a segment states {other:?}: never nothing, never a point without time"),
    }
}

#[test]
fn a_walk_through_a_tunnel_replayed_by_gpsfake() {
    let t = tempfile::tempdir().unwrap();
    let port = procs::stable_udp_port();
    let _gpsd = Gpsfake::start(port, &t.path().join("gpsfake.log"));
    let a = Agent::init(&t.path().join("device"));
    gps_at(&a, port, 2);
    procs::ok(&a.run(
        &["record", "--duration", "20", "--case", "CJ-GPS"],
        Duration::from_secs(120),
    ));
    let all = entries(&a.dir);

    // The events: the fix comes, is lost in the tunnel with the time of the
    // last fix before it (08:00:14), comes back with the first after it
    // (08:00:30). A slow machine may record past the end of the log: the
    // fix is then lost again, nothing else.
    let ev = gps_events(&all);
    assert!(ev.len() >= 3, "{ev:?}");
    assert!(matches!(ev[0], Event::FixAcquired { .. }), "{ev:?}");
    assert_eq!(
        ev[1],
        Event::FixLost {
            last_fix_us: T0_US + 14_000_000
        },
        "{ev:?}"
    );
    assert_eq!(
        ev[2],
        Event::FixAcquired {
            fix_us: T0_US + 30_000_000
        },
        "{ev:?}"
    );
    assert!(
        ev[3..].iter().all(|e| matches!(e, Event::FixLost { .. })),
        "{ev:?}"
    );
    assert!(ev.len() <= 4, "one event per change: {ev:?}");

    // The segments: a fix, then no fix (fix-lost) in the tunnel, then a fix
    // again; before the first fix, no-fix-yet. Never a zero or a made-up place.
    let segs = segment_positions(&all);
    let mut runs: Vec<Says> = Vec::new();
    for (_, p) in &segs {
        let s = says(*p);
        if runs.last() != Some(&s) {
            runs.push(s);
        }
    }
    let core: Vec<Says> = runs
        .iter()
        .copied()
        .skip_while(|s| *s == Says::No(NoFix::NotYet))
        .collect();
    assert!(
        core.len() >= 3
            && core[..3] == [Says::Fix, Says::No(NoFix::Lost), Says::Fix]
            && core[3..].iter().all(|s| *s == Says::No(NoFix::Lost)),
        "segments say {runs:?}"
    );
    for (seq, p) in &segs {
        if let Some(Position::Fix { point, fix_us }) = p {
            // A fix from the log: its time is one of the log's epochs with a
            // fix, and its place is where the walk was then (NMEA keeps
            // 1/10000 of a minute: within 2e-6°).
            let t = (fix_us - T0_US) / 1_000_000;
            assert_eq!((fix_us - T0_US) % 1_000_000, 0, "seq {seq}");
            assert!(
                (0..15).contains(&t) || (30..45).contains(&t),
                "seq {seq}: fix at {t} s"
            );
            let lat = 440_110_000 + 90 * t;
            let lon = 873_000_000 + 125 * t;
            assert!(
                (i64::from(point.lat_e7) - lat).abs() <= 20
                    && (i64::from(point.lon_e7) - lon).abs() <= 20,
                "seq {seq}: {point:?} at {t} s, the walk was at {lat}, {lon}"
            );
            // gpsd's eph for HDOP 0.9 is 17.1 m; it has none before the first GSA.
            assert!(
                point.accuracy_m == 18 || point.accuracy_m == u16::MAX,
                "seq {seq}: {point:?}"
            );
        }
    }

    // The verifier shows it: the JSON report lists every segment's position,
    // and the human report says it in words.
    let out = a.run(&["verify", "--json"], Duration::from_secs(60));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let listed = report["positions"].as_array().unwrap();
    assert_eq!(listed.len(), segs.len());
    for (l, (seq, p)) in listed.iter().zip(&segs) {
        assert_eq!(l["seq"], *seq);
        match says(*p) {
            Says::Fix => assert_eq!(l["status"], "fix", "{l}"),
            Says::No(why) => {
                assert_eq!(l["status"], "no-fix", "{l}");
                assert_eq!(l["no_fix"], why.as_str(), "{l}");
                assert!(l["lat_e7"].is_null() && l["lon_e7"].is_null(), "{l}");
            }
        }
    }
    let human = procs::ok(&a.run(&["verify"], Duration::from_secs(60)));
    assert!(human.contains("no fix (fix-lost)"), "{human}");
    assert!(human.contains(" ±18 m, fix 2026-07-01T08:00:"), "{human}");
}

#[test]
fn no_gpsd_at_all_and_no_receiver_configured() {
    let t = tempfile::tempdir().unwrap();
    let a = Agent::init(&t.path().join("device"));

    // As initialised: no receiver. Every segment says so; no position event.
    procs::ok(&a.run(
        &["record", "--fast", "--duration", "2"],
        Duration::from_secs(120),
    ));
    let first = entries(&a.dir);
    let segs = segment_positions(&first);
    assert_eq!(segs.len(), 2);
    assert!(
        segs.iter()
            .all(|(_, p)| *p == Some(Position::NoFix(NoFix::NoReceiver))),
        "{segs:?}"
    );
    assert!(gps_events(&first).is_empty());

    // A receiver configured, but no gpsd there: recording goes on as ever;
    // every segment says gpsd is unreachable, and one event says it once.
    let port = procs::stable_udp_port();
    gps_at(&a, port, 5);
    procs::ok(&a.run(
        &["record", "--fast", "--duration", "3"],
        Duration::from_secs(120),
    ));
    let all = entries(&a.dir);
    let second = &all[first.len()..];
    let names: Vec<&str> = second
        .iter()
        .filter_map(|e| e.entry.event().map(Event::name))
        .collect();
    let segs = segment_positions(second);
    assert_eq!(segs.len(), 3, "recording is unaffected; events {names:?}");
    assert!(
        segs.iter()
            .all(|(_, p)| *p == Some(Position::NoFix(NoFix::ReceiverUnreachable))),
        "{segs:?}"
    );
    assert_eq!(
        gps_events(second),
        [Event::ReceiverUnreachable { last_fix_us: None }]
    );
    // Signed right after the agent started, before recording began.
    assert_eq!(
        names[..3],
        ["agent-started", "receiver-unreachable", "recording-started"],
        "{names:?}"
    );
    let out = a.run(&["verify", "--json"], Duration::from_secs(60));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let last = report["positions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["no_fix"], "receiver-unreachable", "{last}");
}
