//! Who may do what: roles, passwords, sessions and the slowing of failed
//! logins. Decisions are plain functions with `now` as an argument; the
//! HTTP layer carries them out.
//!
//! - **Roles** (DESIGN.md, Access): an officer sees their own recordings and
//!   cases; a custodian archives, links, verifies and exports; a supervisor
//!   reviews, checks compliance, reads reports and issues supervision
//!   letters; an admin manages users, officers, devices and enrolment.
//! - **Passwords** are argon2id PHC strings (the admin user `init` writes).
//! - **Sessions**: a login gives a random 256-bit token; the server keeps
//!   only its SHA-256, with the user, role and expiry. Tokens expire and can
//!   be revoked (logout, a disabled user, a changed password or role).
//! - **Throttle**: after [`FREE_FAILURES`] failed logins for one user or one
//!   address, each further attempt must wait, doubling up to
//!   [`MAX_WAIT_SECS`]; a success resets that user's and address's count.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use fieldseal_proto::identity::{sha256, Hash32};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A field officer: own recordings and cases only.
    Officer,
    /// An evidence custodian: archive, link, verify, export.
    Custodian,
    /// A supervisor: review, compliance, reports, supervision letters.
    Supervisor,
    /// An administrator: users, officers, devices, enrolment.
    Admin,
}

impl Role {
    /// The role as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Officer => "officer",
            Role::Custodian => "custodian",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    /// Parse a stored role.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Role, AuthError> {
        Ok(match s {
            "officer" => Role::Officer,
            "custodian" => Role::Custodian,
            "supervisor" => Role::Supervisor,
            "admin" => Role::Admin,
            _ => return Err(AuthError::UnknownRole(s.to_owned())),
        })
    }
}

/// Authentication errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Not a role.
    #[error("unknown role {0:?} (officer, custodian, supervisor, admin)")]
    UnknownRole(String),
    /// A password too short or too long.
    #[error("a password must be 10 to 1024 bytes")]
    WeakPassword,
    /// The stored hash is not a PHC string argon2 understands.
    #[error("stored password hash is damaged")]
    BadHash,
}

/// Hash a new password (argon2id, random salt).
///
/// # Errors
/// [`AuthError::WeakPassword`] outside 10 to 1024 bytes.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.len() < 10 || password.len() > 1024 {
        return Err(AuthError::WeakPassword);
    }
    let salt = SaltString::generate(&mut rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| AuthError::BadHash)
}

/// Does `password` match the stored PHC string? Runs argon2 (tens of ms):
/// call it off the async workers.
///
/// # Errors
/// [`AuthError::BadHash`] when the stored string does not parse.
pub fn verify_password(stored: &str, password: &str) -> Result<bool, AuthError> {
    if password.len() > 1024 {
        return Ok(false);
    }
    let h = PasswordHash::new(stored).map_err(|_| AuthError::BadHash)?;
    Ok(argon2::Argon2::default()
        .verify_password(password.as_bytes(), &h)
        .is_ok())
}

/// A logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user.
    pub user: String,
    /// Their role at login.
    pub role: Role,
    /// For an officer: their certificate number (what "own" means).
    pub officer: Option<String>,
    /// When it ends (µs).
    pub expires_us: i64,
}

/// Sessions by the SHA-256 of their token.
#[derive(Debug, Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<Hash32, Session>>,
}

/// How long a session lasts: a working day.
pub const SESSION_US: i64 = 12 * 3600 * 1_000_000;

impl Sessions {
    /// Start a session; returns the token (64 hex digits) to hand the user.
    pub fn start(&self, s: Session, rng: &mut impl rand_core::RngCore) -> String {
        let mut raw = [0u8; 32];
        rng.fill_bytes(&mut raw);
        let token = hex::encode(raw);
        self.lock().insert(sha256(token.as_bytes()), s);
        token
    }

    /// The live session of `token`, if any (an expired one is dropped).
    pub fn get(&self, token: &str, now_us: i64) -> Option<Session> {
        let h = sha256(token.as_bytes());
        let mut g = self.lock();
        match g.get(&h) {
            Some(s) if s.expires_us > now_us => Some(s.clone()),
            Some(_) => {
                g.remove(&h);
                None
            }
            None => None,
        }
    }

    /// End one session (logout). True if it existed.
    pub fn revoke(&self, token: &str) -> bool {
        self.lock().remove(&sha256(token.as_bytes())).is_some()
    }

    /// End every session of `user` (disabled, password or role changed).
    /// Returns how many ended.
    pub fn revoke_user(&self, user: &str) -> usize {
        let mut g = self.lock();
        let before = g.len();
        g.retain(|_, s| s.user != user);
        before - g.len()
    }

