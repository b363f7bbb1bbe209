//! The position decisions, as a plain state machine: given what the gpsd
//! client saw (the link came up or went down, a TPV report) and the time,
//! which position an entry states, and which position events to sign. No
//! I/O: `client.rs` feeds it, the chain writer asks it.
//!
//! ```text
//!   link down ──► NoFix(receiver-unreachable)      event receiver-unreachable (once)
//!   link up ────► NoFix(no-fix-yet) until a fix    event receiver-back (after unreachable)
//!   a fix ──────► Fix, for max_age after it came   event fix-acquired
//!   max_age without a fix ► NoFix(fix-lost)        event fix-lost (with the last fix's time)
//! ```
//!
//! **Which fix an entry states**: the latest fix received by the moment
//! asked about (a segment's last frame), if received at most `max_age`
//! before it, while gpsd answered; else no fix, and why. A TPV without a fix
//! (mode 1) changes nothing by itself: the fix stops counting `max_age` after
//! it came. That delay is the hysteresis that keeps the events from
//! flooding: a fix-lost / fix-acquired pair at most once per `max_age`, and
//! receiver-unreachable / receiver-back at most once per reconnection, which
//! the client spaces out with its backoff.
//!
//! The answers for past moments come from a short history of the states,
//! so a segment signed late (the writer busy) still states the fix of its
//! own end.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use fieldseal_proto::entry::{Event, NoFix, Position};

use super::tpv::Fix;

/// How far back the history answers. The capture hands segments over
/// within seconds; ten minutes is far beyond any backlog it keeps, and at
/// one fix per second the history holds 600 small states.
const HISTORY: Duration = Duration::from_secs(600);

/// Whether gpsd answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not tried yet.
    Unknown,
    /// Connected, and it sent its banner.
    Up,
    /// Could not connect, or the connection ended.
    Down,
}

/// What the tracker knew from one moment on.
#[derive(Debug, Clone, Copy)]
struct State {
    link: Link,
    /// The latest fix of this connection, and when it came.
    fix: Option<(Fix, Instant)>,
}

/// The position tracker.
#[derive(Debug)]
pub struct Tracker {
    max_age: Duration,
    /// Each state with the moment it began, oldest first; never empty.
    history: VecDeque<(Instant, State)>,
    /// The receiver's time of the latest fix of the whole run.
    last_fix_us: Option<i64>,
    /// What the events have said so far.
    announced: Position,
    events: Vec<Event>,
}

impl Tracker {
    /// A tracker that has not heard from gpsd yet; a fix counts for
    /// `max_age` after it came.
    pub fn new(max_age: Duration, now: Instant) -> Self {
        let mut history = VecDeque::new();
        history.push_back((
            now,
            State {
                link: Link::Unknown,
                fix: None,
            },
        ));
        Tracker {
            max_age,
            history,
            last_fix_us: None,
            announced: Position::NoFix(NoFix::NotYet),
            events: Vec::new(),
        }
    }

    fn current(&self) -> State {
        self.history.back().expect("never empty").1
    }

    fn push(&mut self, now: Instant, state: State) {
        // Inputs come in time order from one thread; clamp in case the
        // caller's clock reading raced another's.
        let at = now.max(self.history.back().expect("never empty").0);
        self.history.push_back((at, state));
        while self.history.len() > 1 && self.history[1].0 + HISTORY < at {
            self.history.pop_front();
        }
        self.update(now);
    }

    /// Whether the client has tried gpsd at least once (connected, or failed to).
    pub fn decided(&self) -> bool {
        self.current().link != Link::Unknown
    }

    /// gpsd answered: connected, and its banner came.
    pub fn link_up(&mut self, now: Instant) {
        self.push(
            now,
            State {
                link: Link::Up,
                fix: None,
            },
        );
    }

    /// gpsd could not be reached, or the connection ended.
    pub fn link_down(&mut self, now: Instant) {
        if self.current().link != Link::Down {
            self.push(
                now,
                State {
                    link: Link::Down,
                    fix: None,
                },
            );
        }
    }

    /// A TPV report: a fix, or none (which changes nothing: see the module doc).
    pub fn report(&mut self, fix: Option<Fix>, now: Instant) {
        let cur = self.current();
        match fix {
            Some(f) if cur.link == Link::Up => {
                self.last_fix_us = Some(f.fix_us);
                self.push(
                    now,
                    State {
                        link: Link::Up,
                        fix: Some((f, now)),
                    },
                );
            }
            _ => self.update(now),
        }
    }

