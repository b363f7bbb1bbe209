//! The access log: every read, export, link and unlink of evidence, every
//! login, refused login, refused request and account change is a custody
//! leaf of the transparency log (`docs/FORMAT.md` §6.8), so that the
//! archive cannot later drop or rewrite who saw what. This module turns an
//! [`Access`] into a leaf and appends it; it decides nothing about who may
//! do what.
//!
//! An append is an fsync of `leaves.log`: call [`record_blocking`] from
//! blocking code, [`record`] from async handlers ([`append`] where there
//! is an index but no running server: the command line).
//!
//! Events from people without a session (refused requests, failed logins)
//! go through a [`FloodLimit`] first, so that an anonymous flood cannot grow
//! the log without bound: what it holds back it counts, and the next leaf
//! it lets through says how many.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::{CustodyAction, Leaf, MAX_ACTOR, MAX_LEAF_DETAIL};

use crate::chainindex::{ChainIndex, IndexError};
use crate::Shared;

/// The actor of a request that had no session.
pub const NO_SESSION: &str = "-";

/// One access event, before it becomes a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// What happened.
    pub action: CustodyAction,
    /// Who (a user name, [`NO_SESSION`], or a job such as `retention`).
    pub actor: String,
    /// Whose recordings and which entries (inclusive), if any.
    pub entries: Option<(DeviceId, u64, u64)>,
    /// The case concerned.
    pub case: Option<String>,
    /// Anything else: the address, the path, the outcome.
    pub detail: Option<String>,
}

impl Access {
    /// An event about no device.
    pub fn new(action: CustodyAction, actor: &str) -> Access {
        Access {
            action,
            actor: actor.to_owned(),
            entries: None,
            case: None,
            detail: None,
        }
    }

    /// About entries `first..=last` of `device`.
    #[must_use]
    pub fn entries(mut self, device: DeviceId, first: u64, last: u64) -> Access {
        self.entries = Some((device, first.min(last), first.max(last)));
        self
    }

    /// About a case.
    #[must_use]
    pub fn case(mut self, case: &str) -> Access {
        self.case = Some(case.to_owned());
        self
    }

    /// With a detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Access {
        self.detail = Some(detail.into());
        self
    }

    /// The leaf at `time_us`. Text that the leaf cannot hold is made to fit
    /// (control characters become `?`, long text is cut at a character
    /// boundary with `…`), so that a hostile user name or path can neither
    /// fail the append nor forge the look of another field.
    pub fn leaf(&self, time_us: i64) -> Leaf {
        let (device, first_seq, last_seq) = self.entries.unwrap_or((DeviceId::NONE, 0, 0));
        Leaf::Custody {
            time_us,
            action: self.action,
            actor: fit(&self.actor, MAX_ACTOR),
            device,
            first_seq,
            last_seq,
            case: self.case.as_deref().map(|c| fit(c, MAX_ACTOR)),
            detail: self.detail.as_deref().map(|d| fit(d, MAX_LEAF_DETAIL)),
        }
    }
}

/// `s` with control characters replaced, at most `max` bytes.
pub fn fit(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.len() <= max {
        return clean;
    }
    let ell = '…';
    let mut cut = max - ell.len_utf8();
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = clean[..cut].to_owned();
    out.push(ell);
    out
}

/// Every custody action, in code order.
pub const ACTIONS: [CustodyAction; 13] = [
    CustodyAction::View,
    CustodyAction::Export,
    CustodyAction::Link,
    CustodyAction::Unlink,
    CustodyAction::Verify,
    CustodyAction::Hold,
    CustodyAction::Release,
    CustodyAction::Repair,
    CustodyAction::Login,
    CustodyAction::LoginFailed,
    CustodyAction::Denied,
    CustodyAction::Account,
    CustodyAction::Expire,
];

/// An action's name as FORMAT.md §6.8 and the API spell it (`login-failed`).
pub fn action_name(a: CustodyAction) -> String {
    match serde_json::to_value(a) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{a:?}"),
    }
}

/// The action named `name`, if any.
pub fn parse_action(name: &str) -> Option<CustodyAction> {
    ACTIONS.into_iter().find(|a| action_name(*a) == name)
}

/// Append `a` to the log of `db` now; returns its leaf index.
///
/// # Errors
/// The log could not be appended to.
pub fn append(db: &crate::db::Db, a: &Access) -> Result<u64, IndexError> {
    append_at(db, a, crate::now_us())
}

