//! Power cuts of the agent's and the server's whole data folders (issue 13),
//! on the power-cut filesystem of `fieldseal_tests::lazyfs`: written data is
//! kept in memory until its file is fsynced and a new name until its folder
//! is fsynced, and a cut loses the rest (clean), or lets one file's unsynced
//! writes through with the last one torn (torn).
//!
//! Cuts come at exact operations (the n-th write or fsync of a file, counted
//! in a first run: every one of them for `init`, a seeded sample elsewhere)
//! and at random moments while the real binaries run. A cut kills every
//! process using the folder (SIGKILL), drops what was not durable, mounts
//! the folder again and restarts. After each one:
//!
//! - the agent: `init` can be run again and completes the folder; `enroll`
//!   can be run again; `record` starts and records again, and its first new
//!   entry after a cut that found it running is one signed
//!   power-loss-recovered event (never two for one cut); nothing ever seen
//!   durable is lost; at the end the chain verifies with `fieldseal-agent
//!   verify` and `fieldseal-verify`, everything syncs, and
//!   `fieldseal_tests::faults::check` holds;
//! - the server: `init` can be run again and `run` starts on what it leaves;
//!   `run` starts after every cut; every receipt and upload acknowledgement
//!   the devices hold is still in the archive, with its leaf in the log;
//!   every checkpoint published before the cut is consistent with one after.
//!
//! `FIELDSEAL_POWER_CUTS=N` sets the random and sampled cuts of each
//! scenario (`make soak` sets it large); `FIELDSEAL_SEED=N` replays a run's
//! choices. Needs `/dev/fuse` and root (skipped loudly otherwise) and the
//! workspace binaries built.

#[path = "powercut/server.rs"]
mod powercut_server;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_proto::entry::{Event, PTS_HZ};
use fieldseal_proto::identity::DeviceId;
use fieldseal_server::datadir::DataDir;
use fieldseal_tests::faults::{self, iterations, AgentView, Durable, Scenario, ServerView};
use fieldseal_tests::lazyfs::{CutAt, LazyFs};
use fieldseal_tests::powercut::{
    exact_cuts, loss_window_ms, merge_counts, one_exact_cut, read_capture_clock, write_durable,
    Tally,
};
use fieldseal_tests::procs::{self, ok, Agent};
use fieldseal_tests::Harness;

const MINUTE: Duration = Duration::from_secs(60);

/// Random and sampled exact cuts per scenario in `make test`.
fn cuts() -> u64 {
    iterations("FIELDSEAL_POWER_CUTS", 6)
}

