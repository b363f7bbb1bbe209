//! Property and tamper tests of entries and the chain verifier.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use fieldseal_proto::chain::{verify_chain, FindingKind, MediaObservation, Report, VerifyOptions};
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::{
    Body, ChainHead, Clock, CodecParams, Entry, EntryError, Event, NoFix, Point, Position,
    SegmentBody, SignedEntry, StopReason,
};
use fieldseal_proto::identity::{sha256, SignError, Signer};
use fieldseal_proto::sample;
use proptest::prelude::*;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[1u8; 32])
}

fn media_map(media: &BTreeMap<u64, Vec<u8>>) -> BTreeMap<u64, MediaObservation> {
    media
        .iter()
        .map(|(&s, b)| {
            (
                s,
                MediaObservation::Present {
                    sha256: sha256(b),
                    len: b.len() as u64,
                },
            )
        })
        .collect()
}

fn verify(entries: &[Vec<u8>], media: &BTreeMap<u64, Vec<u8>>) -> Report {
    let k = key();
    let opts = VerifyOptions {
        media: Some(media_map(media)),
        ordered: true,
        ..Default::default()
    };
    verify_chain(&k.verifying_key(), entries.iter().map(Vec::as_slice), &opts)
}

fn sample_encoded() -> (Vec<Vec<u8>>, BTreeMap<u64, Vec<u8>>) {
    let s = sample::build(&key(), &[4, 3], 64);
    (s.entries.iter().map(Encode::to_bytes).collect(), s.media)
}

fn kinds_at(r: &Report, seq: u64) -> Vec<FindingKind> {
    r.findings
        .iter()
        .filter(|f| f.seq == Some(seq))
        .map(|f| f.kind)
        .collect()
}

