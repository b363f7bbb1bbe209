//! The event body: something that happened on the device, signed into the
//! chain when it happened. Its bytes follow the entry header when `kind` = 2:
//! an event code (u8, 1 ..= 19) and that event's fields in the order they
//! are declared in [`Event`] (an option as a presence byte, then its value).
//! `docs/FORMAT.md` has the full layout and the test vectors.

use serde::Serialize;

use super::{check_text, get_opt_text, put_opt_text, EntryError, MAX_TAG_LEN};
use crate::codec::{put, DecodeError, Reader};

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
    /// The positioning receiver has a fix, after none: at start, after a
    /// loss, or once it answers again.
    FixAcquired {
        /// When the receiver took the fix (its clock), µs since the epoch.
        fix_us: i64,
    },
    /// The receiver still answers, but its last fix is too old.
    FixLost {
        /// When the receiver took its last fix (its clock), µs since the epoch.
        last_fix_us: i64,
    },
    /// The receiver's service (gpsd) does not answer: not running at
    /// start, or gone.
    ReceiverUnreachable {
        /// When the receiver took its last fix, if it had one.
        last_fix_us: Option<i64>,
    },
    /// The receiver's service answers again.
    ReceiverBack,
    /// Video frames the capture dropped inside one segment because encoding
    /// fell behind (the encoder's clock went on, so the segment's span holds
    /// them but its `video_frames` does not). Signed right after the segment
    /// it names; without it, a segment whose frame count and span disagree is
    /// the verifier's `frame-count-mismatch`.
    FramesDropped {
        /// The recording of the segment.
        recording: [u8; 16],
        /// The segment's `part`.
        part: u32,
        /// Presentation time of the first dropped frame, 90 kHz.
        first_pts: i64,
        /// End of the last dropped frame (its time plus one frame), 90 kHz.
        end_pts: i64,
        /// How many video frames were dropped.
        frames: u32,
    },
}

impl Event {
    /// The explanation this event gives for a stretch without media, with its
    /// strength (power loss over a stop over full storage): the chain
    /// verifier's gap reasons, and the server's timelines.
    pub fn gap_reason(&self) -> Option<(u8, &'static str)> {
        match self {
            Event::PowerLossRecovered { .. } => Some((3, "power-loss")),
            Event::RecordingStopped { reason, .. } => Some((2, reason.as_str())),
            Event::StorageFull { .. } => Some((1, "storage-full")),
            _ => None,
        }
    }

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
            Event::FixAcquired { .. } => "fix-acquired",
            Event::FixLost { .. } => "fix-lost",
            Event::ReceiverUnreachable { .. } => "receiver-unreachable",
            Event::ReceiverBack => "receiver-back",
            Event::FramesDropped { .. } => "frames-dropped",
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
            Event::FixAcquired { .. } => 15,
            Event::FixLost { .. } => 16,
            Event::ReceiverUnreachable { .. } => 17,
            Event::ReceiverBack => 18,
            Event::FramesDropped { .. } => 19,
        }
    }

    pub(super) fn validate(&self) -> Result<(), EntryError> {
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

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
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
            Event::FixAcquired { fix_us: t } | Event::FixLost { last_fix_us: t } => {
                out.extend_from_slice(&t.to_be_bytes());
            }
            Event::ReceiverUnreachable { last_fix_us } => match last_fix_us {
                None => out.push(0),
                Some(t) => {
                    out.push(1);
                    out.extend_from_slice(&t.to_be_bytes());
                }
            },
            Event::ReceiverBack => {}
            Event::FramesDropped {
                recording,
                part,
                first_pts,
                end_pts,
                frames,
            } => {
                out.extend_from_slice(recording);
                out.extend_from_slice(&part.to_be_bytes());
                out.extend_from_slice(&first_pts.to_be_bytes());
                out.extend_from_slice(&end_pts.to_be_bytes());
                out.extend_from_slice(&frames.to_be_bytes());
            }
        }
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
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
            15 => Event::FixAcquired { fix_us: r.i64()? },
            16 => Event::FixLost {
                last_fix_us: r.i64()?,
            },
            17 => Event::ReceiverUnreachable {
                last_fix_us: if r.bool("last_fix_us present")? {
                    Some(r.i64()?)
                } else {
                    None
                },
            },
            18 => Event::ReceiverBack,
            19 => {
                let recording = r.array()?;
                let part = r.u32()?;
                let first_pts = r.i64()?;
                let end_pts = r.i64()?;
                if end_pts < first_pts {
                    return Err(DecodeError::InvalidValue {
                        what: "frames-dropped end_pts before first_pts",
                        value: end_pts as u64,
                    });
                }
                Event::FramesDropped {
                    recording,
                    part,
                    first_pts,
                    end_pts,
                    frames: r.u32()?,
                }
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    what: "event code",
                    value: u64::from(code),
                })
            }
        })
    }
}
