//! Managing the people who use the server (`fieldseal-server user …` and
//! the admin's API, through the same functions): add, list, disable, change
//! a password, role or officer. Users are never deleted — the access log
//! names them — only disabled. Every change is an `account` custody leaf
//! (who did it, whose account, what changed), written before the change is
//! stored, so no change is ever stored unlogged. The last enabled admin
//! cannot be disabled or demoted: nobody could manage users over the API.

use std::sync::{Mutex, PoisonError};

use fieldseal_proto::leaf::CustodyAction;
use serde::Serialize;

use crate::audit::Access;
use crate::auth::{hash_password, AuthError, Role};
use crate::cases::valid_key;
use crate::chainindex::IndexError;
use crate::db::{Db, DbError, UserRecord};

/// How a change is written to the access log: `audit::record_blocking` of
/// the running server, or `audit::append` to a bare index.
pub type Recorder<'a> = &'a dyn Fn(&Access) -> Result<u64, IndexError>;

/// One change at a time in this process: the last-admin check reads every
/// user, and two changes at once could each see the other admin enabled.
static CHANGES: Mutex<()> = Mutex::new(());

/// Why a user change is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// Not a usable name.
    #[error("user name {0:?}: 1 to 64 of A-Z, a-z, 0-9, - and _")]
    BadName(String),
    /// The name is taken.
    #[error("user {0} exists")]
    Exists(String),
    /// No such user.
    #[error("no user {0}")]
    NoUser(String),
    /// An officer user needs the certificate number of a known officer.
    #[error("an officer user needs --officer CERTIFICATE of a known officer ({0})")]
    Officer(String),
    /// Role or password refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The change would leave no enabled admin.
    #[error("{0} is the last enabled admin: add or enable another admin first")]
    LastAdmin(String),
    /// The access log could not be written; nothing was changed.
    #[error("access log: {0}")]
    Log(#[from] IndexError),
    /// The index failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A user as listed (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// An officer's certificate number.
    pub officer: Option<String>,
}

fn check_officer(db: &Db, role: Role, officer: Option<&str>) -> Result<(), UserError> {
    match (role, officer) {
        (Role::Officer, Some(c)) if db.officer(c)?.is_some() => Ok(()),
        (Role::Officer, Some(c)) => Err(UserError::Officer(format!("no officer {c}"))),
        (Role::Officer, None) => Err(UserError::Officer("none given".into())),
        (_, _) => Ok(()),
    }
}

/// A new user.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    /// Login name.
    pub name: &'a str,
    /// Role name.
    pub role: &'a str,
    /// An officer's certificate number (needed for the officer role).
    pub officer: Option<&'a str>,
    /// The password.
    pub password: &'a str,
}

/// Add a user; `actor` did it (a user name, or `cli`).
///
/// # Errors
/// [`UserError`] naming what is wrong; nothing is stored then.
pub fn add(
    db: &Db,
    record: Recorder<'_>,
    actor: &str,
    new: NewUser<'_>,
) -> Result<UserInfo, UserError> {
    let NewUser {
        name,
        role,
        officer,
        password,
    } = new;
    if !valid_key(name) {
        return Err(UserError::BadName(name.to_owned()));
    }
    let role = Role::parse(role)?;
    let _one = CHANGES.lock().unwrap_or_else(PoisonError::into_inner);
    if db.user(name)?.is_some() {
        return Err(UserError::Exists(name.to_owned()));
    }
    check_officer(db, role, officer)?;
    let u = UserRecord {
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        password_hash: hash_password(password)?,
        disabled: false,
        officer: officer.map(str::to_owned),
    };
    let mut what = format!("{name}: added as {}", role.as_str());
    if let Some(o) = officer {
        what.push_str(&format!(", officer {o}"));
    }
    record(&Access::new(CustodyAction::Account, actor).detail(what))?;
    db.put_user(&u)?;
    db.flush()?;
    Ok(info(&u))
}

fn info(u: &UserRecord) -> UserInfo {
    UserInfo {
        name: u.name.clone(),
        role: u.role.clone(),
        disabled: u.disabled,
        officer: u.officer.clone(),
    }
}

/// Every user.
///
/// # Errors
/// Index errors.
pub fn list(db: &Db) -> Result<Vec<UserInfo>, UserError> {
    Ok(db.users()?.iter().map(info).collect())
}

/// A change to a user; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Change<'a> {
    /// Disable (true) or enable (false).
    pub disabled: Option<bool>,
    /// A new password.
    pub password: Option<&'a str>,
    /// A new role.
    pub role: Option<&'a str>,
    /// A new officer certificate number.
    pub officer: Option<&'a str>,
}

/// Change a user: disable or enable, a new password, role or officer;
/// `actor` did it. What actually changed is logged (nothing is written when
/// nothing changes). The caller ends the user's sessions after any change.
///
/// # Errors
/// [`UserError::NoUser`], a refused role, officer or password,
/// [`UserError::LastAdmin`]; nothing is stored then.
pub fn change(
    db: &Db,
    record: Recorder<'_>,
    actor: &str,
    name: &str,
    c: Change<'_>,
) -> Result<UserInfo, UserError> {
    let _one = CHANGES.lock().unwrap_or_else(PoisonError::into_inner);
    let old = db
        .user(name)?
        .ok_or_else(|| UserError::NoUser(name.to_owned()))?;
    let mut u = old.clone();
    if let Some(d) = c.disabled {
        u.disabled = d;
    }
    if let Some(p) = c.password {
        u.password_hash = hash_password(p)?;
    }
    if let Some(o) = c.officer {
        if db.officer(o)?.is_none() {
            return Err(UserError::Officer(format!("no officer {o}")));
        }
        u.officer = Some(o.to_owned());
    }
    if let Some(r) = c.role {
        Role::parse(r)?.as_str().clone_into(&mut u.role);
    }
    check_officer(db, Role::parse(&u.role)?, u.officer.as_deref())?;
    let what = differences(&old, &u);
    if what.is_empty() {
        return Ok(info(&u));
    }
    if is_admin(&old) && !is_admin(&u) && !db.users()?.iter().any(|o| o.name != name && is_admin(o))
    {
        return Err(UserError::LastAdmin(name.to_owned()));
    }
    let detail = format!("{name}: {}", what.join(", "));
    record(&Access::new(CustodyAction::Account, actor).detail(detail))?;
    db.put_user(&u)?;
    db.flush()?;
    Ok(info(&u))
}

