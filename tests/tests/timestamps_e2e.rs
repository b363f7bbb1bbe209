//! Frame rates and the 33-bit PTS wrap, end to end: a real agent records the
//! lavfi synthetic camera (`testsrc2` and a tone) at 25 fps and at NTSC's
//! 30000/1001, and across MPEG-TS's 33-bit timestamp wrap (26.5 h into a
//! recording, reached in seconds with the test hook `FIELDSEAL_FIRST_PTS`).
//!
//! Each recording is checked exactly: every segment's span is its frame count
//! times the frame's 90 kHz ticks (3600 at 25 fps, 3003 at 30000/1001), the
//! recording holds exactly the frames of its duration, segments meet end to
//! start, the chain carries the rate as a fraction and no gap, clock or drop
//! event; the agent's verifier and both Python verifiers (`tests/independent`,
//! `tests/second-verifier`) pass it; `ffprobe` reads every segment on its own
//! with the rate and frame count the entry states, and its first timestamp is
//! the entry's modulo 2^33. Frames dropped across the wrap
//! (`FIELDSEAL_DROP_FRAMES`) are told by an exact `frames-dropped` event.
//! Needs the workspace binaries built, `ffprobe` and `python3`
//! (scripts/install-deps.sh installs both).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fieldseal_proto::chainlog;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::{Event, SegmentBody, SignedEntry};
use fieldseal_tests::procs::{self, Agent};
use serde_json::Value;

/// MPEG-TS timestamps are 33 bits: they wrap after 2^33 ticks of 90 kHz.
const WRAP: i64 = 1 << 33;

/// How one recording is made and what it must look like.
struct Case {
    /// The value of `fps` in `config.toml`, as a user writes it.
    fps: &'static str,
    /// The entry's `fps_num`/`fps_den`, and ffprobe's `r_frame_rate`.
    rate: (u32, u32),
    rate_text: &'static str,
    /// 90 kHz ticks per frame.
    ticks: i64,
    /// Frames per 1-second segment (the GOP, rounded), and in the recording.
    gop: u32,
    frames: u32,
    /// Seconds recorded (`record --duration`).
    secs: u32,
    /// `FIELDSEAL_FIRST_PTS`, if set.
    first_pts: Option<i64>,
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

/// The root of the workspace (the Python verifiers live under it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn json_of(what: &str, out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The agent's verifier and both Python verifiers on the device folder
/// (the same layout as a package: `device.pub`, `chain.log`, `media/`).
fn verify_three_ways(a: &Agent) -> [Value; 3] {
    let rust = json_of(
        "fieldseal-agent verify",
        &a.run(&["verify", "--json"], Duration::from_secs(60)),
    );
    let python = |script: &str, args: &[&str]| {
        let out = Command::new("python3")
            .arg(root().join(script))
            .args(args)
            .arg(&a.dir)
            .output()
            .expect("python3 runs");
        json_of(script, &out)
    };
    let independent = python("tests/independent/fieldseal_verify.py", &["--json"]);
    let second = python(
        "tests/second-verifier/second_verify.py",
        &["package", "--json"],
    );
    [rust, independent, second]
}

/// What ffprobe sees in one segment file on its own.
#[derive(Debug)]
struct Probe {
    rate: String,
    frames: u64,
    first_pts: i64,
}

fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=r_frame_rate,nb_read_frames:packet=pts",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stream = &v["streams"][0];
    Probe {
        rate: stream["r_frame_rate"].as_str().unwrap().to_string(),
        frames: stream["nb_read_frames"].as_str().unwrap().parse().unwrap(),
        // The first video packet in the file is the segment's keyframe,
        // the first frame in presentation order too (closed GOP).
        first_pts: v["packets"][0]["pts"].as_i64().unwrap(),
    }
}

