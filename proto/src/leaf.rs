//! Leaves of the server's transparency log: what the log commits to.
//!
//! Every accepted chain entry and every custody event (someone viewed,
//! exported, linked or verified evidence) is one leaf. The leaf data is hashed
//! with [`crate::merkle::leaf_hash`] (RFC 9162: `SHA-256(0x00 || data)`).
//!
//! ```text
//! "fieldseal/leaf/v1\0"   18   domain-separation prefix
//! type                    u8   1 = entry, 2 = custody
//! entry:   device_id [8] || seq u64 || entry_hash [32] || server_time_us i64
//! custody: time_us i64 || action u8 || actor text8 (<= 64)
//!          || device_id [8] || first_seq u64 || last_seq u64
//!          || case opt<text8> (<= 64) || detail opt<text8> (<= 200)
//! ```
//!
//! See `docs/FORMAT.md` §6.8.

use crate::codec::{put, Decode, DecodeError, Encode, Reader};
use crate::identity::{DeviceId, Hash32};

/// Domain-separation prefix of leaf data.
pub const LEAF_PREFIX: &[u8] = b"fieldseal/leaf/v1\0";
/// Longest actor (user name) or case number in a custody leaf.
pub const MAX_ACTOR: usize = 64;
/// Longest free-text detail in a custody leaf.
pub const MAX_LEAF_DETAIL: usize = 200;

/// What was done to evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustodyAction {
    /// Footage was viewed or downloaded for viewing.
    View = 1,
    /// An evidence package was exported.
    Export = 2,
    /// Recordings were linked to a case activity.
    Link = 3,
    /// A link was removed.
    Unlink = 4,
    /// The archive was verified on demand.
    Verify = 5,
    /// A legal hold was placed.
    Hold = 6,
    /// A legal hold was lifted.
    Release = 7,
    /// A scrub found damaged bytes, or a damaged blob was repaired from the device.
    Repair = 8,
    /// A user logged in (no device: device id all zero, seqs 0; detail: the address).
    Login = 9,
    /// A login was refused (actor: the name tried; detail: the address and why).
    LoginFailed = 10,
    /// A request was refused for want of a session or a role (actor: the user,
    /// or `-` without a session; detail: method, path and address).
    Denied = 11,
    /// A user account was added, disabled, enabled, or had its role or
    /// password changed (actor: who did it; detail: whom and what).
    Account = 12,
    /// The retention job expired media: its bytes left the archive (the
    /// signed entries stay). Actor `retention`.
    Expire = 13,
}

impl CustodyAction {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => Self::View,
            2 => Self::Export,
            3 => Self::Link,
            4 => Self::Unlink,
            5 => Self::Verify,
            6 => Self::Hold,
            7 => Self::Release,
            8 => Self::Repair,
            9 => Self::Login,
            10 => Self::LoginFailed,
            11 => Self::Denied,
            12 => Self::Account,
            13 => Self::Expire,
            _ => {
                return Err(DecodeError::InvalidValue {
                    what: "custody action",
                    value: u64::from(v),
                })
            }
        })
    }
}

/// One leaf of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// The server accepted a chain entry.
    Entry {
        /// The device.
        device: DeviceId,
        /// Its seq.
        seq: u64,
        /// Its entry hash.
        entry_hash: Hash32,
        /// Server time of acceptance (the receipt's time), µs since the epoch.
        server_time_us: i64,
    },
    /// Someone did something with evidence.
    Custody {
        /// Server time, µs since the epoch.
        time_us: i64,
        /// What.
        action: CustodyAction,
        /// Who (user name).
        actor: String,
        /// Whose recordings.
        device: DeviceId,
        /// First seq concerned.
        first_seq: u64,
        /// Last seq concerned (inclusive).
        last_seq: u64,
        /// The case, for links and exports.
        case: Option<String>,
        /// Anything else (an export's package hash, an activity id).
        detail: Option<String>,
    },
}

/// A leaf that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("custody leaf: {0}")]
pub struct LeafError(&'static str);

fn text_ok(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

impl Leaf {
    /// Check the bounds the encoding relies on.
    ///
    /// # Errors
    /// [`LeafError`] naming the field that is too long, has control
    /// characters, or a seq range that runs backwards.
    pub fn validate(&self) -> Result<(), LeafError> {
        if let Leaf::Custody {
            actor,
            first_seq,
            last_seq,
            case,
            detail,
            ..
        } = self
        {
            if !text_ok(actor, MAX_ACTOR) {
                return Err(LeafError("actor"));
            }
            if case.as_deref().is_some_and(|c| !text_ok(c, MAX_ACTOR)) {
                return Err(LeafError("case"));
            }
            if detail
                .as_deref()
                .is_some_and(|d| !text_ok(d, MAX_LEAF_DETAIL))
            {
                return Err(LeafError("detail"));
            }
            if last_seq < first_seq {
                return Err(LeafError("last_seq before first_seq"));
            }
        }
        Ok(())
    }

    /// The leaf hash the log stores.
    pub fn hash(&self) -> Hash32 {
        crate::merkle::leaf_hash(&self.to_bytes())
    }
}

fn put_opt(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put::text8(out, s);
        }
    }
}

