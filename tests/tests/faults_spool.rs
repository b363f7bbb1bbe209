//! Power loss under the agent's spool, on the in-memory twin of its
//! filesystem (`fieldseal_agent::spoolfs::MemFs`): a crash at every single
//! file operation of a seeded workload, with the unsynced bytes dropped and
//! the last write torn; a failed fsync; a full disk. After each, the spool
//! reopens, every entry an append returned `Ok` for is there unchanged with
//! its media, and the chain verifies with every gap explained. And a device
//! key (a token) that stops signing midway. Every other segment is streamed
//! first, as the capture streams the segment being encoded (issue 15), so
//! the crashes fall in its partial file and durable points as well.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fieldseal_agent::capture::live::LiveProgress;
use fieldseal_agent::capture::StreamedFile;
use fieldseal_agent::clock::Clock;
use fieldseal_agent::spool::{media_name, SegmentDraft, Spool, SpoolError};
use fieldseal_agent::spoolfs::{Fault, MemFs, SpoolFs};
use fieldseal_proto::chain::{verify_chain, MediaObservation, VerifyOptions};
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::{
    segment_flags, CodecParams, EntryError, Event, NoFix, Position, SignedEntry,
};
use fieldseal_proto::identity::{sha256, Hash32, SignError, Signer};
use fieldseal_tests::faults::{iterations, Scenario};
use fieldseal_tests::{key, SplitMix};

/// The wall clock of every run: it goes on across reboots (power losses).
static WALL: AtomicU64 = AtomicU64::new(0);

/// A clock whose monotonic part restarts with each agent run (as it does on
/// a device) and moves 1 s per reading, with the wall clock moving alike:
/// deterministic, never backwards.
#[derive(Debug, Default)]
struct TickClock(AtomicU64);

