//! The segment being encoded, streamed into its partial file as it is produced, so that a power
//! cut loses only the media since the last durability point instead of the whole segment.
//!
//! While a recording runs, the chain writer *arms* the [`LiveSpill`] with what the segments'
//! entries will state (recording, part, tags, position). From the next segment the capture
//! thread opens, for each segment, `DIR/media/.partial/live-N.ts` and its sidecar `live-N.json`:
//! one line with the segment's draft (the spool's `SegmentDraft` as JSON, its frames and end not
//! yet known), made durable with its folder before any media is written. Then every
//! `durable_every_ms` of media (`[capture] durable_every_ms`) the muxer is flushed, the muxed
//! bytes since the last point (whole 188-byte TS packets) are appended to the `.ts`, which is
//! `fdatasync`ed, and a progress line ([`LiveProgress`]: bytes, end PTS, frame and sample counts
//! of that durable prefix) is appended to the sidecar and `fdatasync`ed. At the cut the rest is
//! written the same way, and the segment goes to the chain writer with the finished file
//! ([`StreamedFile`]: its length and SHA-256, hashed as written), which the spool renames into
//! `media/` and signs without reading it again. The segment's bytes also stay in memory, as
//! before: if the file fails (disk full, I/O error), the segment is written whole as it was
//! without streaming. A streamed file the writer does not record is deleted when dropped.
//!
//! After a power cut the spool's salvage cuts each live file to its last progress line that the
//! file holds and signs that prefix as RECOVERED with the progress line's end and counts.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use fieldseal_proto::entry::{CodecParams, Position, PTS_HZ};
use fieldseal_proto::identity::{Hash32, Sha256Stream};
use serde::{Deserialize, Serialize};

use super::mux::TsMuxer;
use crate::spool::SegmentDraft;

/// Default of `[capture] durable_every_ms`: a power cut loses about this much media at most
/// (plus the encoder's few frames of lookahead), for two `fdatasync`s each time.
pub const DEFAULT_DURABLE_EVERY_MS: u32 = 500;

/// What the chain writer tells the capture about the segments it is going to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveArm {
    /// The recording the segments belong to.
    pub recording: [u8; 16],
    /// The capture index of the next segment the writer will receive …
    pub base_index: u64,
    /// … and its part in the recording (later segments follow on).
    pub base_part: u32,
    /// Tags the entries will state.
    pub case: Option<String>,
    /// Tags the entries will state.
    pub activity: Option<String>,
    /// The position a salvaged segment states: the latest the writer knew.
    pub position: Option<Position>,
    /// An instant and its monotonic µs on the writer's clock, to state a segment's start.
    pub mono: (Instant, u64),
}

/// One progress line of a sidecar: the durable prefix of the `.ts` and the media it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveProgress {
    /// Bytes of the `.ts` made durable (whole TS packets).
    pub len: u64,
    /// End of the last video frame in them (90 kHz).
    pub end_pts: i64,
    /// Video frames in them.
    pub video_frames: u32,
    /// Audio samples in them.
    pub audio_samples: u64,
}

/// Where and how often segments are streamed, and whether the writer wants them.
#[derive(Debug)]
pub struct LiveSpill {
    dir: PathBuf,
    every_ticks: i64,
    arm: Mutex<Option<LiveArm>>,
    next_name: AtomicU64,
    fsyncs: AtomicU64,
    failures: AtomicU64,
}

