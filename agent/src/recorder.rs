//! The recorder's decisions, as a plain state machine: given the officer's
//! commands and the segments the capture delivers, what goes into the chain,
//! and when the camera runs. No I/O: the driver in `run.rs` carries out the
//! [`Action`]s (write media, sign, start or stop the capture).
//!
//! ```text
//!           start                          stop
//!  Idle ─────────────► Recording ───────────────► Stopping ──(next segment / final)──► Idle
//!   │ segments go to     │ segments join             │ the segment in progress
//!   │ the pre-event      │ the recording             │ still joins the recording
//!   └ buffer (N s)       └                           └
//! ```
//!
//! A stop takes effect at the end of the segment in progress: a recording is
//! never shorter than asked, and never cut inside a GOP.

use std::collections::VecDeque;

use fieldseal_proto::entry::{segment_flags, Event, StopReason, PTS_HZ};

use crate::capture::CapturedSegment;

/// What the officer (or the device) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Switch recording on, optionally with the case and activity.
    Start {
        /// Case number.
        case: Option<String>,
        /// Activity type.
        activity: Option<String>,
    },
    /// Switch recording off.
    Stop,
    /// Change the case or activity tag.
    Tag {
        /// Case number.
        case: Option<String>,
        /// Activity type.
        activity: Option<String>,
    },
    /// The officer showed identity (Art. 26).
    IdentityShown {
        /// Officer name or certificate number.
        officer: Option<String>,
    },
    /// Mute the microphone (silence is recorded).
    Mute,
    /// Unmute it.
    Unmute,
}

/// Where a segment goes in the chain.
#[derive(Debug)]
pub struct SegmentPlan {
    /// The captured segment.
    pub segment: CapturedSegment,
    /// Its recording.
    pub recording: [u8; 16],
    /// Its index in the recording.
    pub part: u32,
    /// Entry flags (PRE_EVENT for buffered segments).
    pub flags: u8,
    /// Case tag.
    pub case: Option<String>,
    /// Activity tag.
    pub activity: Option<String>,
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Sign this event into the chain.
    Event(Event),
    /// Write this segment and sign its entry.
    Segment(SegmentPlan),
    /// Start the camera.
    StartCapture,
    /// Stop the camera (it flushes and delivers its last segment).
    StopCapture,
    /// Mute or unmute the audio of the running capture.
    SetMuted(bool),
}

/// A command that makes no sense in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `start` while recording.
    #[error("already recording")]
    AlreadyRecording,
    /// `stop` while not recording.
    #[error("not recording")]
    NotRecording,
    /// `start` after the storage limit was reached.
    #[error("storage is full: recording cannot start until the server has taken the backlog")]
    StorageFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    Recording {
        id: [u8; 16],
        next_part: u32,
    },
    Stopping {
        id: [u8; 16],
        next_part: u32,
        reason: StopReason,
    },
}

/// The recorder state machine.
#[derive(Debug)]
pub struct Recorder {
    pre_event_us: u64,
    state: State,
    prebuffer: VecDeque<CapturedSegment>,
    capture_on: bool,
    muted: bool,
    case: Option<String>,
    activity: Option<String>,
    storage_full: bool,
    end_reason: StopReason,
}

fn seg_us(s: &CapturedSegment) -> u64 {
    u64::try_from((s.end_pts - s.start_pts).max(0) * 1_000_000 / PTS_HZ).unwrap_or(0)
}

impl Recorder {
    /// A recorder with a pre-event buffer of `pre_event_secs` (0: none).
    pub fn new(pre_event_secs: u32) -> Self {
        Recorder {
            pre_event_us: u64::from(pre_event_secs) * 1_000_000,
            state: State::Idle,
            prebuffer: VecDeque::new(),
            capture_on: false,
            muted: false,
            case: None,
            activity: None,
            storage_full: false,
            end_reason: StopReason::Error,
        }
    }

    /// Why a recording ends when the camera stops by itself (its final
    /// segment arrives while recording): an error unless the caller planned it,
    /// as `record --duration` does.
    pub fn end_with(&mut self, reason: StopReason) {
        self.end_reason = reason;
    }

    /// Actions to take when the agent starts: with a pre-event buffer the
    /// camera runs all the time.
    pub fn on_start(&mut self) -> Vec<Action> {
        if self.pre_event_us > 0 {
            self.capture_on = true;
            vec![Action::StartCapture]
        } else {
            Vec::new()
        }
    }

    /// While recording: the recording and the part of the next segment it
    /// receives (what the capture streams that segment's partial file with,
    /// capture/live.rs). `None` while idle or stopping: the segments after
    /// the stop may not be recorded.
    pub fn next_part(&self) -> Option<([u8; 16], u32)> {
        match self.state {
            State::Recording { id, next_part } => Some((id, next_part)),
            _ => None,
        }
    }