/// Mount a power-cut filesystem in `t`, or say loudly why not.
fn mount(t: &Path, name: &str) -> Option<LazyFs> {
    match LazyFs::mount(&t.join(name), &t.join(format!("{name}.disk"))) {
        Ok(fs) => Some(fs),
        Err(why) => {
            eprintln!("SKIPPED: the power-cut filesystem cannot be mounted: {why}");
            None
        }
    }
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn agent_key(dir: &Path) -> VerifyingKey {
    let k: SigningKey = fieldseal_agent::keyfile::load(dir).expect("device key");
    k.verifying_key()
}

fn power_loss_events(v: &AgentView) -> Vec<u64> {
    v.entries
        .iter()
        .filter(|(_, e)| matches!(e.entry.event(), Some(Event::PowerLossRecovered { .. })))
        .map(|(s, _)| *s)
        .collect()
}

thread_local! {
    /// The operations counted by the last run before its cut.
    static COUNTS: std::cell::RefCell<std::collections::BTreeMap<(String, fieldseal_tests::lazyfs::Op), u64>> =
        std::cell::RefCell::default();
}

thread_local! {
    /// The capture clock read when the power went in the last
    /// [`run_and_cut`] given a clock file.
    static CLOCK_AT_CUT: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// Start `cmd` with the cut armed at `cut`, wait for the power to go (or
/// the command to end, or `limit`), and cut. Returns what the cut was and
/// whether the armed operation was reached. With `clock`, the capture clock
/// the run reports there is read as the power goes (into [`CLOCK_AT_CUT`]).
fn run_and_cut(
    fs: &mut LazyFs,
    mut child: Child,
    cut: Option<&CutAt>,
    limit: Duration,
    clock: Option<&Path>,
) -> (String, bool, Option<std::process::ExitStatus>) {
    let deadline = std::time::Instant::now() + limit;
    let mut exited = None;
    while std::time::Instant::now() < deadline && fs.off().is_none() {
        if let Some(s) = child.try_wait().expect("wait") {
            exited = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let reached = cut.is_some() && fs.off().is_some();
    if let Some(path) = clock {
        if !reached {
            fs.power_off(None);
        }
        CLOCK_AT_CUT.with(|c| c.set(read_capture_clock(path)));
    }
    COUNTS.with(|c| *c.borrow_mut() = fs.counts());
    let what = fs.cut(&mut [&mut child]).expect("remount");
    (what, reached, exited)
}

/// Init, cut at every write and fsync it makes (a seeded sample of them if
/// there are more than the budget), clean and torn: running `init` again
/// must complete the folder (the key kept if it survived), and what it
/// leaves must be a whole, private agent folder.
fn agent_init_cuts(fs: &mut LazyFs, sc: &Scenario, tally: &mut Tally) {
    let dir = fs.path().join("agent");
    let a = Agent {
        dir: dir.clone(),
        env: Vec::new(),
    };
    fs.reset_counts();
    ok(&a.run(&["init"], MINUTE));
    let counts = fs.counts();
    let budget = usize::try_from(iterations("FIELDSEAL_POWER_CUTS", 40).max(40)).unwrap_or(40);
    let cuts = exact_cuts(&counts, "agent", budget, &mut sc.rng(21));
    eprintln!(
        "agent init: {} operations counted, {} cuts",
        counts.values().sum::<u64>(),
        cuts.len()
    );
    for cut in cuts {
        wipe(&dir);
        fs.arm(cut.clone());
        let child = a.command(&["init"]).spawn().expect("spawn init");
        let (what, reached, _) = run_and_cut(fs, child, Some(&cut), MINUTE, None);
        if !reached {
            // The operations of a run are not the same every time (sled
            // writes in the background): this one ended before the n-th.
            eprintln!("init ended before {cut:?}: not a cut");
            tally.unreached += 1;
            continue;
        }
        tally.add(true, cut.torn);
        let out = a.run(&["init"], MINUTE);
        assert!(
            out.status.success(),
            "after a cut of init ({what}), init again failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = fieldseal_agent::keyfile::load(&dir)
            .unwrap_or_else(|e| panic!("after {what} and init again: {e}"));
        let public = std::fs::read_to_string(dir.join(fieldseal_agent::keyfile::PUB_FILE))
            .unwrap_or_default();
        assert_eq!(
            public.trim(),
            hex::encode(key.verifying_key().as_bytes()),
            "after {what} and init again: device.pub is not the key's"
        );
        let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
        assert_eq!(
            cfg,
            fieldseal_agent::config::DEFAULT_CONFIG,
            "after {what} and init again: config.toml"
        );
    }
    wipe(&dir);
}

/// Remove a data folder from the model, durably.
fn wipe(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove");
    }
    std::fs::File::open(dir.parent().expect("mount"))
        .and_then(|f| f.sync_all())
        .expect("fsync mount");
}

/// Segment length of the recording runs, the default's (`Agent::init`
/// makes it 1 s): the loss window of a cut is measured against it.
const SEGMENT_MS: u64 = 4000;

/// A small, quick camera on the model, made durable.
fn quick_agent(dir: &Path) -> Agent {
    let a = Agent::init(dir);
    let cfg = std::fs::read_to_string(dir.join("config.toml"))
        .expect("config")
        .replace(
            "segment_seconds = 1",
            &format!("segment_seconds = {}", SEGMENT_MS / 1000),
        );
    write_durable(&dir.join("config.toml"), cfg.as_bytes());
    a
}

/// Enrolment cut at a sample of its operations, each on a new device
/// folder: enrolling again with a new token must work, or, where the first
/// enrolment reached the server and the cut lost the certificate it issued,
/// the server must refuse the key and a re-enrolment token for the device
/// (`device reenrol`) must work. Returns how many times that way was taken.
fn agent_enroll_cuts(fs: &mut LazyFs, h: &Harness, sc: &Scenario, tally: &mut Tally) -> u64 {
    let dir = fs.path().join("agent");
    let ca = DataDir::new(h.path()).ca_cert();
    let ca = ca.to_str().expect("utf-8").to_string();
    let enroll = |a: &Agent, token: &str| {
        a.command(&[
            "enroll",
            "--server",
            &h.server_addr(),
            "--token",
            token,
            "--ca",
            &ca,
        ])
        .spawn()
        .expect("enroll")
    };
    let a = quick_agent(&dir);
    fs.reset_counts();
    let token = h.token("count", 3600).expect("token");
    ok(&procs::wait_limited(enroll(&a, &token), MINUTE, "enroll"));
    let counts = fs.counts();
    let n = usize::try_from(cuts()).unwrap_or(6).min(8);
    let cuts = exact_cuts(&counts, "agent", n, &mut sc.rng(22));
    eprintln!(
        "agent enroll: {} operations counted, {} cuts",
        counts.values().sum::<u64>(),
        cuts.len()
    );
    let mut refused = 0;
    for cut in cuts {
        wipe(&dir);
        let a = quick_agent(&dir);
        fs.arm(cut.clone());
        let token = h.token("cut", 3600).expect("token");
        let (what, reached, _) = run_and_cut(fs, enroll(&a, &token), Some(&cut), MINUTE, None);
        if !reached {
            // The operations of a run are not the same every time (sled
            // writes in the background): this one ended before the n-th.
            eprintln!("enroll ended before {cut:?}: not a cut");
            tally.unreached += 1;
            continue;
        }
        tally.add(true, cut.torn);
        let token = h.token("again", 3600).expect("token");
        let out = procs::wait_limited(enroll(&a, &token), MINUTE, "enroll");
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && err.contains("already enrolled") {
            // The cut kept the server's enrolment but lost the device's
            // certificate: the way back is a re-enrolment token for it.
            eprintln!("after a cut of enroll ({what}) the key is enrolled already: re-enrolling");
            let id = DeviceId::from_key(&agent_key(&dir));
            let token = h.reenrol_token(id, 3600).expect("reenrol token");
            let out = procs::wait_limited(enroll(&a, &token), MINUTE, "enroll");
            assert!(
                out.status.success(),
                "after a cut of enroll ({what}), re-enrolment failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            refused += 1;
            continue;
        }
        assert!(
            out.status.success(),
            "after a cut of enroll ({what}), enroll again failed: {err}"
        );
    }
    wipe(&dir);
    refused
}

/// The agent's whole data folder on the power-cut filesystem: init and
/// enrolment cut at their exact operations, then recording and syncing cut
/// at random moments and at exact writes and fsyncs of its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_folder_power_cuts_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let Some(mut fs) = mount(t.path(), "mnt") else {
        return;
    };
    let sc = Scenario::new("agent_folder_power_cuts_lose_nothing");
    let panics = faults::panics();
    let mut tally = Tally::default();
    block(|| agent_init_cuts(&mut fs, &sc, &mut tally));
    // Each enrolment cut costs up to three attempts from one address within
    // seconds (the cut one, a new token, a re-enrolment): more than the
    // flood limit's 20 a minute allows.
    let h = Harness::start_configured(|c| {
        assert!(c.contains("enrolments_per_address_per_minute = 20"), "{c}");
        c.replace(
            "enrolments_per_address_per_minute = 20",
            "enrolments_per_address_per_minute = 1000",
        )
    })
    .await
    .unwrap();
    let dir = fs.path().join("agent");
    let refused = block(|| agent_enroll_cuts(&mut fs, &h, &sc, &mut tally));
    let a = block(|| quick_agent(&dir));
    let token = h.token("device", 3600).unwrap();
    block(|| a.enroll(&h.server_addr(), &token, &DataDir::new(h.path()).ca_cert()));

    let mut r = sc.rng(23);
    let mut durable = Durable::default();
    let mut seen = std::collections::BTreeMap::new();
    let mut before = AgentView::from_dir(&dir).unwrap();
    let mut marker = dir.join("running").exists();
    let mut expected_events = 0u64;
    let record_cuts = cuts();
    // Outside the cut folder: the capture clock of each run (fault.rs).
    let clock = t.path().join("capture-clock");
    for i in 0..record_cuts {
        let exact = if i > 0 && r.next_u64() % 2 == 0 {
            one_exact_cut(&seen, "agent", &mut r)
        } else {
            None
        };
        if let Some(c) = &exact {
            fs.arm(c.clone());
        } else {
            fs.reset_counts();
        }
        let _ = std::fs::remove_file(&clock);
        // Far more media than any run makes before its cut: encoding runs
        // at a few hundred times real time on a quiet machine, and a run
        // that ends by itself is a failure of the scenario.
        let child = block(|| {
            a.command(&["record", "--fast", "--duration", "24h"])
                .env("FIELDSEAL_CAPTURE_CLOCK", &clock)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        });
        let wait = Duration::from_millis(500 + r.next_u64() % 3000);
        let torn = r.next_u64() % 2 == 0;
        let (what, reached, exited) = if exact.is_some() {
            block(|| {
                run_and_cut(
                    &mut fs,
                    child,
                    exact.as_ref(),
                    Duration::from_secs(20),
                    Some(&clock),
                )
            })
        } else {
            let mut child = child;
            tokio::time::sleep(wait).await;
            let exited = child.try_wait().unwrap();
            fs.power_off(torn.then(|| r.next_u64()));
            CLOCK_AT_CUT.with(|c| c.set(read_capture_clock(&clock)));
            COUNTS.with(|c| *c.borrow_mut() = fs.counts());
            let what = block(|| fs.cut(&mut [&mut child])).unwrap();
            (what, false, exited)
        };
        assert!(
            exited.is_none(),
            "cut {i}: record exited by itself: {exited:?}"
        );
        COUNTS.with(|c| merge_counts(&mut seen, &c.borrow()));
        if exact.is_some() && !reached {
            tally.unreached += 1;
        }
        tally.add(reached, what.starts_with("torn"));
        eprintln!("cut {i}: {what}");
        // The disk after the cut: everything on it was durable.
        let now = AgentView::from_dir(&dir).unwrap();
        now.add_to(&mut durable);
        // The media this cut lost: the capture clock as the power went
        // against the end of this run's recording that survived it.
        if let Some(at) = CLOCK_AT_CUT.with(std::cell::Cell::take) {
            let recording = now
                .entries
                .iter()
                .filter(|(s, _)| !before.entries.contains_key(s))
                .find_map(|(_, e)| match e.entry.event() {
                    Some(Event::RecordingStarted { recording, .. }) => Some(*recording),
                    _ => None,
                });
            let lost = loss_window_ms(&dir, &now.entries, recording, at, PTS_HZ);
            eprintln!("cut {i}: the capture clock was at {at}; {lost} ms of media lost");
            tally.loss_ms.push(lost);
        }
        // A run that found the recorder's marker (the last one was cut while
        // running) signs one power-loss event, after what it salvaged; if it
        // was cut before that event was durable, the marker is still there
        // and the next run owes it. Never two for one cut, none without one.
        let new = power_loss_events(&now)
            .into_iter()
            .filter(|s| !before.entries.contains_key(s))
            .count() as u64;
        assert!(
            new <= 1,
            "cut {i}: {new} power-loss events signed by one run"
        );
        assert!(
            new == 0 || marker,
            "cut {i}: a power-loss event with no cut before it"
        );
        expected_events += new;
        for (seq, e) in &before.entries {
            if let Some(n) = now.entries.get(seq) {
                assert_eq!(n.hash(), e.hash(), "cut {i}: entry {seq} changed");
            }
        }
        marker = dir.join("running").exists();
        before = now;
    }
    // A last run after the last cut: it signs the last cut's event.
    let out = block(|| a.run(&["record", "--fast", "--duration", "1"], MINUTE));
    ok(&out);
    if marker {
        expected_events += 1;
    }
    let end = AgentView::from_dir(&dir).unwrap();
    let events = power_loss_events(&end).len() as u64;
    eprintln!(
        "{} cuts ({tally:?}); {events} power-loss events",
        tally.cuts()
    );
    assert_eq!(events, expected_events, "power-loss events signed and owed");
    ok(&block(|| a.run(&["verify", "--json"], MINUTE)));
    let v = block(|| {
        procs::wait_limited(
            std::process::Command::new(procs::bin("fieldseal-verify"))
                .arg(&dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            MINUTE,
            "fieldseal-verify",
        )
    });
    ok(&v);
    ok(&block(|| a.run(&["sync", "--until-drained"], 3 * MINUTE)));
    let key = agent_key(&dir);
    let agent = AgentView::from_dir(&dir).unwrap();
    agent.add_to(&mut durable);
    let server = ServerView::read(
        h.path(),
        &h.server.shared.db,
        h.server.shared.blobs.clone(),
        DeviceId::from_key(&key),
    )
    .unwrap();
    let verdict = faults::check(&key, &durable, &agent, &server, panics);
    let mut extras = tally.extras("agent");
    extras.push(("reenrolled_after_cut", refused.to_string()));
    sc.record(&verdict, tally.cuts(), &extras);
    verdict.assert_ok();
    // What a cut loses is the tail of the segment being encoded, not the
    // segment: the media made durable as it is produced survives (the
    // bound is generous: the clock is read a moment after the power goes).
    let worst = tally.loss_ms.iter().max().copied().unwrap_or(0);
    assert!(
        worst < SEGMENT_MS / 2,
        "a cut lost {worst} ms of media, with {SEGMENT_MS} ms segments ({:?})",
        tally.loss_ms
    );
    assert!(
        events <= record_cuts && !dir.join("running").exists(),
        "{events} power-loss events for {record_cuts} cuts"
    );
    h.server.shutdown().await;
}

/// The server's whole data folder on the power-cut filesystem.
#[test]
fn server_folder_power_cuts_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let Some(mut fs) = mount(t.path(), "smnt") else {
        return;
    };
    powercut_server::run(&mut fs, cuts());
}
