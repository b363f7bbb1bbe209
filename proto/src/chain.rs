//! The chain verifier: from a device key and a bag of signed entries (in any
//! order, with holes, duplicates or forgeries) and optionally what the caller
//! observed of the media files, a [`Report`] of everything that is wrong.
//!
//! It never stops at the first problem. `ok` is true only when there is no
//! finding. A gap between two segments is a finding only when no signed event
//! explains it. The JSON form of the report (`serde_json::to_string(&report)`)
//! is the one every `--json` command prints; it is described in
//! `docs/FORMAT.md`, "Verification report".
//!
//! ```text
//! entries (any order) ──► decode ──► signature ──► by seq ──► links, holes, equivocation
//!                                                      └────► time, gaps, media
//! ```
//!
//! Signatures are checked together before the rest ([`crate::sigbatch`]:
//! the same answers as `verify_strict` for each, for about half the work,
//! on as many threads as [`SignatureCheck::Batch`] allows), or one at a
//! time as each entry is read ([`SignatureCheck::OneAtATime`], the way it
//! was done before, kept as the reference). The findings are the same.
//! [`verify_chains`] checks the signatures of several devices' chains
//! together, for callers with many short chains.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::codec::{Decode, DecodeError};
use crate::entry::{
    degrees_text, utc_text, EntryError, Event, Position, SignedEntry, ACCURACY_UNKNOWN, PTS_HZ,
};
use crate::identity::{DeviceId, Hash32};
use crate::sigbatch::{self, SigCheck};

mod frames;
use frames::check_frame_counts;

/// What the caller found of one segment's media file. proto does no I/O: the
/// agent and server hash the files and hand in the results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaObservation {
    /// The bytes exist; their SHA-256 and length.
    Present {
        /// SHA-256 of the file's bytes.
        sha256: Hash32,
        /// Its length.
        len: u64,
    },
    /// The holder let its copy go after the archive acknowledged it (the
    /// agent after its keep period): not checked here, and not a finding.
    Released,
    /// The bytes are not there.
    Absent {
        /// Why or since when, for the report (e.g. "promised 3 h ago").
        note: Option<String>,
    },
}

/// What to check besides the entries themselves.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// When set, every segment's media is checked against this map; a segment
    /// whose seq is missing from the map is `missing-media`.
    pub media: Option<BTreeMap<u64, MediaObservation>>,
    /// The chain head known from elsewhere (the server's receipts): entries up
    /// to this seq must exist and the last must have this hash. Without it, a
    /// chain whose tail was cut off cannot be told from a shorter chain.
    pub expected_head: Option<(u64, Hash32)>,
    /// Tolerance, in 90 kHz ticks, for presentation-time continuity between
    /// consecutive segments of one recording. 0 demands exact continuity.
    pub pts_tolerance: i64,
    /// The entries are a log in chain order (a local chain file, an export
    /// package): an entry whose seq is not above every seq before it is
    /// reported as `out-of-order` (a reordered or duplicated record). Without
    /// it, entries may come in any order and exact duplicates are harmless, as
    /// when they arrive over a network.
    pub ordered: bool,
    /// How the signatures are checked; the findings do not depend on it.
    pub signatures: SignatureCheck,
}

/// How [`verify_chain`] checks signatures. Every way gives the same report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// All of them first, together ([`sigbatch::verify_strict_many`]), on up
    /// to `threads` threads, the caller's included (0 counts as 1).
    Batch {
        /// The most threads to use.
        threads: usize,
    },
    /// Each with `verify_strict` as its entry is read: how it was done before
    /// batch verification, kept as the reference that the tests and the
    /// benchmark compare the batch with.
    OneAtATime,
}

impl Default for SignatureCheck {
    fn default() -> Self {
        SignatureCheck::Batch { threads: 1 }
    }
}

