//! The device key on disk: `DIR/device.key`, the 32-byte Ed25519 secret seed as
//! 64 hex digits and a newline, mode 0600; `DIR/device.pub` beside it.
//!
//! The same key signs the chain and, once enrolled, is the TLS client key,
//! both through [`crate::devicekey::DeviceKey`], the seam where a key inside
//! a PKCS#11 token fits instead ([`crate::devicekey::pkcs11`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::SigningKey;
use fieldseal_proto::identity::Signer;

use crate::spoolfs::{write_atomic, write_atomic_with, AtomicWrite, SpoolFs, StdFs};

/// File name of the secret key in the data folder.
pub const KEY_FILE: &str = "device.key";
/// File name of the public key in the data folder.
pub const PUB_FILE: &str = "device.pub";

/// Errors reading or writing the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// There is no key: the folder was never initialised.
    #[error("{0}: no device key here: run `fieldseal-agent init --data {1}` first")]
    Missing(String, String),
    /// The file does not hold 64 hex digits.
    #[error("{0}: not a device key (expected 64 hex digits)")]
    Malformed(String),
    /// Other users can read the secret key.
    #[error("{0}: readable by other users (mode {1:o}); run `chmod 600` on it")]
    TooOpen(String, u32),
    /// A key exists already.
    #[error(
        "{0}: a device key exists already; refusing to replace it (the chain would be orphaned)"
    )]
    Exists(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Create a new key in `dir` from the OS random number generator.
///
/// # Errors
/// [`KeyError::Exists`] if a key is there already, [`KeyError::Io`] on a write failure.
pub fn create(dir: &Path) -> Result<SigningKey, KeyError> {
    create_with(&StdFs, dir)
}

/// [`create`] through the file operations `fs` (the power-loss twin in tests).
///
/// # Errors
/// As [`create`].
pub fn create_with(fs: &dyn SpoolFs, dir: &Path) -> Result<SigningKey, KeyError> {
    let path = dir.join(KEY_FILE);
    let key = SigningKey::generate(&mut rand_core::OsRng);
    // Mode 0600 from the first byte, and never over a key already there.
    match write_atomic_with(
        fs,
        &path,
        format!("{}\n", hex::encode(key.to_bytes())).as_bytes(),
        AtomicWrite::NEW_SECRET,
    ) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(KeyError::Exists(path.display().to_string()))
        }
        Err(e) => return Err(io(&path)(e)),
    }
    let pub_path = dir.join(PUB_FILE);
    write_atomic(
        fs,
        &pub_path,
        format!("{}\n", hex::encode(key.verifying_key().as_bytes())).as_bytes(),
    )
    .map_err(io(&pub_path))?;
    Ok(key)
}

/// Finish an `init` that a power cut interrupted after the key was made:
/// load the key in `dir` and write `device.pub` again from it (durably,
/// replacing whatever the cut left). The caller decides that the init was
/// interrupted (the folder never recorded).
///
/// # Errors
/// As [`load`]; [`KeyError::Io`] on a write failure.
pub fn resume(dir: &Path) -> Result<SigningKey, KeyError> {
    resume_with(&StdFs, dir)
}

/// [`resume`] through the file operations `fs`.
///
/// # Errors
/// As [`resume`].
pub fn resume_with(fs: &dyn SpoolFs, dir: &Path) -> Result<SigningKey, KeyError> {
    let key = load(dir)?;
    let pub_path = dir.join(PUB_FILE);
    write_atomic(
        fs,
        &pub_path,
        format!("{}\n", hex::encode(key.verifying_key().as_bytes())).as_bytes(),
    )
    .map_err(io(&pub_path))?;
    Ok(key)
}

/// Load the key from `dir`.
///
/// # Errors
/// [`KeyError::Io`] if it cannot be read, [`KeyError::Malformed`] if it is not a
/// key, [`KeyError::TooOpen`] if group or others may read it.
pub fn load(dir: &Path) -> Result<SigningKey, KeyError> {
    let path = dir.join(KEY_FILE);
    let meta = match fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::Missing(
                path.display().to_string(),
                dir.display().to_string(),
            ))
        }
        other => other.map_err(io(&path))?,
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen(path.display().to_string(), mode));
    }
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| KeyError::Malformed(path.display().to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The device id of the key in `dir`, for messages.
///
/// # Errors
/// As [`load`].
pub fn device_id(dir: &Path) -> Result<String, KeyError> {
    Ok(load(dir)?.device_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let k = create(dir.path()).unwrap();
        assert_eq!(load(dir.path()).unwrap().to_bytes(), k.to_bytes());
        assert!(matches!(create(dir.path()), Err(KeyError::Exists(_))));
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn resume_keeps_the_key_and_writes_its_public_half_again() {
        let dir = tempfile::tempdir().unwrap();
        let k = create(dir.path()).unwrap();
        fs::write(dir.path().join(PUB_FILE), "").unwrap();
        assert_eq!(resume(dir.path()).unwrap().to_bytes(), k.to_bytes());
        assert_eq!(
            fs::read_to_string(dir.path().join(PUB_FILE)).unwrap(),
            format!("{}\n", hex::encode(k.verifying_key().as_bytes()))
        );
    }

    #[test]
    fn a_missing_key_says_run_init() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("no device key here: run `fieldseal-agent init --data"),
            "{e}"
        );
    }

    #[test]
    fn open_permissions_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        let p = dir.path().join(KEY_FILE);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load(dir.path()), Err(KeyError::TooOpen(..))));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, "not a key\n").unwrap();
        assert!(matches!(load(dir.path()), Err(KeyError::Malformed(_))));
    }

    #[test]
    fn a_created_key_survives_power_loss_and_is_never_replaced() {
        use crate::spoolfs::MemFs;
        let fs = MemFs::new(2);
        let dir = Path::new("/data");
        fs.create_dir_all(dir).unwrap();
        let k = create_with(&fs, dir).unwrap();
        fs.power_loss(false);
        let files = fs.files();
        let want = format!("{}\n", hex::encode(k.to_bytes()));
        assert_eq!(files[&dir.join(KEY_FILE)], want.as_bytes());
        assert!(files.contains_key(&dir.join(PUB_FILE)));
        assert!(matches!(create_with(&fs, dir), Err(KeyError::Exists(_))));
        assert_eq!(fs.files()[&dir.join(KEY_FILE)], want.as_bytes());
        // The refused attempt's secret is not left behind in a temp file.
        let names: Vec<_> = fs.files().into_keys().collect();
        assert_eq!(names, vec![dir.join(KEY_FILE), dir.join(PUB_FILE)]);
    }
}
