//! The chain writer: the one thread that signs. It carries out what the
//! [`Recorder`] decides (events, segments, camera on and off) and what the
//! [`Policy`] decides from the readings it gathers (spool use, battery, the
//! clocks), and answers control requests.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldseal_proto::entry::{Event, SignedEntry, StopReason, PTS_HZ};
use fieldseal_proto::identity::Signer;
use rand_core::RngCore;

use super::battery::battery_percent;
use super::session::{Input, Session};
use super::{RunError, RunSummary};
use crate::capture::{CaptureConfig, CaptureStatsSnapshot, LiveArm};
use crate::clock::Clock;
use crate::control::{Request, Response};
use crate::devicekey::DeviceKey;
use crate::gps::Gps;
use crate::index::Index;
use crate::policy::{Policy, PolicyAction, Reading};
use crate::recorder::{Action, Command, Recorder, SegmentPlan};
use crate::spool::{DroppedSpan, SegmentDraft, Spool, SpoolError};
use crate::syncstore::FsSyncStore;

/// How often acknowledged media is checked against the keep period: deleting
/// is never urgent, and each check walks the acknowledgement list.
const RELEASE_POLL: Duration = Duration::from_secs(10);

/// Reading a sysfs file every 5 s costs nothing and is quick enough for a
/// battery that drains over hours.
const BATTERY_POLL: Duration = Duration::from_secs(5);

/// The chain writer's state; [`super::run`] builds it and drives its loop.
pub(super) struct Writer<'a> {
    pub(super) signer: &'a DeviceKey,
    pub(super) clock: &'a dyn Clock,
    pub(super) spool: Spool,
    /// The index, a cache; `None` once it failed this run (see [`Writer::index_entry`]).
    pub(super) index: Option<Index>,
    pub(super) recorder: Recorder,
    pub(super) policy: Policy,
    pub(super) capture_cfg: CaptureConfig,
    pub(super) synthetic: bool,
    pub(super) inputs: SyncSender<Input>,
    pub(super) session: Option<Session>,
    pub(super) last_stats: CaptureStatsSnapshot,
    pub(super) store: Arc<FsSyncStore>,
    pub(super) sync_enabled: bool,
    /// The sync client's counters this run, when it syncs.
    pub(super) sync_progress: Option<Arc<crate::sync::driver::Progress>>,
    pub(super) keep_after_ack_us: u64,
    pub(super) release_checked: Option<Instant>,
    pub(super) battery_root: std::path::PathBuf,
    pub(super) battery_checked: Option<Instant>,
    /// Where the device is: every entry states it.
    pub(super) gps: Gps,
    /// The capture index of the last segment received from this capture.
    pub(super) seen_index: Option<u64>,
    pub(super) summary: RunSummary,
}

/// When a segment's last frame was captured: its first frame's time plus its
/// length, or now if that is later than now (a capture faster than real
/// time, as in tests). The position a segment states is the one of this moment.
fn segment_end(s: &crate::capture::CapturedSegment) -> Instant {
    let ticks = u64::try_from(s.end_pts.saturating_sub(s.start_pts)).unwrap_or(0);
    let len = Duration::from_micros(ticks.saturating_mul(1_000_000) / PTS_HZ.unsigned_abs());
    s.start_mono
        .checked_add(len)
        .map_or_else(Instant::now, |end| end.min(Instant::now()))
}