/// Append `a` to the log of `db` with server time `now_us`; returns its
/// leaf index. (An export stamps its leaves with the export's own time.)
///
/// # Errors
/// The log could not be appended to.
pub fn append_at(db: &crate::db::Db, a: &Access, now_us: i64) -> Result<u64, IndexError> {
    let at = db.log_append(&a.leaf(now_us))?;
    tracing::info!(
        target: "fieldseal::audit",
        leaf = at,
        action = ?a.action,
        actor = a.actor,
        case = a.case.as_deref().unwrap_or(""),
        detail = a.detail.as_deref().unwrap_or(""),
        "access"
    );
    Ok(at)
}

/// Append `a` to the running server's log now (counted for `/metrics`);
/// returns its leaf index.
///
/// # Errors
/// The log could not be appended to.
pub fn record_blocking(shared: &Shared, a: &Access) -> Result<u64, IndexError> {
    record_blocking_at(shared, a, crate::now_us())
}

/// As [`record_blocking`], with server time `now_us`.
///
/// # Errors
/// The log could not be appended to.
pub fn record_blocking_at(shared: &Shared, a: &Access, now_us: i64) -> Result<u64, IndexError> {
    let at = append_at(&shared.db, a, now_us)?;
    shared
        .counters
        .access_leaves
        .fetch_add(1, Ordering::Relaxed);
    Ok(at)
}

/// [`record_blocking`] on the blocking pool.
///
/// # Errors
/// The log could not be appended to, or the blocking task failed.
pub async fn record(shared: &Arc<Shared>, a: Access) -> Result<u64, IndexError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || record_blocking(&shared, &a))
        .await
        .map_err(|e| IndexError::Backend(Box::new(e)))?
}

/// How many leaves one address may cause per window without a session:
/// far more than a person mistyping, far fewer than a script.
pub const FLOOD_PER_ADDR: u32 = 30;
/// How many such leaves all addresses together may cause per window (many
/// addresses are cheap to an attacker, IPv6 ones above all).
pub const FLOOD_TOTAL: u32 = 600;
/// The window, µs.
pub const FLOOD_WINDOW_US: i64 = 60_000_000;
/// Addresses remembered before quiet ones are forgotten (their held-back
/// counts move to the overall count, so none is lost).
const FLOOD_ADDRS: usize = 10_000;

/// One fixed window of leaves written and held back.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start_us: i64,
    written: u32,
    /// Held back in this window.
    held: u64,
    /// Held back in earlier windows, not yet reported.
    unreported: u64,
}

impl Window {
    fn roll(&mut self, now_us: i64) {
        if now_us - self.start_us >= FLOOD_WINDOW_US {
            self.unreported += self.held;
            *self = Window {
                start_us: now_us,
                unreported: self.unreported,
                ..Window::default()
            };
        }
    }
}

/// Limits the leaves written for events without a session, per address
/// (an IPv6 address by its /64) and overall. Decisions only: the caller
/// writes the leaf.
#[derive(Debug, Default)]
pub struct FloodLimit {
    inner: Mutex<(HashMap<String, Window>, Window)>,
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flood {
    /// Write its leaf; the text (if any) reports events held back earlier,
    /// to be added to its detail.
    Write(Option<String>),
    /// Count it, write nothing.
    Hold,
}

/// The key of an address: an IPv6 address by its /64 (one subscriber).
fn addr_key(addr: &str) -> String {
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(a)) if a.to_ipv4_mapped().is_none() => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(a)) => a
            .to_ipv4_mapped()
            .map_or_else(String::new, |v4| v4.to_string()),
        _ => addr.to_owned(),
    }
}

impl FloodLimit {
    /// May an event from `addr` at `now_us` be written?
    pub fn admit(&self, addr: &str, now_us: i64) -> Flood {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (by_addr, total) = &mut *g;
        if by_addr.len() >= FLOOD_ADDRS {
            forget_quiet(by_addr, total, now_us);
        }
        let w = by_addr.entry(addr_key(addr)).or_insert(Window {
            start_us: now_us,
            ..Window::default()
        });
        w.roll(now_us);
        total.roll(now_us);
        if w.written >= FLOOD_PER_ADDR {
            w.held += 1;
            return Flood::Hold;
        }
        if total.written >= FLOOD_TOTAL {
            total.held += 1;
            return Flood::Hold;
        }
        w.written += 1;
        total.written += 1;
        let here = std::mem::take(&mut w.unreported);
        let all = std::mem::take(&mut total.unreported);
        Flood::Write(match (here, all) {
            (0, 0) => None,
            (h, 0) => Some(format!("suppressed {h} earlier from this address")),
            (0, a) => Some(format!("suppressed {a} earlier from all addresses")),
            (h, a) => Some(format!(
                "suppressed {h} earlier from this address, {a} from all addresses"
            )),
        })
    }
}

