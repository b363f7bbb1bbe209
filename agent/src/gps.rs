//! Position: where the device was when it signed each entry, from `gpsd`
//! (the standard GPS daemon, its JSON protocol over TCP).
//!
//! - `tpv`: a line of gpsd's protocol, read strictly (a fix, or not);
//! - `tracker`: the decisions: which position an entry states, which
//!   position events to sign (a state machine over time, no I/O);
//! - `client`: the thread that talks to gpsd and feeds the tracker.
//!
//! [`Gps`] is what the chain writer holds. Off (`[gps] enabled = false`,
//! the default), every entry states "no fix (no-receiver)" and no event is
//! signed. On, entries state the tracker's answer, and the writer signs its
//! events. The capture never touches any of it: the writer asks, with the
//! segment's time, when it signs.
//! `docs/AGENT.md` "Position" and `docs/FORMAT.md` §3.1.1 say the rest.

mod client;
mod tpv;
mod tracker;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fieldseal_proto::entry::{Event, NoFix, Position};

pub use self::client::{Backoff, MAX_LINE, WATCH};
pub use self::tpv::{parse, rfc3339_us, BadLine, Fix, Report};
pub use self::tracker::Tracker;

/// How long the agent waits at start for its first word from gpsd, so that
/// the first entries already say whether it answers. A refused connection
/// on loopback takes microseconds; a host that does not answer at all costs
/// at most this before the camera starts (the connection attempt goes on in
/// the background).
pub const FIRST_WORD_WAIT: Duration = Duration::from_secs(1);

/// The agent's position source.
#[derive(Debug)]
pub struct Gps {
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    shared: Arc<(Mutex<Tracker>, Condvar)>,
    // Dropped (the thread stopped) with the `Gps`.
    _client: client::Client,
}

impl Gps {
    /// No receiver: every entry states "no fix (no-receiver)".
    pub fn off() -> Gps {
        Gps { running: None }
    }

    /// Read fixes from gpsd at `addr` (`host:port`); a fix counts for
    /// `max_age` after it came. Waits at most [`FIRST_WORD_WAIT`] for the
    /// first connection attempt to end.
    pub fn start(addr: &str, max_age: Duration, backoff: Backoff) -> Gps {
        let shared = Arc::new((
            Mutex::new(Tracker::new(max_age, Instant::now())),
            Condvar::new(),
        ));
        let client = client::Client::start(addr.to_owned(), Arc::clone(&shared), backoff);
        client::wait_decided(&shared, FIRST_WORD_WAIT);
        Gps {
            running: Some(Running {
                shared,
                _client: client,
            }),
        }
    }

    /// The position an entry about moment `t` states (a segment: its last
    /// frame; an event: when it is signed).
    pub fn position_at(&self, t: Instant) -> Position {
        match &self.running {
            None => Position::NoFix(NoFix::NoReceiver),
            Some(r) => r.shared.0.lock().expect("tracker lock").position_at(t),
        }
    }

    /// The position events to sign for what changed by `now`, in order.
    pub fn take_events(&self, now: Instant) -> Vec<Event> {
        match &self.running {
            None => Vec::new(),
            Some(r) => r.shared.0.lock().expect("tracker lock").take_events(now),
        }
    }

    /// Whether a receiver is configured.
    pub fn enabled(&self) -> bool {
        self.running.is_some()
    }
}

#[cfg(test)]
mod tests;
