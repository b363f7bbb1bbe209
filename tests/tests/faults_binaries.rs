//! Fault scenarios that need the real agent binary in a process of its own:
//! a jumping wall clock (libfaketime), a full disk (a small tmpfs), bit rot.
//! The server runs in this process (its index is then at hand for the
//! invariant check). Seeded like tests/faults.rs; `FIELDSEAL_SEED=N` replays.

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_proto::entry::Event;
use fieldseal_proto::identity::DeviceId;
use fieldseal_server::datadir::DataDir;
use fieldseal_tests::faults::{self, iterations, AgentView, Scenario, ServerView, Verdict};
use fieldseal_tests::procs::{self, ok, Agent};
use fieldseal_tests::Harness;

const MINUTE: Duration = Duration::from_secs(60);

/// The device key of an agent data folder.
fn agent_key(dir: &Path) -> VerifyingKey {
    let k: SigningKey = fieldseal_agent::keyfile::load(dir).expect("device key");
    k.verifying_key()
}

fn check_agent(h: &Harness, a: &Agent, durable: &faults::Durable, panics: u64) -> Verdict {
    let key = agent_key(&a.dir);
    let agent = AgentView::from_dir(&a.dir).unwrap();
    let mut all = durable.clone();
    agent.add_to(&mut all);
    let server = ServerView::read(
        h.path(),
        &h.server.shared.db,
        h.server.shared.blobs.clone(),
        DeviceId::from_key(&key),
    )
    .unwrap();
    faults::check(&key, &all, &agent, &server, panics)
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn events(a: &Agent) -> Vec<&'static str> {
    AgentView::from_dir(&a.dir)
        .unwrap()
        .entries
        .values()
        .filter_map(|e| e.entry.event().map(Event::name))
        .collect()
}

/// The agent's wall clock jumps back and forward by hours while it records
/// (libfaketime with an offset file it re-reads): each jump is a signed
/// clock-adjusted event, the chain verifies, and it all syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumps_are_signed_and_the_chain_syncs() {
    let Some(lib) = procs::libfaketime() else {
        eprintln!("SKIPPED: libfaketime is not installed (Debian package faketime; scripts/install-deps.sh installs it)");
        return;
    };
    let sc = Scenario::new("clock_jumps_are_signed_and_the_chain_syncs");
    let panics = faults::panics();
    let h = Harness::start().await.unwrap();
    let t = tempfile::tempdir().unwrap();
    let mut a = block(|| Agent::init(&t.path().join("agent")));
    let token = h.token("clock", 3600).unwrap();
    block(|| a.enroll(&h.server_addr(), &token, &DataDir::new(h.path()).ca_cert()));
    let offset_file = t.path().join("faketime");
    std::fs::write(&offset_file, "+0").unwrap();
    a.env = vec![
        ("LD_PRELOAD".into(), lib.to_string_lossy().into_owned()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            offset_file.to_string_lossy().into_owned(),
        ),
        // Re-read the offset file at most once a second.
        ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        // Only the wall clock jumps; the monotonic clock runs on, as on a
        // device whose clock is set.
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    let jumps = iterations("FIELDSEAL_CLOCK_JUMPS", 3);
    let mut r = sc.rng(4);
    let secs = 3 * jumps + 4;
    let child = a
        .command(&["record", "--duration", &secs.to_string()])
        .spawn()
        .unwrap();
    let mut offsets = Vec::new();
    let mut current = 0i64;
    for _ in 0..jumps {
        // At least 3 s apart: the offset file is re-read every second and
        // the agent compares its clocks on every tick.
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let mut hours = 0;
        while hours == 0 || hours == current {
            hours = i64::try_from(r.next_u64() % 13).unwrap() - 6; // −6 … +6 h
        }
        std::fs::write(&offset_file, format!("{hours:+}h")).unwrap();
        offsets.push(hours);
        current = hours;
    }
    eprintln!("offsets (h): {offsets:?}");
    let out = block(|| procs::wait_limited(child, 2 * MINUTE, "record"));
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!faults::log_panicked(&log), "{log}");
    a.env.clear();
    let adjusted = events(&a)
        .iter()
        .filter(|e| **e == "clock-adjusted")
        .count();
    assert_eq!(
        adjusted,
        offsets.len(),
        "one signed clock-adjusted event per jump: {:?}",
        events(&a)
    );
    ok(&block(|| a.run(&["verify", "--json"], MINUTE)));
    ok(&block(|| a.run(&["sync", "--until-drained"], 2 * MINUTE)));
    let v = check_agent(&h, &a, &faults::Durable::default(), panics);
    sc.record(&v, jumps, &[]);
    v.assert_ok();
    h.server.shutdown().await;
}