/// The kind of a finding, as named in the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Bytes that do not decode as a signed entry.
    Malformed,
    /// The entry names another device than the key.
    WrongDevice,
    /// The signature does not verify.
    BadSignature,
    /// `prev_hash` is not the hash of the previous entry.
    BrokenLink,
    /// Two different validly signed entries with the same seq.
    Equivocation,
    /// A seq between 0 and the head has no entry.
    MissingEntry,
    /// The media bytes do not match the signed hash or length.
    MediaMismatch,
    /// The media bytes are not there.
    MissingMedia,
    /// A clock runs backwards without a signed clock adjustment.
    TimeBackwards,
    /// Media stops and resumes with no signed event explaining why.
    UnexplainedGap,
    /// The entry at the seq of the head known from receipts has another hash.
    HeadMismatch,
    /// The chain has no valid entry at the seq of the head known from receipts.
    TruncatedChain,
    /// In an ordered log, an entry that comes after a higher or equal seq.
    OutOfOrder,
    /// A segment's `video_frames` disagrees by more than one frame with
    /// what its span holds at its frame rate, and no signed `frames-dropped`
    /// event names the segment: frames lost without a word.
    FrameCountMismatch,
    /// A kept media acknowledgement of the server that does not verify under
    /// its receipt key or names no segment of the chain with that hash and
    /// length (reported by `fieldseal-agent verify`, FORMAT.md §9 `acks.log`;
    /// never by [`verify_chain`], which sees no acknowledgements).
    BadAck,
}

impl FindingKind {
    /// The kebab-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Malformed => "malformed",
            FindingKind::WrongDevice => "wrong-device",
            FindingKind::BadSignature => "bad-signature",
            FindingKind::BrokenLink => "broken-link",
            FindingKind::Equivocation => "equivocation",
            FindingKind::MissingEntry => "missing-entry",
            FindingKind::MediaMismatch => "media-mismatch",
            FindingKind::MissingMedia => "missing-media",
            FindingKind::TimeBackwards => "time-backwards",
            FindingKind::UnexplainedGap => "unexplained-gap",
            FindingKind::HeadMismatch => "head-mismatch",
            FindingKind::TruncatedChain => "truncated-chain",
            FindingKind::OutOfOrder => "out-of-order",
            FindingKind::FrameCountMismatch => "frame-count-mismatch",
            FindingKind::BadAck => "bad-ack",
        }
    }
}

/// One thing wrong, with the entry it concerns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The sequence number concerned (`null` when the bytes did not even decode).
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: FindingKind,
    /// Human-readable detail.
    pub detail: String,
}

/// A stretch of time between two segments not covered by media.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// The segment before the gap.
    pub after_seq: u64,
    /// The segment after the gap.
    pub before_seq: u64,
    /// Length of the gap in seconds (device clocks).
    pub seconds: f64,
    /// The signed reason, or `null` when nothing explains it.
    pub reason: Option<String>,
    /// The seq of the event that explains it, if any.
    pub reason_seq: Option<u64>,
}

/// Where a segment was recorded, as its signed entry states it (`positions`
/// in `docs/FORMAT.md` §5). Every member is always present; those that do
/// not apply are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentPosition {
    /// The segment's seq.
    pub seq: u64,
    /// `fix`, `no-fix`, or `unstated` (the entry says nothing: tag 0).
    pub status: &'static str,
    /// Latitude, 1e-7 degree (a fix).
    pub lat_e7: Option<i32>,
    /// Longitude, 1e-7 degree (a fix).
    pub lon_e7: Option<i32>,
    /// Accuracy radius, metres; 65535: unknown (a fix).
    pub accuracy_m: Option<u16>,
    /// Time of the fix, µs since the epoch (a fix of tag 2; `null` for tag 1).
    pub fix_us: Option<i64>,
    /// Why there is no fix (`no-receiver`, `receiver-unreachable`,
    /// `no-fix-yet`, `fix-lost`).
    pub no_fix: Option<&'static str>,
}

impl SegmentPosition {
    /// The report's line for segment `seq` stating `p`.
    pub fn new(seq: u64, p: Option<&Position>) -> Self {
        let point = p.and_then(Position::point);
        SegmentPosition {
            seq,
            status: match p {
                None => "unstated",
                Some(Position::NoFix(_)) => "no-fix",
                Some(_) => "fix",
            },
            lat_e7: point.map(|x| x.lat_e7),
            lon_e7: point.map(|x| x.lon_e7),
            accuracy_m: point.map(|x| x.accuracy_m),
            fix_us: match p {
                Some(Position::Fix { fix_us, .. }) => Some(*fix_us),
                _ => None,
            },
            no_fix: match p {
                Some(Position::NoFix(why)) => Some(why.as_str()),
                _ => None,
            },
        }
    }
}