#[test]
fn intact_sample_chain_is_ok_and_gap_is_explained() {
    let (entries, media) = sample_encoded();
    let r = verify(&entries, &media);
    assert!(r.ok, "{r}");
    assert_eq!(r.segments, 7);
    assert_eq!(r.media_verified, 7);
    assert!((r.media_seconds - 28.0).abs() < 1e-9);
    assert_eq!(r.gaps.len(), 1);
    assert_eq!(r.gaps[0].reason.as_deref(), Some("user-stop"));
    assert!(
        r.gaps[0].seconds > 55.0 && r.gaps[0].seconds < 65.0,
        "{:?}",
        r.gaps
    );
    let json = serde_json::to_value(&r).unwrap();
    for field in [
        "ok",
        "entries",
        "segments",
        "media_seconds",
        "gaps",
        "findings",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
}

#[test]
fn deleted_entry_in_the_middle_is_missing_entry() {
    let (mut entries, media) = sample_encoded();
    entries.remove(3);
    let r = verify(&entries, &media);
    assert!(!r.ok);
    assert!(kinds_at(&r, 3).contains(&FindingKind::MissingEntry), "{r}");
}

#[test]
fn cut_tail_needs_the_receipts_to_be_seen() {
    let (mut entries, media) = sample_encoded();
    let last = SignedEntry::from_bytes(entries.last().unwrap()).unwrap();
    entries.pop();
    let r = verify(&entries, &media);
    assert!(r.ok, "a cut tail cannot be seen locally");
    let k = key();
    let opts = VerifyOptions {
        expected_head: Some((last.seq(), last.hash())),
        ..Default::default()
    };
    let r = verify_chain(&k.verifying_key(), entries.iter().map(Vec::as_slice), &opts);
    assert!(!r.ok);
    assert!(
        kinds_at(&r, last.seq()).contains(&FindingKind::TruncatedChain),
        "{r}"
    );
}

/// Verify `entries` against the receipts' head `head` (no media, unordered).
fn verify_with_head(entries: &[Vec<u8>], head: (u64, [u8; 32])) -> Report {
    let opts = VerifyOptions {
        expected_head: Some(head),
        ..Default::default()
    };
    verify_chain(
        &key().verifying_key(),
        entries.iter().map(Vec::as_slice),
        &opts,
    )
}

#[test]
fn a_head_with_another_hash_is_head_mismatch_not_truncated_chain() {
    let (entries, _) = sample_encoded();
    let last = SignedEntry::from_bytes(entries.last().unwrap()).unwrap();
    let r = verify_with_head(&entries, (last.seq(), [7; 32]));
    let kinds: Vec<_> = r.findings.iter().map(|f| (f.seq, f.kind)).collect();
    assert_eq!(kinds, vec![(Some(last.seq()), FindingKind::HeadMismatch)]);
}

#[test]
fn a_head_at_the_last_seq_there_is_still_reports_the_missing_entries() {
    // Before: `last + 1` overflowed, so the run of missing entries up to a
    // head of 2^64 − 1 was dropped (release) or the verifier panicked (debug).
    let (entries, _) = sample_encoded();
    let n = entries.len() as u64;
    let r = verify_with_head(&entries, (u64::MAX, [7; 32]));
    let kinds: Vec<_> = r.findings.iter().map(|f| (f.seq, f.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (Some(n), FindingKind::MissingEntry),
            (Some(u64::MAX), FindingKind::TruncatedChain)
        ],
        "{r}"
    );
}

#[test]
fn an_entry_of_the_last_seq_there_is_verifies_without_overflow() {
    // Entries at 2^64 − 2 and 2^64 − 1 (validly signed, linked) after seq 0:
    // one hole between, no panic at the top, the top entry linked.
    let (entries, _) = sample_encoded();
    let first = SignedEntry::from_bytes(&entries[0]).unwrap();
    let mut a = first.entry.clone();
    a.seq = u64::MAX - 1;
    let a = a.sign(&key()).unwrap();
    let mut b = first.entry.clone();
    b.seq = u64::MAX;
    b.prev_hash = a.hash();
    let b = b.sign(&key()).unwrap();
    // A second version of the top seq: equivocation must not look past it.
    let mut c = b.entry.clone();
    c.wall_us += 1;
    let c = c.sign(&key()).unwrap();
    let all = [entries[0].clone(), a.to_bytes(), b.to_bytes(), c.to_bytes()];
    let r = verify_with_head(&all, (u64::MAX, b.hash()));
    let kinds: Vec<_> = r.findings.iter().map(|f| (f.seq, f.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (Some(1), FindingKind::MissingEntry),
            (Some(u64::MAX), FindingKind::Equivocation)
        ],
        "{r}"
    );
    assert_eq!(r.head_seq, Some(u64::MAX));
}

#[test]
fn swapped_segments_are_out_of_order() {
    let (mut entries, media) = sample_encoded();
    entries.swap(2, 3);
    let r = verify(&entries, &media);
    assert!(!r.ok);
    assert!(kinds_at(&r, 2).contains(&FindingKind::OutOfOrder), "{r}");
}

#[test]
fn swapped_media_files_are_media_mismatch() {
    let (entries, mut media) = sample_encoded();
    let a = media.remove(&2).unwrap();
    let b = media.remove(&3).unwrap();
    media.insert(2, b);
    media.insert(3, a);
    let r = verify(&entries, &media);
    assert_eq!(kinds_at(&r, 2), vec![FindingKind::MediaMismatch]);
    assert_eq!(kinds_at(&r, 3), vec![FindingKind::MediaMismatch]);
}

#[test]
fn deleted_media_is_missing_media() {
    let (entries, mut media) = sample_encoded();
    media.remove(&4);
    let r = verify(&entries, &media);
    assert_eq!(kinds_at(&r, 4), vec![FindingKind::MissingMedia]);
}

#[test]
fn edited_entry_is_bad_signature() {
    let (mut entries, media) = sample_encoded();
    let mut e = SignedEntry::from_bytes(&entries[3]).unwrap();
    e.entry.wall_us += 1;
    entries[3] = e.to_bytes();
    let r = verify(&entries, &media);
    assert!(kinds_at(&r, 3).contains(&FindingKind::BadSignature), "{r}");
}

#[test]
fn equivocation_is_reported() {
    let (mut entries, media) = sample_encoded();
    let e = SignedEntry::from_bytes(&entries[3]).unwrap();
    let mut other = e.entry.clone();
    other.wall_us += 1;
    let other = other.sign(&key()).unwrap();
    entries.push(other.to_bytes());
    let k = key();
    let opts = VerifyOptions {
        media: Some(media_map(&media)),
        ..Default::default()
    };
    let r = verify_chain(&k.verifying_key(), entries.iter().map(Vec::as_slice), &opts);
    assert!(kinds_at(&r, 3).contains(&FindingKind::Equivocation), "{r}");
}

#[test]
fn another_devices_entry_is_wrong_device() {
    let (mut entries, media) = sample_encoded();
    let other = sample::build(&SigningKey::from_bytes(&[2u8; 32]), &[2], 64);
    entries[2] = other.entries[2].to_bytes();
    let r = verify(&entries, &media);
    assert!(kinds_at(&r, 2).contains(&FindingKind::WrongDevice), "{r}");
}

/// A hardware key that fails: the entry is not made and the head stays, so
/// the next entry takes the same seq once the key signs again.
#[test]
fn a_signer_that_fails_makes_no_entry_and_leaves_the_head() {
    struct Broken(SigningKey);
    impl Signer for Broken {
        fn public_key(&self) -> ed25519_dalek::VerifyingKey {
            self.0.verifying_key()
        }
        fn try_sign(&self, _: &[u8]) -> Result<ed25519_dalek::Signature, SignError> {
            Err(SignError("token removed".into()))
        }
    }
    let clock = Clock {
        wall_us: 1,
        mono_us: 1,
        boot: 1,
    };
    let body = || {
        Body::Event(Event::AgentStarted {
            software: "t".into(),
        })
    };
    let mut head = ChainHead::GENESIS;
    let e = head
        .append(&Broken(key()), clock, None, body())
        .unwrap_err();
    assert_eq!(e, EntryError::Sign(SignError("token removed".into())));
    assert!(e.to_string().contains("token removed"), "{e}");
    assert_eq!(head, ChainHead::GENESIS);
    let good = head.append(&key(), clock, None, body()).unwrap();
    assert_eq!(good.seq(), 0);
}

#[test]
fn unexplained_stop_is_a_finding_and_signed_reasons_are_not() {
    let k = key();
    let mut head = ChainHead::GENESIS;
    let mut entries = Vec::new();
    // Four-second segments; `start_s` is the first frame's presentation time.
    let seg = |part: u32, rec: u8, mono: u64, start_s: i64| {
        Body::Segment(SegmentBody {
            recording: [rec; 16],
            part,
            media_sha256: [0; 32],
            media_len: 10,
            start_pts: start_s * 90_000,
            end_pts: (start_s + 4) * 90_000,
            start_mono_us: mono,
            video_frames: 120,
            audio_samples: 0,
            codec: codec(),
            flags: 0,
            case: None,
            activity: None,
        })
    };
    let clock = |mono: u64| Clock {
        wall_us: 1_000_000_000 + mono as i64,
        mono_us: mono,
        boot: 1,
    };
    let mut push = |head: &mut ChainHead, mono: u64, b: Body| {
        entries.push(head.append(&k, clock(mono), None, b).unwrap().to_bytes());
    };
    push(&mut head, 4_000_000, seg(0, 1, 0, 0)); // seq 0
                                                 // Recording 1 part 1 jumps 10 s ahead with no event.
    push(&mut head, 18_000_000, seg(1, 1, 14_000_000, 14)); // seq 1
    push(
        &mut head,
        19_000_000,
        Body::Event(Event::StorageFull {
            used_bytes: 10,
            limit_bytes: 10,
        }),
    ); // seq 2
    push(
        &mut head,
        19_000_001,
        Body::Event(Event::RecordingStopped {
            recording: [1; 16],
            reason: StopReason::StorageFull,
        }),
    ); // seq 3
    push(&mut head, 44_000_000, seg(0, 2, 40_000_000, 0)); // seq 4
    let r = verify_chain(
        &k.verifying_key(),
        entries.iter().map(Vec::as_slice),
        &VerifyOptions::default(),
    );
    assert_eq!(r.gaps.len(), 2, "{r}");
    assert_eq!(r.gaps[0].reason, None);
    assert!((r.gaps[0].seconds - 10.0).abs() < 1e-6, "{r}");
    assert_eq!(r.gaps[1].reason.as_deref(), Some("storage-full"));
    assert_eq!(r.gaps[1].reason_seq, Some(3));
    assert!((r.gaps[1].seconds - 22.0).abs() < 1e-6, "{r}");
    assert_eq!(kinds_at(&r, 1), vec![FindingKind::UnexplainedGap]);
    assert_eq!(r.findings.len(), 1, "{r}");
}

#[test]
fn clock_running_backwards_needs_a_signed_adjustment() {
    let k = key();
    let mut head = ChainHead::GENESIS;
    let ev = || Body::Event(Event::AudioMuted);
    let c = |wall: i64, mono: u64| Clock {
        wall_us: wall,
        mono_us: mono,
        boot: 3,
    };
    let mut entries = vec![
        head.append(&k, c(5_000_000, 100), None, ev()).unwrap(),
        head.append(&k, c(4_000_000, 200), None, ev()).unwrap(), // wall back: finding
        head.append(
            &k,
            c(1_000_000, 300),
            None,
            Body::Event(Event::ClockAdjusted {
                old_wall_us: 4_000_100,
                new_wall_us: 1_000_000,
            }),
        )
        .unwrap(), // wall back with an adjustment: fine
        head.append(&k, c(1_000_100, 250), None, ev()).unwrap(), // mono back: finding
    ];
    let bytes: Vec<Vec<u8>> = entries.drain(..).map(|e| e.to_bytes()).collect();
    let r = verify_chain(
        &k.verifying_key(),
        bytes.iter().map(Vec::as_slice),
        &VerifyOptions::default(),
    );
    assert_eq!(kinds_at(&r, 1), vec![FindingKind::TimeBackwards]);
    assert!(kinds_at(&r, 2).is_empty(), "{r}");
    assert_eq!(kinds_at(&r, 3), vec![FindingKind::TimeBackwards]);
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

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ()〔〕号-]{0,20}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        text().prop_map(|software| Event::AgentStarted { software }),
        (any::<[u8; 16]>(), opt_text(), opt_text()).prop_map(|(recording, case, activity)| {
            Event::RecordingStarted {
                recording,
                case,
                activity,
            }
        }),
        (any::<[u8; 16]>(), 0usize..5).prop_map(|(recording, r)| Event::RecordingStopped {
            recording,
            reason: [
                StopReason::User,
                StopReason::StorageFull,
                StopReason::BatteryLow,
                StopReason::Shutdown,
                StopReason::Error
            ][r],
        }),
        (any::<[u8; 16]>(), any::<u32>(), any::<u64>()).prop_map(
            |(recording, segments, media_us)| Event::PreEventAttached {
                recording,
                segments,
                media_us
            }
        ),
        Just(Event::AudioMuted),
        Just(Event::AudioUnmuted),
        (any::<u64>(), any::<u64>()).prop_map(|(used_bytes, limit_bytes)| Event::StorageLow {
            used_bytes,
            limit_bytes
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(used_bytes, limit_bytes)| Event::StorageFull {
            used_bytes,
            limit_bytes
        }),
        (0u8..=100).prop_map(|percent| Event::BatteryLow { percent }),
        (any::<i64>(), any::<i64>()).prop_map(|(old_wall_us, new_wall_us)| Event::ClockAdjusted {
            old_wall_us,
            new_wall_us
        }),
        (
            any::<Option<u64>>(),
            any::<i64>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(last_seq, last_wall_us, gap_us, salvaged)| {
                Event::PowerLossRecovered {
                    last_seq,
                    last_wall_us,
                    gap_us,
                    salvaged,
                }
            }),
        (opt_text(), opt_text()).prop_map(|(case, activity)| Event::TagChanged { case, activity }),
        opt_text().prop_map(|officer| Event::IdentityShown { officer }),
        (any::<u32>(), any::<u64>()).prop_map(|(pending_segments, dropped_frames)| {
            Event::CaptureBacklog {
                pending_segments,
                dropped_frames,
            }
        }),
        any::<i64>().prop_map(|fix_us| Event::FixAcquired { fix_us }),
        any::<i64>().prop_map(|last_fix_us| Event::FixLost { last_fix_us }),
        any::<Option<i64>>().prop_map(|last_fix_us| Event::ReceiverUnreachable { last_fix_us }),
        Just(Event::ReceiverBack),
        (
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<i64>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(recording, part, first_pts, len, frames)| Event::FramesDropped {
                    recording,
                    part,
                    first_pts,
                    end_pts: first_pts.saturating_add(i64::from(len)),
                    frames,
                }
            ),
    ]
}

