//! The segment body: one media file, named by its SHA-256, with its timing
//! and codec parameters. Its bytes follow the entry header when `kind` = 1:
//!
//! ```text
//! recording [16] || part u32 || media_sha256 [32] || media_len u64
//! || start_pts i64 || end_pts i64 || start_mono_us u64 || video_frames u32 || audio_samples u64
//! || video text8 || width u16 || height u16 || fps_num u32 || fps_den u32
//! || audio text8 || sample_rate u32 || channels u8 || flags u8 || case opt-text8 || activity opt-text8
//! ```
//!
//! Timestamps are in [`PTS_HZ`]. `docs/FORMAT.md` has the full layout and
//! the test vectors.

use serde::{Deserialize, Serialize};

use super::{
    check_text, get_opt_text, put_opt_text, EntryError, MAX_CODEC_LEN, MAX_TAG_LEN, PTS_HZ,
};
use crate::codec::{put, DecodeError, Reader};
use crate::identity::Hash32;

/// The codec parameters of a segment: the one shape of them on both sides
/// (the agent's capture produces it, its spool keeps it in a segment's
/// metadata file, the entry signs it). A producer working in wider integers
/// converts with checks and refuses what does not fit, never clamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecParams {
    /// Video codec name, e.g. `h264`.
    pub video: String,
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// Frame rate numerator.
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
    /// Audio codec name, e.g. `aac`; empty when the segment has no audio.
    pub audio: String,
    /// Audio sample rate in Hz (0 without audio).
    pub sample_rate: u32,
    /// Audio channel count (0 without audio).
    pub channels: u8,
}

/// Flags of a segment.
pub mod segment_flags {
    /// The file was torn by a crash or power loss and salvaged: hashed as found.
    pub const RECOVERED: u8 = 0x01;
    /// Captured by the pre-event buffer before recording was switched on.
    pub const PRE_EVENT: u8 = 0x02;
    /// Every defined flag; any other bit set makes the entry malformed.
    pub const ALL: u8 = RECOVERED | PRE_EVENT;
}

/// A segment entry's body: one media file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentBody {
    /// The recording this segment belongs to (random, chosen when recording starts).
    pub recording: [u8; 16],
    /// Index of the segment within its recording, from 0.
    pub part: u32,
    /// SHA-256 of the media file's exact bytes.
    pub media_sha256: Hash32,
    /// Length of the media file in bytes.
    pub media_len: u64,
    /// First presentation timestamp, 90 kHz.
    pub start_pts: i64,
    /// End of presentation (last frame's timestamp plus its duration), 90 kHz.
    /// The next segment of the same recording starts exactly here.
    pub end_pts: i64,
    /// Device monotonic clock (µs, same boot as the entry) at the first frame.
    pub start_mono_us: u64,
    /// Number of video frames.
    pub video_frames: u32,
    /// Number of audio samples (per channel).
    pub audio_samples: u64,
    /// Codec parameters.
    pub codec: CodecParams,
    /// See [`segment_flags`].
    pub flags: u8,
    /// Case number tag, if known when recorded.
    pub case: Option<String>,
    /// Activity type tag, if known when recorded.
    pub activity: Option<String>,
}

impl SegmentBody {
    /// Seconds of media in this segment.
    pub fn seconds(&self) -> f64 {
        (i128::from(self.end_pts) - i128::from(self.start_pts)) as f64 / PTS_HZ as f64
    }

    /// True if the segment was salvaged after a crash.
    pub fn recovered(&self) -> bool {
        self.flags & segment_flags::RECOVERED != 0
    }

    pub(super) fn validate(&self) -> Result<(), EntryError> {
        check_text("video codec", &self.codec.video, MAX_CODEC_LEN)?;
        check_text("audio codec", &self.codec.audio, MAX_CODEC_LEN)?;
        if let Some(c) = &self.case {
            check_text("case", c, MAX_TAG_LEN)?;
        }
        if let Some(a) = &self.activity {
            check_text("activity", a, MAX_TAG_LEN)?;
        }
        Ok(())
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.recording);
        out.extend_from_slice(&self.part.to_be_bytes());
        out.extend_from_slice(&self.media_sha256);
        out.extend_from_slice(&self.media_len.to_be_bytes());
        out.extend_from_slice(&self.start_pts.to_be_bytes());
        out.extend_from_slice(&self.end_pts.to_be_bytes());
        out.extend_from_slice(&self.start_mono_us.to_be_bytes());
        out.extend_from_slice(&self.video_frames.to_be_bytes());
        out.extend_from_slice(&self.audio_samples.to_be_bytes());
        put::text8(out, &self.codec.video);
        out.extend_from_slice(&self.codec.width.to_be_bytes());
        out.extend_from_slice(&self.codec.height.to_be_bytes());
        out.extend_from_slice(&self.codec.fps_num.to_be_bytes());
        out.extend_from_slice(&self.codec.fps_den.to_be_bytes());
        put::text8(out, &self.codec.audio);
        out.extend_from_slice(&self.codec.sample_rate.to_be_bytes());
        out.push(self.codec.channels);
        out.push(self.flags);
        put_opt_text(out, &self.case);
        put_opt_text(out, &self.activity);
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let recording = r.array()?;
        let part = r.u32()?;
        let media_sha256 = r.array()?;
        let media_len = r.u64()?;
        let start_pts = r.i64()?;
        let end_pts = r.i64()?;
        if end_pts < start_pts {
            return Err(DecodeError::InvalidValue {
                what: "segment end_pts before start_pts",
                value: end_pts as u64,
            });
        }
        let start_mono_us = r.u64()?;
        let video_frames = r.u32()?;
        let audio_samples = r.u64()?;
        let codec = CodecParams {
            video: r.text8("video codec", MAX_CODEC_LEN)?,
            width: r.u16()?,
            height: r.u16()?,
            fps_num: r.u32()?,
            fps_den: r.u32()?,
            audio: r.text8("audio codec", MAX_CODEC_LEN)?,
            sample_rate: r.u32()?,
            channels: r.u8()?,
        };
        let flags = r.u8()?;
        if flags & !segment_flags::ALL != 0 {
            return Err(DecodeError::InvalidValue {
                what: "segment flags",
                value: u64::from(flags),
            });
        }
        let case = get_opt_text(r, "case", MAX_TAG_LEN)?;
        let activity = get_opt_text(r, "activity", MAX_TAG_LEN)?;
        Ok(SegmentBody {
            recording,
            part,
            media_sha256,
            media_len,
            start_pts,
            end_pts,
            start_mono_us,
            video_frames,
            audio_samples,
            codec,
            flags,
            case,
            activity,
        })
    }
}