impl fmt::Display for SegmentPosition {
    /// What the entry states, without the seq: `44.0110000, 87.3080000 ±8 m,
    /// fix 2026-07-01T08:00:15Z`, `no fix (fix-lost)`, `position not stated`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(lat), Some(lon), Some(acc)) = (self.lat_e7, self.lon_e7, self.accuracy_m) {
            write!(f, "{}, {}", degrees_text(lat), degrees_text(lon))?;
            if acc == ACCURACY_UNKNOWN {
                write!(f, " (accuracy unknown)")?;
            } else {
                write!(f, " ±{acc} m")?;
            }
            return match self.fix_us {
                Some(t) => write!(f, ", fix {}", utc_text(t)),
                None => write!(f, ", fix time not recorded"),
            };
        }
        match self.no_fix {
            Some(why) => write!(f, "no fix ({why})"),
            None => write!(f, "position not stated"),
        }
    }
}

/// The verification report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// True iff `findings` is empty.
    pub ok: bool,
    /// The device whose chain this is.
    pub device: DeviceId,
    /// Seqs holding a valid entry (versions of one seq count once; see
    /// `docs/FORMAT.md` §4 step 4 for which version is kept).
    pub entries: u64,
    /// Of which segments.
    pub segments: u64,
    /// Of which events.
    pub events: u64,
    /// Highest seq holding a valid entry, if any.
    pub head_seq: Option<u64>,
    /// Hash of the entry at `head_seq`, hex.
    pub head_hash: Option<String>,
    /// Seconds of media the segments cover.
    pub media_seconds: f64,
    /// Segments whose media was checked and matched.
    pub media_verified: u64,
    /// Every interval between segments not covered by media.
    pub gaps: Vec<Gap>,
    /// Where each kept segment was recorded, in seq order.
    pub positions: Vec<SegmentPosition>,
    /// Everything wrong, sorted by seq (`None` first), then kind (enum order).
    pub findings: Vec<Finding>,
}

/// Verify the chain of the device with `key` from `entries` (encoded signed
/// entries in any order).
pub fn verify_chain<'a, I>(key: &VerifyingKey, entries: I, opts: &VerifyOptions) -> Report
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let chain = Chain {
        key,
        entries: entries.into_iter().collect(),
        opts,
    };
    verify_chains(std::slice::from_ref(&chain), opts.signatures)
        .pop()
        .expect("one report per chain")
}

/// One device's chain for [`verify_chains`].
#[derive(Debug, Clone)]
pub struct Chain<'a> {
    /// The device's key.
    pub key: &'a VerifyingKey,
    /// Its encoded signed entries, in any order.
    pub entries: Vec<&'a [u8]>,
    /// What to check (its `signatures` is not used: see [`verify_chains`]).
    pub opts: &'a VerifyOptions,
}