    /// The position an entry about moment `t` states.
    pub fn position_at(&self, t: Instant) -> Position {
        // The state that began last at or before `t`; before the oldest
        // kept, the oldest (see HISTORY).
        let state = self
            .history
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .unwrap_or_else(|| self.history.front().expect("never empty"))
            .1;
        match state.link {
            Link::Unknown => Position::NoFix(NoFix::NotYet),
            Link::Down => Position::NoFix(NoFix::ReceiverUnreachable),
            Link::Up => match state.fix {
                None => Position::NoFix(NoFix::NotYet),
                Some((f, got)) if t.saturating_duration_since(got) <= self.max_age => {
                    Position::Fix {
                        point: f.point,
                        fix_us: f.fix_us,
                    }
                }
                Some(_) => Position::NoFix(NoFix::Lost),
            },
        }
    }

    /// Note the events for what changed by `now` (a fix that grew too old).
    fn update(&mut self, now: Instant) {
        let now = now.max(self.history.back().expect("never empty").0);
        let was = self.announced;
        let is = self.position_at(now);
        let kind = |p: &Position| match p {
            Position::NoFix(why) => Some(*why),
            _ => None,
        };
        if kind(&was) == kind(&is) {
            return;
        }
        if was == Position::NoFix(NoFix::ReceiverUnreachable) {
            self.events.push(Event::ReceiverBack);
        }
        match is {
            Position::Fix { fix_us, .. } => self.events.push(Event::FixAcquired { fix_us }),
            Position::NoFix(NoFix::Lost) => {
                if let Some(last_fix_us) = self.last_fix_us {
                    self.events.push(Event::FixLost { last_fix_us });
                }
            }
            Position::NoFix(NoFix::ReceiverUnreachable) => {
                self.events.push(Event::ReceiverUnreachable {
                    last_fix_us: self.last_fix_us,
                });
            }
            // no-fix-yet says nothing new (after unreachable: receiver-back, above).
            _ => {}
        }
        self.announced = is;
    }

    /// The events to sign for what changed by `now`, in order; each change once.
    pub fn take_events(&mut self, now: Instant) -> Vec<Event> {
        self.update(now);
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldseal_proto::entry::Point;

    fn fix(i: i32) -> Fix {
        Fix {
            point: Point {
                lat_e7: 440_110_000 + i,
                lon_e7: 873_000_000 + i,
                accuracy_m: 17,
            },
            fix_us: 1_782_892_800_000_000 + i64::from(i) * 1_000_000,
        }
    }

    fn names(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::name).collect()
    }

    const AGE: Duration = Duration::from_secs(5);

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    /// A walk with a tunnel: fixes each second, none for 15 s, fixes again.
    #[test]
    fn a_tunnel_is_one_fix_lost_and_one_fix_acquired() {
        let t0 = Instant::now();
        let mut t = Tracker::new(AGE, t0);
        assert_eq!(t.position_at(t0), Position::NoFix(NoFix::NotYet));
        assert!(!t.decided());
        t.link_up(secs(t0, 0.1));
        assert!(t.decided());
        let mut events = Vec::new();
        for s in 1..=10 {
            t.report(Some(fix(s)), secs(t0, f64::from(s)));
            events.extend(t.take_events(secs(t0, f64::from(s) + 0.5)));
        }
        // The tunnel: gpsd reports mode 1 every second.
        for s in 11..=25 {
            t.report(None, secs(t0, f64::from(s)));
            events.extend(t.take_events(secs(t0, f64::from(s) + 0.5)));
        }
        for s in 26..=30 {
            t.report(Some(fix(s)), secs(t0, f64::from(s)));
            events.extend(t.take_events(secs(t0, f64::from(s) + 0.5)));
        }
        assert_eq!(names(&events), ["fix-acquired", "fix-lost", "fix-acquired"]);
        assert_eq!(
            events[0],
            Event::FixAcquired {
                fix_us: fix(1).fix_us
            }
        );
        assert_eq!(
            events[1],
            Event::FixLost {
                last_fix_us: fix(10).fix_us
            }
        );
        // Positions of moments past, from the history.
        assert_eq!(t.position_at(secs(t0, 0.5)), Position::NoFix(NoFix::NotYet));
        assert_eq!(
            t.position_at(secs(t0, 4.9)),
            Position::Fix {
                point: fix(4).point,
                fix_us: fix(4).fix_us
            }
        );
        // The fix of 10 s still counts 5 s later, not after.
        assert_eq!(
            t.position_at(secs(t0, 15.0)),
            Position::Fix {
                point: fix(10).point,
                fix_us: fix(10).fix_us
            }
        );
        assert_eq!(t.position_at(secs(t0, 15.1)), Position::NoFix(NoFix::Lost));
        assert_eq!(t.position_at(secs(t0, 25.9)), Position::NoFix(NoFix::Lost));
        assert!(matches!(
            t.position_at(secs(t0, 30.2)),
            Position::Fix { .. }
        ));
    }