/// Every form of the position field: nothing, a point (tag 1), a fix, no fix.
fn position() -> impl Strategy<Value = Option<Position>> {
    let point = (
        -900_000_000i32..=900_000_000,
        -1_800_000_000i32..=1_800_000_000,
        any::<u16>(),
    )
        .prop_map(|(lat_e7, lon_e7, accuracy_m)| Point {
            lat_e7,
            lon_e7,
            accuracy_m,
        });
    prop_oneof![
        Just(None),
        point.clone().prop_map(|p| Some(Position::Point(p))),
        (point, any::<i64>()).prop_map(|(point, fix_us)| Some(Position::Fix { point, fix_us })),
        (0usize..4).prop_map(|i| Some(Position::NoFix(
            [
                NoFix::NoReceiver,
                NoFix::ReceiverUnreachable,
                NoFix::NotYet,
                NoFix::Lost
            ][i]
        ))),
    ]
}

fn segment() -> impl Strategy<Value = SegmentBody> {
    (
        (
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<[u8; 32]>(),
            any::<u64>(),
        ),
        (
            0i64..1 << 40,
            0i64..1 << 20,
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
        ),
        (0u8..4, opt_text(), opt_text()),
    )
        .prop_map(
            |(
                (recording, part, media_sha256, media_len),
                (start, dur, mono, vf, asamples),
                (flags, case, activity),
            )| {
                SegmentBody {
                    recording,
                    part,
                    media_sha256,
                    media_len,
                    start_pts: start,
                    end_pts: start + dur,
                    start_mono_us: mono,
                    video_frames: vf,
                    audio_samples: asamples,
                    codec: codec(),
                    flags,
                    case,
                    activity,
                }
            },
        )
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<i64>(),
        any::<u64>(),
        any::<u32>(),
        position(),
        prop_oneof![
            segment().prop_map(Body::Segment),
            event().prop_map(Body::Event)
        ],
    )
        .prop_map(
            |(seq, prev_hash, wall_us, mono_us, boot, pos, body)| Entry {
                device: key().device_id(),
                seq,
                prev_hash,
                wall_us,
                mono_us,
                boot,
                position: pos,
                body,
            },
        )
}

