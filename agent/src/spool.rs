//! The durable spool: the agent's chain and media on disk, the source of truth.
//!
//! ```text
//! DIR/chain.log               signed entries, chain-log records (docs/FORMAT.md §9), fsynced per entry
//! DIR/media/NNNNNNNNNNNN.ts   the media of segment entry NNNNNNNNNNNN
//! DIR/media/.partial/         the one segment being written: N.ts and its metadata N.json
//! DIR/released.log            seqs whose media was deleted after the server's acknowledgement
//! DIR/boot                    the agent start counter
//! DIR/running                 present while an agent runs: found at start, it means a crash
//! ```
//!
//! Write order of a segment: metadata and bytes to `.partial/` while hashing →
//! fsync → rename into `media/` → fsync folders → sign the entry → append it to
//! `chain.log` → fsync. Only then is the segment *recorded*. A crash at any
//! point leaves either a partial file (salvaged at the next start: hashed as
//! found and signed with the RECOVERED flag) or a renamed file with no entry
//! (signed at the next start, also RECOVERED), followed by a signed
//! power-loss-recovered event that states the gap.
//!
//! Every file operation goes through [`SpoolFs`] ([`crate::spoolfs`]): the
//! real filesystem, or an in-memory twin that simulates power loss. After an
//! I/O error while appending, the spool refuses further appends until it is
//! opened again: what reached the file is unknown (a failed fsync may have
//! dropped it, a failed write may have left part of a record), and only the
//! scan of a fresh open tells (a retried fsync would report success for
//! bytes that are gone, and a second append of the same seq would put two
//! entries with one seq in the log).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::{
    segment_flags, Body, ChainHead, Clock as EntryClock, CodecParams, EntryError, Event, Position,
    SegmentBody, SignedEntry,
};
use fieldseal_proto::identity::{Hash32, Sha256Stream, Signer};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::fsutil::sync_dir;
use crate::spoolfs::{write_atomic, SpoolFile, SpoolFs, StdFs};

mod drops;
mod live;
mod verify;

