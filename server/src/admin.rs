//! Administration: creating a data folder, devices and their enrolment
//! tokens, enrolment itself. These functions work on an open [`Db`]; the
//! control socket (`control.rs`) calls them inside the running server, the
//! CLI calls them directly when no server runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHasher, SaltString};
use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_proto::enroll::{EnrollRequest, EnrollResponse, EnrollStatus, EnrollToken};
use fieldseal_proto::identity::{sha256, DeviceId, Hash32};
use fieldseal_proto::msg::Detail;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::datadir::DataDir;
use crate::db::{CertHow, CertRecord, Db, DbError, DeviceRecord, TokenRecord, UserRecord};
use crate::fsutil::{create_dir_durable, create_durable, sync_dir};
use crate::pki::{self, Ca};

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A key file exists: `init` never overwrites an existing data folder.
    #[error("{} already exists: refusing to overwrite the keys of an existing data folder", .0.display())]
    KeysExist(PathBuf),
    /// Writing a file or folder failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Generating the CA or the server certificate failed.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The index could not be created.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Hashing the admin password failed.
    #[error("argon2: {0}")]
    Password(String),
}

/// Why the receipt-signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `receipt.key` could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `receipt.key` does not hold 32 bytes in hex.
    #[error("{} is not 32 bytes in hex", .0.display())]
    Format(PathBuf),
}

/// What `init` reports.
#[derive(Debug)]
pub struct InitReport {
    /// The admin password, when it was generated (printed once).
    pub generated_password: Option<String>,
    /// The receipt-signing public key, hex.
    pub receipt_key: String,
}

/// Create a data folder: CA, server certificate, receipt key, config file,
/// index and the first admin user.
///
/// # Errors
/// When keys already exist in `dir` (nothing is overwritten), or on I/O,
/// certificate or index errors.
pub fn init(
    dir: &Path,
    extra_names: &[String],
    admin_password: Option<String>,
) -> Result<InitReport, InitError> {
    let data = DataDir::new(dir);
    let mut opened = None;
    let resume = match interrupted(&data)? {
        Interrupted::No => false,
        Interrupted::AfterKeys => {
            // A whole folder has its admin user: init never touches it. One
            // cut after its keys were made has none yet: finish it. (An
            // index that does not open, held by a running server or
            // damaged, is refused as a whole folder is.)
            let db = Db::open(dir).map_err(|_| InitError::KeysExist(data.ca_key()))?;
            if db.user("admin")?.is_some() {
                return Err(InitError::KeysExist(data.ca_key()));
            }
            opened = Some(db);
            true
        }
        Interrupted::BeforeKeys(partial) => {
            // A power cut before the keys were all made: `run` cannot have
            // started on this folder, so nothing used them. Start over.
            for f in partial {
                fs::remove_file(&f)?;
            }
            sync_dir(dir)?;
            false
        }
    };
    create_dir_durable(dir)?;
    // A folder that was there (an empty one made by hand, a temp folder)
    // becomes the owner's alone too: `run` requires it.
    fs::set_permissions(dir, fs::Permissions::from_mode(crate::fsutil::DIR_MODE))?;
    let receipt = if resume {
        load_receipt_key(dir).map_err(|_| InitError::KeysExist(data.receipt_key()))?
    } else {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        names.extend(extra_names.iter().cloned());
        let g = pki::generate(&names)?;
        create_durable(&data.ca_cert(), g.ca_cert_pem.as_bytes())?;
        create_durable(&data.ca_key(), g.ca_key_pem.as_bytes())?;
        create_durable(&data.server_cert(), g.server_cert_pem.as_bytes())?;
        create_durable(&data.server_key(), g.server_key_pem.as_bytes())?;
        let receipt = SigningKey::generate(&mut OsRng);
        create_durable(
            &data.receipt_key(),
            format!("{}\n", hex::encode(receipt.to_bytes())).as_bytes(),
        )?;
        receipt
    };
    // receipt.pub is derived from receipt.key: an earlier init that crashed
    // may have left it, and it is written again.
    let _ = fs::remove_file(data.receipt_pub());
    create_durable(
        &data.receipt_pub(),
        format!("{}\n", hex::encode(receipt.verifying_key().to_bytes())).as_bytes(),
    )?;
    let cfg = Config {
        server_names: extra_names.to_vec(),
        ..Config::default()
    };
    if !data.config().exists() {
        create_durable(&data.config(), cfg.commented().as_bytes())?;
    }
    for sub in data.init_folders() {
        create_dir_durable(&sub)?;
    }
    let db = match opened {
        Some(db) => db,
        None => Db::open(dir)?,
    };
    let (password, generated) = match admin_password {
        Some(p) if !p.is_empty() => (p, None),
        _ => {
            let mut b = [0u8; 12];
            OsRng.fill_bytes(&mut b);
            let p = hex::encode(b);
            (p.clone(), Some(p))
        }
    };
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| InitError::Password(e.to_string()))?
        .to_string();
    db.put_user(&UserRecord {
        name: "admin".into(),
        role: "admin".into(),
        password_hash: hash,
        disabled: false,
        officer: None,
    })?;
    db.flush()?;
    sync_dir(dir)?;
    Ok(InitReport {
        generated_password: generated,
        receipt_key: hex::encode(receipt.verifying_key().to_bytes()),
    })
}