impl Clock for TickClock {
    fn wall_us(&self) -> i64 {
        1_782_896_400_000_000 + i64::try_from(WALL.load(Ordering::Relaxed)).unwrap()
    }
    fn mono_us(&self) -> u64 {
        WALL.fetch_add(1_000_000, Ordering::Relaxed);
        self.0.fetch_add(1_000_000, Ordering::Relaxed)
    }
    fn mono_of(&self, _t: Instant) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn draft(recording: [u8; 16], part: u32, start_mono_us: u64) -> SegmentDraft {
    SegmentDraft {
        recording,
        part,
        start_pts: i64::from(part) * 90_000,
        end_pts: i64::from(part + 1) * 90_000,
        start_mono_us,
        video_frames: 30,
        audio_samples: 48_000,
        codec: CodecParams {
            video: "h264".into(),
            width: 320,
            height: 240,
            fps_num: 30,
            fps_den: 1,
            audio: "aac".into(),
            sample_rate: 48_000,
            channels: 1,
        },
        flags: 0,
        case: None,
        activity: None,
        // A salvaged segment states it too (kept in its draft).
        position: Some(Position::NoFix(NoFix::Lost)),
        streamed_from: None,
        dropped: None,
    }
}

/// The capture's write order for a segment streamed while encoded
/// (agent/src/capture/live.rs), on the twin: `live-N.ts` and its sidecar
/// with the draft, made durable with their folder; then the bytes in steps,
/// each made durable and noted in the sidecar (durable too) with the media
/// it holds. `bytes` is whole TS packets.
fn stream(
    fs: &MemFs,
    dir: &Path,
    n: u32,
    d: &SegmentDraft,
    bytes: &[u8],
) -> std::io::Result<StreamedFile> {
    let partial = dir.join("media/.partial");
    let path = partial.join(format!("live-{n:012}.ts"));
    let side = partial.join(format!("live-{n:012}.json"));
    let mut first = d.clone();
    (first.end_pts, first.video_frames, first.audio_samples) = (d.start_pts, 0, 0);
    let line = |v: Vec<u8>| [v, b"\n".to_vec()].concat();
    let mut ts = fs.create(&path)?;
    let mut sidecar = fs.create(&side)?;
    sidecar.write_all(&line(serde_json::to_vec(&first)?))?;
    sidecar.sync()?;
    fs.sync_dir(&partial)?;
    let mut done = 0;
    for chunk in bytes.chunks(188 * 64) {
        ts.write_all(chunk)?;
        ts.sync()?;
        done += chunk.len();
        // The media in the prefix, in proportion (the capture knows it).
        let share = |x: i64| x * i64::try_from(done).unwrap() / i64::try_from(bytes.len()).unwrap();
        let frames = i64::from(d.video_frames);
        let p = LiveProgress {
            len: done as u64,
            end_pts: d.start_pts + share(d.end_pts - d.start_pts),
            video_frames: u32::try_from(share(frames)).unwrap(),
            audio_samples: u64::try_from(share(i64::try_from(d.audio_samples).unwrap())).unwrap(),
        };
        sidecar.write_all(&line(serde_json::to_vec(&p)?))?;
        sidecar.sync()?;
    }
    Ok(StreamedFile::new(
        path,
        side,
        bytes.len() as u64,
        sha256(bytes),
    ))
}

/// What the workload saw succeed: entry hashes and segment media.
#[derive(Debug, Default)]
struct Recorded {
    entries: BTreeMap<u64, Hash32>,
    media: BTreeMap<u64, Hash32>,
    errors: Vec<String>,
    retried_ok: u64,
    poisoned: u64,
}

/// Open the spool and append seeded events and segments until `steps` are
/// done or an append fails; then keep trying once more (a caller that
/// retries) to see that the spool refuses rather than re-appending.
fn workload(fs: &MemFs, dir: &Path, seed: u64, steps: u32, rec: &mut Recorded) {
    let k = key(97);
    let clock = TickClock::default();
    let mut r = SplitMix(seed);
    let Ok((mut spool, _)) = Spool::open_with(Arc::new(fs.clone()), dir, &k, &clock) else {
        rec.errors.push("open".into());
        return;
    };
    // Entries made at open (power-loss-recovered) count as recorded too.
    for (seq, h) in chain_of(fs, dir) {
        rec.entries.entry(seq).or_insert(h);
    }
    // One recording per run, its segments back to back in media time.
    let mut recording = [0u8; 16];
    recording[..8].copy_from_slice(&r.next_u64().to_le_bytes());
    let first_mono = clock.mono_us();
    let mut part = 0u32;
    for _ in 0..steps {
        let res = if r.chance(300) {
            spool.append_event(&k, &clock, Event::IdentityShown { officer: None })
        } else {
            let streamed = r.chance(500);
            let mut len = 1 + usize::try_from(r.next_u64() % 200_000).unwrap();
            if streamed {
                len = len.div_ceil(188) * 188;
            }
            let bytes: Vec<u8> = (0..len)
                .map(|i| u8::try_from((i * 7 + part as usize) % 251).unwrap())
                .collect();
            let mono = first_mono + u64::from(part) * 1_000_000;
            let d = draft(recording, part, mono);
            let res = if streamed {
                match stream(fs, dir, part, &d, &bytes) {
                    Ok(file) => spool.append_segment_streamed(&k, &clock, d, &bytes, Some(&file)),
                    Err(e) => {
                        // The capture's write failed (the crash): as the
                        // agent, nothing was appended.
                        rec.errors.push(format!("streaming: {e}"));
                        return;
                    }
                }
            } else {
                spool.append_segment(&k, &clock, d, &bytes)
            };
            part += 1;
            if let Ok(e) = &res {
                rec.media.insert(e.seq(), sha256(&bytes));
            }
            res
        };
        match res {
            Ok(e) => {
                rec.entries.insert(e.seq(), e.hash());
            }
            Err(e) => {
                rec.errors.push(e.to_string());
                // A caller that retries: after an error in the chain log the
                // spool refuses (the log's tail is unknown); after one in a
                // media file it may go on, but never with a seq it used.
                let again = spool.append_event(&k, &clock, Event::IdentityShown { officer: None });
                match again {
                    Ok(e2) => {
                        let old = rec.entries.insert(e2.seq(), e2.hash());
                        assert!(
                            old.is_none(),
                            "after `{e}` the spool reused seq {}",
                            e2.seq()
                        );
                        rec.retried_ok += 1;
                    }
                    Err(SpoolError::Poisoned) => rec.poisoned += 1,
                    Err(_) => {}
                }
                return;
            }
        }
    }
    let _ = spool.close();
}

fn chain_of(fs: &MemFs, dir: &Path) -> BTreeMap<u64, Hash32> {
    let bytes = fs.read(&dir.join("chain.log")).unwrap_or_default();
    let (log, _) = chainlog::split_lossy(&bytes);
    log.records
        .iter()
        .filter_map(|r| SignedEntry::from_bytes(r).ok())
        .map(|e| (e.seq(), e.hash()))
        .collect()
}

/// After the fault: reopen (recovering), then check everything recorded.
fn check_after(fs: &MemFs, dir: &Path, rec: &Recorded, what: &str) {
    let k = key(97);
    let clock = TickClock::default();
    let (spool, report) = Spool::open_with(Arc::new(fs.clone()), dir, &k, &clock)
        .unwrap_or_else(|e| panic!("{what}: the spool does not reopen: {e}"));
    spool.close().unwrap();
    let bytes = fs.read(&dir.join("chain.log")).unwrap();
    let (log, damage) = chainlog::split_lossy(&bytes);
    assert!(damage.is_none(), "{what}: chain.log damaged after recovery");
    let entries: Vec<SignedEntry> = log
        .records
        .iter()
        .map(|r| SignedEntry::from_bytes(r).unwrap())
        .collect();
    for (seq, h) in &rec.entries {
        let got = entries
            .iter()
            .find(|e| e.seq() == *seq)
            .map(SignedEntry::hash);
        assert_eq!(
            got,
            Some(*h),
            "{what}: recorded entry {seq} lost or changed ({report:?})"
        );
    }
    for (seq, h) in &rec.media {
        let b = fs.read(&dir.join("media").join(media_name(*seq)));
        assert!(
            b.is_ok_and(|b| sha256(&b) == *h),
            "{what}: media of recorded segment {seq} lost"
        );
    }
    let mut media = BTreeMap::new();
    for e in &entries {
        if let Some(s) = e.entry.segment() {
            let obs = match fs.read(&dir.join("media").join(media_name(e.seq()))) {
                Ok(b) => MediaObservation::Present {
                    sha256: sha256(&b),
                    len: b.len() as u64,
                },
                Err(_) => MediaObservation::Absent { note: None },
            };
            let _ = s;
            media.insert(e.seq(), obs);
        }
    }
    let raw: Vec<Vec<u8>> = entries.iter().map(Encode::to_bytes).collect();
    let report = verify_chain(
        &k.verifying_key(),
        raw.iter().map(Vec::as_slice),
        &VerifyOptions {
            media: Some(media),
            ordered: true,
            ..VerifyOptions::default()
        },
    );
    assert!(
        report.ok,
        "{what}: the chain does not verify: {:?}",
        report.findings
    );
    assert!(
        report.gaps.iter().all(|g| g.reason.is_some()),
        "{what}: unexplained gap: {:?}",
        report.gaps
    );
}

/// Count the operations of one clean run of the workload.
fn ops_of(seed: u64, steps: u32) -> u64 {
    let fs = MemFs::new(seed);
    let mut rec = Recorded::default();
    workload(&fs, Path::new("/agent"), seed, steps, &mut rec);
    assert!(rec.errors.is_empty(), "{:?}", rec.errors);
    fs.ops()
}

#[test]
fn power_loss_at_every_operation_loses_nothing_recorded() {
    let sc = Scenario::new("power_loss_at_every_operation_loses_nothing_recorded");
    let steps = u32::try_from(iterations("FIELDSEAL_SPOOL_STEPS", 6)).unwrap();
    let seed = sc.seed();
    let total = ops_of(seed, steps);
    let mut r = sc.rng(11);
    let mut crashes = 0;
    for at in 1..=total {
        let tear = r.chance(500);
        let fs = MemFs::new(r.next_u64());
        let dir = Path::new("/agent");
        let mut rec = Recorded::default();
        fs.inject(at, Fault::Crash);
        workload(&fs, dir, seed, steps, &mut rec);
        assert!(fs.crashed(), "crash at op {at} of {total} happened");
        fs.power_loss(tear);
        check_after(
            &fs,
            dir,
            &rec,
            &format!("crash at op {at}/{total} (tear {tear})"),
        );
        // And a second power loss during the recovery itself.
        let fs2 = fs.clone();
        fs2.inject(fs2.ops() + 1 + r.next_u64() % 8, Fault::Crash);
        let mut rec2 = Recorded {
            entries: rec.entries.clone(),
            media: rec.media.clone(),
            ..Recorded::default()
        };
        workload(&fs2, dir, seed ^ 1, 2, &mut rec2);
        fs2.power_loss(r.chance(500));
        check_after(
            &fs2,
            dir,
            &rec2,
            &format!("crash at op {at}/{total}, then again in recovery"),
        );
        crashes += 2;
    }
    eprintln!("{crashes} power losses over {total} operations: nothing recorded was lost");
}

#[test]
fn failed_fsync_and_full_disk_are_never_taken_for_success() {
    let sc = Scenario::new("failed_fsync_and_full_disk_are_never_taken_for_success");
    let steps = u32::try_from(iterations("FIELDSEAL_SPOOL_STEPS", 6)).unwrap();
    let seed = sc.seed();
    let total = ops_of(seed, steps);
    let mut r = sc.rng(12);
    let (mut refused, mut poisoned, mut retried) = (0, 0, 0);
    for at in 1..=total {
        for fault in [Fault::FailSync, Fault::NoSpace] {
            let fs = MemFs::new(r.next_u64());
            let dir = Path::new("/agent");
            let mut rec = Recorded::default();
            fs.inject(at, fault);
            workload(&fs, dir, seed, steps, &mut rec);
            if !rec.errors.is_empty() {
                refused += 1;
            }
            poisoned += rec.poisoned;
            retried += rec.retried_ok;
            // Whatever the fault hit, the power then goes: nothing the spool
            // reported recorded may be missing.
            fs.power_loss(r.chance(500));
            check_after(&fs, dir, &rec, &format!("{fault:?} at op {at}/{total}"));
        }
    }
    assert!(
        refused > 0,
        "some faults hit an fsync or a write and were reported"
    );
    eprintln!("{refused} faults reported as errors over {total} operations ({poisoned} retries refused by a poisoned spool, {retried} retries after a media error appended); nothing recorded lost");
    assert!(poisoned > 0, "a failed chain-log fsync poisons the spool");
}

/// A device key that can stop signing, as a token pulled out does.
#[derive(Debug)]
struct Pullable {
    key: ed25519_dalek::SigningKey,
    pulled: std::sync::atomic::AtomicBool,
}

impl Signer for Pullable {
    fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }
    fn try_sign(&self, msg: &[u8]) -> Result<ed25519_dalek::Signature, SignError> {
        if self.pulled.load(Ordering::Relaxed) {
            return Err(SignError("token removed".into()));
        }
        self.key.try_sign(msg)
    }
}

