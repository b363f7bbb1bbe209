//! Managing the people who use the server (`fieldseal-server user …` and
//! the admin's API): add, list, disable, change a password or role. Users
//! are never deleted — the access log names them — only disabled.

use serde::Serialize;

use crate::auth::{hash_password, AuthError, Role};
use crate::cases::valid_key;
use crate::db::{Db, DbError, UserRecord};

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

/// Add a user.
///
/// # Errors
/// [`UserError`] naming what is wrong; nothing is stored then.
pub fn add(
    db: &Db,
    name: &str,
    role: &str,
    officer: Option<&str>,
    password: &str,
) -> Result<UserInfo, UserError> {
    if !valid_key(name) {
        return Err(UserError::BadName(name.to_owned()));
    }
    let role = Role::parse(role)?;
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

/// Change a user: disable or enable, a new password, a new role. The
/// caller ends the user's sessions after any change.
///
/// # Errors
/// [`UserError::NoUser`], a refused role or password.
pub fn change(
    db: &Db,
    name: &str,
    disabled: Option<bool>,
    password: Option<&str>,
    role: Option<&str>,
) -> Result<UserInfo, UserError> {
    let mut u = db
        .user(name)?
        .ok_or_else(|| UserError::NoUser(name.to_owned()))?;
    if let Some(d) = disabled {
        u.disabled = d;
    }
    if let Some(p) = password {
        u.password_hash = hash_password(p)?;
    }
    if let Some(r) = role {
        let r = Role::parse(r)?;
        check_officer(db, r, u.officer.as_deref())?;
        r.as_str().clone_into(&mut u.role);
    }
    db.put_user(&u)?;
    db.flush()?;
    Ok(info(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_added_listed_disabled_and_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        add(&db, "ann", "custodian", None, "a long password").unwrap();
        assert!(matches!(
            add(&db, "ann", "custodian", None, "a long password"),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            add(&db, "../x", "custodian", None, "a long password"),
            Err(UserError::BadName(_))
        ));
        assert!(matches!(
            add(&db, "bob", "root", None, "a long password"),
            Err(UserError::Auth(_))
        ));
        assert!(matches!(
            add(&db, "bob", "custodian", None, "short"),
            Err(UserError::Auth(_))
        ));
        assert!(matches!(
            add(&db, "bob", "officer", Some("CJ-9"), "a long password"),
            Err(UserError::Officer(_))
        ));
        assert_eq!(db.user("bob").unwrap(), None, "nothing stored on a refusal");
        let u = change(&db, "ann", Some(true), None, None).unwrap();
        assert!(u.disabled);
        assert!(db.user("ann").unwrap().unwrap().disabled);
        let old = db.user("ann").unwrap().unwrap().password_hash;
        change(
            &db,
            "ann",
            None,
            Some("another long one"),
            Some("supervisor"),
        )
        .unwrap();
        let now = db.user("ann").unwrap().unwrap();
        assert_ne!(now.password_hash, old);
        assert_eq!(now.role, "supervisor");
        assert_eq!(list(&db).unwrap().len(), 1);
        assert!(matches!(
            change(&db, "zed", Some(true), None, None),
            Err(UserError::NoUser(_))
        ));
    }
}