/// How far an earlier `init` of a folder went.
enum Interrupted {
    /// No key file: a new folder.
    No,
    /// Some key files, not all of them whole: a cut before the last key.
    BeforeKeys(Vec<PathBuf>),
    /// Every key: a whole folder, or one cut after its keys were made
    /// (init then finishes it, if it has no admin user yet).
    AfterKeys,
}

/// How far an earlier `init` of `data` went (a power cut can stop it
/// anywhere; each file it makes is either absent or whole, but not all
/// of them are there).
fn interrupted(data: &DataDir) -> Result<Interrupted, InitError> {
    let files = data.key_files();
    let present: Vec<PathBuf> = files.iter().filter(|f| f.exists()).cloned().collect();
    if present.is_empty() {
        return Ok(Interrupted::No);
    }
    let whole = files
        .iter()
        .all(|f| fs::metadata(f).is_ok_and(|m| m.len() > 0));
    if whole {
        return Ok(Interrupted::AfterKeys);
    }
    // `run` refuses a folder without every key, so none of them was used;
    // but a folder that holds chains (devices/) was used: never touch it.
    if data.devices().exists() || data.leaves_log().exists() {
        return Err(InitError::KeysExist(present[0].clone()));
    }
    Ok(Interrupted::BeforeKeys(present))
}

/// Load the receipt-signing key.
///
/// # Errors
/// The file cannot be read or does not hold 32 bytes in hex.
pub fn load_receipt_key(dir: &Path) -> Result<SigningKey, KeyError> {
    let path = DataDir::new(dir).receipt_key();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(source) => return Err(KeyError::Read { path, source }),
    };
    let b: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(KeyError::Format(path))?;
    Ok(SigningKey::from_bytes(&b))
}

/// A freshly issued enrolment token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewToken {
    /// The device name.
    pub name: String,
    /// The token (shown once; only its hash is stored).
    pub token: String,
    /// Expiry, µs since the epoch.
    pub expires_us: i64,
}