impl LiveSpill {
    /// Stream into `dir` (the spool's `media/.partial`), durable every `every_ms` of media
    /// (0: never stream, the whole segment is written at its end as before).
    pub fn new(dir: &Path, every_ms: u32) -> Arc<LiveSpill> {
        Arc::new(LiveSpill {
            dir: dir.to_path_buf(),
            every_ticks: i64::from(every_ms) * PTS_HZ / 1000,
            arm: Mutex::new(None),
            next_name: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Stream the segments from `arm.base_index` on (`None`: stop at the next segment).
    pub fn arm(&self, arm: Option<LiveArm>) {
        *self.arm.lock().unwrap_or_else(PoisonError::into_inner) = arm;
    }

    /// `fdatasync`s made so far (media and sidecars, folders included).
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Segments that fell back to a whole write after an error of their live file.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn armed_for(&self, index: u64) -> Option<LiveArm> {
        let arm = self.arm.lock().unwrap_or_else(PoisonError::into_inner);
        arm.as_ref().filter(|a| index >= a.base_index).cloned()
    }

    fn synced(&self, n: u64) {
        self.fsyncs.fetch_add(n, Ordering::Relaxed);
    }
}

/// A finished segment file in `.partial/`: durable, with its length and hash. Dropped without
/// [`StreamedFile::keep`], it is deleted with its sidecar (a segment the writer did not record).
#[derive(Debug)]
pub struct StreamedFile {
    path: PathBuf,
    sidecar: PathBuf,
    len: u64,
    sha256: Hash32,
    kept: AtomicBool,
}

impl PartialEq for StreamedFile {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for StreamedFile {}

impl StreamedFile {
    /// A finished file `path` with its sidecar, `len` bytes hashing to
    /// `sha256` (as the capture hands it over; tests build their own).
    pub fn new(path: PathBuf, sidecar: PathBuf, len: u64, sha256: Hash32) -> StreamedFile {
        StreamedFile {
            path,
            sidecar,
            len,
            sha256,
            kept: AtomicBool::new(false),
        }
    }

    /// The `.ts` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its sidecar `live-N.json`.
    pub fn sidecar(&self) -> &Path {
        &self.sidecar
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its SHA-256, computed as it was written.
    pub fn sha256(&self) -> Hash32 {
        self.sha256
    }

    /// The spool owns the file now: never delete it on drop (if signing fails, the next start
    /// salvages it).
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }
}

impl Drop for StreamedFile {
    fn drop(&mut self) {
        if !self.kept.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_file(&self.sidecar);
        }
    }
}

/// The segment the capture thread is streaming.
#[derive(Debug)]
struct LiveFile {
    ts: File,
    sidecar: File,
    path: PathBuf,
    sidecar_path: PathBuf,
    hasher: Sha256Stream,
    len: u64,
    synced_end: i64,
}

/// What the capture knows of the segment being encoded.
#[derive(Debug, Clone)]
pub(crate) struct LiveSegment<'a> {
    pub index: u64,
    pub start_pts: i64,
    pub end_pts: i64,
    pub video_frames: u32,
    pub audio_samples: u64,
    pub start_mono: Option<Instant>,
    pub codec: &'a CodecParams,
}

impl LiveSegment<'_> {
    fn progress(&self, len: u64) -> LiveProgress {
        LiveProgress {
            len,
            end_pts: self.end_pts,
            video_frames: self.video_frames,
            audio_samples: self.audio_samples,
        }
    }
}

/// The capture thread's side: at most one open live file, and the finished one waiting for
/// its segment to be emitted.
#[derive(Debug)]
pub(crate) struct LiveCursor {
    spill: Arc<LiveSpill>,
    open: Option<LiveFile>,
    done: Option<Arc<StreamedFile>>,
}

impl LiveCursor {
    pub(crate) fn new(spill: Arc<LiveSpill>) -> Option<LiveCursor> {
        (spill.every_ticks > 0).then(|| LiveCursor {
            spill,
            open: None,
            done: None,
        })
    }

    /// After a packet went into the muxer: open the segment's file if the writer wants it, or
    /// make the media durable if `durable_every_ms` passed since the last time.
    pub(crate) fn after_write(&mut self, mux: &mut TsMuxer, seg: &LiveSegment<'_>) {
        let due = match &self.open {
            None => {
                let Some(arm) = self.spill.armed_for(seg.index) else {
                    return;
                };
                match self.open_file(&arm, seg) {
                    Ok(f) => self.open = Some(f),
                    Err(e) => {
                        self.fail(&e);
                        return;
                    }
                }
                false
            }
            Some(f) => seg.end_pts - f.synced_end >= self.spill.every_ticks,
        };
        if due {
            let r = mux
                .flush()
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|()| mux.with_pending(|bytes| self.write_point(bytes, seg)));
            match r {
                Ok(()) => crate::fault::point("segment-half-written"),
                Err(e) => self.fail(&e),
            }
        }
    }

    /// At the cut, with all of the segment's `bytes`: write the rest and make it durable; the
    /// finished file waits for [`LiveCursor::take_done`].
    pub(crate) fn complete(&mut self, bytes: &[u8], seg: &LiveSegment<'_>) {
        if self.open.is_none() {
            return;
        }
        if let Err(e) = self.write_point(bytes, seg) {
            self.fail(&e);
            return;
        }
        if let Some(f) = self.open.take() {
            let sha256 = f.hasher.finish();
            let file = StreamedFile::new(f.path, f.sidecar_path, f.len, sha256);
            self.done = Some(Arc::new(file));
        }
    }