    #[test]
    fn gpsd_unreachable_then_back_then_gone() {
        let t0 = Instant::now();
        let mut t = Tracker::new(AGE, t0);
        t.link_down(secs(t0, 0.01));
        let mut events = t.take_events(secs(t0, 0.02));
        // Retries that fail again say nothing more.
        for s in 1..20 {
            t.link_down(secs(t0, f64::from(s)));
            events.extend(t.take_events(secs(t0, f64::from(s))));
        }
        assert_eq!(events, [Event::ReceiverUnreachable { last_fix_us: None }]);
        assert_eq!(
            t.position_at(secs(t0, 10.0)),
            Position::NoFix(NoFix::ReceiverUnreachable)
        );
        t.link_up(secs(t0, 20.0));
        assert_eq!(names(&t.take_events(secs(t0, 20.0))), ["receiver-back"]);
        assert_eq!(
            t.position_at(secs(t0, 20.5)),
            Position::NoFix(NoFix::NotYet)
        );
        t.report(Some(fix(21)), secs(t0, 21.0));
        assert_eq!(names(&t.take_events(secs(t0, 21.0))), ["fix-acquired"]);
        // gpsd goes away with a fix current: one event, with the last fix.
        t.link_down(secs(t0, 22.0));
        assert_eq!(
            t.take_events(secs(t0, 40.0)),
            [Event::ReceiverUnreachable {
                last_fix_us: Some(fix(21).fix_us)
            }]
        );
        // Back, and a fix at once: both said, in order.
        t.link_up(secs(t0, 41.0));
        t.report(Some(fix(41)), secs(t0, 41.5));
        assert_eq!(
            names(&t.take_events(secs(t0, 42.0))),
            ["receiver-back", "fix-acquired"]
        );
    }

    #[test]
    fn a_fix_that_flaps_gives_at_most_one_pair_per_max_age() {
        let t0 = Instant::now();
        let mut t = Tracker::new(AGE, t0);
        t.link_up(t0);
        let mut events = Vec::new();
        // A fix, then mode 1, alternating every second for a minute.
        for s in 0..60 {
            let f = (s % 2 == 0).then(|| fix(s));
            t.report(f, secs(t0, f64::from(s)));
            events.extend(t.take_events(secs(t0, f64::from(s) + 0.5)));
        }
        assert_eq!(names(&events), ["fix-acquired"]);
        // A fix every 7 s (longer than max_age): one pair per fix, no more.
        let mut t = Tracker::new(AGE, t0);
        t.link_up(t0);
        let mut events = Vec::new();
        for tick in 0..70 {
            let now = secs(t0, f64::from(tick));
            t.report((tick % 7 == 0).then(|| fix(tick)), now);
            events.extend(t.take_events(now));
        }
        assert_eq!(events.len(), 20, "{:?}", names(&events));
    }

    #[test]
    fn a_fix_before_gpsd_answered_or_after_it_left_does_not_count() {
        let t0 = Instant::now();
        let mut t = Tracker::new(AGE, t0);
        t.report(Some(fix(1)), secs(t0, 1.0));
        assert_eq!(t.position_at(secs(t0, 1.0)), Position::NoFix(NoFix::NotYet));
        t.link_down(secs(t0, 2.0));
        t.report(Some(fix(3)), secs(t0, 3.0));
        assert_eq!(
            t.position_at(secs(t0, 3.0)),
            Position::NoFix(NoFix::ReceiverUnreachable)
        );
        assert_eq!(
            t.take_events(secs(t0, 3.0)),
            [Event::ReceiverUnreachable { last_fix_us: None }]
        );
    }

    #[test]
    fn the_history_is_bounded_and_answers_old_moments_with_its_oldest_state() {
        let t0 = Instant::now();
        let mut t = Tracker::new(AGE, t0);
        t.link_up(t0);
        for s in 1..=2000 {
            t.report(Some(fix(s)), secs(t0, f64::from(s)));
        }
        assert!(t.history.len() <= 602, "{}", t.history.len());
        // 1200 s back is before the history: the oldest state kept answers.
        let old = t.position_at(secs(t0, 800.0));
        assert!(matches!(
            old,
            Position::Fix { .. } | Position::NoFix(NoFix::Lost)
        ));
    }
}
