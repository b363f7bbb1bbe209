//! Custody of acknowledged media: the server's signed acknowledgements kept
//! as proof of hand-over (`acks.log`), the keep clock that times the keep
//! period, and the release decision as a pure function.
//!
//! ```text
//! DIR/acks.log    one chain-log record (FORMAT.md §9) per acknowledgement kept, fsynced:
//!                   ack            [129]  the server's MediaAck, as received (FORMAT.md §7.6)
//!                   kept_run_us    u64    the keep clock when it was kept
//!                   kept_wall_us   i64    the wall clock then (for people; never decides anything)
//! DIR/keepclock   "RUN_US\n": the keep clock at its last checkpoint (write_atomic)
//! ```
//!
//! **The keep clock** counts the microseconds the agent has run on this
//! device, summed over its boots. Within one process it advances by the
//! monotonic clock (`Instant`), which no one can set; across processes it
//! continues from the larger of `keepclock` and the newest `kept_run_us`.
//! Time while no agent runs, and at most [`CHECKPOINT_EVERY`] before a crash,
//! is not counted: the keep period can only come out longer than configured,
//! never shorter. A wall clock set forward changes nothing here.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::ack::{AckError, MediaAck, MEDIA_ACK_LEN};
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::identity::{DeviceId, Hash32};

use crate::spoolfs::{write_atomic, SpoolFs};

/// How often the running agent persists its keep clock. A crash loses at
/// most this much keep time (which lengthens the keep period); a write of a
/// few bytes a minute costs an SD card nothing.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

/// Length of one `acks.log` record's content.
pub const KEPT_ACK_LEN: usize = MEDIA_ACK_LEN + 16;

/// A media acknowledgement as the agent keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAck {
    /// The server's signed acknowledgement.
    pub ack: MediaAck,
    /// The keep clock when the agent kept it.
    pub kept_run_us: u64,
    /// The wall clock when the agent kept it: shown to people, never used to decide.
    pub kept_wall_us: i64,
}

impl KeptAck {
    /// The record content of `acks.log` (without the chain-log length prefix).
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = self.ack.to_bytes();
        out.extend_from_slice(&self.kept_run_us.to_be_bytes());
        out.extend_from_slice(&self.kept_wall_us.to_be_bytes());
        out
    }

    /// Read a record's content; `None` if it is not one.
    pub fn from_record(b: &[u8]) -> Option<KeptAck> {
        if b.len() != KEPT_ACK_LEN {
            return None;
        }
        let (ack, times) = b.split_at(MEDIA_ACK_LEN);
        Some(KeptAck {
            ack: MediaAck::from_bytes(ack).ok()?,
            kept_run_us: u64::from_be_bytes(times[..8].try_into().ok()?),
            kept_wall_us: i64::from_be_bytes(times[8..].try_into().ok()?),
        })
    }
}

/// The segment an acknowledgement must name, from its signed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The device whose chain holds it.
    pub device: DeviceId,
    /// Its seq.
    pub seq: u64,
    /// Its signed media SHA-256 and length.
    pub media: (Hash32, u64),
}

/// Why media stays on the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Keep {
    /// No acknowledgement is kept for it.
    #[error("not acknowledged")]
    NotAcknowledged,
    /// The chain holds no segment with this seq.
    #[error("no segment of the chain has this seq")]
    NotASegment,
    /// The device is not enrolled: there is no receipt key to check against.
    #[error("no receipt key (not enrolled)")]
    NoReceiptKey,
    /// The kept acknowledgement does not prove the hand-over.
    #[error(transparent)]
    BadAck(#[from] AckError),
    /// The keep period has not run out.
    #[error("keep period: {left_us} µs of agent run time left")]
    KeepPeriod {
        /// Keep-clock µs still to run.
        left_us: u64,
    },
}

/// May the media of `segment` be deleted? Only when a kept acknowledgement
/// names exactly this segment (device, seq, media hash and length), its
/// signature verifies under the server's receipt key from enrolment, and
/// `keep_us` of keep-clock time have passed since it was kept. The keep
/// period is checked first: it is cheap, the signature is not.
///
/// # Errors
/// Why the media must stay.
pub fn decide(
    kept: Option<&KeptAck>,
    segment: Option<Segment>,
    receipt_key: Option<&VerifyingKey>,
    now_run_us: u64,
    keep_us: u64,
) -> Result<(), Keep> {
    let kept = kept.ok_or(Keep::NotAcknowledged)?;
    let elapsed = now_run_us.saturating_sub(kept.kept_run_us);
    if elapsed < keep_us {
        return Err(Keep::KeepPeriod {
            left_us: keep_us - elapsed,
        });
    }
    proves(kept, segment, receipt_key)
}

