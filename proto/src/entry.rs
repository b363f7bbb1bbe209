//! Chain entries: what a device signs, byte for byte.
//!
//! Every device keeps one append-only chain of entries for its whole life. An
//! entry is either a **segment** (one media file, named by its SHA-256) or an
//! **event** (recording started or stopped, power loss recovered, clock
//! adjusted, …). [`Entry::signing_bytes`] is the one function that makes the
//! bytes that are hashed and signed:
//!
//! ```text
//! "fieldseal/entry/v1\0"    19  domain-separation prefix
//! version                u8  = 1
//! device_id              [8] see identity.rs
//! seq                    u64 0, 1, 2, … for the device's whole life
//! prev_hash              [32] entry hash of seq-1 (32 zero bytes for seq 0)
//! wall_us                i64 device wall clock, µs since 1970-01-01T00:00:00Z
//! mono_us                u64 device monotonic clock, µs, restarts with `boot`
//! boot                   u32 agent start counter
//! position               u8 0 | 1 followed by lat_e7 i32, lon_e7 i32, accuracy_m u16
//! kind                   u8 1 = segment, 2 = event
//! body                   segment or event body
//! ```
//!
//! entry hash = SHA-256(signing bytes); the signature is ed25519 over the same
//! bytes, and a signed entry is `signing bytes || signature[64]`. The complete
//! layout, with the bodies and test vectors, is in `docs/FORMAT.md`.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{put, Decode, DecodeError, Encode, Reader};
use crate::identity::{sha256, DeviceId, Hash32, Signer};

/// Domain-separation prefix of an entry's signing bytes.
pub const ENTRY_PREFIX: &[u8] = b"fieldseal/entry/v1\0";
/// The only entry format version this implementation reads and writes.
pub const ENTRY_VERSION: u8 = 1;
/// Longest case number, activity type, officer name or codec name, in bytes.
/// Case numbers in practice are ~30 characters (e.g. "昌州执法〔2026〕第00123号" is 34 bytes).
pub const MAX_TAG_LEN: usize = 64;
/// Longest codec name ("h264", "aac", "hevc"): short by nature.
pub const MAX_CODEC_LEN: usize = 16;
/// Upper bound on a signed entry's length. The largest possible entry (all text
/// fields at their maximum) is below 700 bytes; the bound leaves room for later
/// versions while keeping a receiver's buffer small.
pub const MAX_SIGNED_ENTRY: usize = 4096;
/// Timebase of presentation timestamps: MPEG-TS's 90 kHz clock.
pub const PTS_HZ: i64 = 90_000;

/// Errors from building or verifying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EntryError {
    /// A text field is longer than the format allows or contains control characters.
    #[error("{what} is invalid: at most {max} bytes of text without control characters")]
    BadText {
        /// The field.
        what: &'static str,
        /// Its maximum length.
        max: usize,
    },
    /// A position outside the valid latitude/longitude ranges.
    #[error("position out of range")]
    BadPosition,
    /// The ed25519 signature does not verify under the device key.
    #[error("signature does not verify")]
    BadSignature,
    /// The entry names another device than the key it was checked against.
    #[error("entry belongs to device {found}, not {expected}")]
    WrongDevice {
        /// Device id derived from the verifying key.
        expected: DeviceId,
        /// Device id written in the entry.
        found: DeviceId,
    },
}

/// Check a text field against its bound.
fn check_text(what: &'static str, s: &str, max: usize) -> Result<(), EntryError> {
    if s.len() > max || s.chars().any(char::is_control) {
        Err(EntryError::BadText { what, max })
    } else {
        Ok(())
    }
}

fn put_opt_text(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put::text8(out, s);
        }
    }
}

fn get_opt_text(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    if r.bool(what)? {
        Ok(Some(r.text8(what, max)?))
    } else {
        Ok(None)
    }
}

