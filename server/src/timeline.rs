//! A device's chain as a timeline in the server's time: its segments as
//! [`Span`]s, the signed reasons for the stretches between them, and its
//! identity-shown marks — what [`crate::compliance`] and the review pages
//! need. Pure: the caller reads the chain, the receipts and what the archive
//! holds, and passes them in.
//!
//! **Time.** Entries carry the device's wall clock; receipts carry the
//! server's. A device clock can be off, so every time here is the device's
//! wall time plus its measured skew: within one *clock epoch* (one boot, up
//! to a signed clock adjustment) the skew is the smallest `receipt time −
//! entry time` seen, i.e. the offset at the entry that reached the server
//! fastest (hash-first sync sends each entry as soon as it is signed) —
//! when the receipts show the device was online while it recorded. An
//! epoch recorded offline and sent later in one burst says only that the
//! clock is not behind by more than that (see [`skews`]); an epoch with no
//! receipt borrows the skew of the nearest one before it, or 0.
//!
//! **Segments.** A segment's first frame is at its entry's wall time minus
//! the monotonic time since `start_mono_us` (same boot); it lasts
//! `end_pts − start_pts` at 90 kHz. It *continues* the previous segment of
//! its recording when it is the next part and its `start_pts` is that
//! segment's `end_pts` (within the chain verifier's tolerance).

use fieldseal_proto::chain::VerifyOptions;
use fieldseal_proto::entry::{Event, SignedEntry, PTS_HZ};
use fieldseal_proto::identity::DeviceId;

use crate::compliance::{IdentityMark, Reason, Span};

/// One entry of a device's chain with what the server knows of it.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The entry.
    pub entry: &'a SignedEntry,
    /// Server time of its receipt, if accepted.
    pub receipt_us: Option<i64>,
    /// The entry verified (signature, link).
    pub verified: bool,
    /// For a segment: when the server held its verified bytes (also for
    /// bytes it no longer holds because they expired).
    pub media_us: Option<i64>,
    /// For a segment: its bytes expired under retention (`retention.rs`):
    /// held once, removed on purpose, not verified now.
    pub expired: bool,
}

/// A device's timeline.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Its segments.
    pub spans: Vec<Span>,
    /// Signed reasons for stretches without media.
    pub reasons: Vec<Reason>,
    /// Identity shown.
    pub identity: Vec<IdentityMark>,
    /// The skew applied from each epoch's first seq on: (seq, µs to add to
    /// device time).
    pub skew: Vec<(u64, i64)>,
}

