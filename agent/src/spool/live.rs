//! The spool's side of segments streamed while they were encoded
//! (capture/live.rs): signing a finished one without reading it again, and
//! salvaging the durable prefix of one a power cut interrupted.

use std::path::Path;

use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::Signer;

use super::{io_err, SegmentDraft, Spool, SpoolError};
use crate::capture::live::{read_sidecar, TS_PACKET};
use crate::capture::StreamedFile;
use crate::clock::Clock;

/// A file's name without its extension (`live-N`).
fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Spool {
    /// [`Spool::append_segment`] for a segment whose `bytes` the capture
    /// also streamed to `streamed` (durable, hashed as written): the same
    /// write order (draft, media durable, rename, folder fsync, entry),
    /// without writing or reading the bytes again. Without a streamed file,
    /// or with one that does not hold exactly `bytes.len()` bytes, the bytes
    /// are written whole as by [`Spool::append_segment`].
    ///
    /// # Errors
    /// As [`Spool::append_segment`]; the streamed file then stays in
    /// `.partial/` and the next start salvages it.
    pub fn append_segment_streamed(
        &mut self,
        signer: &dyn Signer,
        clock: &dyn Clock,
        mut draft: SegmentDraft,
        bytes: &[u8],
        streamed: Option<&StreamedFile>,
    ) -> Result<SignedEntry, SpoolError> {
        let whole = bytes.len() as u64;
        let Some(file) =
            streamed.filter(|f| f.len() == whole && self.fs.len(f.path()).ok() == Some(whole))
        else {
            return self.append_segment(signer, clock, draft, bytes);
        };
        if self.poisoned {
            return Err(SpoolError::Poisoned);
        }
        file.keep();
        draft.streamed_from = Some(stem(file.path()));
        let meta_path = self.write_draft(self.head.next_seq, &draft)?;
        // The capture made it durable; this fsync is the one the whole write
        // makes, so that the order above holds whatever the capture did.
        let path = file.path();
        let mut f = self.fs.open_append(path).map_err(io_err(path))?;
        f.sync().map_err(io_err(path))?;
        drop(f);
        let media = (file.sha256(), file.len());
        let entry = self.commit_media(signer, clock, path, &meta_path, draft, media)?;
        let _ = self.fs.remove_file(file.sidecar());
        Ok(entry)
    }

    /// Cut a streamed segment a power cut interrupted to the prefix its
    /// sidecar says was durable (whole TS packets), and return the draft of
    /// that prefix (its end, frames and samples). `None`: nothing durable,
    /// and both files are removed.
    pub(super) fn cut_live(&mut self, path: &Path) -> Result<Option<SegmentDraft>, SpoolError> {
        let sidecar = path.with_extension("json");
        let file_len = self.fs.len(path).map_err(io_err(path))?;
        let text = self.fs.read(&sidecar).unwrap_or_default();
        let Some((mut draft, done)) = read_sidecar(&text, file_len) else {
            let _ = self.fs.remove_file(path);
            let _ = self.fs.remove_file(&sidecar);
            return Ok(None);
        };
        let keep = done.len - done.len % TS_PACKET;
        if file_len > keep {
            let mut f = self.fs.open_append(path).map_err(io_err(path))?;
            f.set_len(keep)
                .and_then(|()| f.sync())
                .map_err(io_err(path))?;
        }
        draft.streamed_from = Some(stem(path));
        draft.end_pts = done.end_pts;
        draft.video_frames = done.video_frames;
        draft.audio_samples = done.audio_samples;
        Ok(Some(draft))
    }

    /// Make `.partial/`'s names durable as they are.
    pub(super) fn sync_partial_dir(&self) -> Result<(), SpoolError> {
        let partial = self.dir.join("media/.partial");
        self.fs.sync_dir(&partial).map_err(io_err(&partial))
    }

    /// A cut between renaming a streamed file into `media/` and fsyncing
    /// `.partial/` leaves it durable under both names: before the renamed
    /// one (an orphan, or a salvaged one) is signed, drop the old name, so
    /// that it is neither signed twice nor cut short under the signed one.
    pub(super) fn forget_streamed_name(
        &mut self,
        draft: Option<&SegmentDraft>,
    ) -> Result<(), SpoolError> {
        let Some(name) = draft.and_then(|d| d.streamed_from.as_deref()) else {
            return Ok(());
        };
        let partial = self.dir.join("media/.partial");
        let old = partial.join(format!("{name}.ts"));
        if self.fs.exists(&old) {
            self.fs.remove_file(&old).map_err(io_err(&old))?;
            let _ = self.fs.remove_file(&partial.join(format!("{name}.json")));
            self.sync_partial_dir()?;
        }
        Ok(())
    }

    /// After salvage every segment in `.partial/` is signed or gone: what is
    /// left are drafts and sidecars of segments that never got media.
    pub(super) fn remove_stale_drafts(&self) -> Result<(), SpoolError> {
        let partial = self.dir.join("media/.partial");
        for e in self.fs.list(&partial).map_err(io_err(&partial))? {
            if e.is_file && e.name.ends_with(".json") {
                let _ = self.fs.remove_file(&partial.join(&e.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use fieldseal_proto::chainlog;
    use fieldseal_proto::codec::Decode;
    use fieldseal_proto::entry::{segment_flags, SignedEntry};
    use fieldseal_proto::identity::Sha256Stream;

    use super::super::{media_name, unknown_draft};
    use super::*;
    use crate::capture::live::LiveProgress;
    use crate::clock::SystemClock;

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[5u8; 32])
    }

    fn segments(dir: &Path) -> Vec<SignedEntry> {
        let log = fs::read(dir.join("chain.log")).unwrap();
        chainlog::split(&log)
            .unwrap()
            .records
            .iter()
            .map(|r| SignedEntry::from_bytes(r).unwrap())
            .filter(|e| e.entry.segment().is_some())
            .collect()
    }

    fn sha(bytes: &[u8]) -> fieldseal_proto::identity::Hash32 {
        let mut h = Sha256Stream::new();
        h.update(bytes);
        h.finish()
    }

    /// A live segment's sidecar: its draft, then one line per durable point.
    fn sidecar(progress: &[LiveProgress], torn_tail: &str) -> String {
        let mut draft = unknown_draft(&SystemClock::new());
        (draft.recording, draft.part, draft.start_pts) = ([7; 16], 3, 90_000);
        draft.end_pts = draft.start_pts;
        draft.flags = 0;
        let mut text = serde_json::to_string(&draft).unwrap() + "\n";
        for p in progress {
            text += &(serde_json::to_string(p).unwrap() + "\n");
        }
        text + torn_tail
    }

    /// A power cut while a segment was streamed: the next start signs the
    /// prefix its last whole progress line says is durable (and that the
    /// file holds), cut to it, with that prefix's end and counts.
    #[test]
    fn a_streamed_segment_is_salvaged_to_its_last_durable_point() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SystemClock::new();
        let (spool, _) = Spool::open(dir.path(), &key(), &clock).unwrap();
        let seq = spool.head().next_seq;
        drop(spool); // the cut: no close
        let partial = dir.path().join("media/.partial");
        let bytes: Vec<u8> = (0..188 * 10 + 50).map(|i| (i % 251) as u8).collect();
        fs::write(partial.join("live-000000000000.ts"), &bytes).unwrap();
        let point = |packets: u64, frames: u32| LiveProgress {
            len: 188 * packets,
            end_pts: 90_000 + 3000 * i64::from(frames),
            video_frames: frames,
            audio_samples: 1600 * u64::from(frames),
        };
        // Durable at 4 and 8 packets; a note for more than the file holds
        // (its bytes were lost), and a torn last line.
        let text = sidecar(&[point(4, 5), point(8, 10), point(20, 25)], "{\"len\":18");
        fs::write(partial.join("live-000000000000.json"), text).unwrap();
        // A draft whose media never came (a cut before its write began).
        fs::write(partial.join("000000000099.json"), b"{}").unwrap();

        let (_spool, open) = Spool::open(dir.path(), &key(), &clock).unwrap();
        assert_eq!(open.salvaged, [seq]);
        let entries = segments(dir.path());
        let s = entries[0].entry.segment().unwrap();
        assert_eq!(s.flags & segment_flags::RECOVERED, segment_flags::RECOVERED);
        assert_eq!((s.recording, s.part), ([7; 16], 3));
        assert_eq!((s.start_pts, s.end_pts), (90_000, 120_000));
        assert_eq!((s.video_frames, s.audio_samples), (10, 16_000));
        let kept = &bytes[..188 * 8];
        assert_eq!(
            (s.media_len, s.media_sha256),
            (kept.len() as u64, sha(kept))
        );
        let media = fs::read(dir.path().join("media").join(media_name(seq))).unwrap();
        assert_eq!(media, kept);
        assert_eq!(fs::read_dir(&partial).unwrap().count(), 0, "nothing left");
    }

    /// A cut after a streamed file was renamed into `media/` and that
    /// folder fsynced, before `.partial/` was: the file is durable under
    /// both names (the power-cut filesystem keeps both, as POSIX allows).
    /// It is signed once, whole, and its old name is dropped, not cut to an
    /// older progress line under the signed name.
    #[test]
    fn a_streamed_file_left_under_both_names_is_signed_once_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SystemClock::new();
        let (spool, _) = Spool::open(dir.path(), &key(), &clock).unwrap();
        let seq = spool.head().next_seq;
        drop(spool);
        let partial = dir.path().join("media/.partial");
        let media = dir.path().join("media").join(media_name(seq));
        let bytes = vec![0x47u8; 188 * 6];
        fs::write(&media, &bytes).unwrap();
        fs::hard_link(&media, partial.join("live-000000000002.ts")).unwrap();
        let half = LiveProgress {
            len: 188 * 3,
            end_pts: 93_000,
            video_frames: 1,
            audio_samples: 0,
        };
        fs::write(partial.join("live-000000000002.json"), sidecar(&[half], "")).unwrap();
        let mut draft = unknown_draft(&clock);
        draft.streamed_from = Some("live-000000000002".into());
        let meta = partial.join(format!("{seq:012}.json"));
        fs::write(meta, serde_json::to_vec(&draft).unwrap()).unwrap();

        let (_spool, open) = Spool::open(dir.path(), &key(), &clock).unwrap();
        assert_eq!(open.salvaged, [seq]);
        assert_eq!(fs::read(&media).unwrap(), bytes);
        let entries = segments(dir.path());
        assert_eq!(entries.len(), 1);
        let s = entries[0].entry.segment().unwrap();
        assert_eq!(
            (s.media_len, s.media_sha256),
            (bytes.len() as u64, sha(&bytes))
        );
        assert_eq!(fs::read_dir(&partial).unwrap().count(), 0);
    }

    /// Cut before its first durable point: nothing to sign, nothing left.
    #[test]
    fn a_streamed_segment_with_nothing_durable_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SystemClock::new();
        drop(Spool::open(dir.path(), &key(), &clock).unwrap());
        let partial = dir.path().join("media/.partial");
        fs::write(partial.join("live-000000000003.ts"), vec![0x47; 188 * 3]).unwrap();
        fs::write(partial.join("live-000000000003.json"), sidecar(&[], "")).unwrap();
        let (_spool, open) = Spool::open(dir.path(), &key(), &clock).unwrap();
        assert!(open.salvaged.is_empty());
        assert!(segments(dir.path()).is_empty());
        assert_eq!(fs::read_dir(&partial).unwrap().count(), 0);
    }

    /// A finished streamed file is renamed and signed with the hash taken
    /// while it was written; one that does not hold the segment's bytes is
    /// not used (the bytes are written whole) and is deleted when dropped.
    #[test]
    fn a_streamed_file_is_signed_as_written_or_replaced_by_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SystemClock::new();
        let (mut spool, _) = Spool::open(dir.path(), &key(), &clock).unwrap();
        let partial = dir.path().join("media/.partial");
        let bytes = vec![0x47u8; 188 * 5];
        let file = |n: u32, content: &[u8]| {
            let path = partial.join(format!("live-{n:012}.ts"));
            let side = path.with_extension("json");
            fs::write(&path, content).unwrap();
            fs::write(&side, b"{}\n").unwrap();
            StreamedFile::new(path, side, content.len() as u64, sha(content))
        };
        let draft = || unknown_draft(&clock);

        // The file differs from the bytes in memory (never so in the
        // agent): what is signed is the file, as written and hashed, not a
        // second write of the bytes.
        let written = vec![0x48u8; bytes.len()];
        let streamed = file(0, &written);
        let (path, side) = (streamed.path().to_owned(), streamed.sidecar().to_owned());
        let e = spool
            .append_segment_streamed(&key(), &clock, draft(), &bytes, Some(&streamed))
            .unwrap();
        let s = e.entry.segment().unwrap();
        assert_eq!(
            (s.media_len, s.media_sha256),
            (bytes.len() as u64, sha(&written))
        );
        assert_eq!(fs::read(spool.media_path(e.seq())).unwrap(), written);
        assert!(!path.exists() && !side.exists(), "renamed, sidecar removed");
        drop(streamed);

        let short = file(1, &bytes[..188]);
        let (path, side) = (short.path().to_owned(), short.sidecar().to_owned());
        let e = spool
            .append_segment_streamed(&key(), &clock, draft(), &bytes, Some(&short))
            .unwrap();
        assert_eq!(fs::read(spool.media_path(e.seq())).unwrap(), bytes);
        assert!(path.exists(), "not the spool's: left to its owner");
        drop(short);
        assert!(!path.exists() && !side.exists());
        assert_eq!(fs::read_dir(&partial).unwrap().count(), 0);
    }
}