/// The agent's disk fills up (a small tmpfs under its data folder, well
/// below its configured limit, so the kernel's ENOSPC comes first): the
/// agent stops without panicking, everything it had made durable stays
/// intact, and once there is room again it recovers, verifies and syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_disk_full_loses_nothing_durable() {
    let sc = Scenario::new("agent_disk_full_loses_nothing_durable");
    let panics = faults::panics();
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("agent");
    let mut r = sc.rng(5);
    // 1–2 MiB: room for the key, config and index, and a few dozen segments.
    let size = (1 << 20) + r.next_u64() % (1 << 20);
    let fs = match procs::Tmpfs::mount(&mnt, size) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED agent_disk_full_loses_nothing_durable: cannot mount a tmpfs: {why}");
            return;
        }
    };
    let h = Harness::start().await.unwrap();
    let a = block(|| Agent::init(&mnt));
    eprintln!("tmpfs of {size} bytes, {} used after init", fs.used());
    // Not enrolled while the disk fills: nothing can leave the device.
    let out = block(|| a.run(&["record", "--fast", "--duration", "600"], 3 * MINUTE));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "record on a full disk: {:?}\n{}",
        out.status,
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(!faults::log_panicked(&log), "the agent panicked:\n{log}");
    assert!(
        fs.used() + 64 * 1024 > size,
        "the disk did fill up ({} of {size})",
        fs.used()
    );
    let signed_full = events(&a).contains(&"storage-full");
    eprintln!(
        "the full disk {}",
        if signed_full {
            "was signed as storage-full"
        } else {
            "ended the run with an error (the chain log could not take the event either)"
        }
    );
    let before = AgentView::from_dir(&a.dir).unwrap();
    let durable = before.durable();
    assert!(
        durable.media.len() >= 3,
        "some segments were recorded first"
    );
    // Room again: the agent recovers, verifies and syncs everything.
    fs.resize(64 << 20).unwrap();
    ok(&block(|| {
        a.run(&["record", "--fast", "--duration", "1"], MINUTE)
    }));
    let after = events(&a);
    eprintln!("events: {after:?}");
    ok(&block(|| a.run(&["verify", "--json"], MINUTE)));
    let token = h.token("disk-full", 3600).unwrap();
    block(|| a.enroll(&h.server_addr(), &token, &DataDir::new(h.path()).ca_cert()));
    ok(&block(|| a.run(&["sync", "--until-drained"], 2 * MINUTE)));
    let v = check_agent(&h, &a, &durable, panics);
    sc.record(
        &v,
        1,
        &[
            ("durable_segments_at_full", durable.media.len().to_string()),
            ("storage_full_signed", signed_full.to_string()),
        ],
    );
    v.assert_ok();
    assert_eq!(
        v.acknowledged,
        AgentView::from_dir(&a.dir).unwrap().entries.len() as u64
    );
    h.server.shutdown().await;
    drop(fs);
}

/// SIGKILL of the agent at seeded random moments while it records and syncs
/// to the server (and, every few kills, at one of its named crash points):
/// everything durable before each kill survives, every restart signs the gap,
/// and at the end the chain verifies and everything is on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_kills_while_recording_and_syncing_lose_nothing() {
    const POINTS: [&str; 4] = [
        "segment-half-written",
        "segment-before-rename",
        "segment-after-rename",
        "entry-before-fsync",
    ];
    let sc = Scenario::new("agent_kills_while_recording_and_syncing_lose_nothing");
    let panics = faults::panics();
    let kills = iterations("FIELDSEAL_AGENT_KILLS", 6);
    let h = Harness::start().await.unwrap();
    let t = tempfile::tempdir().unwrap();
    let mut a = block(|| Agent::init(&t.path().join("agent")));
    let token = h.token("kills", 3600).unwrap();
    block(|| a.enroll(&h.server_addr(), &token, &DataDir::new(h.path()).ca_cert()));
    let mut r = sc.rng(10);
    let mut durable = faults::Durable::default();
    let mut peak_kb = 0u64;
    let (mut random_kills, mut point_kills) = (0u64, 0u64);
    for i in 0..kills {
        let point =
            (r.next_u64() % 4 == 0).then(|| POINTS[usize::try_from(r.next_u64() % 4).unwrap()]);
        a.env.clear();
        if let Some(p) = point {
            // The first or second time through: a crash of a running recorder.
            a.env.push((
                "FIELDSEAL_CRASH_AT".into(),
                format!("{p}:{}", 1 + r.next_u64() % 2),
            ));
        }
        let mut child = a
            .command(&["record", "--fast", "--duration", "24h"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let wait = Duration::from_millis(300 + r.next_u64() % 2500);
        let deadline = std::time::Instant::now() + wait;
        let mut exited = None;
        while std::time::Instant::now() < deadline {
            if let Some(s) = child.try_wait().unwrap() {
                exited = Some(s);
                break;
            }
            if let Some(kb) = faults::peak_rss_kb(pid) {
                peak_kb = peak_kb.max(kb);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // What is durable now must survive the kill.
        AgentView::from_dir(&a.dir).unwrap().add_to(&mut durable);
        match exited {
            Some(s) => {
                assert!(point.is_some(), "kill {i}: the agent exited by itself: {s}");
                point_kills += 1;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                random_kills += 1;
            }
        }
        let _ = child.wait();
        let log = std::fs::read_to_string(t.path().join("agent.log")).unwrap_or_default();
        assert!(
            !faults::log_panicked(&log),
            "kill {i}: the agent panicked:\n{log}"
        );
        let now = AgentView::from_dir(&a.dir).unwrap();
        for (seq, hash) in &durable.entries {
            assert_eq!(
                now.entries.get(seq).map(|e| e.hash()),
                Some(*hash),
                "kill {i}: entry {seq} survived unchanged"
            );
        }
    }
    a.env.clear();
    ok(&block(|| {
        a.run(&["record", "--fast", "--duration", "1"], MINUTE)
    }));
    let ev = events(&a);
    let recovered = ev.iter().filter(|e| **e == "power-loss-recovered").count() as u64;
    eprintln!("{random_kills} random kills, {point_kills} at crash points; {recovered} power-loss-recovered events; peak RSS {} MiB", peak_kb / 1024);
    ok(&block(|| a.run(&["verify", "--json"], MINUTE)));
    ok(&block(|| a.run(&["sync", "--until-drained"], 3 * MINUTE)));
    let mut v = check_agent(&h, &a, &durable, panics);
    faults::check_rss(&mut v, "agent", Some(peak_kb), 400);
    sc.record(
        &v,
        kills,
        &[
            ("random_kills", random_kills.to_string()),
            ("point_kills", point_kills.to_string()),
            ("agent_peak_rss_mib", (peak_kb / 1024).to_string()),
        ],
    );
    v.assert_ok();
    h.server.shutdown().await;
}
