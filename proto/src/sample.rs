//! A deterministic sample chain: what a short day of recording looks like.
//! Used by the demo, the golden test vectors and tests of everything that
//! consumes chains. Media bytes are stand-ins (not playable video).

use std::collections::BTreeMap;

use crate::entry::{
    Body, ChainHead, Clock, CodecParams, Event, NoFix, Point, Position, SegmentBody, SignedEntry,
    StopReason, ACCURACY_UNKNOWN, PTS_HZ,
};
use crate::identity::{sha256, Signer};

/// Segment length of the sample, seconds.
pub const SEGMENT_SECONDS: i64 = 4;

/// A sample chain and its media.
#[derive(Debug, Clone)]
pub struct SampleChain {
    /// The entries in seq order.
    pub entries: Vec<SignedEntry>,
    /// Media bytes by seq.
    pub media: BTreeMap<u64, Vec<u8>>,
}

/// Deterministic stand-in media for segment `part` of recording `rec`.
fn media_bytes(rec: u8, part: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = sha256(&[b"sample-media".as_slice(), &[rec], &part.to_be_bytes()].concat());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = sha256(&block);
    }
    out.truncate(len);
    out
}

fn codec() -> CodecParams {
    CodecParams {
        video: "h264".into(),
        width: 1280,
        height: 720,
        fps_num: 30,
        fps_den: 1,
        audio: "aac".into(),
        sample_rate: 48_000,
        channels: 1,
    }
}

/// Build a chain: agent start, then `recordings.len()` recordings of the given
/// number of segments each, each started and stopped by the user, 60 s apart.
/// `media_len` is the size of each stand-in media file.
///
/// # Panics
/// Never for the fixed inputs it builds (every text is short).
pub fn build(signer: &impl Signer, recordings: &[u32], media_len: usize) -> SampleChain {
    let mut head = ChainHead::GENESIS;
    let mut entries = Vec::new();
    let mut media = BTreeMap::new();
    // 2026-07-01T09:00:00Z, the day the regulation came into force.
    let wall0: i64 = 1_782_896_400_000_000;
    let mut mono: u64 = 5_000_000;
    let clock = |mono: u64| Clock {
        wall_us: wall0 + mono as i64,
        mono_us: mono,
        boot: 1,
    };
    // Tag 1, a point without its fix time: the sample predates fix times,
    // and its vectors show that such entries verify unchanged.
    let pos = Some(Position::Point(Point {
        lat_e7: 440_110_000,
        lon_e7: 873_080_000,
        accuracy_m: 8,
    }));
    let mut push = |head: &mut ChainHead, mono: u64, body: Body| {
        let e = head
            .append(signer, clock(mono), pos, body)
            .expect("sample entries are valid");
        entries.push(e);
    };
    push(
        &mut head,
        mono,
        Body::Event(Event::AgentStarted {
            software: "fieldseal-sample".into(),
        }),
    );
    for (r, &parts) in recordings.iter().enumerate() {
        let rec_no = u8::try_from(r).unwrap_or(u8::MAX);
        let recording = {
            let mut id = [0u8; 16];
            id.copy_from_slice(&sha256(&[b"rec".as_slice(), &[rec_no]].concat())[..16]);
            id
        };
        mono += 60_000_000;
        push(
            &mut head,
            mono,
            Body::Event(Event::RecordingStarted {
                recording,
                case: Some("CJ-2026-0001".into()),
                activity: Some("seizure".into()),
            }),
        );
        let start_mono = mono;
        for part in 0..parts {
            let bytes = media_bytes(rec_no, part, media_len);
            let start_pts = i64::from(part) * SEGMENT_SECONDS * PTS_HZ;
            let seg_start_mono = start_mono + (start_pts as u64 * 1_000_000 / PTS_HZ as u64);
            mono = seg_start_mono + (SEGMENT_SECONDS as u64) * 1_000_000 + 150_000;
            push(
                &mut head,
                mono,
                Body::Segment(SegmentBody {
                    recording,
                    part,
                    media_sha256: sha256(&bytes),
                    media_len: bytes.len() as u64,
                    start_pts,
                    end_pts: start_pts + SEGMENT_SECONDS * PTS_HZ,
                    start_mono_us: seg_start_mono,
                    video_frames: 120,
                    audio_samples: 192_000,
                    codec: codec(),
                    flags: 0,
                    case: Some("CJ-2026-0001".into()),
                    activity: Some("seizure".into()),
                }),
            );
            media.insert(head.next_seq - 1, bytes);
        }
        mono += 200_000;
        push(
            &mut head,
            mono,
            Body::Event(Event::RecordingStopped {
                recording,
                reason: StopReason::User,
            }),
        );
    }
    SampleChain { entries, media }
}