/// Clock epochs: the index of each epoch's first entry.
fn epochs(chain: &[Known<'_>]) -> Vec<usize> {
    let mut starts = Vec::new();
    for (i, k) in chain.iter().enumerate() {
        let e = &k.entry.entry;
        let new = match i.checked_sub(1).map(|j| &chain[j].entry.entry) {
            None => true,
            Some(p) => p.boot != e.boot || matches!(e.event(), Some(Event::ClockAdjusted { .. })),
        };
        if new {
            starts.push(i);
        }
    }
    starts
}

/// Receipts within this much of the smallest `receipt − entry` count as
/// delivered as promptly as the fastest one.
const PROMPT_US: i64 = 500_000;
/// Prompt receipts spread over at least this much device time show steady
/// delivery (a device online while it signed them), not one catch-up burst.
const STEADY_US: i64 = 2_000_000;

/// The skew of each epoch. `receipt − entry = skew + delay` with a delay of
/// zero or more, so the smallest value `m` bounds the skew from above, and
/// is the skew itself when some entry arrived at once. That holds when the
/// device was online: then many entries, spread over the epoch, come within
/// [`PROMPT_US`] of `m`. A device that recorded offline and synced later
/// sends the epoch in one burst: `receipt − entry` then falls entry by entry
/// and only the last few are near `m`, which is the clock's offset plus
/// the time the device was offline. Such a bound is used only where it
/// proves the clock ahead (`m < 0`); otherwise the epoch keeps the skew of
/// the epoch before it (or 0), capped at `m`.
fn skews(chain: &[Known<'_>], starts: &[usize]) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::with_capacity(starts.len());
    for (n, &s) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(chain.len());
        let measured: Vec<(i64, i64)> = chain[s..end]
            .iter()
            .filter_map(|k| {
                let wall = k.entry.entry.wall_us;
                k.receipt_us.map(|r| (r.saturating_sub(wall), wall))
            })
            .collect();
        let before = out.last().copied().unwrap_or(0);
        let Some(m) = measured.iter().map(|x| x.0).min() else {
            out.push(before);
            continue;
        };
        let prompt = measured
            .iter()
            .filter(|x| x.0 <= m.saturating_add(PROMPT_US));
        let (first, last) = prompt.fold((i64::MAX, i64::MIN), |(a, b), x| (a.min(x.1), b.max(x.1)));
        let steady = last.saturating_sub(first) >= STEADY_US;
        out.push(if steady || m < 0 { m } else { before.min(m) });
    }
    out
}

/// µs of `pts` ticks at 90 kHz.
fn pts_us(ticks: i64) -> i64 {
    i64::try_from(i128::from(ticks) * 1_000_000 / i128::from(PTS_HZ)).unwrap_or(i64::MAX)
}

/// Build the timeline of one device's chain (`chain` in seq order, with no
/// hole: the caller cuts at the first missing entry). `officer_at(t)` names
/// the officer carrying the device at server time `t`.
pub fn device_timeline(
    device: DeviceId,
    chain: &[Known<'_>],
    officer_at: impl Fn(i64) -> Option<String>,
) -> Timeline {
    let starts = epochs(chain);
    let skew_of = skews(chain, &starts);
    let tolerance = VerifyOptions::default().pts_tolerance;
    let mut t = Timeline {
        skew: starts
            .iter()
            .zip(&skew_of)
            .map(|(&i, &s)| (chain[i].entry.seq(), s))
            .collect(),
        ..Timeline::default()
    };
    let mut epoch = 0;
    // The previous segment (index into t.spans, its part and end_pts), and
    // the best reason seen since.
    let mut prev: Option<(usize, u32, i64)> = None;
    let mut reason: Option<(u8, String, u64, i64)> = None;
    for (i, k) in chain.iter().enumerate() {
        while epoch + 1 < starts.len() && starts[epoch + 1] <= i {
            epoch += 1;
        }
        let e = &k.entry.entry;
        let at = e.wall_us.saturating_add(skew_of[epoch]);
        if let Some(ev) = e.event() {
            if let Event::IdentityShown { .. } = ev {
                t.identity.push(IdentityMark {
                    device,
                    seq: e.seq,
                    at_us: at,
                });
            }
            if let Some((rank, text)) = ev.gap_reason() {
                if reason.as_ref().is_none_or(|r| rank > r.0) {
                    reason = Some((rank, text.to_owned(), e.seq, at));
                }
            }
            continue;
        }
        let Some(s) = e.segment() else { continue };
        let since_start =
            i64::try_from(e.mono_us.saturating_sub(s.start_mono_us)).unwrap_or(i64::MAX);
        let continues = prev.and_then(|(j, part, end_pts)| {
            let p = &t.spans[j];
            (p.recording == s.recording
                && part.checked_add(1) == Some(s.part)
                && (i128::from(s.start_pts) - i128::from(end_pts)).abs() <= i128::from(tolerance))
            .then_some((p.seq, p.end_us))
        });
        // A continuing segment starts where the one before ended: the
        // presentation times say no frame lies between them, and the few
        // µs that the wall-minus-monotonic reconstruction puts there are
        // rounding, not a gap.
        let start = match continues {
            Some((_, prev_end)) => prev_end,
            None => at.saturating_sub(since_start),
        };
        let continues = continues.map(|(seq, _)| seq);
        let end = start.saturating_add(pts_us(s.end_pts.saturating_sub(s.start_pts)));
        if continues.is_none() {
            if let (Some((j, ..)), Some((_, text, seq, _))) = (prev, reason.take()) {
                t.reasons.push(Reason {
                    device,
                    seq,
                    from_us: t.spans[j].end_us,
                    to_us: start,
                    reason: text,
                });
            }
        }
        reason = None;
        t.spans.push(Span {
            device,
            seq: e.seq,
            recording: s.recording,
            start_us: start,
            end_us: end,
            continues,
            verified: k.verified && k.media_us.is_some() && !k.expired,
            received_us: k.media_us,
            expired: k.expired,
            officer: officer_at(start),
        });
        prev = Some((t.spans.len() - 1, s.part, s.end_pts));
    }
    // A reason after the last segment explains everything from there on.
    if let (Some((j, ..)), Some((_, text, seq, _))) = (prev, reason) {
        t.reasons.push(Reason {
            device,
            seq,
            from_us: t.spans[j].end_us,
            to_us: i64::MAX,
            reason: text,
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use fieldseal_proto::sample;

    fn known(chain: &sample::SampleChain, skew: i64) -> Vec<Known<'_>> {
        chain
            .entries
            .iter()
            .map(|e| Known {
                entry: e,
                // Each receipt 200 ms after the entry, device clock `skew` behind.
                receipt_us: Some(e.entry.wall_us + skew + 200_000),
                verified: true,
                media_us: e.entry.segment().map(|_| e.entry.wall_us + skew + 900_000),
                expired: false,
            })
            .collect()
    }

    #[test]
    fn segments_become_spans_in_server_time_with_their_reasons() {
        let key = SigningKey::from_bytes(&[0x42; 32]);
        let chain = sample::build(&key, &[3, 2], 100);
        let device = chain.entries[0].entry.device;
        let k = known(&chain, 5_000_000);
        let t = device_timeline(device, &k, |_| Some("CJ-001".into()));
        assert_eq!(t.spans.len(), 5);
        assert_eq!(t.skew.len(), 1);
        // The smallest receipt delay is taken as the skew: 5 s + 200 ms.
        assert_eq!(t.skew[0].1, 5_200_000);
        let first = &chain.entries[2].entry; // agent started, recording started, segment
        let seg = first.segment().unwrap();
        let want_start = first.wall_us - (first.mono_us - seg.start_mono_us) as i64 + 5_200_000;
        assert_eq!(t.spans[0].start_us, want_start);
        assert_eq!(t.spans[0].end_us - t.spans[0].start_us, 4_000_000);
        // Within a recording each segment continues the one before.
        assert_eq!(t.spans[0].continues, None);
        assert_eq!(t.spans[1].continues, Some(t.spans[0].seq));
        assert_eq!(t.spans[2].continues, Some(t.spans[1].seq));
        assert_eq!(t.spans[1].start_us, t.spans[0].end_us);
        // The second recording starts afresh; the user stop explains the
        // stretch between, and the last stop everything after.
        assert_eq!(t.spans[3].continues, None);
        assert_eq!(t.reasons.len(), 2);
        assert_eq!(t.reasons[0].reason, "user-stop");
        assert_eq!(
            (t.reasons[0].from_us, t.reasons[0].to_us),
            (t.spans[2].end_us, t.spans[3].start_us)
        );
        assert_eq!(t.reasons[1].to_us, i64::MAX);
        assert!(t
            .spans
            .iter()
            .all(|s| s.verified && s.officer.as_deref() == Some("CJ-001")));
    }

    #[test]
    fn a_chain_recorded_offline_and_sent_later_keeps_the_device_clock() {
        let key = SigningKey::from_bytes(&[0x42; 32]);
        let chain = sample::build(&key, &[4], 100);
        let device = chain.entries[0].entry.device;
        let last = chain.entries.iter().map(|e| e.entry.wall_us).max().unwrap();
        // Everything reaches the server in one burst 10 minutes after the
        // last entry was signed, 1 ms apart.
        let k: Vec<Known<'_>> = chain
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| Known {
                entry: e,
                receipt_us: Some(last + 600_000_000 + i as i64 * 1_000),
                verified: true,
                media_us: None,
                expired: false,
            })
            .collect();
        let t = device_timeline(device, &k, |_| None);
        assert_eq!(
            t.skew,
            vec![(0, 0)],
            "the offline time is not a clock error"
        );
        // The same burst from a device whose clock is an hour ahead: the
        // receipts prove it is ahead by at least 50 minutes.
        let k: Vec<Known<'_>> = k
            .iter()
            .map(|x| Known {
                receipt_us: x.receipt_us.map(|r| r - 3_600_000_000),
                ..*x
            })
            .collect();
        let t = device_timeline(device, &k, |_| None);
        let (seq, skew) = t.skew[0];
        assert_eq!((t.skew.len(), seq), (1, 0));
        assert!((skew + 3_000_000_000).abs() < 10_000, "{skew}");
    }

    #[test]
    fn missing_bytes_are_not_verified_and_without_receipts_there_is_no_skew() {
        let key = SigningKey::from_bytes(&[0x42; 32]);
        let chain = sample::build(&key, &[2], 100);
        let device = chain.entries[0].entry.device;
        let mut k = known(&chain, 0);
        k[2].media_us = None;
        let t = device_timeline(device, &k, |_| None);
        assert!(!t.spans[0].verified && t.spans[0].received_us.is_none());
        assert!(t.spans[1].verified);
        assert_eq!(t.spans[0].officer, None);
        // Without any receipt the skew is 0.
        for x in &mut k {
            x.receipt_us = None;
        }
        let t = device_timeline(device, &k, |_| None);
        assert_eq!(t.skew, vec![(0, 0)]);
    }

    #[test]
    fn a_clock_adjustment_starts_an_epoch_with_its_own_skew() {
        use fieldseal_proto::entry::{Body, ChainHead, Clock};
        let key = SigningKey::from_bytes(&[0x42; 32]);
        let mut head = ChainHead::GENESIS;
        let w0 = 1_782_896_400_000_000i64;
        let mut push = |wall: i64, mono: u64, ev: Event| {
            head.append(
                &key,
                Clock {
                    wall_us: wall,
                    mono_us: mono,
                    boot: 1,
                },
                None,
                Body::Event(ev),
            )
            .unwrap()
        };
        let entries = [
            push(
                w0,
                1_000_000,
                Event::AgentStarted {
                    software: "t".into(),
                },
            ),
            // Someone sets the clock an hour forward.
            push(
                w0 + 3_600_000_000 + 2_000_000,
                3_000_000,
                Event::ClockAdjusted {
                    old_wall_us: w0 + 2_000_000,
                    new_wall_us: w0 + 3_600_000_000 + 2_000_000,
                },
            ),
            push(
                w0 + 3_600_000_000 + 4_000_000,
                5_000_000,
                Event::IdentityShown { officer: None },
            ),
        ];
        let device = entries[0].entry.device;
        let k: Vec<Known<'_>> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| Known {
                entry: e,
                // The server's clock is right: entry i reached it at w0 + (2i+1) s + 100 ms.
                receipt_us: Some(w0 + (2 * i as i64) * 1_000_000 + 100_000),
                verified: true,
                media_us: None,
                expired: false,
            })
            .collect();
        let t = device_timeline(device, &k, |_| None);
        // One receipt cannot show steady delivery: the first epoch keeps
        // the device's clock (its bound, +100 ms, allows that); the second
        // is an hour ahead, which its receipts prove.
        assert_eq!(t.skew, vec![(0, 0), (1, -3_600_000_000 + 100_000)]);
        // The identity mark lands at the server's time, not an hour ahead.
        assert_eq!(t.identity.len(), 1);
        assert_eq!(t.identity[0].at_us, w0 + 4_100_000);
    }
}