/// Where the device was, if it knew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Latitude in units of 1e-7 degree, −90° … +90°.
    pub lat_e7: i32,
    /// Longitude in units of 1e-7 degree, −180° … +180°.
    pub lon_e7: i32,
    /// Estimated accuracy radius in metres (65535 = unknown or worse).
    pub accuracy_m: u16,
}

impl Position {
    fn valid(&self) -> bool {
        self.lat_e7.unsigned_abs() <= 900_000_000 && self.lon_e7.unsigned_abs() <= 1_800_000_000
    }
}

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

    fn validate(&self) -> Result<(), EntryError> {
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

    fn encode(&self, out: &mut Vec<u8>) {
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

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
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

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The officer stopped it.
    User = 1,
    /// The configured storage limit was reached with unsynced evidence on the device.
    StorageFull = 2,
    /// The battery was too low to go on.
    BatteryLow = 3,
    /// The agent was asked to shut down (SIGINT/SIGTERM, device power-off).
    Shutdown = 4,
    /// The capture pipeline failed (camera unplugged, encoder error).
    Error = 5,
}

impl StopReason {
    /// The reason as it appears in reports (`user-stop`, `storage-full`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::User => "user-stop",
            StopReason::StorageFull => "storage-full",
            StopReason::BatteryLow => "battery-low",
            StopReason::Shutdown => "shutdown",
            StopReason::Error => "capture-error",
        }
    }

    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => StopReason::User,
            2 => StopReason::StorageFull,
            3 => StopReason::BatteryLow,
            4 => StopReason::Shutdown,
            5 => StopReason::Error,
            _ => {
                return Err(DecodeError::InvalidValue {
                    what: "stop reason",
                    value: u64::from(v),
                })
            }
        })
    }
}

/// Something that happened on the device, signed into the chain when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The agent process started (after a clean stop or a first start).
    AgentStarted {
        /// Software name and version, e.g. `fieldseal-agent 0.1.0`.
        software: String,
    },
    /// Recording was switched on.
    RecordingStarted {
        /// The new recording's id.
        recording: [u8; 16],
        /// Case number, if given.
        case: Option<String>,
        /// Activity type, if given.
        activity: Option<String>,
    },
    /// Recording was switched off.
    RecordingStopped {
        /// The recording that ended.
        recording: [u8; 16],
        /// Why.
        reason: StopReason,
    },
    /// Segments from the pre-event buffer were attached to a recording.
    PreEventAttached {
        /// The recording they join.
        recording: [u8; 16],
        /// How many segments.
        segments: u32,
        /// How much media, in µs.
        media_us: u64,
    },
    /// Audio muted by the officer (video goes on; silence is recorded).
    AudioMuted,
    /// Audio unmuted.
    AudioUnmuted,
    /// Storage use crossed the low-space threshold.
    StorageLow {
        /// Bytes in use by the agent's spool.
        used_bytes: u64,
        /// The configured limit.
        limit_bytes: u64,
    },
    /// Storage limit reached: recording stops rather than delete unsynced evidence.
    StorageFull {
        /// Bytes in use by the agent's spool.
        used_bytes: u64,
        /// The configured limit.
        limit_bytes: u64,
    },
    /// Battery low.
    BatteryLow {
        /// Remaining charge, percent.
        percent: u8,
    },
    /// The device wall clock was changed.
    ClockAdjusted {
        /// Wall clock before the change, µs since the epoch.
        old_wall_us: i64,
        /// Wall clock after the change.
        new_wall_us: i64,
    },
    /// The agent restarted after a crash or power loss.
    PowerLossRecovered {
        /// The last entry found durable before the loss (`None`: the chain was empty).
        last_seq: Option<u64>,
        /// Wall clock of that entry, µs.
        last_wall_us: i64,
        /// Time from that entry to this restart, µs (by wall clock).
        gap_us: u64,
        /// Torn segments salvaged and signed as recovered.
        salvaged: u32,
    },
    /// The case or activity tag changed during a recording.
    TagChanged {
        /// New case number.
        case: Option<String>,
        /// New activity type.
        activity: Option<String>,
    },
    /// The officer showed identity documents (Art. 26).
    IdentityShown {
        /// Officer name or certificate number, if entered.
        officer: Option<String>,
    },
    /// The work behind capture (hashing, fsync, signing) fell behind: segments
    /// waited in memory. Frames are never dropped silently; this says so if any were.
    CaptureBacklog {
        /// Segments waiting when the event was signed.
        pending_segments: u32,
        /// Frames the capture could not keep (0 unless memory ran out).
        dropped_frames: u64,
    },
}