/// The device key in a token stops signing in the middle of a recording:
/// the segment being signed makes no entry and the spool says why; nothing
/// recorded is lost; at the next start (the token back) that segment's media
/// is signed as recovered, after a power-loss event that explains the gap.
#[test]
fn a_device_key_that_stops_signing_loses_nothing_and_its_segment_is_recovered() {
    let fs = MemFs::new(5);
    let dir = Path::new("/agent");
    let clock = TickClock::default();
    let signer = Pullable {
        key: key(97),
        pulled: false.into(),
    };
    let (mut spool, _) = Spool::open_with(Arc::new(fs.clone()), dir, &signer, &clock).unwrap();
    let mut rec = Recorded::default();
    let first = spool
        .append_segment(&signer, &clock, draft([7; 16], 0, 0), b"first segment")
        .unwrap();
    rec.entries.insert(first.seq(), first.hash());
    rec.media.insert(first.seq(), sha256(b"first segment"));
    signer.pulled.store(true, Ordering::Relaxed);
    let e = spool
        .append_segment(
            &signer,
            &clock,
            draft([7; 16], 1, 1_000_000),
            b"second segment",
        )
        .unwrap_err();
    assert!(
        matches!(e, SpoolError::Entry(EntryError::Sign(_)))
            && e.to_string().contains("token removed"),
        "{e}"
    );
    // `run` stops on the error, without a clean close; then the power goes.
    drop(spool);
    fs.power_loss(false);
    check_after(&fs, dir, &rec, "a signature that failed");
    let bytes = fs.read(&dir.join("chain.log")).unwrap();
    let entries: Vec<SignedEntry> = chainlog::split(&bytes)
        .unwrap()
        .records
        .iter()
        .map(|r| SignedEntry::from_bytes(r).unwrap())
        .collect();
    let recovered = entries
        .iter()
        .filter_map(|e| e.entry.segment())
        .find(|s| s.media_sha256 == sha256(b"second segment"))
        .expect("the second segment is signed at the next start");
    assert_ne!(recovered.flags & segment_flags::RECOVERED, 0);
    assert!(entries
        .iter()
        .any(|e| matches!(e.entry.event(), Some(Event::PowerLossRecovered { .. }))));
}