pub use self::drops::DroppedSpan;
pub use self::verify::verify_dir;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An OS error on a file of the spool.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The chain log is damaged before its end: appending would bury the damage.
    #[error("{path} is damaged at byte {offset}: {detail}; run `fieldseal-agent verify` and keep the folder for examination")]
    Damaged {
        /// The chain log.
        path: PathBuf,
        /// Where the damage starts.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
    /// An entry could not be built.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// An earlier append failed with an I/O error: open the spool again.
    #[error("the spool stopped after an I/O error; it must be opened again")]
    Poisoned,
    /// The storage limit would be exceeded.
    #[error("storage full: {used} of {limit} bytes in use")]
    Full {
        /// Bytes in use.
        used: u64,
        /// The limit.
        limit: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A segment entry without the media hash and length, which the spool fills in
/// while writing the bytes. Kept as JSON in `.partial/N.json` while the
/// segment is written; the codec fields are flattened into it, so the file
/// reads as it did when they were separate fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // The fields of SegmentBody.
pub struct SegmentDraft {
    pub recording: [u8; 16],
    pub part: u32,
    pub start_pts: i64,
    pub end_pts: i64,
    pub start_mono_us: u64,
    pub video_frames: u32,
    pub audio_samples: u64,
    #[serde(flatten)]
    pub codec: CodecParams,
    pub flags: u8,
    pub case: Option<String>,
    pub activity: Option<String>,
    /// The position the entry will state (`None`: not stated), kept as the
    /// field's hex bytes (FORMAT.md §3.1.1) so that a salvaged segment states
    /// what its entry would have. Drafts written before it read as `None`.
    #[serde(default, with = "position_hex")]
    pub position: Option<Position>,
    /// The streamed file (`live-N`, capture/live.rs) this segment's media
    /// was renamed from: a cut can leave it durable under both names (its
    /// old folder's fsync lost), and salvage must then drop the old one
    /// rather than sign it twice. Not part of the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamed_from: Option<String>,
    /// Frames the capture dropped inside the segment, signed as a
    /// `frames-dropped` event right after it: the draft is kept until that
    /// event is durable, so that a cut in between still gets it signed at
    /// the next start (spool/drops.rs). Not part of the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<DroppedSpan>,
}

/// [`SegmentDraft::position`] as the hex of its field bytes.
mod position_hex {
    use fieldseal_proto::entry::{position_bytes, position_from_bytes, Position};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<Position>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(position_bytes(p.as_ref())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Position>, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        position_from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

impl SegmentDraft {
    fn into_body(self, media_sha256: Hash32, media_len: u64) -> SegmentBody {
        SegmentBody {
            recording: self.recording,
            part: self.part,
            media_sha256,
            media_len,
            start_pts: self.start_pts,
            end_pts: self.end_pts,
            start_mono_us: self.start_mono_us,
            video_frames: self.video_frames,
            audio_samples: self.audio_samples,
            codec: self.codec,
            flags: self.flags,
            case: self.case,
            activity: self.activity,
        }
    }
}

/// What the spool found when it opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The previous agent did not stop cleanly.
    pub crashed: bool,
    /// Bytes of a torn final chain-log record that were cut off.
    pub torn_log_bytes: usize,
    /// Segments salvaged and signed as recovered.
    pub salvaged: Vec<u64>,
}

/// The spool of one device.
#[derive(Debug)]
pub struct Spool {
    fs: Arc<dyn SpoolFs>,
    dir: PathBuf,
    log: Box<dyn SpoolFile>,
    /// Set by an I/O error while appending (see the module doc).
    poisoned: bool,
    head: ChainHead,
    last_wall_us: Option<i64>,
    boot: u32,
    media_bytes: u64,
    log_bytes: u64,
    released: BTreeSet<u64>,
}

/// Name of the media file of segment `seq`.
pub fn media_name(seq: u64) -> String {
    format!("{seq:012}.ts")
}

impl Spool {
    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The chain head: next seq and hash of the last entry.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// This agent run's boot counter.
    pub fn boot(&self) -> u32 {
        self.boot
    }

    /// Bytes the spool takes (media held plus the chain log).
    pub fn used_bytes(&self) -> u64 {
        self.media_bytes + self.log_bytes
    }

    /// Length of `chain.log` (whole records).
    pub fn log_len(&self) -> u64 {
        self.log_bytes
    }

    /// Path of segment `seq`'s media file.
    pub fn media_path(&self, seq: u64) -> PathBuf {
        self.dir.join("media").join(media_name(seq))
    }

    /// Seqs whose media was deleted after the server acknowledged it.
    pub fn released(&self) -> &BTreeSet<u64> {
        &self.released
    }

    /// Open the spool in `dir` for recording: cut a torn chain-log tail, bump
    /// the boot counter, and if the previous run crashed, salvage what it left
    /// and sign a power-loss-recovered event. Marks the spool as running.
    ///
    /// # Errors
    /// [`SpoolError::Damaged`] if the chain log is damaged before its end; I/O errors.
    pub fn open(
        dir: &Path,
        signer: &dyn Signer,
        clock: &dyn Clock,
    ) -> Result<(Spool, OpenReport), SpoolError> {
        Spool::open_with(Arc::new(StdFs), dir, signer, clock)
    }

    /// [`Spool::open`] over the file operations `fs` (the fault suite's
    /// in-memory twin, [`crate::spoolfs::MemFs`]).
    ///
    /// # Errors
    /// As [`Spool::open`].
    pub fn open_with(
        fs: Arc<dyn SpoolFs>,
        dir: &Path,
        signer: &dyn Signer,
        clock: &dyn Clock,
    ) -> Result<(Spool, OpenReport), SpoolError> {
        let mut report = OpenReport::default();
        let media_dir = dir.join("media");
        let partial = media_dir.join(".partial");
        fs.create_dir_all(&partial).map_err(io_err(&partial))?;

        let log_path = crate::chainlog::path(dir);
        let (head, last_wall_us, complete_len, torn) = scan_log(fs.as_ref(), &log_path)?;
        let mut log = fs.open_append(&log_path).map_err(io_err(&log_path))?;
        if torn > 0 {
            // A record torn by power loss was never durable, so never "recorded":
            // cutting it off loses nothing that was acknowledged to anyone.
            log.set_len(complete_len as u64)
                .map_err(io_err(&log_path))?;
            log.sync().map_err(io_err(&log_path))?;
            report.torn_log_bytes = torn;
        }

        let boot_path = dir.join("boot");
        let boot = match fs.read(&boot_path) {
            Ok(s) => {
                String::from_utf8_lossy(&s)
                    .trim()
                    .parse::<u32>()
                    .unwrap_or(0)
                    + 1
            }
            Err(_) => 1,
        };
        write_atomic(fs.as_ref(), &boot_path, format!("{boot}\n").as_bytes())
            .map_err(io_err(&boot_path))?;

        let running = dir.join("running");
        report.crashed = fs.exists(&running);
        write_atomic(
            fs.as_ref(),
            &running,
            format!("{}\n", std::process::id()).as_bytes(),
        )
        .map_err(io_err(&running))?;

        let released = read_released(fs.as_ref(), dir)?;
        let mut spool = Spool {
            fs,
            dir: dir.to_path_buf(),
            log,
            poisoned: false,
            head,
            last_wall_us,
            boot,
            media_bytes: 0,
            log_bytes: complete_len as u64,
            released,
        };
        spool.media_bytes = spool.count_media_bytes()?;

        if report.crashed || spool.has_leftovers()? {
            let before = spool.head;
            let last = spool.last_wall_us;
            let owed = spool.owed_drop_events()?;
            report.salvaged = spool.salvage(signer, clock)?;
            spool.sign_owed_drop_events(signer, clock, owed)?;
            spool.remove_stale_drafts()?;
            let now = clock.wall_us();
            let event = Event::PowerLossRecovered {
                last_seq: before.next_seq.checked_sub(1),
                last_wall_us: last.unwrap_or(now),
                gap_us: u64::try_from(now - last.unwrap_or(now)).unwrap_or(0),
                salvaged: u32::try_from(report.salvaged.len()).unwrap_or(u32::MAX),
            };
            spool.append_event(signer, clock, event)?;
        }
        Ok((spool, report))
    }

    /// Mark a clean stop: the next start is not a crash.
    ///
    /// # Errors
    /// I/O errors removing the marker.
    pub fn close(self) -> Result<(), SpoolError> {
        let running = self.dir.join("running");
        self.fs.remove_file(&running).map_err(io_err(&running))?;
        self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    fn entry_clock(&self, clock: &dyn Clock) -> EntryClock {
        EntryClock {
            wall_us: clock.wall_us(),
            mono_us: clock.mono_us(),
            boot: self.boot,
        }
    }

    /// Sign and durably append an event that states no position (the
    /// spool's own, signed before anything knows one).
    ///
    /// # Errors
    /// I/O errors; the head does not move on error.
    pub fn append_event(
        &mut self,
        signer: &dyn Signer,
        clock: &dyn Clock,
        event: Event,
    ) -> Result<SignedEntry, SpoolError> {
        self.append_event_at(signer, clock, None, event)
    }

    /// Sign and durably append an event that states `position`.
    ///
    /// # Errors
    /// I/O errors; the head does not move on error.
    pub fn append_event_at(
        &mut self,
        signer: &dyn Signer,
        clock: &dyn Clock,
        position: Option<Position>,
        event: Event,
    ) -> Result<SignedEntry, SpoolError> {
        let c = self.entry_clock(clock);
        self.append_body(signer, c, position, Body::Event(event))
    }

    fn append_body(
        &mut self,
        signer: &dyn Signer,
        c: EntryClock,
        position: Option<Position>,
        body: Body,
    ) -> Result<SignedEntry, SpoolError> {
        if self.poisoned {
            return Err(SpoolError::Poisoned);
        }
        let mut head = self.head;
        let entry = head.append(signer, c, position, body)?;
        let mut rec = Vec::with_capacity(entry.encoded_len() + chainlog::RECORD_HEADER);
        chainlog::put_record(&mut rec, &entry.to_bytes());
        let path = crate::chainlog::path(&self.dir);
        // Poisoned until both succeed: an error leaves the log's tail unknown.
        self.poisoned = true;
        self.log.write_all(&rec).map_err(io_err(&path))?;
        crate::fault::point("entry-before-fsync");
        self.log.sync().map_err(io_err(&path))?;
        self.poisoned = false;
        self.head = head;
        self.last_wall_us = Some(c.wall_us);
        self.log_bytes += rec.len() as u64;
        Ok(entry)
    }

    /// Write a segment's media durably, then sign and append its entry.
    ///
    /// # Errors
    /// I/O errors. If the media was written but the entry was not, the next
    /// start signs it as recovered.
    pub fn append_segment(
        &mut self,
        signer: &dyn Signer,
        clock: &dyn Clock,
        draft: SegmentDraft,
        bytes: &[u8],
    ) -> Result<SignedEntry, SpoolError> {
        if self.poisoned {
            return Err(SpoolError::Poisoned);
        }
        let seq = self.head.next_seq;
        let meta_path = self.write_draft(seq, &draft)?;
        let part_path = self.dir.join("media/.partial").join(media_name(seq));
        // Hash while writing, in chunks, so the bytes are read once.
        let mut hasher = Sha256Stream::new();
        let mut f = self.fs.create(&part_path).map_err(io_err(&part_path))?;
        let half = bytes.len() / 2;
        let mut written = 0;
        for chunk in bytes.chunks(1 << 16) {
            hasher.update(chunk);
            f.write_all(chunk).map_err(io_err(&part_path))?;
            let before = written;
            written += chunk.len();
            if before < half && written >= half {
                crate::fault::point("segment-half-written");
            }
        }
        f.sync().map_err(io_err(&part_path))?;
        drop(f);
        let sha = hasher.finish();
        self.commit_media(
            signer,
            clock,
            &part_path,
            &meta_path,
            draft,
            (sha, bytes.len() as u64),
        )
    }

    /// Write a segment's draft to `.partial/SEQ.json`, durable with its name.
    fn write_draft(&self, seq: u64, draft: &SegmentDraft) -> Result<PathBuf, SpoolError> {
        let partial = self.dir.join("media/.partial");
        let meta_path = partial.join(format!("{seq:012}.json"));
        let meta = serde_json::to_vec(draft).expect("draft serialises");
        let mut meta_file = self.fs.create(&meta_path).map_err(io_err(&meta_path))?;
        meta_file
            .write_all(&meta)
            .and_then(|()| meta_file.sync())
            .map_err(io_err(&meta_path))?;
        // The metadata's name must be durable before the media can be: a
        // salvaged segment without it has no timing, and its gap cannot be
        // explained (found by the power-loss twin, which drops names whose
        // folder was not fsynced, as POSIX allows).
        self.fs.sync_dir(&partial).map_err(io_err(&partial))?;
        Ok(meta_path)
    }

    /// The end of a segment's write order, once its media is durable in
    /// `part_path` (hash and length `media`) and its draft in `meta_path`:
    /// rename into `media/`, fsync the folder, sign and append the entry.
    fn commit_media(
        &mut self,
        signer: &dyn Signer,
        clock: &dyn Clock,
        part_path: &Path,
        meta_path: &Path,
        draft: SegmentDraft,
        (sha, len): (Hash32, u64),
    ) -> Result<SignedEntry, SpoolError> {
        crate::fault::point("segment-before-rename");
        let final_path = self.media_path(self.head.next_seq);
        self.fs
            .rename(part_path, &final_path)
            .map_err(io_err(&final_path))?;
        let media_dir = self.dir.join("media");
        self.fs.sync_dir(&media_dir).map_err(io_err(&media_dir))?;
        if draft.streamed_from.is_some() {
            // Its old name was durable (the capture fsynced `.partial/`
            // after creating it): make it gone before the entry is signed.
            self.sync_partial_dir()?;
        }
        crate::fault::point("segment-after-rename");
        self.media_bytes += len;
        let draft_dropped = draft.dropped;
        let c = self.entry_clock(clock);
        let position = draft.position;
        let entry = self.append_body(
            signer,
            c,
            position,
            Body::Segment(draft.into_body(sha, len)),
        )?;
        // The entry is durable: the metadata has served its purpose, unless
        // it still owes the segment's frames-dropped event.
        if draft_dropped.is_none() {
            let _ = self.fs.remove_file(meta_path);
        }
        Ok(entry)
    }

    fn has_leftovers(&self) -> Result<bool, SpoolError> {
        let partial = self.dir.join("media/.partial");
        let any_partial = self
            .fs
            .list(&partial)
            .map_err(io_err(&partial))?
            .iter()
            .any(|e| e.name.ends_with(".ts"));
        Ok(any_partial || self.fs.exists(&self.media_path(self.head.next_seq)))
    }

    /// Sign what a crash left: a media file renamed but not signed, and a torn
    /// partial file. Returns the seqs signed.
    fn salvage(&mut self, signer: &dyn Signer, clock: &dyn Clock) -> Result<Vec<u64>, SpoolError> {
        let mut out = Vec::new();
        let partial = self.dir.join("media/.partial");
        // Leftover files, in the order they were meant to be signed: those
        // the writer wrote whole (named by the seq they were meant for), then
        // the segments streamed while encoded (`live-N`, written later).
        let mut names: Vec<(bool, u64, PathBuf)> = Vec::new();
        for e in self.fs.list(&partial).map_err(io_err(&partial))? {
            if let Some(stem) = e.name.strip_suffix(".ts") {
                if let Ok(seq) = stem.parse::<u64>() {
                    names.push((false, seq, partial.join(&e.name)));
                } else if let Some(Ok(n)) = stem.strip_prefix("live-").map(str::parse::<u64>) {
                    names.push((true, n, partial.join(&e.name)));
                }
            }
        }
        let orphan = self.media_path(self.head.next_seq);
        if self.fs.exists(&orphan) {
            names.push((false, self.head.next_seq, orphan));
        }
        names.sort();
        for (live, intended, path) in names {
            let mut meta_path = partial.join(format!("{intended:012}.json"));
            if live {
                if !self.fs.exists(&path) {
                    continue; // the old name of a segment signed above
                }
                // Cut to its durable prefix, with the draft of that prefix
                // kept under the seq it is signed as (a cut after the
                // rename below finds it there, as for any segment).
                match self.cut_live(&path)? {
                    Some(draft) => meta_path = self.write_draft(self.head.next_seq, &draft)?,
                    None => continue,
                }
            }
            let draft: Option<SegmentDraft> = self
                .fs
                .read(&meta_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if !live {
                self.forget_streamed_name(draft.as_ref())?;
            }
            let (sha, len) = self.fs.hash(&path).map_err(io_err(&path))?;
            if len == 0 {
                // Nothing was written: there is nothing to sign.
                let _ = self.fs.remove_file(&path);
                let _ = self.fs.remove_file(&meta_path);
                continue;
            }
            let seq = self.head.next_seq;
            let final_path = self.media_path(seq);
            if path != final_path {
                self.fs
                    .rename(&path, &final_path)
                    .map_err(io_err(&final_path))?;
                let media_dir = self.dir.join("media");
                self.fs.sync_dir(&media_dir).map_err(io_err(&media_dir))?;
                if live {
                    self.sync_partial_dir()?;
                }
            }
            let mut draft = draft.unwrap_or_else(|| unknown_draft(clock));
            draft.flags |= segment_flags::RECOVERED;
            self.media_bytes += len;
            let c = self.entry_clock(clock);
            let position = draft.position;
            self.append_body(
                signer,
                c,
                position,
                Body::Segment(draft.into_body(sha, len)),
            )?;
            let _ = self.fs.remove_file(&meta_path);
            out.push(seq);
        }
        Ok(out)
    }

    fn count_media_bytes(&self) -> Result<u64, SpoolError> {
        let media = self.dir.join("media");
        let mut total = 0;
        for e in self.fs.list(&media).map_err(io_err(&media))? {
            if e.is_file {
                total += e.len;
            }
        }
        Ok(total)
    }

    /// Delete the media of `seq` after the server acknowledged it (and the
    /// keep period passed). Recorded in `released.log` first, so that local
    /// verification knows the absence is expected.
    ///
    /// # Errors
    /// I/O errors.
    pub fn release_media(&mut self, seq: u64) -> Result<(), SpoolError> {
        let path = self.dir.join("released.log");
        let mut f = self.fs.open_append(&path).map_err(io_err(&path))?;
        f.write_all(format!("{seq}\n").as_bytes())
            .and_then(|()| f.sync())
            .map_err(io_err(&path))?;
        let media = self.media_path(seq);
        let len = self.fs.len(&media).unwrap_or(0);
        match self.fs.remove_file(&media) {
            Ok(()) => self.media_bytes = self.media_bytes.saturating_sub(len),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&media)(e)),
        }
        self.released.insert(seq);
        Ok(())
    }
}

/// Metadata for a salvaged segment whose metadata file was lost too.
fn unknown_draft(clock: &dyn Clock) -> SegmentDraft {
    SegmentDraft {
        recording: [0; 16],
        part: 0,
        start_pts: 0,
        end_pts: 0,
        start_mono_us: clock.mono_us(),
        video_frames: 0,
        audio_samples: 0,
        codec: CodecParams {
            video: String::new(),
            width: 0,
            height: 0,
            fps_num: 0,
            fps_den: 1,
            audio: String::new(),
            sample_rate: 0,
            channels: 0,
        },
        flags: segment_flags::RECOVERED,
        case: None,
        activity: None,
        position: None,
        streamed_from: None,
        dropped: None,
    }
}

fn read_released(fs: &dyn SpoolFs, dir: &Path) -> Result<BTreeSet<u64>, SpoolError> {
    let path = dir.join("released.log");
    match fs.read(&path) {
        Ok(t) => Ok(String::from_utf8_lossy(&t)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Read a chain log: its head, the last entry's wall clock, the length of its
/// whole records and of a torn tail.
fn scan_log(
    fs: &dyn SpoolFs,
    path: &Path,
) -> Result<(ChainHead, Option<i64>, usize, usize), SpoolError> {
    let log = crate::chainlog::read_from(fs, path, 0).map_err(io_err(path))?;
    let complete_len = usize::try_from(log.end()).unwrap_or(usize::MAX);
    if let Some(e) = log.damage() {
        return Err(SpoolError::Damaged {
            path: path.to_path_buf(),
            offset: complete_len,
            detail: e.to_string(),
        });
    }
    let last = match log.last() {
        None => return Ok((ChainHead::GENESIS, None, complete_len, log.torn_tail())),
        Some(r) => SignedEntry::from_bytes(r.bytes).map_err(|e| SpoolError::Damaged {
            path: path.to_path_buf(),
            offset: usize::try_from(r.offset).unwrap_or(usize::MAX),
            detail: format!("last entry does not decode: {e}"),
        })?,
    };
    Ok((
        ChainHead::after(&last),
        Some(last.entry.wall_us),
        complete_len,
        log.torn_tail(),
    ))
}

/// Bytes read at a time by [`hash_file`]: small enough that the block is still in the CPU's L2
/// cache when SHA-256 reads it back after `read` copied it in, and cheap to zero for every file
/// (1 MiB blocks left L2, and zeroing them and faulting their pages in was ~3 % of the time in
/// `perf` over 1 MiB segment files; `openssl dgst` reads 8 KiB at a time), large enough that
/// system calls cost little. docs/PERFORMANCE.md has the throughput against openssl.
const HASH_READ_BLOCK: usize = 64 * 1024;

/// SHA-256 and length of a file, read in [`HASH_READ_BLOCK`]s.
///
/// # Errors
/// The OS error of reading it.
pub fn hash_file(path: &Path) -> io::Result<(Hash32, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256Stream::new();
    let mut buf = vec![0u8; HASH_READ_BLOCK];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finish(), len));
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
}

/// Fill an empty spool in `dir` with a sample day of `segments` segments of `media_len` stand-in
/// bytes each (proto's `sample` chain, signed by `signer`), for measuring how start-up grows
/// with the spool: the chain log and media files are what the agent itself leaves, but they are
/// written in one go and fsynced once, not once per entry. Returns the number of entries.
///
/// # Errors
/// [`SpoolError::Io`]; a spool that already holds a chain log is refused.
pub fn fill_sample(
    dir: &Path,
    signer: &impl Signer,
    segments: u32,
    media_len: usize,
) -> Result<u64, SpoolError> {
    let log_path = crate::chainlog::path(dir);
    if fs::metadata(&log_path).is_ok_and(|m| m.len() > 0) {
        return Err(io_err(&log_path)(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the spool already holds entries; fill an empty one",
        )));
    }
    let media_dir = dir.join("media");
    fs::create_dir_all(&media_dir).map_err(io_err(&media_dir))?;
    let sample = fieldseal_proto::sample::build(signer, &[segments], media_len);
    let mut log = Vec::new();
    for e in &sample.entries {
        chainlog::put_record(&mut log, &e.to_bytes());
    }
    for (seq, bytes) in &sample.media {
        let path = media_dir.join(media_name(*seq));
        fs::write(&path, bytes).map_err(io_err(&path))?;
    }
    let mut f = File::create(&log_path).map_err(io_err(&log_path))?;
    f.write_all(&log)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&log_path))?;
    sync_dir(&media_dir).map_err(io_err(&media_dir))?;
    sync_dir(dir).map_err(io_err(dir))?;
    Ok(sample.entries.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_spool_verifies_and_a_second_fill_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        // Agent started, recording started, 5 segments, recording stopped.
        assert_eq!(fill_sample(dir.path(), &key, 5, 100).unwrap(), 8);
        let report = verify_dir(dir.path(), &key.verifying_key(), None).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.media_verified, 5);
        let log = fs::read(dir.path().join("chain.log")).unwrap();
        assert!(fill_sample(dir.path(), &key, 1, 100).is_err());
        assert_eq!(fs::read(dir.path().join("chain.log")).unwrap(), log);
    }

    #[test]
    fn a_torn_final_record_is_malformed_as_fieldseal_verify_says() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        fill_sample(dir.path(), &key, 2, 100).unwrap();
        let log = dir.path().join("chain.log");
        let mut bytes = fs::read(&log).unwrap();
        let whole = bytes.clone();
        bytes.extend_from_slice(&whole[..40]);
        fs::write(&log, &bytes).unwrap();
        let report = verify_dir(dir.path(), &key.verifying_key(), None).unwrap();
        assert!(!report.ok);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        let f = &report.findings[0];
        assert_eq!(
            (f.seq, f.kind),
            (None, fieldseal_proto::chain::FindingKind::Malformed)
        );
        assert!(
            f.detail.contains("40 bytes of a torn record"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn a_draft_keeps_the_flat_json_of_partial_metadata_files() {
        // As a `.partial/N.json` written before the codec fields became one
        // type: a salvage after an upgrade must still read it.
        let flat = r#"{"recording":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"part":3,
            "start_pts":90000,"end_pts":450000,"start_mono_us":7,"video_frames":120,
            "audio_samples":192000,"video":"h264","width":1280,"height":720,"fps_num":30,
            "fps_den":1,"audio":"aac","sample_rate":48000,"channels":1,"flags":2,
            "case":"CJ-1","activity":null}"#;
        let d: SegmentDraft = serde_json::from_str(flat).unwrap();
        assert_eq!((d.codec.width, d.codec.channels), (1280, 1));
        assert_eq!(d.codec.audio, "aac");
        // Written before positions: it states none (tag 0), and says so now.
        assert_eq!(d.position, None);
        let back: serde_json::Value = serde_json::to_value(&d).unwrap();
        let mut want: serde_json::Value = serde_json::from_str(flat).unwrap();
        want["position"] = "00".into();
        assert_eq!(back, want);
        // A width the entry cannot hold is refused, not clamped.
        let wide = flat.replace(r#""width":1280"#, r#""width":70000"#);
        assert!(serde_json::from_str::<SegmentDraft>(&wide).is_err());
    }

    /// A segment torn by a crash is signed at the next start with the
    /// position its draft kept, as its entry would have stated it.
    #[test]
    fn a_salvaged_segment_states_the_position_of_its_draft() {
        use fieldseal_proto::entry::{NoFix, Point};
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        let clock = crate::clock::SystemClock::new();
        let (spool, _) = Spool::open(dir.path(), &key, &clock).unwrap();
        let seq = spool.head().next_seq;
        drop(spool); // a crash: no close
        let fix = Position::Fix {
            point: Point {
                lat_e7: 440_110_717,
                lon_e7: 873_001_000,
                accuracy_m: 18,
            },
            fix_us: 1_782_892_808_000_000,
        };
        let partial = dir.path().join("media/.partial");
        for (i, position) in [(0, Some(fix)), (1, Some(Position::NoFix(NoFix::Lost)))] {
            let d = SegmentDraft {
                recording: [9; 16],
                part: i,
                start_pts: i64::from(i) * 90_000,
                end_pts: i64::from(i + 1) * 90_000,
                start_mono_us: 1,
                video_frames: 30,
                audio_samples: 0,
                codec: unknown_draft(&clock).codec,
                flags: 0,
                case: None,
                activity: None,
                position,
                streamed_from: None,
                dropped: None,
            };
            let n = seq + u64::from(i);
            fs::write(
                partial.join(format!("{n:012}.json")),
                serde_json::to_vec(&d).unwrap(),
            )
            .unwrap();
            fs::write(partial.join(media_name(n)), b"torn").unwrap();
        }
        let (_spool, open) = Spool::open(dir.path(), &key, &clock).unwrap();
        assert_eq!(open.salvaged, [seq, seq + 1]);
        let log = fs::read(dir.path().join("chain.log")).unwrap();
        let entries: Vec<SignedEntry> = chainlog::split(&log)
            .unwrap()
            .records
            .iter()
            .map(|r| SignedEntry::from_bytes(r).unwrap())
            .collect();
        let stated: Vec<_> = entries
            .iter()
            .filter(|e| e.entry.segment().is_some())
            .map(|e| e.entry.position)
            .collect();
        assert_eq!(stated, [Some(fix), Some(Position::NoFix(NoFix::Lost))]);
    }
}