/// Issue a one-time enrolment token for a device called `name`:
/// `SECRET.CA_SHA256` ([`fieldseal_proto::enroll::EnrollToken`]), the
/// secret's hash stored, the CA's hash (`ca_sha256`, see
/// [`crate::pki::ca_sha256`]) named so that the device trusts no other
/// server with it.
///
/// # Errors
/// Index errors.
pub fn device_add(
    db: &Db,
    ca_sha256: &Hash32,
    name: &str,
    ttl_secs: u64,
    now_us: i64,
) -> Result<NewToken, DbError> {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let secret = hex::encode(b);
    let ttl_us = i64::try_from(ttl_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let expires_us = now_us.saturating_add(ttl_us);
    db.put_token(
        &sha256(secret.as_bytes()),
        &TokenRecord {
            name: name.to_string(),
            expires_us,
            used_by: None,
            device: None,
        },
    )?;
    db.flush()?;
    let token = EnrollToken {
        secret,
        ca_sha256: *ca_sha256,
    };
    Ok(NewToken {
        name: name.to_string(),
        token: token.to_string(),
        expires_us,
    })
}

/// Issue a one-time token that re-enrols the enrolled device `id` (with
/// the same key): for a device that was revoked and is trusted again, or
/// whose certificate expired before it renewed. Enrolling with it lifts
/// the revocation and issues a new certificate; it enrols no other key.
/// Returns `None` for an unknown device.
///
/// # Errors
/// Index errors.
pub fn device_reenrol(
    db: &Db,
    ca_sha256: &Hash32,
    id: DeviceId,
    ttl_secs: u64,
    now_us: i64,
) -> Result<Option<NewToken>, DbError> {
    let Some(d) = db.device(id)? else {
        return Ok(None);
    };
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let secret = hex::encode(b);
    let ttl_us = i64::try_from(ttl_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let expires_us = now_us.saturating_add(ttl_us);
    db.put_token(
        &sha256(secret.as_bytes()),
        &TokenRecord {
            name: d.name.clone(),
            expires_us,
            used_by: None,
            device: Some(id.to_string()),
        },
    )?;
    db.flush()?;
    let token = EnrollToken {
        secret,
        ca_sha256: *ca_sha256,
    };
    Ok(Some(NewToken {
        name: d.name,
        token: token.to_string(),
        expires_us,
    }))
}

/// Mark a device revoked. Returns its record, or `None` if unknown.
///
/// # Errors
/// Index errors.
pub fn device_revoke(db: &Db, id: DeviceId, now_us: i64) -> Result<Option<DeviceRecord>, DbError> {
    let Some(mut d) = db.device(id)? else {
        return Ok(None);
    };
    if d.revoked_us.is_none() {
        d.revoked_us = Some(now_us);
        db.put_device(&d)?;
        db.flush()?;
    }
    Ok(Some(d))
}

/// Can this token enrol a device now?
fn usable(t: Option<&TokenRecord>, now_us: i64) -> Result<(), (EnrollStatus, &'static str)> {
    match t {
        None => Err((EnrollStatus::UnknownToken, "unknown enrolment token")),
        Some(t) if t.used_by.is_some() => {
            Err((EnrollStatus::UsedToken, "enrolment token already used"))
        }
        Some(t) if t.expires_us <= now_us => {
            Err((EnrollStatus::ExpiredToken, "enrolment token expired"))
        }
        Some(_) => Ok(()),
    }
}

fn refused(status: EnrollStatus, detail: &str) -> EnrollResponse {
    EnrollResponse::Refused {
        status,
        detail: Detail::lossy(detail),
    }
}

/// Handle one enrolment request: check and use the token, record the
/// device, issue its certificate, valid for `cert_secs` from now (the
/// server's `device_cert_days`). A refused request changes nothing.
///
/// A token bound to a device (`device reenrol`) re-enrols that device, and
/// only it: the key must be the device's, its revocation is lifted and it
/// gets a new certificate. An enrolled key with any other token is refused.
pub fn enroll(
    db: &Db,
    ca: &Ca,
    receipt_key: &VerifyingKey,
    req: &EnrollRequest,
    now_us: i64,
    cert_secs: i64,
) -> EnrollResponse {
    let Ok(vk) = VerifyingKey::from_bytes(&req.public_key) else {
        return refused(EnrollStatus::Malformed, "not an Ed25519 public key");
    };
    if vk.is_weak() {
        return refused(EnrollStatus::Malformed, "weak Ed25519 public key");
    }
    let id = DeviceId::from_key(&vk);
    let token_hash = sha256(req.token.as_bytes());
    let (known, token) = match (db.device(id), db.token(&token_hash)) {
        (Ok(d), Ok(t)) => (d.is_some(), t),
        (Err(e), _) | (_, Err(e)) => return refused(EnrollStatus::Internal, &e.to_string()),
    };
    let reenrol = token.as_ref().and_then(|t| t.device.as_deref()) == Some(&id.to_string());
    if known && !reenrol {
        return refused(
            EnrollStatus::AlreadyEnrolled,
            "this key is already enrolled (a device whose enrolment was cut short, or that was revoked or whose certificate expired, needs a token from `fieldseal-server device reenrol ID`)",
        );
    }
    // The token first: the CA signs nothing for a request without a usable
    // one. (The transaction below checks it again: another request may use
    // it meanwhile.)
    if let Err((status, detail)) = usable_for(token.as_ref(), id, now_us) {
        return refused(status, detail);
    }
    // Then the certificate: if issuing fails, the token is not used up.
    let now = now_us.div_euclid(1_000_000);
    let validity = fieldseal_proto::x509::Validity {
        not_before: now,
        not_after: now.saturating_add(cert_secs),
    };
    let cert = match ca.issue_timed(&req.public_key, validity) {
        Ok(c) => c,
        Err(e) => return refused(EnrollStatus::Internal, &e.to_string()),
    };
    let record = CertRecord {
        sha256: hex::encode(sha256(&cert)),
        not_before: validity.not_before,
        not_after: validity.not_after,
        issued_us: now_us,
        how: if reenrol {
            CertHow::Reenrol
        } else {
            CertHow::Enrol
        },
    };
    let used = |t: TokenRecord| TokenRecord {
        used_by: Some(id.to_string()),
        ..t
    };
    let res = if reenrol {
        db.reenroll(&token_hash, id, &record, |tok, dev| {
            usable_for(tok.as_ref(), id, now_us)?;
            let (Some(t), Some(d)) = (tok, dev) else {
                return Err((EnrollStatus::UnknownToken, "unknown enrolment token"));
            };
            if d.revoked_us.is_some() {
                tracing::warn!(device = %id, "re-enrolment lifts the device's revocation");
            }
            Ok((
                used(t),
                DeviceRecord {
                    revoked_us: None,
                    ..d
                },
            ))
        })
    } else {
        db.enroll(&token_hash, &record, |tok| {
            usable_for(tok.as_ref(), id, now_us)?;
            let Some(t) = tok else {
                return Err((EnrollStatus::UnknownToken, "unknown enrolment token"));
            };
            let dev = DeviceRecord {
                id,
                name: t.name.clone(),
                key: vk,
                enrolled_us: now_us,
                revoked_us: None,
            };
            Ok((used(t), dev))
        })
    };
    match res {
        Ok(Ok(_)) => EnrollResponse::Ok {
            device_id: id,
            receipt_key: receipt_key.to_bytes(),
            client_cert: cert,
            ca_cert: ca.cert_der.clone(),
        },
        Ok(Err((status, detail))) => refused(status, detail),
        // A concurrent enrolment of the same key won the transaction: the
        // answer the check above gives when it comes first.
        Err(DbError::AlreadyEnrolled) => refused(
            EnrollStatus::AlreadyEnrolled,
            "this key is already enrolled",
        ),
        Err(e) => refused(EnrollStatus::Internal, &e.to_string()),
    }
}

/// [`usable`], and a token bound to a device enrols that device only.
fn usable_for(
    t: Option<&TokenRecord>,
    id: DeviceId,
    now_us: i64,
) -> Result<(), (EnrollStatus, &'static str)> {
    usable(t, now_us)?;
    match t.and_then(|t| t.device.as_deref()) {
        Some(bound) if bound != id.to_string() => Err((
            EnrollStatus::UnknownToken,
            "this token re-enrols another device",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &SigningKey, token: &NewToken) -> EnrollRequest {
        EnrollRequest {
            token: EnrollToken::parse(&token.token).unwrap().secret,
            public_key: key.verifying_key().to_bytes(),
        }
    }

    fn status(r: &EnrollResponse) -> Option<EnrollStatus> {
        match r {
            EnrollResponse::Ok { .. } => None,
            EnrollResponse::Refused { status, .. } => Some(*status),
        }
    }

    #[test]
    fn a_reenrolment_token_enrols_its_device_again_and_no_other_key() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[], Some("x".repeat(12))).unwrap();
        let db = Db::open(dir.path()).unwrap();
        let ca = Ca::load(dir.path()).unwrap();
        let ca_hash = pki::ca_sha256(dir.path()).unwrap();
        let receipt = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let (a, b) = (
            SigningKey::from_bytes(&[2; 32]),
            SigningKey::from_bytes(&[3; 32]),
        );
        let id = DeviceId::from_key(&a.verifying_key());
        let enrol = |req: &EnrollRequest, now_us| enroll(&db, &ca, &receipt, req, now_us, 90);

        let t = device_add(&db, &ca_hash, "cam", 60, 0).unwrap();
        assert_eq!(status(&enrol(&request(&a, &t), 1_000_000)), None);
        let c = db.current_cert(id).unwrap().unwrap();
        assert_eq!((c.not_before, c.not_after, c.how), (1, 91, CertHow::Enrol));
        assert_eq!(
            status(&enrol(&request(&b, &t), 1_000_000)),
            Some(EnrollStatus::UsedToken)
        );
        device_revoke(&db, id, 2_000_000).unwrap();
        // An enrolled key with a new device's token: refused.
        let t2 = device_add(&db, &ca_hash, "cam 2", 60, 0).unwrap();
        assert_eq!(
            status(&enrol(&request(&a, &t2), 3_000_000)),
            Some(EnrollStatus::AlreadyEnrolled)
        );
        // A re-enrolment token is for its device alone.
        let r = device_reenrol(&db, &ca_hash, id, 60, 0).unwrap().unwrap();
        assert_eq!(r.name, "cam");
        assert_eq!(
            status(&enrol(&request(&b, &r), 3_000_000)),
            Some(EnrollStatus::UnknownToken)
        );
        assert!(db
            .device(DeviceId::from_key(&b.verifying_key()))
            .unwrap()
            .is_none());
        // For it, the revocation is lifted and a new certificate issued.
        let issued = ca.issued();
        assert_eq!(status(&enrol(&request(&a, &r), 4_000_000)), None);
        assert_eq!(ca.issued(), issued + 1);
        assert_eq!(db.device(id).unwrap().unwrap().revoked_us, None);
        let c = db.current_cert(id).unwrap().unwrap();
        assert_eq!((c.not_before, c.how), (4, CertHow::Reenrol));
        assert_eq!(db.certs(id).unwrap().len(), 2);
        // Single use, as every token.
        assert_eq!(
            status(&enrol(&request(&a, &r), 5_000_000)),
            Some(EnrollStatus::UsedToken)
        );
        assert!(device_reenrol(&db, &ca_hash, DeviceId([9; 8]), 60, 0)
            .unwrap()
            .is_none());
    }
}

#[cfg(test)]
mod init_tests {
    use super::*;

    /// Power cuts during `init` (found by the power-cut filesystem of
    /// tests/tests/powercut.rs): cut before its keys were all made, init
    /// again starts over; cut after them, it finishes the folder with the
    /// same keys; a whole folder is still refused.
    #[test]
    fn init_after_a_cut_starts_over_or_finishes_and_a_whole_folder_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("s");
        let data = DataDir::new(&dir);
        // Cut after the CA: two key files of five, nothing else.
        let other = t.path().join("other");
        init(&other, &[], Some("pw".into())).unwrap();
        fs::create_dir_all(&dir).unwrap();
        for f in [data.ca_cert(), data.ca_key()] {
            fs::copy(other.join(f.file_name().unwrap()), &f).unwrap();
        }
        let old_ca = fs::read(data.ca_cert()).unwrap();
        init(&dir, &[], Some("pw".into())).unwrap();
        assert_ne!(fs::read(data.ca_cert()).unwrap(), old_ca, "started over");
        assert!(data.key_files().iter().all(|f| f.exists()));
        // Cut after the keys, before the index and its admin user.
        fs::remove_dir_all(dir.join("index")).unwrap();
        let ca = fs::read(data.ca_key()).unwrap();
        let r = init(&dir, &[], Some("pw".into())).unwrap();
        assert_eq!(fs::read(data.ca_key()).unwrap(), ca, "the keys kept");
        assert_eq!(
            r.receipt_key,
            hex::encode(load_receipt_key(&dir).unwrap().verifying_key().to_bytes())
        );
        assert!(Db::open(&dir).unwrap().user("admin").unwrap().is_some());
        // Whole: refused, nothing changed.
        assert!(matches!(
            init(&dir, &[], Some("pw".into())),
            Err(InitError::KeysExist(_))
        ));
        assert_eq!(fs::read(data.ca_key()).unwrap(), ca);
    }
}