impl Event {
    /// The event's name as it appears in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Event::AgentStarted { .. } => "agent-started",
            Event::RecordingStarted { .. } => "recording-started",
            Event::RecordingStopped { .. } => "recording-stopped",
            Event::PreEventAttached { .. } => "pre-event-attached",
            Event::AudioMuted => "audio-muted",
            Event::AudioUnmuted => "audio-unmuted",
            Event::StorageLow { .. } => "storage-low",
            Event::StorageFull { .. } => "storage-full",
            Event::BatteryLow { .. } => "battery-low",
            Event::ClockAdjusted { .. } => "clock-adjusted",
            Event::PowerLossRecovered { .. } => "power-loss-recovered",
            Event::TagChanged { .. } => "tag-changed",
            Event::IdentityShown { .. } => "identity-shown",
            Event::CaptureBacklog { .. } => "capture-backlog",
        }
    }

    fn code(&self) -> u8 {
        match self {
            Event::AgentStarted { .. } => 1,
            Event::RecordingStarted { .. } => 2,
            Event::RecordingStopped { .. } => 3,
            Event::PreEventAttached { .. } => 4,
            Event::AudioMuted => 5,
            Event::AudioUnmuted => 6,
            Event::StorageLow { .. } => 7,
            Event::StorageFull { .. } => 8,
            Event::BatteryLow { .. } => 9,
            Event::ClockAdjusted { .. } => 10,
            Event::PowerLossRecovered { .. } => 11,
            Event::TagChanged { .. } => 12,
            Event::IdentityShown { .. } => 13,
            Event::CaptureBacklog { .. } => 14,
        }
    }

    fn validate(&self) -> Result<(), EntryError> {
        let opt = |what, s: &Option<String>| match s {
            Some(s) => check_text(what, s, MAX_TAG_LEN),
            None => Ok(()),
        };
        match self {
            Event::AgentStarted { software } => check_text("software", software, MAX_TAG_LEN),
            Event::RecordingStarted { case, activity, .. }
            | Event::TagChanged { case, activity } => {
                opt("case", case)?;
                opt("activity", activity)
            }
            Event::IdentityShown { officer } => opt("officer", officer),
            _ => Ok(()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code());
        match self {
            Event::AgentStarted { software } => put::text8(out, software),
            Event::RecordingStarted {
                recording,
                case,
                activity,
            } => {
                out.extend_from_slice(recording);
                put_opt_text(out, case);
                put_opt_text(out, activity);
            }
            Event::RecordingStopped { recording, reason } => {
                out.extend_from_slice(recording);
                out.push(*reason as u8);
            }
            Event::PreEventAttached {
                recording,
                segments,
                media_us,
            } => {
                out.extend_from_slice(recording);
                out.extend_from_slice(&segments.to_be_bytes());
                out.extend_from_slice(&media_us.to_be_bytes());
            }
            Event::AudioMuted | Event::AudioUnmuted => {}
            Event::StorageLow {
                used_bytes,
                limit_bytes,
            }
            | Event::StorageFull {
                used_bytes,
                limit_bytes,
            } => {
                out.extend_from_slice(&used_bytes.to_be_bytes());
                out.extend_from_slice(&limit_bytes.to_be_bytes());
            }
            Event::BatteryLow { percent } => out.push(*percent),
            Event::ClockAdjusted {
                old_wall_us,
                new_wall_us,
            } => {
                out.extend_from_slice(&old_wall_us.to_be_bytes());
                out.extend_from_slice(&new_wall_us.to_be_bytes());
            }
            Event::PowerLossRecovered {
                last_seq,
                last_wall_us,
                gap_us,
                salvaged,
            } => {
                match last_seq {
                    None => out.push(0),
                    Some(s) => {
                        out.push(1);
                        out.extend_from_slice(&s.to_be_bytes());
                    }
                }
                out.extend_from_slice(&last_wall_us.to_be_bytes());
                out.extend_from_slice(&gap_us.to_be_bytes());
                out.extend_from_slice(&salvaged.to_be_bytes());
            }
            Event::TagChanged { case, activity } => {
                put_opt_text(out, case);
                put_opt_text(out, activity);
            }
            Event::IdentityShown { officer } => put_opt_text(out, officer),
            Event::CaptureBacklog {
                pending_segments,
                dropped_frames,
            } => {
                out.extend_from_slice(&pending_segments.to_be_bytes());
                out.extend_from_slice(&dropped_frames.to_be_bytes());
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = r.u8()?;
        Ok(match code {
            1 => Event::AgentStarted {
                software: r.text8("software", MAX_TAG_LEN)?,
            },
            2 => Event::RecordingStarted {
                recording: r.array()?,
                case: get_opt_text(r, "case", MAX_TAG_LEN)?,
                activity: get_opt_text(r, "activity", MAX_TAG_LEN)?,
            },
            3 => Event::RecordingStopped {
                recording: r.array()?,
                reason: StopReason::from_u8(r.u8()?)?,
            },
            4 => Event::PreEventAttached {
                recording: r.array()?,
                segments: r.u32()?,
                media_us: r.u64()?,
            },
            5 => Event::AudioMuted,
            6 => Event::AudioUnmuted,
            7 => Event::StorageLow {
                used_bytes: r.u64()?,
                limit_bytes: r.u64()?,
            },
            8 => Event::StorageFull {
                used_bytes: r.u64()?,
                limit_bytes: r.u64()?,
            },
            9 => {
                let percent = r.u8()?;
                if percent > 100 {
                    return Err(DecodeError::InvalidValue {
                        what: "battery percent",
                        value: u64::from(percent),
                    });
                }
                Event::BatteryLow { percent }
            }
            10 => Event::ClockAdjusted {
                old_wall_us: r.i64()?,
                new_wall_us: r.i64()?,
            },
            11 => Event::PowerLossRecovered {
                last_seq: if r.bool("last_seq present")? {
                    Some(r.u64()?)
                } else {
                    None
                },
                last_wall_us: r.i64()?,
                gap_us: r.u64()?,
                salvaged: r.u32()?,
            },
            12 => Event::TagChanged {
                case: get_opt_text(r, "case", MAX_TAG_LEN)?,
                activity: get_opt_text(r, "activity", MAX_TAG_LEN)?,
            },
            13 => Event::IdentityShown {
                officer: get_opt_text(r, "officer", MAX_TAG_LEN)?,
            },
            14 => Event::CaptureBacklog {
                pending_segments: r.u32()?,
                dropped_frames: r.u64()?,
            },
            _ => {
                return Err(DecodeError::InvalidValue {
                    what: "event code",
                    value: u64::from(code),
                })
            }
        })
    }
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// One media file.
    Segment(SegmentBody),
    /// Something that happened.
    Event(Event),
}

/// One chain entry, unsigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The device whose chain this is.
    pub device: DeviceId,
    /// Position in the chain, contiguous from 0.
    pub seq: u64,
    /// Entry hash of `seq - 1`; all zeros for seq 0.
    pub prev_hash: Hash32,
    /// Device wall clock when signed, µs since the Unix epoch (UTC).
    pub wall_us: i64,
    /// Device monotonic clock when signed, µs; restarts when `boot` changes.
    pub mono_us: u64,
    /// Agent start counter: increments every time the agent process starts.
    pub boot: u32,
    /// Where the device was, if known.
    pub position: Option<Position>,
    /// Segment or event.
    pub body: Body,
}

impl Entry {
    /// The canonical bytes: what is hashed and signed. See the module doc.
    ///
    /// # Panics
    /// If a text field exceeds 255 bytes, which [`Entry::validate`] prevents;
    /// every constructor in this crate validates first.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(ENTRY_PREFIX);
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.device.0);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.wall_us.to_be_bytes());
        out.extend_from_slice(&self.mono_us.to_be_bytes());
        out.extend_from_slice(&self.boot.to_be_bytes());
        match &self.position {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.lat_e7.to_be_bytes());
                out.extend_from_slice(&p.lon_e7.to_be_bytes());
                out.extend_from_slice(&p.accuracy_m.to_be_bytes());
            }
        }
        match &self.body {
            Body::Segment(s) => {
                out.push(1);
                s.encode(&mut out);
            }
            Body::Event(e) => {
                out.push(2);
                e.encode(&mut out);
            }
        }
        out
    }

    /// SHA-256 of the signing bytes.
    pub fn hash(&self) -> Hash32 {
        sha256(&self.signing_bytes())
    }

    /// Check every bound the encoding relies on.
    ///
    /// # Errors
    /// [`EntryError::BadText`] or [`EntryError::BadPosition`].
    pub fn validate(&self) -> Result<(), EntryError> {
        if let Some(p) = &self.position {
            if !p.valid() {
                return Err(EntryError::BadPosition);
            }
        }
        match &self.body {
            Body::Segment(s) => s.validate(),
            Body::Event(e) => e.validate(),
        }
    }

    /// Validate and sign.
    ///
    /// # Errors
    /// As [`Entry::validate`].
    pub fn sign(self, signer: &(impl Signer + ?Sized)) -> Result<SignedEntry, EntryError> {
        self.validate()?;
        let bytes = self.signing_bytes();
        let signature = signer.sign(&bytes).to_bytes();
        let hash = sha256(&bytes);
        Ok(SignedEntry {
            entry: self,
            signature,
            hash,
            len: bytes.len(),
        })
    }

    /// The segment body, if this is a segment.
    pub fn segment(&self) -> Option<&SegmentBody> {
        match &self.body {
            Body::Segment(s) => Some(s),
            Body::Event(_) => None,
        }
    }

    /// The event, if this is an event.
    pub fn event(&self) -> Option<&Event> {
        match &self.body {
            Body::Event(e) => Some(e),
            Body::Segment(_) => None,
        }
    }
}