/// [`verify_chain`] for each chain, one report each, in order, with the
/// signatures of them all checked as `signatures` says: together, a
/// server's many short chains cost what one long chain does.
pub fn verify_chains(chains: &[Chain<'_>], signatures: SignatureCheck) -> Vec<Report> {
    let threads = match signatures {
        SignatureCheck::Batch { threads } => threads.max(1),
        SignatureCheck::OneAtATime => 1,
    };
    let decoded: Vec<Vec<Result<SignedEntry, DecodeError>>> = chains
        .iter()
        .map(|c| {
            sigbatch::on_threads(&c.entries, threads, |_, part| {
                part.iter().map(|b| SignedEntry::from_bytes(b)).collect()
            })
        })
        .collect();
    let verdicts = match signatures {
        SignatureCheck::Batch { .. } => Some(check_together(chains, &decoded, threads)),
        SignatureCheck::OneAtATime => None,
    };
    let mut verdicts = verdicts.map(Vec::into_iter);
    chains
        .iter()
        .zip(decoded)
        .map(|(c, entries)| {
            let checked = verdicts.as_mut().and_then(Iterator::next);
            assemble(c.key, entries, checked, c.opts)
        })
        .collect()
}

/// What [`SignedEntry::verify`] would say of each decoded entry of each
/// chain (`Ok` for those that did not decode: never asked), with every
/// signature checked in one [`sigbatch::verify_strict_many`].
fn check_together(
    chains: &[Chain<'_>],
    decoded: &[Vec<Result<SignedEntry, DecodeError>>],
    threads: usize,
) -> Vec<Vec<Result<(), EntryError>>> {
    let mut checks = Vec::new();
    let mut verdicts: Vec<Vec<Result<(), EntryError>>> = Vec::with_capacity(chains.len());
    for (c, entries) in chains.iter().zip(decoded) {
        let expected = DeviceId::from_key(c.key);
        let mut mine = Vec::with_capacity(entries.len());
        for (bytes, e) in c.entries.iter().zip(entries) {
            mine.push(match e {
                Ok(e) if e.entry.device != expected => Err(EntryError::WrongDevice {
                    expected,
                    found: e.entry.device,
                }),
                Ok(_) => {
                    // The entry decoded from exactly these bytes, and decoding
                    // is canonical: they are its signing bytes and signature.
                    let (msg, sig) = bytes.split_at(bytes.len() - 64);
                    let sig = sig.try_into().expect("64 bytes");
                    checks.push(SigCheck {
                        key: c.key,
                        msg,
                        sig,
                    });
                    Ok(())
                }
                Err(_) => Ok(()),
            });
        }
        verdicts.push(mine);
    }
    let mut good = sigbatch::verify_strict_many(&checks, threads).into_iter();
    for ((c, entries), mine) in chains.iter().zip(decoded).zip(&mut verdicts) {
        let expected = DeviceId::from_key(c.key);
        for (e, v) in entries.iter().zip(mine.iter_mut()) {
            if matches!(e, Ok(e) if e.entry.device == expected)
                && !good.next().expect("one answer per check")
            {
                *v = Err(EntryError::BadSignature);
            }
        }
    }
    verdicts
}

/// The report of one chain from its decoded entries, in the order given,
/// and what [`SignedEntry::verify`] says of each (`None`: ask it here, as
/// each entry is read).
fn assemble(
    key: &VerifyingKey,
    entries: Vec<Result<SignedEntry, DecodeError>>,
    checked: Option<Vec<Result<(), EntryError>>>,
    opts: &VerifyOptions,
) -> Report {
    let device = DeviceId::from_key(key);
    let mut findings = Vec::new();
    let mut by_seq: BTreeMap<u64, SignedEntry> = BTreeMap::new();
    // Seqs for which some entry was presented but was not valid: they are
    // reported for what they are, not again as missing.
    let mut invalid_seqs = BTreeSet::new();
    let mut highest_seen: Option<u64> = None;
    let mut checked = checked.map(Vec::into_iter);

    for decoded in entries {
        let verdict = checked.as_mut().and_then(Iterator::next);
        let signed = match decoded {
            Ok(s) => s,
            Err(e) => {
                findings.push(Finding {
                    seq: None,
                    kind: FindingKind::Malformed,
                    detail: format!("entry does not decode: {e}"),
                });
                continue;
            }
        };
        let seq = signed.seq();
        if opts.ordered {
            if let Some(h) = highest_seen.filter(|&h| seq <= h) {
                findings.push(Finding {
                    seq: Some(seq),
                    kind: FindingKind::OutOfOrder,
                    detail: format!("entry {seq} comes after entry {h} in the log"),
                });
            }
            highest_seen = highest_seen.max(Some(seq));
        }
        if let Err(e) = verdict.unwrap_or_else(|| signed.verify(key)) {
            let kind = match e {
                EntryError::WrongDevice { .. } => FindingKind::WrongDevice,
                _ => FindingKind::BadSignature,
            };
            findings.push(Finding {
                seq: Some(seq),
                kind,
                detail: e.to_string(),
            });
            invalid_seqs.insert(seq);
            continue;
        }
        match by_seq.get(&seq) {
            Some(existing) if existing.hash() == signed.hash() => {} // an exact duplicate is harmless
            Some(existing) => {
                let (a, b) = (hex::encode(existing.hash()), hex::encode(signed.hash()));
                findings.push(Finding {
                    seq: Some(seq),
                    kind: FindingKind::Equivocation,
                    detail: format!("two different signed entries for seq {seq}: {a} and {b}"),
                });
                // Keep the one the next entry links to, if it is already known.
                if seq
                    .checked_add(1)
                    .and_then(|next| by_seq.get(&next))
                    .is_some_and(|n| n.entry.prev_hash == signed.hash())
                {
                    by_seq.insert(seq, signed);
                }
            }
            None => {
                by_seq.insert(seq, signed);
            }
        }
    }

    let head_seq = by_seq.keys().next_back().copied();
    let expected_last = opts.expected_head.map(|(s, _)| s);
    let last = match (head_seq, expected_last) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let mut present: BTreeSet<u64> = by_seq.keys().copied().collect();
    present.extend(invalid_seqs.iter().copied());
    find_holes(&present, last, &mut findings);
    if let Some(head) = opts.expected_head {
        check_head(&by_seq, head, head_seq, &mut findings);
    }

    // Links: each entry must name the hash of its predecessor (if we have it).
    for (&seq, e) in &by_seq {
        let expected_prev = if seq == 0 {
            Some([0u8; 32])
        } else {
            by_seq.get(&(seq - 1)).map(SignedEntry::hash)
        };
        if let Some(prev) = expected_prev {
            if e.entry.prev_hash != prev {
                findings.push(Finding {
                    seq: Some(seq),
                    kind: FindingKind::BrokenLink,
                    detail: format!(
                        "prev_hash {} is not the hash of entry {} ({})",
                        hex::encode(e.entry.prev_hash),
                        seq.wrapping_sub(1),
                        hex::encode(prev)
                    ),
                });
            }
        }
    }

    let timeline = check_time_and_gaps(&by_seq, opts, &mut findings);
    let media_verified = check_media(&by_seq, opts, &mut findings);
    check_frame_counts(&by_seq, &mut findings);

    findings.sort_by_key(|f| (f.seq, f.kind));
    let segments = by_seq
        .values()
        .filter(|e| e.entry.segment().is_some())
        .count() as u64;
    Report {
        ok: findings.is_empty(),
        device,
        entries: by_seq.len() as u64,
        segments,
        events: by_seq.len() as u64 - segments,
        head_seq,
        head_hash: head_seq.map(|s| hex::encode(by_seq[&s].hash())),
        media_seconds: timeline.media_seconds,
        media_verified,
        gaps: timeline.gaps,
        positions: by_seq
            .iter()
            .filter(|(_, e)| e.entry.segment().is_some())
            .map(|(&seq, e)| SegmentPosition::new(seq, e.entry.position.as_ref()))
            .collect(),
        findings,
    }
}

/// Step 5 of `docs/FORMAT.md` §4: each maximal run of seqs from 0 to `last`
/// that holds neither a valid nor a rejected entry is one `missing-entry`
/// finding, so a wiped chain gives one finding, not millions. Every bound is
/// checked: a seq or head of 2^64 − 1 has no successor.
fn find_holes(present: &BTreeSet<u64>, last: Option<u64>, findings: &mut Vec<Finding>) {
    let Some(last) = last else { return };
    let mut missing = |first: u64, end: u64| {
        findings.push(Finding {
            seq: Some(first),
            kind: FindingKind::MissingEntry,
            detail: if first == end {
                format!("entry {first} is missing")
            } else {
                format!("entries {first}..={end} are missing")
            },
        });
    };
    // The first seq not yet accounted for; `present` is sorted and has no
    // duplicates, so every `s` is at least `expect`.
    let mut expect = 0u64;
    for &s in present {
        if s > expect {
            missing(expect, s - 1);
        }
        match s.checked_add(1) {
            Some(next) => expect = next,
            None => return, // s = 2^64 − 1 = last: nothing can follow
        }
    }
    if last >= expect {
        missing(expect, last);
    }
}

/// Step 6: the receipts' head `(seq, hash)` against the kept entries. No
/// entry of `seq` is `truncated-chain` (entries cut off the tail); an entry
/// of `seq` with another hash is `head-mismatch` (the chain was rewritten, or
/// the head names another chain).
fn check_head(
    by_seq: &BTreeMap<u64, SignedEntry>,
    (seq, hash): (u64, Hash32),
    head_seq: Option<u64>,
    findings: &mut Vec<Finding>,
) {
    match by_seq.get(&seq) {
        Some(e) if e.hash() == hash => {}
        Some(e) => findings.push(Finding {
            seq: Some(seq),
            kind: FindingKind::HeadMismatch,
            detail: format!(
                "entry {seq} has hash {}, but the receipts name {}",
                hex::encode(e.hash()),
                hex::encode(hash)
            ),
        }),
        None => findings.push(Finding {
            seq: Some(seq),
            kind: FindingKind::TruncatedChain,
            detail: format!(
                "the receipts show the chain reached seq {seq}; the chain here ends at {}",
                head_seq.map_or("nothing".to_string(), |s| s.to_string())
            ),
        }),
    }
}

struct Timeline {
    media_seconds: f64,
    gaps: Vec<Gap>,
}

fn check_time_and_gaps(
    by_seq: &BTreeMap<u64, SignedEntry>,
    opts: &VerifyOptions,
    findings: &mut Vec<Finding>,
) -> Timeline {
    let mut media_seconds = 0.0;
    let mut gaps = Vec::new();
    let mut prev: Option<&SignedEntry> = None;
    let mut prev_segment: Option<&SignedEntry> = None;
    // The best explanation seen since the previous segment.
    let mut reason: Option<(u8, String, u64)> = None;

    for (&seq, e) in by_seq {
        let en = &e.entry;
        if let Some(p) = prev {
            let pe = &p.entry;
            let adjusted = matches!(en.event(), Some(Event::ClockAdjusted { .. }));
            if en.boot < pe.boot {
                findings.push(Finding {
                    seq: Some(seq),
                    kind: FindingKind::TimeBackwards,
                    detail: format!("boot counter went back from {} to {}", pe.boot, en.boot),
                });
            } else if en.boot == pe.boot && en.mono_us < pe.mono_us {
                findings.push(Finding {
                    seq: Some(seq),
                    kind: FindingKind::TimeBackwards,
                    detail: format!(
                        "monotonic clock went back by {:.3} s within one boot",
                        (pe.mono_us - en.mono_us) as f64 / 1e6
                    ),
                });
            }
            // A clock adjustment event is signed with the clock already changed;
            // its own wall time may therefore be earlier than its predecessor's.
            if en.wall_us < pe.wall_us && !adjusted {
                findings.push(Finding {
                    seq: Some(seq),
                    kind: FindingKind::TimeBackwards,
                    detail: format!(
                        "wall clock went back by {:.3} s with no signed clock adjustment",
                        (pe.wall_us - en.wall_us) as f64 / 1e6
                    ),
                });
            }
        }

        match (&en.body, en.event()) {
            (_, Some(ev)) => {
                if let Some((rank, text)) = ev.gap_reason() {
                    if reason.as_ref().is_none_or(|(r, _, _)| rank > *r) {
                        reason = Some((rank, text.to_owned(), seq));
                    }
                }
            }
            (crate::entry::Body::Segment(s), None) => {
                media_seconds += s.seconds();
                if let Some(ps) = prev_segment {
                    let a = ps.entry.segment().expect("prev_segment holds segments");
                    let contiguous = a.recording == s.recording
                        && a.part.checked_add(1) == Some(s.part)
                        && (i128::from(s.start_pts) - i128::from(a.end_pts)).abs()
                            <= i128::from(opts.pts_tolerance);
                    if !contiguous {
                        let seconds = gap_seconds(ps, e);
                        let (reason_text, reason_seq) = match reason.take() {
                            Some((_, t, q)) => (Some(t), Some(q)),
                            None => (None, None),
                        };
                        if reason_text.is_none() {
                            findings.push(Finding {
                                seq: Some(seq),
                                kind: FindingKind::UnexplainedGap,
                                detail: format!(
                                    "{seconds:.3} s without media between segments {} and {seq}, \
                                     and no signed event explains it",
                                    ps.seq()
                                ),
                            });
                        }
                        gaps.push(Gap {
                            after_seq: ps.seq(),
                            before_seq: seq,
                            seconds,
                            reason: reason_text,
                            reason_seq,
                        });
                    }
                }
                reason = None;
                prev_segment = Some(e);
            }
            _ => {}
        }
        // Time is compared only between entries with no hole between them:
        // across a hole the missing-entry finding already says enough.
        prev = Some(e);
        let successor = seq.checked_add(1);
        if let Some(next) = successor.and_then(|s| by_seq.range(s..).next()) {
            if Some(*next.0) != successor {
                prev = None;
                prev_segment = None;
                reason = None;
            }
        }
    }
    Timeline {
        media_seconds,
        gaps,
    }
}

/// Seconds between the end of segment `a` and the start of segment `b`,
/// by the monotonic clock when both were recorded in the same boot and by the
/// wall clock otherwise. Never negative.
fn gap_seconds(a: &SignedEntry, b: &SignedEntry) -> f64 {
    let (ea, eb) = (&a.entry, &b.entry);
    let (sa, sb) = (
        ea.segment().expect("segment"),
        eb.segment().expect("segment"),
    );
    // In 128 bits: every value is a 64-bit field of a signed entry, so no sum
    // or difference below can overflow, whatever a (validly signed) entry says.
    let w = |v: i64| i128::from(v);
    let u = |v: u64| i128::from(v);
    let dur_a_us = (w(sa.end_pts) - w(sa.start_pts)) * 1_000_000 / i128::from(PTS_HZ);
    let us = if ea.boot == eb.boot {
        u(sb.start_mono_us) - (u(sa.start_mono_us) + dur_a_us)
    } else {
        // Wall time of each first frame: the entry's wall clock minus how long
        // after the first frame the entry was signed.
        let wall_a = w(ea.wall_us) - (u(ea.mono_us) - u(sa.start_mono_us));
        let wall_b = w(eb.wall_us) - (u(eb.mono_us) - u(sb.start_mono_us));
        wall_b - (wall_a + dur_a_us)
    };
    (us.max(0) as f64) / 1e6
}

fn check_media(
    by_seq: &BTreeMap<u64, SignedEntry>,
    opts: &VerifyOptions,
    findings: &mut Vec<Finding>,
) -> u64 {
    let Some(media) = &opts.media else { return 0 };
    let mut verified = 0;
    for (&seq, e) in by_seq {
        let Some(s) = e.entry.segment() else { continue };
        match media.get(&seq) {
            Some(MediaObservation::Present { sha256, len }) => {
                if *sha256 == s.media_sha256 && *len == s.media_len {
                    verified += 1;
                } else {
                    findings.push(Finding {
                        seq: Some(seq),
                        kind: FindingKind::MediaMismatch,
                        detail: format!(
                            "media is {len} bytes with SHA-256 {}; the signed entry says {} bytes with {}",
                            hex::encode(sha256),
                            s.media_len,
                            hex::encode(s.media_sha256)
                        ),
                    });
                }
            }
            Some(MediaObservation::Released) => {}
            Some(MediaObservation::Absent { note }) => findings.push(Finding {
                seq: Some(seq),
                kind: FindingKind::MissingMedia,
                detail: note
                    .clone()
                    .unwrap_or_else(|| "the segment's media file is not there".into()),
            }),
            None => findings.push(Finding {
                seq: Some(seq),
                kind: FindingKind::MissingMedia,
                detail: "the segment's media file is not there".into(),
            }),
        }
    }
    verified
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "device {}: {}",
            self.device,
            if self.ok { "OK" } else { "FAILED" }
        )?;
        writeln!(
            f,
            "  {} entries ({} segments, {} events), head {}",
            self.entries,
            self.segments,
            self.events,
            self.head_seq.map_or("-".into(), |s| s.to_string())
        )?;
        writeln!(
            f,
            "  {:.1} s of media, {} segment(s) checked against their bytes",
            self.media_seconds, self.media_verified
        )?;
        if !self.gaps.is_empty() {
            writeln!(f, "  gaps:")?;
            for g in &self.gaps {
                writeln!(
                    f,
                    "    after {} before {}: {:.3} s, {}",
                    g.after_seq,
                    g.before_seq,
                    g.seconds,
                    match (&g.reason, g.reason_seq) {
                        (Some(r), Some(q)) => format!("{r} (signed in entry {q})"),
                        (Some(r), None) => r.clone(),
                        _ => "UNEXPLAINED".into(),
                    }
                )?;
            }
        }
        if !self.positions.is_empty() {
            writeln!(f, "  positions:")?;
            // A run of segments that state the same thing (no fix for the
            // same reason, say) is one line, whatever events lie between.
            let mut i = 0;
            while i < self.positions.len() {
                let p = &self.positions[i];
                let text = p.to_string();
                let mut j = i;
                while self
                    .positions
                    .get(j + 1)
                    .is_some_and(|q| q.to_string() == text)
                {
                    j += 1;
                }
                if j == i {
                    writeln!(f, "    segment {}: {text}", p.seq)?;
                } else {
                    let last = self.positions[j].seq;
                    writeln!(f, "    segments {}–{last}: {text}", p.seq)?;
                }
                i = j + 1;
            }
        }
        if !self.findings.is_empty() {
            writeln!(f, "  findings:")?;
            for x in &self.findings {
                let seq = x.seq.map_or("-".into(), |s| s.to_string());
                writeln!(f, "    seq {seq}: {}: {}", x.kind.as_str(), x.detail)?;
            }
        }
        Ok(())
    }
}