/// An error with its causes, "outer: inner", as the control socket answers it.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl Writer<'_> {
    /// Add a signed entry to the index. The index is a cache: if sled fails,
    /// recording goes on without it for the rest of the run, and the next
    /// start catches it up from `chain.log` (or rebuilds it, if damaged).
    fn index_entry(&mut self, entry: &SignedEntry) {
        if let Some(idx) = &self.index {
            if let Err(e) = idx.add(entry, self.spool.log_len()) {
                tracing::warn!(
                    error = %e,
                    "the index (a cache) failed: recording goes on without it; the next start rebuilds it"
                );
                self.index = None;
            }
        }
    }

    pub(super) fn execute(&mut self, actions: Vec<Action>) -> Result<(), RunError> {
        for a in actions {
            match a {
                Action::Event(e) => self.event(e)?,
                Action::Segment(plan) => self.segment(plan)?,
                Action::StartCapture => {
                    self.seen_index = None;
                    match Session::start(&self.capture_cfg, self.synthetic, self.inputs.clone()) {
                        Ok(s) => {
                            self.last_stats = s.stats.snapshot();
                            self.session = Some(s);
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "the camera could not start");
                            let more = self.recorder.capture_ended(StopReason::Error);
                            self.execute(more)?;
                            return Err(RunError::CameraStart(err));
                        }
                    }
                }
                Action::StopCapture => {
                    if let Some(s) = &self.session {
                        s.request_stop();
                    }
                }
                Action::SetMuted(m) => {
                    if let Some(s) = &self.session {
                        s.set_muted(m);
                    }
                }
            }
        }
        Ok(())
    }

    /// Carry out the policy's decisions; events go through [`Writer::event`].
    fn carry_out(&mut self, actions: Vec<PolicyAction>) -> Result<(), RunError> {
        for a in actions {
            match a {
                PolicyAction::Sign(e) => self.event(e)?,
                PolicyAction::StorageFull {
                    used_bytes,
                    limit_bytes,
                } => {
                    let actions = self.recorder.storage_full(used_bytes, limit_bytes);
                    self.execute(actions)?;
                }
                PolicyAction::StorageAvailable => self.recorder.storage_available(),
                PolicyAction::BatteryCritical { percent } => {
                    tracing::error!(percent, "battery critical: closing the recording");
                    let actions = self.recorder.battery_critical(percent);
                    self.execute(actions)?;
                }
            }
        }
        Ok(())
    }

    /// Sign an event, after a clock-adjusted event if the wall clock jumped
    /// since the last check: an entry must never carry a jumped wall time
    /// ahead of the event that explains it (the fault suite caught entries
    /// signed between a jump and the loop's next clock check).
    pub(super) fn event(&mut self, e: Event) -> Result<(), RunError> {
        self.check_clock()?;
        self.sign_event(e)
    }

    fn sign_event(&mut self, e: Event) -> Result<(), RunError> {
        let name = e.name();
        let position = Some(self.gps.position_at(Instant::now()));
        let entry = self
            .spool
            .append_event_at(self.signer, self.clock, position, e)?;
        self.index_entry(&entry);
        // Hash-first: the sync client sends the entry as soon as it is durable.
        self.store.refresh().map_err(RunError::SyncStore)?;
        self.summary.entries += 1;
        tracing::info!(seq = entry.seq(), event = name, "signed");
        Ok(())
    }

    fn segment(&mut self, plan: SegmentPlan) -> Result<(), RunError> {
        self.check_clock()?;
        // A fix lost before this segment ended is signed before it.
        self.check_gps()?;
        let len = plan.segment.bytes.len() as u64;
        let used = self.spool.used_bytes();
        let full = self.policy.decide(Reading::SegmentDue { used, len });
        if !full.is_empty() {
            tracing::error!(
                used,
                limit = self.policy.limit_bytes(),
                "storage full: recording stops"
            );
            return self.carry_out(full);
        }
        let s = &plan.segment;
        let draft = SegmentDraft {
            recording: plan.recording,
            part: plan.part,
            start_pts: s.start_pts,
            end_pts: s.end_pts,
            start_mono_us: self.clock.mono_of(s.start_mono),
            video_frames: s.video_frames,
            audio_samples: s.audio_samples,
            // The entry's own type, converted with checks when the capture
            // started (CaptureConfig::codec_params): nothing to clamp here.
            codec: s.codec.clone(),
            flags: plan.flags,
            case: plan.case,
            activity: plan.activity,
            position: Some(self.gps.position_at(segment_end(s))),
            streamed_from: None,
            dropped: s.dropped.map(|d| DroppedSpan {
                first_pts: d.first_pts,
                end_pts: d.end_pts,
                frames: d.frames,
            }),
        };
        let entry = match self.spool.append_segment_streamed(
            self.signer,
            self.clock,
            draft,
            &plan.segment.bytes,
            plan.segment.streamed.as_deref(),
        ) {
            Ok(e) => e,
            // The disk filled before the configured limit: the same
            // signed stop as at the limit, if the chain log still takes
            // the event (else the error ends the run and the next start
            // signs the gap). The torn segment stays in .partial/ and is
            // salvaged, signed as recovered, at the next start.
            Err(SpoolError::Io { path, source })
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                tracing::error!(path = %path.display(), "the disk is full: recording stops");
                let used = self.spool.used_bytes();
                let actions = self.policy.decide(Reading::DiskFull { used });
                return self.carry_out(actions);
            }
            Err(e) => return Err(e.into()),
        };
        self.index_entry(&entry);
        self.store.refresh().map_err(RunError::SyncStore)?;
        self.summary.entries += 1;
        self.summary.segments += 1;
        tracing::debug!(seq = entry.seq(), bytes = len, "segment recorded");
        // Right after the segment it names: frames lost inside its span.
        if let Some(d) = plan.segment.dropped {
            self.event(Event::FramesDropped {
                recording: plan.recording,
                part: plan.part,
                first_pts: d.first_pts,
                end_pts: d.end_pts,
                frames: d.frames,
            })?;
            // The event is durable: the draft kept for it can go.
            self.spool.drop_event_signed(entry.seq())?;
        }
        let used = self.spool.used_bytes();
        let low = self.policy.decide(Reading::SegmentWritten { used, len });
        self.carry_out(low)?;
        self.check_capture_stats()
    }

    /// Tell the capture which segments will be recorded, so that it streams
    /// them to their partial files as they are encoded (capture/live.rs):
    /// from the one after the last received, while recording.
    pub(super) fn arm_live(&mut self) {
        let Some(spill) = &self.capture_cfg.live else {
            return;
        };
        let arm = match (self.recorder.next_part(), &self.session) {
            (Some((recording, base_part)), Some(_)) => {
                let now = Instant::now();
                let (case, activity) = self.recorder.tags();
                Some(LiveArm {
                    recording,
                    base_index: self.seen_index.map_or(0, |i| i + 1),
                    base_part,
                    case,
                    activity,
                    position: Some(self.gps.position_at(now)),
                    mono: (now, self.clock.mono_of(now)),
                })
            }
            _ => None,
        };
        spill.arm(arm);
    }

    /// Sign a capture-backlog event when the capture had to hold segments back
    /// or drop frames since the last look.
    pub(super) fn check_capture_stats(&mut self) -> Result<(), RunError> {
        let Some(s) = &self.session else {
            return Ok(());
        };
        let now = s.stats.snapshot();
        let more_backlog = now.segments_backlogged > self.last_stats.segments_backlogged;
        let more_drops = now.frames_dropped > self.last_stats.frames_dropped
            || now.segments_dropped > self.last_stats.segments_dropped;
        if more_backlog || more_drops {
            self.event(Event::CaptureBacklog {
                pending_segments: u32::try_from(now.backlog_high_water).unwrap_or(u32::MAX),
                dropped_frames: now.frames_dropped,
            })?;
        }
        self.last_stats = now;
        Ok(())
    }

    /// Sign the position events (fix acquired or lost, gpsd gone or back)
    /// for what changed since the last look.
    pub(super) fn check_gps(&mut self) -> Result<(), RunError> {
        for e in self.gps.take_events(Instant::now()) {
            self.event(e)?;
        }
        Ok(())
    }

    /// Sign a clock-adjusted event when the wall clock moved against the
    /// monotonic clock.
    pub(super) fn check_clock(&mut self) -> Result<(), RunError> {
        let wall_us = self.clock.wall_us();
        let mono_us = i64::try_from(self.clock.mono_us()).unwrap_or(i64::MAX);
        for a in self.policy.decide(Reading::Clock { wall_us, mono_us }) {
            match a {
                // Signed as it is: going through `event` would check the
                // clock again before the event that explains the jump.
                PolicyAction::Sign(e) => self.sign_event(e)?,
                other => self.carry_out(vec![other])?,
            }
        }
        Ok(())
    }

    /// Sign battery warnings, and close the recording when the battery is
    /// about to die.
    pub(super) fn check_battery(&mut self) -> Result<(), RunError> {
        if self
            .battery_checked
            .is_some_and(|t| t.elapsed() < BATTERY_POLL)
        {
            return Ok(());
        }
        self.battery_checked = Some(Instant::now());
        let Some(percent) = battery_percent(&self.battery_root) else {
            return Ok(());
        };
        let actions = self.policy.decide(Reading::Battery { percent });
        self.carry_out(actions)
    }

    /// Delete media whose signed acknowledgement was kept more than the keep
    /// period ago (`FsSyncStore::releasable`).
    pub(super) fn release_acknowledged(&mut self) -> Result<(), RunError> {
        if self
            .release_checked
            .is_some_and(|t| t.elapsed() < RELEASE_POLL)
        {
            return Ok(());
        }
        self.release_checked = Some(Instant::now());
        // The keep period runs on the keep clock (monotonic time summed over
        // boots), never on the wall clock, which can be set forward.
        let due = self
            .store
            .releasable(self.keep_after_ack_us, self.spool.released())
            .map_err(RunError::SyncStore)?;
        for seq in due {
            self.spool.release_media(seq)?;
            tracing::debug!(seq, "media released after the server's acknowledgement");
        }
        let used = self.spool.used_bytes();
        let actions = self.policy.decide(Reading::Released { used });
        self.carry_out(actions)
    }

    fn status(&self) -> serde_json::Value {
        let head = self.spool.head();
        let (no_receipt, not_acked) = self.store.backlog();
        let stats = self.session.as_ref().map(|s| s.stats.snapshot());
        let mut status = serde_json::json!({
            "running": true,
            "state": self.recorder.state_name(),
            "device": self.signer.device_id().to_string(),
            "next_seq": head.next_seq,
            "head_hash": hex::encode(head.last_hash),
            "boot": self.spool.boot(),
            "spool_bytes": self.spool.used_bytes(),
            "limit_bytes": self.policy.limit_bytes(),
            "pre_event_seconds": self.recorder.prebuffer_seconds(),
            "camera_on": self.session.is_some(),
            "frames_captured": stats.map(|s| s.frames_captured),
            "frames_dropped": stats.map(|s| s.frames_dropped),
            "entries_this_run": self.summary.entries,
            "entries_without_receipt": no_receipt,
            "segments_not_acknowledged": not_acked,
            "position": self.gps.position_at(Instant::now()).to_string(),
            "acks_kept": self.store.acks_kept(),
            "bad_acks": self.store.bad_acks(),
            "acks_refused": self.sync_progress.as_ref().map_or(0, |p| p.snapshot().acks_refused),
            "recent": crate::activity::status_recent(self.store.as_ref()),
        });
        // `sync` (revoked or expired first), `refused`, `certificate`: read
        // from the folder each time, as the sync thread may have stopped.
        let enrolled = self.sync_enabled || self.spool.dir().join("server.txt").exists();
        let sync = crate::sync::standing::status(self.spool.dir(), enrolled, self.clock.wall_us());
        if let Some(obj) = status.as_object_mut() {
            obj.extend(sync);
        }
        status
    }

    pub(super) fn handle_request(&mut self, req: Request) -> Response {
        let cmd = match req {
            Request::Status => {
                let mut r = Response::ok(self.recorder.state_name());
                r.data = Some(self.status());
                return r;
            }
            Request::Start { case, activity } => Command::Start { case, activity },
            Request::Stop => Command::Stop,
            Request::Tag { case, activity } => Command::Tag { case, activity },
            Request::IdentityShown { officer } => Command::IdentityShown { officer },
            Request::Mute => Command::Mute,
            Request::Unmute => Command::Unmute,
        };
        let mut id = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut id);
        match self.recorder.handle_command(cmd, id) {
            Ok(actions) => match self.execute(actions) {
                Ok(()) => Response::ok(self.recorder.state_name()),
                Err(e) => Response::err(chain(&e)),
            },
            Err(e) => Response::err(e.to_string()),
        }
    }
}