proptest! {
    // Each case signs and verifies a whole sample chain; 64 cases keep the
    // suite fast while still covering every field's offset.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn entry_round_trips_exactly(e in entry()) {
        let signed = e.clone().sign(&key()).unwrap();
        let bytes = signed.to_bytes();
        let back = SignedEntry::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back.entry, &e);
        prop_assert_eq!(back.to_bytes(), bytes.clone());
        prop_assert_eq!(back.hash(), e.hash());
        prop_assert!(back.verify(&key().verifying_key()).is_ok());
        // Every strict prefix is incomplete, never malformed.
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            let err = SignedEntry::from_bytes(&bytes[..cut]).unwrap_err();
            prop_assert!(err.is_incomplete(), "cut {} gave {:?}", cut, err);
        }
        // A trailing byte is rejected.
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(SignedEntry::from_bytes(&longer).is_err());
    }

    #[test]
    fn any_flipped_bit_in_an_entry_is_reported(idx in 0usize..7, bit in any::<prop::sample::Index>()) {
        let (mut entries, media) = sample_encoded();
        // idx picks one of the first 7 entries of the 9-entry sample.
        let seq = idx as u64;
        let b = bit.index(entries[idx].len() * 8);
        entries[idx][b / 8] ^= 1 << (b % 8);
        let r = verify(&entries, &media);
        prop_assert!(!r.ok);
        // Named by its seq, unless the flip made the bytes undecodable
        // (then by position, as malformed) or moved the seq itself (then the
        // original seq is missing).
        prop_assert!(
            r.findings.iter().any(|f| f.seq == Some(seq) || f.kind == FindingKind::Malformed),
            "{}", r
        );
    }

    #[test]
    fn any_flipped_bit_in_media_is_reported(seq_pick in 0usize..7, bit in any::<prop::sample::Index>()) {
        let (entries, mut media) = sample_encoded();
        let seq = *media.keys().nth(seq_pick).unwrap();
        let m = media.get_mut(&seq).unwrap();
        let b = bit.index(m.len() * 8);
        m[b / 8] ^= 1 << (b % 8);
        let r = verify(&entries, &media);
        prop_assert_eq!(kinds_at(&r, seq), vec![FindingKind::MediaMismatch]);
        prop_assert_eq!(r.findings.len(), 1);
    }

    #[test]
    fn removed_duplicated_reordered_or_replaced_entries_are_named(
        op in 0u8..4, i in 1usize..8, j in 1usize..8,
    ) {
        let (mut entries, media) = sample_encoded();
        let n = entries.len();
        prop_assume!(i < n - 1 && j < n - 1 && i != j);
        let named: u64;
        match op {
            0 => { entries.remove(i); named = i as u64; }
            1 => { let c = entries[j].clone(); entries.insert(i.max(j) + 1, c); named = j as u64; }
            2 => { let (a, b) = (i.min(j), i.max(j)); entries.swap(a, b); named = a as u64; }
            _ => {
                // Replace entry i by a forged one (signed by another key).
                let mut e = SignedEntry::from_bytes(&entries[i]).unwrap().entry;
                e.wall_us += 7;
                let forged = e.sign(&SigningKey::from_bytes(&[3u8; 32])).unwrap();
                entries[i] = forged.to_bytes();
                named = i as u64;
            }
        }
        let r = verify(&entries, &media);
        prop_assert!(!r.ok);
        prop_assert!(r.findings.iter().any(|f| f.seq == Some(named)), "op {} named {}: {}", op, named, r);
    }

    #[test]
    fn entries_in_any_order_with_duplicates_verify_unordered(perm in Just(()).prop_perturb(|_, mut rng| rng.next_u64())) {
        let (mut entries, media) = sample_encoded();
        let extra = entries[2].clone();
        entries.push(extra);
        // A deterministic shuffle from the proptest RNG.
        let mut state = perm;
        for k in (1..entries.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            entries.swap(k, (state >> 33) as usize % (k + 1));
        }
        let opts = VerifyOptions { media: Some(media_map(&media)), ..Default::default() };
        let r = verify_chain(&key().verifying_key(), entries.iter().map(Vec::as_slice), &opts);
        prop_assert!(r.ok, "{}", r);
    }
}