    /// The case and activity the next segment's entry states.
    pub fn tags(&self) -> (Option<String>, Option<String>) {
        (self.case.clone(), self.activity.clone())
    }

    /// True while recording (or finishing the last segment of a recording).
    pub fn is_recording(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// The state's name for status output.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::Recording { .. } => "recording",
            State::Stopping { .. } => "stopping",
        }
    }

    /// Seconds of media in the pre-event buffer.
    pub fn prebuffer_seconds(&self) -> f64 {
        self.prebuffer.iter().map(seg_us).sum::<u64>() as f64 / 1e6
    }

    /// Whether the camera should be running.
    pub fn capture_on(&self) -> bool {
        self.capture_on
    }

    /// Handle a command. `recording_id` is fresh randomness for a new recording.
    ///
    /// # Errors
    /// A [`CommandError`] when the command does not fit the state; nothing changes then.
    pub fn handle_command(
        &mut self,
        cmd: Command,
        recording_id: [u8; 16],
    ) -> Result<Vec<Action>, CommandError> {
        let mut out = Vec::new();
        match cmd {
            Command::Start { case, activity } => match self.state {
                State::Recording { .. } => return Err(CommandError::AlreadyRecording),
                State::Stopping { id, next_part, .. } => {
                    // Started again before the stop took effect: the recording
                    // simply goes on, without a gap.
                    self.state = State::Recording { id, next_part };
                    if case.is_some() || activity.is_some() {
                        self.set_tags(case, activity, &mut out);
                    }
                }
                State::Idle => {
                    if self.storage_full {
                        return Err(CommandError::StorageFull);
                    }
                    if case.is_some() || activity.is_some() {
                        self.case = case;
                        self.activity = activity;
                    }
                    out.push(Action::Event(Event::RecordingStarted {
                        recording: recording_id,
                        case: self.case.clone(),
                        activity: self.activity.clone(),
                    }));
                    let mut next_part = 0u32;
                    if !self.prebuffer.is_empty() {
                        let media_us = self.prebuffer.iter().map(seg_us).sum();
                        out.push(Action::Event(Event::PreEventAttached {
                            recording: recording_id,
                            segments: u32::try_from(self.prebuffer.len()).unwrap_or(u32::MAX),
                            media_us,
                        }));
                        for segment in self.prebuffer.drain(..) {
                            out.push(Action::Segment(SegmentPlan {
                                segment,
                                recording: recording_id,
                                part: next_part,
                                flags: segment_flags::PRE_EVENT,
                                case: self.case.clone(),
                                activity: self.activity.clone(),
                            }));
                            next_part += 1;
                        }
                    }
                    if !self.capture_on {
                        self.capture_on = true;
                        out.push(Action::StartCapture);
                        if self.muted {
                            out.push(Action::SetMuted(true));
                        }
                    }
                    self.state = State::Recording {
                        id: recording_id,
                        next_part,
                    };
                }
            },
            Command::Stop => match self.state {
                State::Recording { id, next_part } => {
                    self.state = State::Stopping {
                        id,
                        next_part,
                        reason: StopReason::User,
                    };
                    if self.pre_event_us == 0 {
                        self.capture_on = false;
                        out.push(Action::StopCapture);
                    }
                }
                _ => return Err(CommandError::NotRecording),
            },
            Command::Tag { case, activity } => self.set_tags(case, activity, &mut out),
            Command::IdentityShown { officer } => {
                out.push(Action::Event(Event::IdentityShown { officer }));
            }
            Command::Mute | Command::Unmute => {
                let mute = cmd == Command::Mute;
                if mute != self.muted {
                    self.muted = mute;
                    out.push(Action::SetMuted(mute));
                    out.push(Action::Event(if mute {
                        Event::AudioMuted
                    } else {
                        Event::AudioUnmuted
                    }));
                }
            }
        }
        Ok(out)
    }

    fn set_tags(&mut self, case: Option<String>, activity: Option<String>, out: &mut Vec<Action>) {
        self.case = case;
        self.activity = activity;
        out.push(Action::Event(Event::TagChanged {
            case: self.case.clone(),
            activity: self.activity.clone(),
        }));
    }

    /// Handle a segment from the capture.
    pub fn handle_segment(&mut self, segment: CapturedSegment) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Idle => {
                if self.pre_event_us > 0 && !segment.is_final {
                    self.prebuffer.push_back(segment);
                    // Keep the newest segments that cover the pre-event length.
                    while self.prebuffer.len() > 1 {
                        let total: u64 = self.prebuffer.iter().map(seg_us).sum();
                        let oldest = seg_us(&self.prebuffer[0]);
                        if total - oldest >= self.pre_event_us {
                            self.prebuffer.pop_front();
                        } else {
                            break;
                        }
                    }
                }
            }
            State::Recording { id, next_part } => {
                let is_final = segment.is_final;
                out.push(self.plan(segment, id, next_part));
                self.state = State::Recording {
                    id,
                    next_part: next_part + 1,
                };
                if is_final {
                    // The camera stopped by itself (end of a file source, an error
                    // reported separately): the recording ends here.
                    self.capture_on = false;
                    out.push(Action::Event(Event::RecordingStopped {
                        recording: id,
                        reason: self.end_reason,
                    }));
                    self.state = State::Idle;
                }
            }
            State::Stopping {
                id,
                next_part,
                reason,
            } => {
                let is_final = segment.is_final;
                out.push(self.plan(segment, id, next_part));
                if is_final || self.capture_on {
                    // With the camera still running (pre-event buffer), the stop
                    // takes effect at this segment boundary; without it, at the
                    // camera's final segment.
                    out.push(Action::Event(Event::RecordingStopped {
                        recording: id,
                        reason,
                    }));
                    self.state = State::Idle;
                } else {
                    self.state = State::Stopping {
                        id,
                        next_part: next_part + 1,
                        reason,
                    };
                }
            }
        }
        out
    }

    fn plan(&self, segment: CapturedSegment, id: [u8; 16], part: u32) -> Action {
        Action::Segment(SegmentPlan {
            segment,
            recording: id,
            part,
            flags: 0,
            case: self.case.clone(),
            activity: self.activity.clone(),
        })
    }

    /// The camera ended (stopped, failed, or the source ran out). If a
    /// recording was open, it ends with `reason`.
    pub fn capture_ended(&mut self, reason: StopReason) -> Vec<Action> {
        self.capture_on = false;
        self.prebuffer.clear();
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Vec::new(),
            State::Recording { id, .. } => vec![Action::Event(Event::RecordingStopped {
                recording: id,
                reason,
            })],
            State::Stopping { id, reason: r, .. } => vec![Action::Event(Event::RecordingStopped {
                recording: id,
                reason: r,
            })],
        }
    }

    /// Shut down (SIGINT/SIGTERM): stop the camera; an open recording ends
    /// with `shutdown` once the camera's last segment is in.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if let State::Recording { id, next_part } = self.state {
            self.state = State::Stopping {
                id,
                next_part,
                reason: StopReason::Shutdown,
            };
        }
        if self.capture_on {
            self.capture_on = false;
            out.push(Action::StopCapture);
        }
        out
    }

    /// The storage limit was reached: sign it, end the recording, keep the camera off.
    pub fn storage_full(&mut self, used_bytes: u64, limit_bytes: u64) -> Vec<Action> {
        self.storage_full = true;
        let mut out = vec![Action::Event(Event::StorageFull {
            used_bytes,
            limit_bytes,
        })];
        if self.capture_on {
            self.capture_on = false;
            out.push(Action::StopCapture);
        }
        self.prebuffer.clear();
        if let State::Recording { id, .. } | State::Stopping { id, .. } =
            std::mem::replace(&mut self.state, State::Idle)
        {
            out.push(Action::Event(Event::RecordingStopped {
                recording: id,
                reason: StopReason::StorageFull,
            }));
        }
        out
    }

    /// The battery is nearly empty: sign it, end the recording cleanly while
    /// there is still power to do so. Recording may start again (the officer
    /// may have plugged the device in).
    pub fn battery_critical(&mut self, percent: u8) -> Vec<Action> {
        let mut out = vec![Action::Event(Event::BatteryLow { percent })];
        if let State::Recording { id, .. } | State::Stopping { id, .. } =
            std::mem::replace(&mut self.state, State::Idle)
        {
            if self.pre_event_us == 0 && self.capture_on {
                self.capture_on = false;
                out.push(Action::StopCapture);
            }
            out.push(Action::Event(Event::RecordingStopped {
                recording: id,
                reason: StopReason::BatteryLow,
            }));
        }
        out
    }

    /// Space was freed (the server took the backlog): recording may start again.
    pub fn storage_available(&mut self) {
        self.storage_full = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldseal_proto::entry::CodecParams;
    use std::time::Instant;

    fn seg(index: u64, is_final: bool) -> CapturedSegment {
        CapturedSegment {
            index,
            bytes: vec![0; 10],
            start_pts: index as i64 * 360_000,
            end_pts: (index as i64 + 1) * 360_000,
            video_frames: 120,
            audio_samples: 0,
            keyframe_start: true,
            codec: CodecParams {
                video: "h264".into(),
                width: 2,
                height: 2,
                fps_num: 30,
                fps_den: 1,
                audio: "aac".into(),
                sample_rate: 48_000,
                channels: 1,
            },
            start_mono: Instant::now(),
            is_final,
            dropped: None,
            streamed: None,
        }
    }

    fn names(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Event(e) => e.name().to_string(),
                Action::Segment(p) => format!("seg{}:{}:{}", p.segment.index, p.part, p.flags),
                Action::StartCapture => "start-capture".into(),
                Action::StopCapture => "stop-capture".into(),
                Action::SetMuted(m) => format!("muted={m}"),
            })
            .collect()
    }

    #[test]
    fn pre_event_buffer_keeps_the_newest_segments_and_joins_the_recording() {
        let mut r = Recorder::new(8); // two 4 s segments
        assert_eq!(names(&r.on_start()), ["start-capture"]);
        for i in 0..5 {
            assert!(r.handle_segment(seg(i, false)).is_empty());
        }
        let a = r
            .handle_command(
                Command::Start {
                    case: Some("C1".into()),
                    activity: None,
                },
                [7; 16],
            )
            .unwrap();
        assert_eq!(
            names(&a),
            [
                "recording-started",
                "pre-event-attached",
                "seg3:0:2",
                "seg4:1:2"
            ]
        );
        assert_eq!(names(&r.handle_segment(seg(5, false))), ["seg5:2:0"]);
        // Stop: the segment in progress still joins, then the stop is signed.
        assert!(names(&r.handle_command(Command::Stop, [0; 16]).unwrap()).is_empty());
        assert_eq!(
            names(&r.handle_segment(seg(6, false))),
            ["seg6:3:0", "recording-stopped"]
        );
        assert!(!r.is_recording());
        assert!(r.handle_segment(seg(7, false)).is_empty()); // back into the buffer
    }

    #[test]
    fn without_pre_event_the_camera_runs_only_while_recording() {
        let mut r = Recorder::new(0);
        assert!(r.on_start().is_empty());
        let a = r
            .handle_command(
                Command::Start {
                    case: None,
                    activity: None,
                },
                [1; 16],
            )
            .unwrap();
        assert_eq!(names(&a), ["recording-started", "start-capture"]);
        assert_eq!(names(&r.handle_segment(seg(0, false))), ["seg0:0:0"]);
        assert_eq!(
            names(&r.handle_command(Command::Stop, [0; 16]).unwrap()),
            ["stop-capture"]
        );
        assert_eq!(names(&r.handle_segment(seg(1, false))), ["seg1:1:0"]);
        assert_eq!(
            names(&r.handle_segment(seg(2, true))),
            ["seg2:2:0", "recording-stopped"]
        );
    }

    #[test]
    fn commands_that_do_not_fit_change_nothing() {
        let mut r = Recorder::new(0);
        assert_eq!(
            r.handle_command(Command::Stop, [0; 16]).unwrap_err(),
            CommandError::NotRecording
        );
        r.handle_command(
            Command::Start {
                case: None,
                activity: None,
            },
            [1; 16],
        )
        .unwrap();
        assert_eq!(
            r.handle_command(
                Command::Start {
                    case: None,
                    activity: None
                },
                [2; 16]
            )
            .unwrap_err(),
            CommandError::AlreadyRecording
        );
        assert_eq!(
            names(&r.handle_command(Command::Mute, [0; 16]).unwrap()),
            ["muted=true", "audio-muted"]
        );
        assert!(r.handle_command(Command::Mute, [0; 16]).unwrap().is_empty());
    }

    #[test]
    fn storage_full_ends_the_recording_and_blocks_a_new_one() {
        let mut r = Recorder::new(0);
        r.handle_command(
            Command::Start {
                case: None,
                activity: None,
            },
            [1; 16],
        )
        .unwrap();
        let a = r.storage_full(10, 10);
        assert_eq!(
            names(&a),
            ["storage-full", "stop-capture", "recording-stopped"]
        );
        assert_eq!(
            r.handle_command(
                Command::Start {
                    case: None,
                    activity: None
                },
                [2; 16]
            )
            .unwrap_err(),
            CommandError::StorageFull
        );
        r.storage_available();
        assert!(r
            .handle_command(
                Command::Start {
                    case: None,
                    activity: None
                },
                [2; 16]
            )
            .is_ok());
    }

    #[test]
    fn shutdown_ends_an_open_recording_with_the_last_segment() {
        let mut r = Recorder::new(0);
        r.handle_command(
            Command::Start {
                case: None,
                activity: None,
            },
            [1; 16],
        )
        .unwrap();
        assert_eq!(names(&r.shutdown()), ["stop-capture"]);
        assert_eq!(
            names(&r.handle_segment(seg(0, true))),
            ["seg0:0:0", "recording-stopped"]
        );
    }
}