/// A recording whose segments state every kind of position (the vectors of
/// `docs/FORMAT.md` §8.2): the agent starts (an entry that states nothing),
/// its gpsd is not running, then comes up; recording starts before the
/// first fix; the fix is lost in a tunnel and found again (its accuracy
/// then unknown); gpsd goes away; the officer stops. A fix counts for 5 s. Five 4-second
/// segments of `media_len` stand-in bytes, each with the position of its
/// end, and a fix-acquired, fix-lost, receiver-unreachable or receiver-back
/// event at every change, as the agent signs them.
///
/// # Panics
/// Never for the fixed inputs it builds.
pub fn build_positions(signer: &impl Signer, media_len: usize) -> SampleChain {
    let mut head = ChainHead::GENESIS;
    let mut entries = Vec::new();
    let mut media = BTreeMap::new();
    // 2026-07-01T09:00:00Z, as `build`.
    let wall0: i64 = 1_782_896_400_000_000;
    let recording = {
        let mut id = [0u8; 16];
        id.copy_from_slice(&sha256(b"positions")[..16]);
        id
    };
    // Sign `body` at monotonic time `mono` (µs) stating `pos`.
    let mut push = |mono: u64, pos: Option<Position>, body: Body| {
        let clock = Clock {
            wall_us: wall0 + mono as i64,
            mono_us: mono,
            boot: 1,
        };
        let e = head
            .append(signer, clock, pos, body)
            .expect("sample entries are valid");
        let seq = e.seq();
        entries.push(e);
        seq
    };
    // A walk north-east through Changji, `step` metres along; the fix taken
    // at monotonic time `mono`, by the receiver's clock (GPS time), which
    // here runs with the device's wall clock.
    let fix = |mono: u64, step: i32, accuracy_m: u16| Position::Fix {
        point: Point {
            lat_e7: 440_110_000 + 90 * step,
            lon_e7: 873_000_000 + 125 * step,
            accuracy_m,
        },
        fix_us: wall0 + mono as i64,
    };
    // Segment `part`: 4 s from 10 s + 4 s × part (monotonic), signed 0.15 s
    // after its end.
    let segment = |part: u32| {
        let bytes = media_bytes(7, part, media_len);
        let start_pts = i64::from(part) * SEGMENT_SECONDS * PTS_HZ;
        let start_mono = 10_000_000 + u64::from(part) * 4_000_000;
        let body = Body::Segment(SegmentBody {
            recording,
            part,
            media_sha256: sha256(&bytes),
            media_len: bytes.len() as u64,
            start_pts,
            end_pts: start_pts + SEGMENT_SECONDS * PTS_HZ,
            start_mono_us: start_mono,
            video_frames: 120,
            audio_samples: 192_000,
            codec: codec(),
            flags: 0,
            case: Some("CJ-2026-0001".into()),
            activity: Some("seizure".into()),
        });
        (start_mono + 4_150_000, body, bytes)
    };
    let no = |why| Some(Position::NoFix(why));
    let ev = Body::Event;

    push(
        5_000_000,
        None,
        ev(Event::AgentStarted {
            software: "fieldseal-sample".into(),
        }),
    );
    push(
        5_100_000,
        no(NoFix::ReceiverUnreachable),
        ev(Event::ReceiverUnreachable { last_fix_us: None }),
    );
    push(9_000_000, no(NoFix::NotYet), ev(Event::ReceiverBack));
    push(
        10_000_000,
        no(NoFix::NotYet),
        ev(Event::RecordingStarted {
            recording,
            case: Some("CJ-2026-0001".into()),
            activity: Some("seizure".into()),
        }),
    );
    // Part 0 ends (14 s) before the first fix, which comes at 14.4 s.
    let (mono, body, bytes) = segment(0);
    media.insert(push(mono, no(NoFix::NotYet), body), bytes);
    push(
        14_500_000,
        Some(fix(14_400_000, 0, 8)),
        ev(Event::FixAcquired {
            fix_us: wall0 + 14_400_000,
        }),
    );
    // Part 1 ends at 18 s: the fix of 17 s, the last before a tunnel.
    let (mono, body, bytes) = segment(1);
    media.insert(push(mono, Some(fix(17_000_000, 3, 8)), body), bytes);
    // 5 s after it, the fix no longer counts.
    push(
        22_050_000,
        no(NoFix::Lost),
        ev(Event::FixLost {
            last_fix_us: wall0 + 17_000_000,
        }),
    );
    let (mono, body, bytes) = segment(2);
    media.insert(push(mono, no(NoFix::Lost), body), bytes);
    // Out of the tunnel, with no accuracy estimate yet.
    push(
        24_100_000,
        Some(fix(24_000_000, 10, ACCURACY_UNKNOWN)),
        ev(Event::FixAcquired {
            fix_us: wall0 + 24_000_000,
        }),
    );
    let (mono, body, bytes) = segment(3);
    media.insert(
        push(mono, Some(fix(25_900_000, 12, ACCURACY_UNKNOWN)), body),
        bytes,
    );
    // gpsd goes away.
    push(
        27_000_000,
        no(NoFix::ReceiverUnreachable),
        ev(Event::ReceiverUnreachable {
            last_fix_us: Some(wall0 + 26_900_000),
        }),
    );
    let (mono, body, bytes) = segment(4);
    media.insert(push(mono, no(NoFix::ReceiverUnreachable), body), bytes);
    push(
        30_400_000,
        no(NoFix::ReceiverUnreachable),
        ev(Event::RecordingStopped {
            recording,
            reason: StopReason::User,
        }),
    );
    SampleChain { entries, media }
}

