//! The run loop's storage, battery and clock policies, as a pure function of
//! readings: [`Policy::decide`] takes one [`Reading`] (spool use around a
//! segment, the battery's charge, the two clocks) and returns what to do
//! ([`PolicyAction`]: an event to sign, a recording to close, recording to
//! allow again). It reads no file and no clock; [`crate::run`] gathers the
//! readings and carries the actions out, through the [`crate::recorder`]
//! where a recording is concerned.
//!
//! ```text
//! reading                          → actions
//! Clock { wall, mono }             → sign clock-adjusted when wall − mono moved > 2 s
//! SegmentDue { used, len }         → storage full (the segment is not written) past the limit
//! DiskFull { used }                → storage full at what is in use
//! SegmentWritten { used, len }     → sign storage-low once, at the low mark or 2 segments short
//! Released { used }                → recording allowed again below the low mark
//! Battery { percent }              → battery-low at 15 %; at 3 % close the recording
//! ```

use fieldseal_proto::entry::Event;

/// A wall clock that disagrees with the monotonic clock by more than this has
/// been set: sign a clock-adjusted event. 2 s is far above NTP slew and
/// scheduling noise, far below any change that matters to a timeline.
pub const CLOCK_JUMP_US: i64 = 2_000_000;

/// Battery levels, in percent: a warning is signed at `LOW`, and at
/// `CRITICAL` the recording is closed while there is still power to sign the
/// stop (a body camera at 3 % has a minute or two left). Re-armed above `LOW + 5`.
pub const BATTERY_LOW: u8 = 15;
/// See [`BATTERY_LOW`].
pub const BATTERY_CRITICAL: u8 = 3;

/// One thing the run loop measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The two clocks, read together (µs).
    Clock {
        /// Wall clock.
        wall_us: i64,
        /// Monotonic clock.
        mono_us: i64,
    },
    /// A segment of `len` bytes is about to be written; `used` bytes are in use.
    SegmentDue {
        /// Bytes the spool takes.
        used: u64,
        /// The segment's length.
        len: u64,
    },
    /// The disk filled before the configured limit (ENOSPC).
    DiskFull {
        /// Bytes the spool takes.
        used: u64,
    },
    /// A segment of `len` bytes was recorded; `used` bytes are in use now.
    SegmentWritten {
        /// Bytes the spool takes.
        used: u64,
        /// The segment's length.
        len: u64,
    },
    /// Acknowledged media was released; `used` bytes are in use now.
    Released {
        /// Bytes the spool takes.
        used: u64,
    },
    /// The battery's charge.
    Battery {
        /// Percent.
        percent: u8,
    },
}

/// What the run loop must do about a reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAction {
    /// Sign this event.
    Sign(Event),
    /// Storage is full: close the recording and keep the camera off
    /// ([`crate::recorder::Recorder::storage_full`]). After a
    /// [`Reading::SegmentDue`] the segment is not written.
    StorageFull {
        /// Bytes in use.
        used_bytes: u64,
        /// The limit reached.
        limit_bytes: u64,
    },
    /// Space was freed: recording may start again
    /// ([`crate::recorder::Recorder::storage_available`]).
    StorageAvailable,
    /// The battery is about to die: close the recording
    /// ([`crate::recorder::Recorder::battery_critical`]).
    BatteryCritical {
        /// Percent left.
        percent: u8,
    },
}

/// The policies' state: the configured limits and what was already signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    limit_bytes: u64,
    low_bytes: u64,
    low_signed: bool,
    /// Recording waits for space: set when storage-full stops it, cleared
    /// (with [`PolicyAction::StorageAvailable`]) once released media brings
    /// use below the low mark. (Until session 4 nothing set it, so after a
    /// storage-full stop recording stayed blocked until the agent restarted.)
    storage_blocked: bool,
    clock_offset_us: i64,
    battery_warned: bool,
    battery_critical: bool,
}

impl Policy {
    /// Policies for a spool limited to `limit_bytes`, warned about at
    /// `low_bytes`, with the wall − monotonic offset `clock_offset_us` taken
    /// at start.
    pub fn new(limit_bytes: u64, low_bytes: u64, clock_offset_us: i64) -> Self {
        Policy {
            limit_bytes,
            low_bytes,
            low_signed: false,
            storage_blocked: false,
            clock_offset_us,
            battery_warned: false,
            battery_critical: false,
        }
    }