/// Does `kept` prove the hand-over of `segment`? [`decide`] without the keep period.
///
/// # Errors
/// Why it does not.
pub fn proves(
    kept: &KeptAck,
    segment: Option<Segment>,
    receipt_key: Option<&VerifyingKey>,
) -> Result<(), Keep> {
    let s = segment.ok_or(Keep::NotASegment)?;
    let key = receipt_key.ok_or(Keep::NoReceiptKey)?;
    Ok(kept.ack.verify_for(key, s.device, s.seq, s.media)?)
}

/// Every record of `DIR/acks.log` that reads as a kept acknowledgement, in
/// file order, and the number of records that do not. A torn tail (a power
/// cut while appending) is ignored: that acknowledgement was never kept.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn read_log(fs: &dyn SpoolFs, dir: &Path) -> io::Result<(Vec<KeptAck>, usize)> {
    let bytes = match fs.read(&dir.join("acks.log")) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let (log, _damage) = chainlog::split_lossy(&bytes);
    let mut bad = 0;
    let mut out = Vec::new();
    for r in &log.records {
        match KeptAck::from_record(r) {
            Some(k) => out.push(k),
            None => bad += 1,
        }
    }
    Ok((out, bad))
}

/// Move a version-1 `acks.log` ("SEQ WALL_US" lines, unsigned) aside to
/// `acks.v1.log`: its acknowledgements prove nothing and release nothing.
/// The segments they named are asked for again, and a server that holds
/// them answers with a signed acknowledgement. A record of the current
/// format starts with its length's high byte, 0; a v1 line with a digit.
///
/// # Errors
/// I/O errors.
pub fn retire_v1_log(fs: &dyn SpoolFs, dir: &Path) -> io::Result<bool> {
    let path = dir.join("acks.log");
    match fs.read_at(&path, 0, 1) {
        Ok(b) if b.first().is_some_and(u8::is_ascii_digit) => {
            fs.rename(&path, &dir.join("acks.v1.log"))?;
            fs.sync_dir(dir)?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The keep clock of one process (see the module doc).
#[derive(Debug)]
pub struct KeepClock {
    base_us: u64,
    opened: Instant,
    last_checkpoint: Option<Instant>,
}

impl KeepClock {
    /// Continue the keep clock of `dir`: from the larger of its checkpoint
    /// and `newest_kept_us` (the newest acknowledgement's `kept_run_us`), so
    /// that it never runs backwards even if the checkpoint file is lost.
    /// An unreadable checkpoint counts as 0 (the keep period grows).
    pub fn open(fs: &dyn SpoolFs, dir: &Path, newest_kept_us: u64) -> KeepClock {
        let saved = fs
            .read(&dir.join("keepclock"))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        KeepClock {
            base_us: saved.max(newest_kept_us),
            opened: Instant::now(),
            last_checkpoint: None,
        }
    }

    /// The keep clock now, in µs.
    pub fn now_us(&self) -> u64 {
        self.at(Instant::now())
    }

    fn at(&self, t: Instant) -> u64 {
        let run =
            u64::try_from(t.saturating_duration_since(self.opened).as_micros()).unwrap_or(u64::MAX);
        self.base_us.saturating_add(run)
    }

    /// Persist the keep clock if [`CHECKPOINT_EVERY`] has passed since the
    /// last checkpoint of this process (or none was made).
    ///
    /// # Errors
    /// I/O errors of the atomic write.
    pub fn checkpoint(&mut self, fs: &dyn SpoolFs, dir: &Path) -> io::Result<()> {
        let now = Instant::now();
        if self
            .last_checkpoint
            .is_some_and(|t| now.saturating_duration_since(t) < CHECKPOINT_EVERY)
        {
            return Ok(());
        }
        write_atomic(
            fs,
            &dir.join("keepclock"),
            format!("{}\n", self.at(now)).as_bytes(),
        )?;
        self.last_checkpoint = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spoolfs::MemFs;
    use ed25519_dalek::SigningKey;

    const DEV: DeviceId = DeviceId([7; 8]);
    const HOUR: u64 = 3_600_000_000;

    fn server() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn seg(seq: u64) -> Segment {
        Segment {
            device: DEV,
            seq,
            media: ([u8::try_from(seq % 256).unwrap(); 32], 1000 + seq),
        }
    }

    fn kept(signer: &SigningKey, s: Segment, at: u64) -> KeptAck {
        KeptAck {
            ack: MediaAck::sign(s.device, s.seq, s.media, 1, signer),
            kept_run_us: at,
            kept_wall_us: 0,
        }
    }

    #[test]
    fn released_only_after_a_valid_signed_ack_and_the_keep_period() {
        let key = server().verifying_key();
        let k = kept(&server(), seg(3), 10 * HOUR);
        let d = |now| decide(Some(&k), Some(seg(3)), Some(&key), now, 24 * HOUR);
        assert_eq!(d(10 * HOUR), Err(Keep::KeepPeriod { left_us: 24 * HOUR }));
        assert_eq!(d(34 * HOUR - 1), Err(Keep::KeepPeriod { left_us: 1 }));
        assert_eq!(d(34 * HOUR), Ok(()));
        // No ack, no enrolment, no such segment: nothing goes.
        assert_eq!(
            decide(None, Some(seg(3)), Some(&key), u64::MAX, 0),
            Err(Keep::NotAcknowledged)
        );
        assert_eq!(
            decide(Some(&k), Some(seg(3)), None, u64::MAX, 0),
            Err(Keep::NoReceiptKey)
        );
        assert_eq!(
            decide(Some(&k), None, Some(&key), u64::MAX, 0),
            Err(Keep::NotASegment)
        );
    }

    #[test]
    fn a_forged_or_mismatched_ack_never_releases() {
        let key = server().verifying_key();
        let forger = SigningKey::from_bytes(&[66; 32]);
        let forged = kept(&forger, seg(3), 0);
        assert_eq!(
            decide(Some(&forged), Some(seg(3)), Some(&key), u64::MAX, 0),
            Err(Keep::BadAck(AckError::BadSignature))
        );
        // A valid ack of the server, but for another seq, hash, length or device.
        let other_seq = kept(&server(), seg(4), 0);
        let mut other_hash = seg(3);
        other_hash.media.0[0] ^= 1;
        let mut other_len = seg(3);
        other_len.media.1 += 1;
        let mut other_dev = seg(3);
        other_dev.device = DeviceId([8; 8]);
        for k in [
            other_seq,
            kept(&server(), other_hash, 0),
            kept(&server(), other_len, 0),
        ] {
            assert_eq!(
                decide(Some(&k), Some(seg(3)), Some(&key), u64::MAX, 0),
                Err(Keep::BadAck(AckError::WrongMedia { seq: 3 })),
                "{k:?}"
            );
        }
        assert!(matches!(
            decide(
                Some(&kept(&server(), other_dev, 0)),
                Some(seg(3)),
                Some(&key),
                u64::MAX,
                0
            ),
            Err(Keep::BadAck(AckError::WrongDevice { .. }))
        ));
    }

    #[test]
    fn records_round_trip_and_v1_lines_are_retired() {
        let fs = MemFs::new(1);
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        write_atomic(&fs, &dir.join("acks.log"), b"3 1751328000000000\n").unwrap();
        assert!(retire_v1_log(&fs, dir).unwrap());
        assert_eq!(read_log(&fs, dir).unwrap(), (Vec::new(), 0));
        assert!(fs.exists(&dir.join("acks.v1.log")));
        let k = kept(&server(), seg(3), 5);
        let mut rec = Vec::new();
        chainlog::put_record(&mut rec, &k.to_record());
        chainlog::put_record(&mut rec, b"not an ack");
        write_atomic(&fs, &dir.join("acks.log"), &rec).unwrap();
        assert!(
            !retire_v1_log(&fs, dir).unwrap(),
            "the current format stays"
        );
        assert_eq!(read_log(&fs, dir).unwrap(), (vec![k], 1));
    }

    #[test]
    fn the_keep_clock_continues_across_processes_and_never_runs_backwards() {
        let fs = MemFs::new(2);
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let mut c = KeepClock::open(&fs, dir, 0);
        assert!(c.now_us() < HOUR);
        write_atomic(
            &fs,
            &dir.join("keepclock"),
            format!("{}\n", 5 * HOUR).as_bytes(),
        )
        .unwrap();
        // A new process (a new boot) continues from the checkpoint ...
        let c2 = KeepClock::open(&fs, dir, 0);
        assert!(c2.now_us() >= 5 * HOUR && c2.now_us() < 6 * HOUR);
        // ... or from a newer acknowledgement if the checkpoint is older or lost.
        assert!(KeepClock::open(&fs, dir, 7 * HOUR).now_us() >= 7 * HOUR);
        fs.remove_file(&dir.join("keepclock")).unwrap();
        assert!(KeepClock::open(&fs, dir, 7 * HOUR).now_us() >= 7 * HOUR);
        // A checkpoint survives power loss (write_atomic fsyncs file and folder).
        c.base_us = 9 * HOUR;
        c.checkpoint(&fs, dir).unwrap();
        fs.power_loss(false);
        assert!(KeepClock::open(&fs, dir, 0).now_us() >= 9 * HOUR);
    }
}