/// A recording whose capture fell behind (the vectors of `docs/FORMAT.md`
/// §8.3): three 4-second segments at 30 fps. Part 0 holds its 120 frames;
/// part 1 only 105, and the `frames-dropped` event signed right after it
/// names the 15 frames lost and their span; part 2 holds 100 with no such
/// event, so its report has a `frame-count-mismatch` finding.
///
/// # Panics
/// Never for the fixed inputs it builds.
pub fn build_dropped(signer: &impl Signer, media_len: usize) -> SampleChain {
    let mut head = ChainHead::GENESIS;
    let mut entries = Vec::new();
    let mut media = BTreeMap::new();
    // 2026-07-01T09:00:00Z, as `build`.
    let wall0: i64 = 1_782_896_400_000_000;
    let recording = {
        let mut id = [0u8; 16];
        id.copy_from_slice(&sha256(b"dropped")[..16]);
        id
    };
    let mut push = |mono: u64, body: Body| {
        let clock = Clock {
            wall_us: wall0 + mono as i64,
            mono_us: mono,
            boot: 1,
        };
        let e = head
            .append(signer, clock, None, body)
            .expect("sample entries are valid");
        let seq = e.seq();
        entries.push(e);
        seq
    };
    push(
        5_000_000,
        Body::Event(Event::AgentStarted {
            software: "fieldseal-sample".into(),
        }),
    );
    push(
        10_000_000,
        Body::Event(Event::RecordingStarted {
            recording,
            case: None,
            activity: None,
        }),
    );
    let frame_ticks = PTS_HZ / 30;
    for (part, frames) in [(0u32, 120u32), (1, 105), (2, 100)] {
        let bytes = media_bytes(9, part, media_len);
        let start_pts = i64::from(part) * SEGMENT_SECONDS * PTS_HZ;
        let start_mono = 10_000_000 + u64::from(part) * 4_000_000;
        let seq = push(
            start_mono + 4_150_000,
            Body::Segment(SegmentBody {
                recording,
                part,
                media_sha256: sha256(&bytes),
                media_len: bytes.len() as u64,
                start_pts,
                end_pts: start_pts + SEGMENT_SECONDS * PTS_HZ,
                start_mono_us: start_mono,
                video_frames: frames,
                audio_samples: 192_000,
                codec: codec(),
                flags: 0,
                case: None,
                activity: None,
            }),
        );
        media.insert(seq, bytes);
        if part == 1 {
            // Frames 40 ..< 55 of the segment never reached the encoder.
            let first_pts = start_pts + 40 * frame_ticks;
            push(
                start_mono + 4_160_000,
                Body::Event(Event::FramesDropped {
                    recording,
                    part,
                    first_pts,
                    end_pts: first_pts + 15 * frame_ticks,
                    frames: 15,
                }),
            );
        }
    }
    push(
        22_400_000,
        Body::Event(Event::RecordingStopped {
            recording,
            reason: StopReason::User,
        }),
    );
    SampleChain { entries, media }
}