    /// The configured storage limit.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Decide what `reading` calls for.
    pub fn decide(&mut self, reading: Reading) -> Vec<PolicyAction> {
        match reading {
            Reading::Clock { wall_us, mono_us } => {
                match clock_jump(self.clock_offset_us, wall_us, mono_us) {
                    Some((event, offset)) => {
                        self.clock_offset_us = offset;
                        vec![PolicyAction::Sign(event)]
                    }
                    None => Vec::new(),
                }
            }
            Reading::SegmentDue { used, len } => {
                if used + len > self.limit_bytes {
                    self.storage_blocked = true;
                    vec![PolicyAction::StorageFull {
                        used_bytes: used,
                        limit_bytes: self.limit_bytes,
                    }]
                } else {
                    Vec::new()
                }
            }
            Reading::DiskFull { used } => {
                self.storage_blocked = true;
                vec![PolicyAction::StorageFull {
                    used_bytes: used,
                    limit_bytes: used,
                }]
            }
            Reading::SegmentWritten { used, len } => {
                // Low: past the configured share, or no room left for two more
                // segments like this one, whichever comes first, so the warning always
                // precedes the stop.
                let nearly_full = self.limit_bytes.saturating_sub(used) < 2 * len;
                if !self.low_signed && (used >= self.low_bytes || nearly_full) {
                    self.low_signed = true;
                    vec![PolicyAction::Sign(Event::StorageLow {
                        used_bytes: used,
                        limit_bytes: self.limit_bytes,
                    })]
                } else {
                    Vec::new()
                }
            }
            Reading::Released { used } => {
                if self.storage_blocked && used < self.low_bytes {
                    // The server took the backlog: recording may start again, and the
                    // next approach to the limit is warned about again.
                    self.storage_blocked = false;
                    self.low_signed = false;
                    vec![PolicyAction::StorageAvailable]
                } else {
                    Vec::new()
                }
            }
            Reading::Battery { percent } => self.battery(percent),
        }
    }

    fn battery(&mut self, percent: u8) -> Vec<PolicyAction> {
        if percent <= BATTERY_CRITICAL && !self.battery_critical {
            self.battery_critical = true;
            self.battery_warned = true;
            return vec![PolicyAction::BatteryCritical { percent }];
        }
        if percent > BATTERY_CRITICAL {
            self.battery_critical = false;
        }
        if percent <= BATTERY_LOW && !self.battery_warned {
            self.battery_warned = true;
            return vec![PolicyAction::Sign(Event::BatteryLow { percent })];
        }
        if percent > BATTERY_LOW + 5 {
            self.battery_warned = false;
        }
        Vec::new()
    }
}