impl Decode for Entry {
    const NAME: &'static str = "entry";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let prefix = r.take(ENTRY_PREFIX.len())?;
        if prefix != ENTRY_PREFIX {
            return Err(DecodeError::BadPrefix { what: "entry" });
        }
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "entry",
                version,
            });
        }
        let device = DeviceId(r.array()?);
        let seq = r.u64()?;
        let prev_hash = r.array()?;
        let wall_us = r.i64()?;
        let mono_us = r.u64()?;
        let boot = r.u32()?;
        let position = if r.bool("position present")? {
            let p = Position {
                lat_e7: r.i32()?,
                lon_e7: r.i32()?,
                accuracy_m: r.u16()?,
            };
            if !p.valid() {
                return Err(DecodeError::InvalidValue {
                    what: "position",
                    value: 0,
                });
            }
            Some(p)
        } else {
            None
        };
        let body = match r.u8()? {
            1 => Body::Segment(SegmentBody::decode(r)?),
            2 => Body::Event(Event::decode(r)?),
            k => {
                return Err(DecodeError::InvalidValue {
                    what: "entry kind",
                    value: u64::from(k),
                })
            }
        };
        Ok(Entry {
            device,
            seq,
            prev_hash,
            wall_us,
            mono_us,
            boot,
            position,
            body,
        })
    }
}

