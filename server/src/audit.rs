//! The access log: every read, export, link and unlink of evidence, every
//! login, refused login, refused request and account change is a custody
//! leaf of the transparency log (`docs/FORMAT.md` §6.8), so that the
//! archive cannot later drop or rewrite who saw what. This module turns an
//! [`Access`] into a leaf and appends it; it decides nothing about who may
//! do what.
//!
//! An append is an fsync of `leaves.log`: call [`record_blocking`] from
//! blocking code, [`record`] from async handlers.

use std::sync::Arc;

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
fn fit(s: &str, max: usize) -> String {
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

/// Append `a` to the log now; returns its leaf index.
///
/// # Errors
/// The log could not be appended to.
pub fn record_blocking(shared: &Shared, a: &Access) -> Result<u64, IndexError> {
    let leaf = a.leaf(crate::now_us());
    let at = shared.db.log_append(&leaf)?;
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
    fn an_event_about_no_device_names_none() {
        let Leaf::Custody { device, .. } = Access::new(CustodyAction::Login, "li").leaf(1) else {
            panic!("not custody")
        };
        assert_eq!(device, DeviceId::NONE);
    }
}