/// Records `c` with a fresh agent and checks everything the module doc
/// says. Returns the segments, in order.
fn record_and_check(c: &Case) -> Vec<SegmentBody> {
    let t = tempfile::tempdir().unwrap();
    let env = c
        .first_pts
        .map(|p| ("FIELDSEAL_FIRST_PTS".to_string(), p.to_string()))
        .into_iter()
        .collect();
    let a = Agent::init_with(&t.path().join("device"), &[], env, None);
    let path = a.dir.join("config.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    assert!(cfg.contains("\nfps = 30\n"), "{cfg}");
    std::fs::write(
        &path,
        cfg.replace("\nfps = 30\n", &format!("\nfps = {}\n", c.fps)),
    )
    .unwrap();
    let secs = c.secs.to_string();
    let out = procs::ok(&a.run(
        &["record", "--fast", "--duration", &secs],
        Duration::from_secs(120),
    ));
    assert!(out.contains("0 frames dropped"), "{out}");

    let all = entries(&a.dir);
    for e in &all {
        if let Some(ev) = e.entry.event() {
            // Neither a clock event nor a drop nor anything else: only the
            // agent and the recording starting and stopping.
            assert!(
                matches!(
                    ev,
                    Event::AgentStarted { .. }
                        | Event::RecordingStarted { .. }
                        | Event::RecordingStopped { .. }
                ),
                "seq {}: unexpected event {ev:?}",
                e.seq()
            );
        }
    }
    let segs: Vec<(u64, SegmentBody)> = all
        .iter()
        .filter_map(|e| e.entry.segment().map(|s| (e.seq(), s.clone())))
        .collect();
    assert_eq!(segs.len(), c.frames.div_ceil(c.gop) as usize, "{segs:?}");
    let first = c.first_pts.unwrap_or(90_000);
    assert_eq!(segs[0].1.start_pts, first);
    for (i, (seq, s)) in segs.iter().enumerate() {
        assert_eq!((s.codec.fps_num, s.codec.fps_den), c.rate, "seq {seq}");
        assert_eq!(
            s.end_pts - s.start_pts,
            i64::from(s.video_frames) * c.ticks,
            "seq {seq}: the span is its frames, exactly"
        );
        if i + 1 < segs.len() {
            assert_eq!(s.video_frames, c.gop, "seq {seq}");
            assert_eq!(s.end_pts, segs[i + 1].1.start_pts, "seq {seq}: no gap");
        }
        let p = probe(&a.dir.join(format!("media/{seq:012}.ts")));
        assert_eq!(p.rate, c.rate_text, "seq {seq}");
        assert_eq!(p.frames, u64::from(s.video_frames), "seq {seq}: {p:?}");
        assert_eq!(
            p.first_pts.rem_euclid(WRAP),
            s.start_pts.rem_euclid(WRAP),
            "seq {seq}: the file's PTS is the entry's modulo 2^33"
        );
    }
    let frames: u32 = segs.iter().map(|(_, s)| s.video_frames).sum();
    assert_eq!(frames, c.frames, "every frame of {} s", c.secs);
    let last = &segs.last().unwrap().1;
    assert_eq!(last.end_pts - first, i64::from(c.frames) * c.ticks);

    let seconds = f64::from(c.frames) * c.ticks as f64 / 90_000.0;
    for report in verify_three_ways(&a) {
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["gaps"], serde_json::json!([]), "{report}");
        assert_eq!(report["findings"], serde_json::json!([]), "{report}");
        assert_eq!(report["segments"], segs.len(), "{report}");
        assert_eq!(report["media_verified"], segs.len(), "{report}");
        let media = report["media_seconds"].as_f64().unwrap();
        assert!((media - seconds).abs() < 1e-6, "{media} s, not {seconds}");
    }
    segs.into_iter().map(|(_, s)| s).collect()
}

const FPS_25: Case = Case {
    fps: "25",
    rate: (25, 1),
    rate_text: "25/1",
    ticks: 3600,
    gop: 25,
    frames: 100,
    secs: 4,
    first_pts: None,
};