/// The human report says where each segment was recorded, a run of
/// segments without a fix for one reason on one line.
#[test]
fn the_human_report_shows_each_segments_position() {
    let k = key();
    let s = sample::build_positions(&k, 48);
    let bytes: Vec<Vec<u8>> = s.entries.iter().map(Encode::to_bytes).collect();
    let r = verify(&bytes, &s.media);
    assert!(r.ok, "{r}");
    let text = r.to_string();
    for line in [
        "    segment 4: no fix (no-fix-yet)\n",
        "    segment 6: 44.0110270, 87.3000375 ±8 m, fix 2026-07-01T09:00:17Z\n",
        "    segment 8: no fix (fix-lost)\n",
        "    segment 10: 44.0111080, 87.3001500 (accuracy unknown), fix 2026-07-01T09:00:25.900Z\n",
        "    segment 12: no fix (receiver-unreachable)\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    // Consecutive segments that state the same are one line.
    let same = sample::build(&k, &[3], 48);
    let bytes: Vec<Vec<u8>> = same.entries.iter().map(Encode::to_bytes).collect();
    let text = verify(&bytes, &same.media).to_string();
    assert!(
        text.contains("    segments 2–4: 44.0110000, 87.3080000 ±8 m, fix time not recorded\n"),
        "{text}"
    );
}

/// Step 11: a segment whose frame count disagrees with its span by more than
/// one frame is a finding unless a frames-dropped event names it.
#[test]
fn frame_count_that_disagrees_with_the_span_needs_a_frames_dropped_event() {
    let k = key();
    let mut head = ChainHead::GENESIS;
    let mut entries = Vec::new();
    // (frames, fps_num, fps_den, flags, span in ticks, a finding expected)
    let cases: [(u32, u32, u32, u8, i64, bool); 11] = [
        (120, 30, 1, 0, 360_000, false),
        (119, 30, 1, 0, 360_000, false), // one frame: rounding
        (121, 30, 1, 0, 360_000, false),
        (118, 30, 1, 0, 360_000, true),
        (122, 30, 1, 0, 360_000, true),
        (100, 30, 1, 0, 360_000, false), // named by the event below
        (120, 30_000, 1001, 0, 360_000, false), // 119.88 frames
        (0, 0, 1, 0x01, 360_000, false), // salvaged: no rate
        (0, 30, 0, 0, 360_000, false),   // no rate
        (0, 25, 1, 0, 0, false),
        (0, u32::MAX, 1, 0, i64::MAX, true), // 128 bits: no overflow
    ];
    let mut want = Vec::new();
    let mut pts = 0i64;
    for (i, &(frames, fps_num, fps_den, flags, span, finding)) in cases.iter().enumerate() {
        let part = u32::try_from(i).unwrap();
        let start_pts = if span == i64::MAX { 0 } else { pts };
        let mut c = codec();
        c.fps_num = fps_num;
        c.fps_den = fps_den;
        let body = Body::Segment(SegmentBody {
            recording: [7; 16],
            part,
            media_sha256: [0; 32],
            media_len: 10,
            start_pts,
            end_pts: start_pts + span,
            start_mono_us: 0,
            video_frames: frames,
            audio_samples: 0,
            codec: c,
            flags,
            case: None,
            activity: None,
        });
        pts = pts.saturating_add(span);
        let clock = Clock {
            wall_us: 1_000_000 + i64::try_from(i).unwrap(),
            mono_us: 1_000 + i as u64,
            boot: 1,
        };
        let e = head.append(&k, clock, None, body).unwrap();
        if finding {
            want.push(e.seq());
        }
        entries.push(e.to_bytes());
    }
    // Part 5 is named; an event naming part 3 of another recording excuses nothing.
    for (recording, part) in [([7u8; 16], 5u32), ([8; 16], 3)] {
        let clock = Clock {
            wall_us: 2_000_000,
            mono_us: 2_000,
            boot: 1,
        };
        let ev = Event::FramesDropped {
            recording,
            part,
            first_pts: 0,
            end_pts: 60_000,
            frames: 20,
        };
        entries.push(
            head.append(&k, clock, None, Body::Event(ev))
                .unwrap()
                .to_bytes(),
        );
    }
    let r = verify_chain(
        &k.verifying_key(),
        entries.iter().map(Vec::as_slice),
        &VerifyOptions::default(),
    );
    let got: Vec<u64> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::FrameCountMismatch)
        .filter_map(|f| f.seq)
        .collect();
    assert_eq!(got, want, "{r}");
}

/// An event whose span ends before it starts does not decode.
#[test]
fn frames_dropped_span_backwards_is_malformed() {
    let k = key();
    let ev = Event::FramesDropped {
        recording: [1; 16],
        part: 0,
        first_pts: 10,
        end_pts: 10,
        frames: 0,
    };
    let mut head = ChainHead::GENESIS;
    let e = head
        .append(
            &k,
            Clock {
                wall_us: 1,
                mono_us: 1,
                boot: 1,
            },
            None,
            Body::Event(ev),
        )
        .unwrap();
    let mut bytes = e.to_bytes();
    assert!(SignedEntry::from_bytes(&bytes).is_ok());
    // end_pts is the 8 bytes before the trailing frames u32 and signature.
    let at = bytes.len() - 64 - 4 - 1;
    bytes[at] = 9;
    assert!(SignedEntry::from_bytes(&bytes).is_err());
}