/// An entry with its signature, as stored on disk and sent on the wire:
/// `signing bytes || signature[64]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEntry {
    /// The entry.
    pub entry: Entry,
    /// ed25519 signature over the entry's signing bytes.
    pub signature: [u8; 64],
    hash: Hash32,
    len: usize,
}

impl SignedEntry {
    /// The entry hash (SHA-256 of the signing bytes), computed once.
    pub fn hash(&self) -> Hash32 {
        self.hash
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        self.entry.seq
    }

    /// Verify the signature under `key` (ed25519 `verify_strict`) and that the
    /// entry names the device of that key.
    ///
    /// # Errors
    /// [`EntryError::WrongDevice`] or [`EntryError::BadSignature`].
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EntryError> {
        let expected = DeviceId::from_key(key);
        if self.entry.device != expected {
            return Err(EntryError::WrongDevice {
                expected,
                found: self.entry.device,
            });
        }
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&self.entry.signing_bytes(), &sig)
            .map_err(|_| EntryError::BadSignature)
    }

    /// Length of the encoded signed entry.
    pub fn encoded_len(&self) -> usize {
        self.len + 64
    }
}

impl Encode for SignedEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.entry.signing_bytes());
        out.extend_from_slice(&self.signature);
    }
}

impl Decode for SignedEntry {
    const NAME: &'static str = "signed entry";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.position();
        let entry = Entry::decode(r)?;
        let len = r.position() - start;
        if len + 64 > MAX_SIGNED_ENTRY {
            return Err(DecodeError::TooLong {
                what: "signed entry",
                len: (len + 64) as u64,
                max: MAX_SIGNED_ENTRY as u64,
            });
        }
        // Hash the bytes as received: decoding is canonical (every field has
        // exactly one encoding), so these are the signing bytes.
        let hash = sha256(&r.consumed()[start..]);
        let signature = r.array()?;
        Ok(SignedEntry {
            entry,
            signature,
            hash,
            len,
        })
    }
}