    /// Live sessions.
    pub fn count(&self, now_us: i64) -> usize {
        self.lock()
            .values()
            .filter(|s| s.expires_us > now_us)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Hash32, Session>> {
        // A panic elsewhere while holding it leaves a consistent map.
        self.by_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Failed logins allowed before attempts must wait.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait between attempts, seconds.
pub const MAX_WAIT_SECS: i64 = 300;

/// Failed logins per user and per address.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl Throttle {
    fn wait_us(count: u32) -> i64 {
        if count < FREE_FAILURES {
            return 0;
        }
        let secs = 1i64 << (count - FREE_FAILURES).min(16);
        secs.min(MAX_WAIT_SECS) * 1_000_000
    }

    /// May an attempt for these keys (`user:NAME`, `addr:IP`) go ahead now?
    /// `Err(seconds)` to wait otherwise.
    ///
    /// # Errors
    /// The seconds until the next attempt is allowed.
    pub fn check(&self, keys: &[String], now_us: i64) -> Result<(), i64> {
        let g = self.lock();
        let until = keys
            .iter()
            .filter_map(|k| g.get(k))
            .map(|(n, last)| last + Self::wait_us(*n))
            .max()
            .unwrap_or(i64::MIN);
        if until > now_us {
            Err((until - now_us + 999_999) / 1_000_000)
        } else {
            Ok(())
        }
    }

    /// A failed attempt.
    pub fn failed(&self, keys: &[String], now_us: i64) {
        let mut g = self.lock();
        for k in keys {
            let e = g.entry(k.clone()).or_insert((0, now_us));
            *e = (e.0.saturating_add(1), now_us);
        }
        // Bound the map: forget addresses quiet for a day.
        if g.len() > 100_000 {
            g.retain(|_, (_, last)| now_us - *last < 86_400_000_000);
        }
    }

    /// A successful login: the counts start over.
    pub fn succeeded(&self, keys: &[String]) {
        let mut g = self.lock();
        for k in keys {
            g.remove(k);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, i64)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify_and_weak_ones_are_refused() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery").unwrap());
        assert!(!verify_password(&h, "wrong horse battery").unwrap());
        assert_eq!(hash_password("short"), Err(AuthError::WeakPassword));
        assert_eq!(verify_password("not a hash", "x"), Err(AuthError::BadHash));
    }

    #[test]
    fn sessions_expire_and_are_revoked() {
        let s = Sessions::default();
        let mut rng = rand_core::OsRng;
        let sess = |user: &str, exp| Session {
            user: user.into(),
            role: Role::Custodian,
            officer: None,
            expires_us: exp,
        };
        let a = s.start(sess("ann", 1_000), &mut rng);
        let b = s.start(sess("bob", 1_000), &mut rng);
        let a2 = s.start(sess("ann", 5_000), &mut rng);
        assert_eq!(a.len(), 64);
        assert_eq!(s.get(&a, 999).unwrap().user, "ann");
        assert_eq!(s.get(&a, 1_000), None, "expired");
        assert_eq!(s.get(&a, 10), None, "an expired session is gone for good");
        assert!(s.revoke(&b));
        assert_eq!(s.get(&b, 10), None);
        assert_eq!(s.count(10), 1);
        assert_eq!(s.revoke_user("ann"), 1);
        assert_eq!(s.get(&a2, 10), None);
        assert_eq!(s.get("not a token", 10), None);
        assert_eq!(Role::parse("admin"), Ok(Role::Admin));
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn failed_logins_slow_down_per_user_and_address() {
        let t = Throttle::default();
        let keys = |u: &str, a: &str| vec![format!("user:{u}"), format!("addr:{a}")];
        let s = 1_000_000;
        for i in 0..FREE_FAILURES {
            assert_eq!(t.check(&keys("ann", "10.0.0.1"), i64::from(i)), Ok(()));
            t.failed(&keys("ann", "10.0.0.1"), i64::from(i));
        }
        // The fourth attempt waits a second, from either key.
        assert_eq!(t.check(&keys("ann", "10.0.0.9"), 10), Err(1));
        assert_eq!(t.check(&keys("bob", "10.0.0.1"), 10), Err(1));
        assert_eq!(t.check(&keys("bob", "10.0.0.9"), 10), Ok(()));
        assert_eq!(t.check(&keys("ann", "10.0.0.1"), 2 + s), Ok(()));
        for n in 0..10 {
            t.failed(&keys("ann", "10.0.0.1"), 100 * s + n);
        }
        let wait = t.check(&keys("ann", "10.0.0.1"), 100 * s + 10).unwrap_err();
        assert_eq!(wait, MAX_WAIT_SECS);
        t.succeeded(&keys("ann", "10.0.0.1"));
        assert_eq!(t.check(&keys("ann", "10.0.0.1"), 100 * s + 11), Ok(()));
    }
}
