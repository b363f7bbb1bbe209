//! A deterministic sample chain: what a short day of recording looks like.
//! Used by the demo, the golden test vectors and tests of everything that
//! consumes chains. Media bytes are stand-ins (not playable video).

use std::collections::BTreeMap;

use crate::entry::{
    Body, ChainHead, Clock, CodecParams, Event, Position, SegmentBody, SignedEntry, StopReason,
    PTS_HZ,
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
    let pos = Some(Position {
        lat_e7: 440_110_000,
        lon_e7: 873_080_000,
        accuracy_m: 8,
    });
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
                    codec: CodecParams {
                        video: "h264".into(),
                        width: 1280,
                        height: 720,
                        fps_num: 30,
                        fps_den: 1,
                        audio: "aac".into(),
                        sample_rate: 48_000,
                        channels: 1,
                    },
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