/// The state needed to append to a chain: the next sequence number and the
/// hash of the last entry. The agent keeps one; the server keeps one per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number the next entry gets.
    pub next_seq: u64,
    /// Hash of entry `next_seq - 1`, or zeros for an empty chain.
    pub last_hash: Hash32,
}

impl ChainHead {
    /// The head of an empty chain.
    pub const GENESIS: ChainHead = ChainHead {
        next_seq: 0,
        last_hash: [0u8; 32],
    };

    /// The head after `entry`.
    pub fn after(entry: &SignedEntry) -> Self {
        ChainHead {
            next_seq: entry.seq() + 1,
            last_hash: entry.hash(),
        }
    }

    /// Make, sign and append the next entry. The head moves only on success.
    ///
    /// # Errors
    /// As [`Entry::validate`].
    pub fn append(
        &mut self,
        signer: &(impl Signer + ?Sized),
        clock: Clock,
        position: Option<Position>,
        body: Body,
    ) -> Result<SignedEntry, EntryError> {
        let entry = Entry {
            device: signer.device_id(),
            seq: self.next_seq,
            prev_hash: self.last_hash,
            wall_us: clock.wall_us,
            mono_us: clock.mono_us,
            boot: clock.boot,
            position,
            body,
        };
        let signed = entry.sign(signer)?;
        *self = ChainHead::after(&signed);
        Ok(signed)
    }
}

/// The device's clocks at one moment, passed in by the caller (proto reads no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Wall clock, µs since the Unix epoch.
    pub wall_us: i64,
    /// Monotonic clock, µs.
    pub mono_us: u64,
    /// Agent start counter.
    pub boot: u32,
}