/// The event to sign, and the new wall−monotonic offset, when the wall clock
/// moved against the monotonic clock by more than [`CLOCK_JUMP_US`] since the
/// offset was last taken.
fn clock_jump(offset_us: i64, wall_us: i64, mono_us: i64) -> Option<(Event, i64)> {
    let now_offset = wall_us - mono_us;
    ((now_offset - offset_us).abs() > CLOCK_JUMP_US).then(|| {
        (
            Event::ClockAdjusted {
                old_wall_us: offset_us + mono_us,
                new_wall_us: wall_us,
            },
            now_offset,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1_000;
    const LOW: u64 = 800;

    fn policy() -> Policy {
        Policy::new(LIMIT, LOW, 0)
    }

    #[test]
    fn clock_jumps_past_the_threshold_are_events_and_drift_is_not() {
        let offset = 1_000_000_000;
        // 1 s of drift: NTP slewing, not an adjustment.
        assert!(clock_jump(offset, offset + 50_000_000 + 1_000_000, 50_000_000).is_none());
        // Set back by an hour.
        let (ev, new) =
            clock_jump(offset, offset + 50_000_000 - 3_600_000_000, 50_000_000).unwrap();
        assert_eq!(
            ev,
            Event::ClockAdjusted {
                old_wall_us: offset + 50_000_000,
                new_wall_us: offset + 50_000_000 - 3_600_000_000
            }
        );
        assert_eq!(new, offset - 3_600_000_000);
        // Forward by 3 s.
        assert!(clock_jump(offset, offset + 10 + 3_000_000, 10).is_some());
    }

    #[test]
    fn a_clock_adjustment_is_signed_once_and_becomes_the_new_offset() {
        let mut p = Policy::new(LIMIT, LOW, 1_000);
        assert!(p
            .decide(Reading::Clock {
                wall_us: 1_000 + 500,
                mono_us: 500
            })
            .is_empty());
        let a = p.decide(Reading::Clock {
            wall_us: 10_000_000,
            mono_us: 600,
        });
        assert_eq!(
            a,
            vec![PolicyAction::Sign(Event::ClockAdjusted {
                old_wall_us: 1_600,
                new_wall_us: 10_000_000
            })]
        );
        // Measured against the new offset: no second event.
        assert!(p
            .decide(Reading::Clock {
                wall_us: 10_000_100,
                mono_us: 700
            })
            .is_empty());
    }

    #[test]
    fn a_segment_past_the_limit_is_storage_full_and_not_written() {
        let mut p = policy();
        assert!(p
            .decide(Reading::SegmentDue {
                used: 900,
                len: 100
            })
            .is_empty());
        assert_eq!(
            p.decide(Reading::SegmentDue {
                used: 901,
                len: 100
            }),
            vec![PolicyAction::StorageFull {
                used_bytes: 901,
                limit_bytes: LIMIT
            }]
        );
        // A disk that fills first: full at what is in use.
        assert_eq!(
            p.decide(Reading::DiskFull { used: 500 }),
            vec![PolicyAction::StorageFull {
                used_bytes: 500,
                limit_bytes: 500
            }]
        );
    }

    #[test]
    fn storage_low_is_signed_once_at_the_mark_or_two_segments_short() {
        let mut p = policy();
        assert!(p
            .decide(Reading::SegmentWritten { used: 100, len: 50 })
            .is_empty());
        let low = PolicyAction::Sign(Event::StorageLow {
            used_bytes: 800,
            limit_bytes: LIMIT,
        });
        assert_eq!(
            p.decide(Reading::SegmentWritten { used: 800, len: 50 }),
            vec![low]
        );
        assert!(p
            .decide(Reading::SegmentWritten { used: 900, len: 50 })
            .is_empty());
        // Below the mark, but two more segments like this would not fit.
        let mut p = policy();
        assert_eq!(
            p.decide(Reading::SegmentWritten {
                used: 500,
                len: 300
            }),
            vec![PolicyAction::Sign(Event::StorageLow {
                used_bytes: 500,
                limit_bytes: LIMIT
            })]
        );
    }

    #[test]
    fn releasing_space_changes_nothing_while_recording_is_not_blocked() {
        let mut p = policy();
        p.decide(Reading::SegmentWritten { used: 900, len: 10 });
        assert!(p.decide(Reading::Released { used: 0 }).is_empty());
        // The warning is not re-armed either.
        assert!(p
            .decide(Reading::SegmentWritten { used: 900, len: 10 })
            .is_empty());
    }

    #[test]
    fn after_storage_full_released_space_lets_recording_start_again() {
        let mut p = policy();
        let full = p.decide(Reading::SegmentDue { used: 990, len: 50 });
        assert!(matches!(
            full.as_slice(),
            [PolicyAction::StorageFull { .. }]
        ));
        // Released, but still above the low mark: still blocked.
        assert!(p.decide(Reading::Released { used: 850 }).is_empty());
        assert_eq!(
            p.decide(Reading::Released { used: 100 }),
            vec![PolicyAction::StorageAvailable]
        );
        // Once: and the low warning is armed again.
        assert!(p.decide(Reading::Released { used: 50 }).is_empty());
        assert!(!p
            .decide(Reading::SegmentWritten { used: 900, len: 10 })
            .is_empty());
        // A full disk blocks the same way.
        assert!(!p.decide(Reading::DiskFull { used: 700 }).is_empty());
        assert_eq!(
            p.decide(Reading::Released { used: 0 }),
            vec![PolicyAction::StorageAvailable]
        );
    }

    #[test]
    fn battery_warns_at_low_closes_at_critical_and_rearms_above_low_plus_five() {
        let mut p = policy();
        assert!(p.decide(Reading::Battery { percent: 50 }).is_empty());
        let low = |percent| vec![PolicyAction::Sign(Event::BatteryLow { percent })];
        assert_eq!(p.decide(Reading::Battery { percent: 15 }), low(15));
        assert!(p.decide(Reading::Battery { percent: 10 }).is_empty());
        assert_eq!(
            p.decide(Reading::Battery { percent: 3 }),
            vec![PolicyAction::BatteryCritical { percent: 3 }]
        );
        assert!(p.decide(Reading::Battery { percent: 2 }).is_empty());
        // Charging: 4 % re-arms critical, but the warning only above 20 %.
        assert!(p.decide(Reading::Battery { percent: 4 }).is_empty());
        assert_eq!(
            p.decide(Reading::Battery { percent: 3 }),
            vec![PolicyAction::BatteryCritical { percent: 3 }]
        );
        assert!(p.decide(Reading::Battery { percent: 20 }).is_empty());
        assert!(p.decide(Reading::Battery { percent: 15 }).is_empty());
        assert!(p.decide(Reading::Battery { percent: 21 }).is_empty());
        assert_eq!(p.decide(Reading::Battery { percent: 15 }), low(15));
        // Straight to critical without passing low: no separate warning after.
        let mut p = policy();
        assert_eq!(
            p.decide(Reading::Battery { percent: 1 }),
            vec![PolicyAction::BatteryCritical { percent: 1 }]
        );
        assert!(p.decide(Reading::Battery { percent: 10 }).is_empty());
    }
}