fn is_admin(u: &UserRecord) -> bool {
    !u.disabled && u.role == Role::Admin.as_str()
}

/// What changed from `old` to `new`, for the access log (never a hash).
fn differences(old: &UserRecord, new: &UserRecord) -> Vec<String> {
    let mut what = Vec::new();
    if old.disabled != new.disabled {
        what.push(if new.disabled { "disabled" } else { "enabled" }.to_owned());
    }
    if old.role != new.role {
        what.push(format!("role {}\u{2192}{}", old.role, new.role));
    }
    if old.officer != new.officer {
        what.push(format!("officer {}", new.officer.as_deref().unwrap_or("-")));
    }
    if old.password_hash != new.password_hash {
        what.push("password changed".to_owned());
    }
    what
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldseal_proto::codec::Decode;
    use fieldseal_proto::leaf::Leaf;

    fn user<'a>(name: &'a str, role: &'a str) -> NewUser<'a> {
        NewUser {
            name,
            role,
            officer: None,
            password: "a long password",
        }
    }

    /// The (actor, detail) of every account leaf in the log.
    fn logged(db: &Db) -> Vec<(String, String)> {
        db.custody_leaves(0)
            .map(|l| match Leaf::from_bytes(&l.unwrap().1).unwrap() {
                Leaf::Custody {
                    action: CustodyAction::Account,
                    actor,
                    detail,
                    ..
                } => (actor, detail.unwrap()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn users_are_added_listed_disabled_and_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let log = |a: &Access| crate::audit::append(&db, a);
        let add = |u| add(&db, &log, "cli", u);
        let change = |name, c| change(&db, &log, "root", name, c);
        add(user("ann", "custodian")).unwrap();
        assert!(matches!(
            add(user("ann", "custodian")),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            add(user("../x", "custodian")),
            Err(UserError::BadName(_))
        ));
        assert!(matches!(add(user("bob", "root")), Err(UserError::Auth(_))));
        assert!(matches!(
            add(NewUser {
                password: "short",
                ..user("bob", "custodian")
            }),
            Err(UserError::Auth(_))
        ));
        assert!(matches!(
            add(NewUser {
                officer: Some("CJ-9"),
                ..user("bob", "officer")
            }),
            Err(UserError::Officer(_))
        ));
        assert_eq!(db.user("bob").unwrap(), None, "nothing stored on a refusal");
        let disable = Change {
            disabled: Some(true),
            ..Change::default()
        };
        let u = change("ann", disable).unwrap();
        assert!(u.disabled);
        assert!(db.user("ann").unwrap().unwrap().disabled);
        let old = db.user("ann").unwrap().unwrap().password_hash;
        change(
            "ann",
            Change {
                password: Some("another long one"),
                role: Some("supervisor"),
                ..Change::default()
            },
        )
        .unwrap();
        let now = db.user("ann").unwrap().unwrap();
        assert_ne!(now.password_hash, old);
        assert_eq!(now.role, "supervisor");
        assert_eq!(list(&db).unwrap().len(), 1);
        assert!(matches!(change("zed", disable), Err(UserError::NoUser(_))));
        // Disabling a disabled user changes nothing and logs nothing.
        change("ann", disable).unwrap();
        assert_eq!(
            logged(&db),
            [
                ("cli".into(), "ann: added as custodian".into()),
                ("root".into(), "ann: disabled".into()),
                (
                    "root".into(),
                    "ann: role custodian\u{2192}supervisor, password changed".into()
                ),
            ]
        );
    }

    #[test]
    fn the_last_enabled_admin_stays_an_enabled_admin() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let log = |a: &Access| crate::audit::append(&db, a);
        let change = |name, c| change(&db, &log, "root", name, c);
        let demote = Change {
            role: Some("supervisor"),
            ..Change::default()
        };
        let disable = Change {
            disabled: Some(true),
            ..Change::default()
        };
        add(&db, &log, "cli", user("root", "admin")).unwrap();
        add(&db, &log, "cli", user("two", "admin")).unwrap();
        change("two", disable).unwrap();
        for c in [demote, disable] {
            assert!(matches!(change("root", c), Err(UserError::LastAdmin(_))));
        }
        assert!(is_admin(&db.user("root").unwrap().unwrap()));
        assert_eq!(logged(&db).len(), 3, "a refusal is not logged");
        change(
            "two",
            Change {
                disabled: Some(false),
                ..Change::default()
            },
        )
        .unwrap();
        change("root", demote).unwrap();
        assert!(matches!(
            change("two", disable),
            Err(UserError::LastAdmin(_))
        ));
    }

    #[test]
    fn nothing_is_changed_when_the_log_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let broken =
            |_: &Access| -> Result<u64, IndexError> { Err(IndexError::Backend("disk".into())) };
        assert!(matches!(
            add(&db, &broken, "cli", user("ann", "custodian")),
            Err(UserError::Log(_))
        ));
        assert_eq!(db.user("ann").unwrap(), None);
    }
}