const NTSC: Case = Case {
    fps: "\"30000/1001\"",
    rate: (30_000, 1001),
    rate_text: "30000/1001",
    ticks: 3003,
    // A 1 s segment is 30 frames (1.001 s); 4 s are 120 frames (4.004 s).
    gop: 30,
    frames: 120,
    secs: 4,
    first_pts: None,
};

#[test]
fn a_25_fps_recording_is_exact() {
    record_and_check(&FPS_25);
}

#[test]
fn an_ntsc_recording_is_exact() {
    record_and_check(&NTSC);
    // The decimal NTSC spelling is the same rate.
    record_and_check(&Case {
        fps: "29.97",
        secs: 2,
        frames: 60,
        ..NTSC
    });
}

/// Starts the camera 2.5 segments before the wrap: the third segment holds
/// it. Its entry's PTS run on past 2^33 while the files carry them modulo
/// 2^33.
#[test]
fn a_recording_across_the_33_bit_pts_wrap_is_continuous() {
    for c in [&NTSC, &FPS_25] {
        let before = 2 * i64::from(c.gop) * c.ticks + i64::from(c.gop / 2) * c.ticks;
        let segs = record_and_check(&Case {
            first_pts: Some(WRAP - before),
            ..*c
        });
        assert!(
            segs[2].start_pts < WRAP && WRAP < segs[2].end_pts,
            "the third segment holds the wrap: {segs:?}"
        );
        assert!(segs.last().unwrap().end_pts > WRAP + i64::from(c.gop) * c.ticks);
    }
}

/// Frames dropped (by the capture's test hook) right across the wrap at
/// 30000/1001: the signed `frames-dropped` event has the exact span, in
/// the entries' timeline (from below 2^33 to above it), and the three
/// verifiers, each comparing the segment's frames with its span at the
/// fractional rate, find nothing wrong.
#[test]
fn frames_dropped_across_the_wrap_are_told_exactly() {
    let t = tempfile::tempdir().unwrap();
    // Frame 42 is the first at or past 2^33; frames 40 ..< 47 are dropped,
    // inside the second 30-frame segment.
    let first = WRAP - 42 * NTSC.ticks;
    let env = vec![
        ("FIELDSEAL_FIRST_PTS".to_string(), first.to_string()),
        ("FIELDSEAL_DROP_FRAMES".to_string(), "40:7".to_string()),
    ];
    let a = Agent::init_with(&t.path().join("device"), &[], env, None);
    let path = a.dir.join("config.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, cfg.replace("\nfps = 30\n", "\nfps = 29.97\n")).unwrap();
    let out = procs::ok(&a.run(
        &["record", "--fast", "--duration", "3"],
        Duration::from_secs(120),
    ));
    assert!(out.contains("7 frames dropped"), "{out}");
    let all = entries(&a.dir);
    let segs: Vec<&SegmentBody> = all.iter().filter_map(|e| e.entry.segment()).collect();
    let drops: Vec<&Event> = all
        .iter()
        .filter_map(|e| e.entry.event())
        .filter(|ev| matches!(ev, Event::FramesDropped { .. }))
        .collect();
    assert_eq!(
        drops,
        [&Event::FramesDropped {
            recording: segs[0].recording,
            part: 1,
            first_pts: first + 40 * NTSC.ticks,
            end_pts: first + 47 * NTSC.ticks,
            frames: 7,
        }]
    );
    assert!(first + 40 * NTSC.ticks < WRAP && WRAP < first + 47 * NTSC.ticks);
    // The clock went on over the hole: the segment (a GOP of 30 frames
    // encoded) spans 37 frames, exactly, and holds 30.
    assert_eq!(segs[1].end_pts - segs[1].start_pts, 37 * NTSC.ticks);
    assert_eq!(segs[1].video_frames, 30);
    for w in segs.windows(2) {
        assert_eq!(w[0].end_pts, w[1].start_pts);
    }
    for report in verify_three_ways(&a) {
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["gaps"], serde_json::json!([]), "{report}");
        assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    }
}