/// Forget addresses whose window has passed; what they held back is
/// carried by the overall window.
fn forget_quiet(by_addr: &mut HashMap<String, Window>, total: &mut Window, now_us: i64) {
    by_addr.retain(|_, w| {
        let quiet = now_us - w.start_us >= FLOOD_WINDOW_US;
        if quiet {
            total.unreported += w.held + w.unreported;
        }
        !quiet
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_made_to_fit_and_still_validates() {
        let a = Access::new(CustodyAction::Denied, &"x\n".repeat(100))
            .detail("é".repeat(300))
            .entries(DeviceId([3; 8]), 9, 4);
        let leaf = a.leaf(1);
        leaf.validate().unwrap();
        let Leaf::Custody {
            actor,
            detail,
            first_seq,
            last_seq,
            ..
        } = leaf
        else {
            panic!("not custody")
        };
        assert!(actor.len() <= MAX_ACTOR && actor.starts_with("x?x?"));
        assert!(detail.unwrap().ends_with('…'));
        assert_eq!((first_seq, last_seq), (4, 9));
    }

    #[test]
    fn a_flood_from_one_address_is_counted_and_reported_when_the_window_rolls() {
        let f = FloodLimit::default();
        let t0 = 1_000_000;
        for i in 0..FLOOD_PER_ADDR {
            assert_eq!(f.admit("10.0.0.1", t0 + i64::from(i)), Flood::Write(None));
        }
        for i in 0..5 {
            assert_eq!(f.admit("10.0.0.1", t0 + 100 + i), Flood::Hold);
        }
        // Another address is not held back by the first one's flood.
        assert_eq!(f.admit("10.0.0.2", t0 + 200), Flood::Write(None));
        // Still the same window: held.
        assert_eq!(f.admit("10.0.0.1", t0 + FLOOD_WINDOW_US - 1), Flood::Hold);
        assert_eq!(
            f.admit("10.0.0.1", t0 + FLOOD_WINDOW_US),
            Flood::Write(Some("suppressed 6 earlier from this address".into()))
        );
        assert_eq!(
            f.admit("10.0.0.1", t0 + FLOOD_WINDOW_US + 1),
            Flood::Write(None),
            "reported once"
        );
    }

    #[test]
    fn many_addresses_are_limited_together_and_ipv6_by_its_64() {
        let f = FloodLimit::default();
        for i in 0..FLOOD_PER_ADDR {
            assert!(matches!(
                f.admit("2001:db8:1:2::1", i.into()),
                Flood::Write(_)
            ));
        }
        assert_eq!(f.admit("2001:db8:1:2::ffff", 99), Flood::Hold, "same /64");
        let mut written = FLOOD_PER_ADDR;
        let mut n = 0u32;
        while f.admit(&format!("10.1.{}.{}", n / 250, n % 250), 100) != Flood::Hold {
            written += 1;
            n += 1;
        }
        assert_eq!(written, FLOOD_TOTAL);
        assert_eq!(
            f.admit("10.9.9.9", FLOOD_WINDOW_US + 100),
            Flood::Write(Some("suppressed 1 earlier from all addresses".into()))
        );
    }

    #[test]
    fn forgotten_addresses_leave_their_counts_to_the_total() {
        let mut by_addr = HashMap::new();
        by_addr.insert(
            "a".to_owned(),
            Window {
                start_us: 0,
                written: 30,
                held: 4,
                unreported: 2,
            },
        );
        by_addr.insert(
            "b".to_owned(),
            Window {
                start_us: FLOOD_WINDOW_US,
                written: 1,
                held: 0,
                unreported: 0,
            },
        );
        let mut total = Window::default();
        forget_quiet(&mut by_addr, &mut total, FLOOD_WINDOW_US + 1);
        assert_eq!((by_addr.len(), total.unreported), (1, 6));
    }

    #[test]
    fn action_names_round_trip() {
        for a in ACTIONS {
            assert_eq!(parse_action(&action_name(a)), Some(a));
        }
        assert_eq!(action_name(CustodyAction::LoginFailed), "login-failed");
        assert_eq!(parse_action("LoginFailed"), None);
    }

    #[test]
    fn an_event_about_no_device_names_none() {
        let Leaf::Custody { device, .. } = Access::new(CustodyAction::Login, "li").leaf(1) else {
            panic!("not custody")
        };
        assert_eq!(device, DeviceId::NONE);
    }
}