impl Encode for Leaf {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(LEAF_PREFIX);
        match self {
            Leaf::Entry {
                device,
                seq,
                entry_hash,
                server_time_us,
            } => {
                out.push(1);
                out.extend_from_slice(&device.0);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(entry_hash);
                out.extend_from_slice(&server_time_us.to_be_bytes());
            }
            Leaf::Custody {
                time_us,
                action,
                actor,
                device,
                first_seq,
                last_seq,
                case,
                detail,
            } => {
                out.push(2);
                out.extend_from_slice(&time_us.to_be_bytes());
                out.push(*action as u8);
                put::text8(out, actor);
                out.extend_from_slice(&device.0);
                out.extend_from_slice(&first_seq.to_be_bytes());
                out.extend_from_slice(&last_seq.to_be_bytes());
                put_opt(out, case);
                put_opt(out, detail);
            }
        }
    }
}

impl Decode for Leaf {
    const NAME: &'static str = "log leaf";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.take(LEAF_PREFIX.len())? != LEAF_PREFIX {
            return Err(DecodeError::BadPrefix { what: "log leaf" });
        }
        let opt = |r: &mut Reader<'_>, what, max| -> Result<Option<String>, DecodeError> {
            if r.bool(what)? {
                Ok(Some(r.text8(what, max)?))
            } else {
                Ok(None)
            }
        };
        match r.u8()? {
            1 => Ok(Leaf::Entry {
                device: DeviceId(r.array()?),
                seq: r.u64()?,
                entry_hash: r.array()?,
                server_time_us: r.i64()?,
            }),
            2 => {
                let time_us = r.i64()?;
                let action = CustodyAction::from_u8(r.u8()?)?;
                let actor = r.text8("actor", MAX_ACTOR)?;
                let device = DeviceId(r.array()?);
                let first_seq = r.u64()?;
                let last_seq = r.u64()?;
                if last_seq < first_seq {
                    return Err(DecodeError::InvalidValue {
                        what: "custody seq range",
                        value: last_seq,
                    });
                }
                let case = opt(r, "case", MAX_ACTOR)?;
                let detail = opt(r, "detail", MAX_LEAF_DETAIL)?;
                Ok(Leaf::Custody {
                    time_us,
                    action,
                    actor,
                    device,
                    first_seq,
                    last_seq,
                    case,
                    detail,
                })
            }
            t => Err(DecodeError::InvalidValue {
                what: "leaf type",
                value: u64::from(t),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn custody() -> Leaf {
        Leaf::Custody {
            time_us: 1_782_896_400_000_000,
            action: CustodyAction::Export,
            actor: "custodian.li".into(),
            device: DeviceId([7; 8]),
            first_seq: 10,
            last_seq: 42,
            case: Some("CJ-2026-0001".into()),
            detail: Some("package sha256 00ff".into()),
        }
    }

    #[test]
    fn leaves_round_trip_and_differ_by_type() {
        let e = Leaf::Entry {
            device: DeviceId([7; 8]),
            seq: 3,
            entry_hash: [9; 32],
            server_time_us: 5,
        };
        for l in [e.clone(), custody()] {
            let b = l.to_bytes();
            assert_eq!(Leaf::from_bytes(&b).unwrap(), l);
            for cut in 0..b.len() {
                assert!(Leaf::from_bytes(&b[..cut]).unwrap_err().is_incomplete());
            }
        }
        assert_ne!(e.hash(), custody().hash());
    }

    #[test]
    fn every_action_round_trips_and_the_next_number_is_refused() {
        for n in 1..=13u8 {
            let action = CustodyAction::from_u8(n).unwrap();
            assert_eq!(action as u8, n);
            let mut l = custody();
            if let Leaf::Custody { action: a, .. } = &mut l {
                *a = action;
            }
            assert_eq!(Leaf::from_bytes(&l.to_bytes()).unwrap(), l);
        }
        assert!(CustodyAction::from_u8(14).is_err());
        assert!(CustodyAction::from_u8(0).is_err());
    }

    #[test]
    fn bad_custody_leaves_are_refused() {
        let mut l = custody();
        if let Leaf::Custody { last_seq, .. } = &mut l {
            *last_seq = 1;
        }
        assert!(l.validate().is_err());
        assert!(Leaf::from_bytes(&l.to_bytes()).is_err());
        let mut b = custody().to_bytes();
        b[LEAF_PREFIX.len() + 1 + 8] = 99; // the action byte
        assert!(matches!(
            Leaf::from_bytes(&b),
            Err(DecodeError::InvalidValue { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut data = LEAF_PREFIX.to_vec();
            data.extend_from_slice(&b);
            if let Ok(l) = Leaf::from_bytes(&data) {
                prop_assert_eq!(l.to_bytes(), data);
            }
        }
    }
}