    /// The file of the segment just completed, for its `CapturedSegment`.
    pub(crate) fn take_done(&mut self) -> Option<Arc<StreamedFile>> {
        self.done.take()
    }

    fn open_file(&self, arm: &LiveArm, seg: &LiveSegment<'_>) -> io::Result<LiveFile> {
        let n = self.spill.next_name.fetch_add(1, Ordering::Relaxed);
        let path = self.spill.dir.join(format!("live-{n:012}.ts"));
        let sidecar_path = self.spill.dir.join(format!("live-{n:012}.json"));
        let part = u64::from(arm.base_part) + (seg.index - arm.base_index);
        let start_mono_us = seg.start_mono.map_or(arm.mono.1, |t| {
            let us = u64::try_from(t.saturating_duration_since(arm.mono.0).as_micros());
            arm.mono.1.saturating_add(us.unwrap_or(0))
        });
        let draft = SegmentDraft {
            recording: arm.recording,
            part: u32::try_from(part).unwrap_or(u32::MAX),
            start_pts: seg.start_pts,
            end_pts: seg.start_pts,
            start_mono_us,
            video_frames: 0,
            audio_samples: 0,
            codec: seg.codec.clone(),
            flags: 0,
            case: arm.case.clone(),
            activity: arm.activity.clone(),
            position: arm.position,
            streamed_from: None,
            dropped: None,
        };
        let mut line = serde_json::to_vec(&draft).map_err(io::Error::other)?;
        line.push(b'\n');
        let ts = File::create(&path)?;
        let mut sidecar = File::create(&sidecar_path)?;
        sidecar.write_all(&line)?;
        sidecar.sync_data()?;
        // Both names durable before any media is: salvage needs the draft with the bytes.
        crate::fsutil::sync_dir(&self.spill.dir)?;
        self.spill.synced(2);
        Ok(LiveFile {
            ts,
            sidecar,
            path,
            sidecar_path,
            hasher: Sha256Stream::new(),
            len: 0,
            synced_end: seg.start_pts,
        })
    }

    /// `bytes`: everything muxed since the segment's start, of which the file holds the first
    /// `len`. Append the rest, make it durable, then say so in the sidecar.
    fn write_point(&mut self, bytes: &[u8], seg: &LiveSegment<'_>) -> io::Result<()> {
        let Some(f) = &mut self.open else {
            return Ok(());
        };
        let start = usize::try_from(f.len)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let new = &bytes[start..];
        f.ts.write_all(new)?;
        f.hasher.update(new);
        f.len += new.len() as u64;
        f.ts.sync_data()?;
        let mut line = serde_json::to_vec(&seg.progress(f.len)).map_err(io::Error::other)?;
        line.push(b'\n');
        f.sidecar.write_all(&line)?;
        f.sidecar.sync_data()?;
        f.synced_end = seg.end_pts;
        self.spill.synced(2);
        Ok(())
    }

    fn fail(&mut self, e: &io::Error) {
        self.spill.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "streaming the segment to its partial file failed: it is written whole at its end");
        if let Some(f) = self.open.take() {
            let _ = std::fs::remove_file(&f.path);
            let _ = std::fs::remove_file(&f.sidecar_path);
        }
    }
}

/// A sidecar read back for salvage: the draft, and the last progress line whose bytes a file
/// of `file_len` bytes holds, cut to whole TS packets (`None`: nothing durable).
pub fn read_sidecar(text: &[u8], file_len: u64) -> Option<(SegmentDraft, LiveProgress)> {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.split_inclusive('\n');
    let draft: SegmentDraft = serde_json::from_str(lines.next()?.strip_suffix('\n')?).ok()?;
    let progress = lines
        .filter_map(|l| serde_json::from_str::<LiveProgress>(l.strip_suffix('\n')?).ok())
        .rfind(|p| p.len > 0 && p.len <= file_len && p.len % TS_PACKET == 0)?;
    Some((draft, progress))
}

/// The length of an MPEG-TS packet.
pub const TS_PACKET: u64 = 188;
