//! The device key: the one signer behind every signature the device makes
//! (its chain entries and its TLS client handshakes), wherever the key lives.
//!
//! ```text
//!  chain writer ──entry bytes──┐
//!                              ├─► DeviceKey ─► key file  DIR/device.key (keyfile.rs)
//!  sync thread ──TLS handshake─┘       │   └──► PKCS#11 token, key generated inside,
//!                                      │        non-extractable (pkcs11.rs)
//!  enrolment, verify, status ──────────┴─ public key only (DIR/device.pub for a token)
//! ```
//!
//! Which store a data folder uses is the `[key]` section of its `config.toml`
//! ([`KeyStore`]); left out, it is the key file, as before tokens. The PIN of a
//! token is never written there: it comes from stdin or a file ([`pin`]).
//!
//! A signature may take milliseconds (a token) and may fail (a token pulled
//! out): the capture thread never signs (`run` hands segments to the chain
//! writer, which does), and a failed signature makes no entry
//! ([`fieldseal_proto::entry::EntryError::Sign`]).

pub mod pin;
pub mod pkcs11;
pub mod softhsm;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use fieldseal_proto::identity::{SignError, Signer};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::keyfile::{self, KeyError};
use pin::{PinError, PinSource};
use pkcs11::{TokenError, TokenKey};

/// A signer the device can use from any thread: the key file's key in
/// memory, or a token behind its one session.
pub trait DeviceSigner: Signer + Send + Sync + fmt::Debug {}

impl<T: Signer + Send + Sync + fmt::Debug> DeviceSigner for T {}

/// The device's signer, cheap to clone and shared by the chain writer and
/// the sync client (one token session for both).
#[derive(Clone)]
pub struct DeviceKey(Arc<dyn DeviceSigner>);

impl DeviceKey {
    /// Wrap a signer.
    pub fn new(signer: impl DeviceSigner + 'static) -> Self {
        DeviceKey(Arc::new(signer))
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Signer for DeviceKey {
    fn public_key(&self) -> VerifyingKey {
        self.0.public_key()
    }
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        self.0.try_sign(msg)
    }
}

impl From<SigningKey> for DeviceKey {
    fn from(key: SigningKey) -> Self {
        DeviceKey::new(key)
    }
}

impl From<&SigningKey> for DeviceKey {
    fn from(key: &SigningKey) -> Self {
        DeviceKey::new(key.clone())
    }
}

impl From<&DeviceKey> for DeviceKey {
    fn from(key: &DeviceKey) -> Self {
        key.clone()
    }
}

/// Where a data folder's device key lives: `config.toml`'s `[key]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "KeySection")]
pub enum KeyStore {
    /// `DIR/device.key`, the secret seed in hex, mode 0600 ([`keyfile`]).
    #[default]
    File,
    /// A key generated inside a PKCS#11 token, which never leaves it.
    Pkcs11(TokenKey),
}

/// `[key]` as written: `store = "file"` (the default) or `store = "pkcs11"`
/// with `module`, `token` and `label`, and optionally `pin_file`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct KeySection {
    store: Option<String>,
    module: Option<PathBuf>,
    token: Option<String>,
    label: Option<String>,
    pin_file: Option<PathBuf>,
}

impl TryFrom<KeySection> for KeyStore {
    type Error = String;
    fn try_from(s: KeySection) -> Result<Self, String> {
        match s.store.as_deref().unwrap_or("file") {
            "file" => {
                if s.module.is_some() || s.token.is_some() || s.label.is_some() {
                    return Err("key: module, token and label go with store = \"pkcs11\"".into());
                }
                if s.pin_file.is_some() {
                    return Err("key: a key file takes no pin_file".into());
                }
                Ok(KeyStore::File)
            }
            "pkcs11" => {
                let need = |v: Option<String>, what: &str| {
                    v.filter(|t| !t.is_empty())
                        .ok_or_else(|| format!("key: store = \"pkcs11\" needs `{what}`"))
                };
                Ok(KeyStore::Pkcs11(TokenKey {
                    module: s
                        .module
                        .ok_or_else(|| "key: store = \"pkcs11\" needs `module`".to_string())?,
                    token: need(s.token, "token")?,
                    label: need(s.label, "label")?,
                    pin_file: s.pin_file,
                }))
            }
            other => Err(format!(
                "key: store = \"{other}\": expected \"file\" or \"pkcs11\""
            )),
        }
    }
}

impl KeyStore {
    /// The `[key]` section that records this store in `config.toml`, with a
    /// comment; empty for the key file (the default needs no section).
    pub fn config_section(&self) -> String {
        let KeyStore::Pkcs11(t) = self else {
            return String::new();
        };
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut out = format!(
            "\n[key]\n\
             # The device key was generated inside this PKCS#11 token and never leaves it\n\
             # (docs/AGENT.md, \"The device key\"). The PIN is never written here: give it\n\
             # with --pin - (stdin) or --pin-file FILE, or name a file (mode 0600) in pin_file.\n\
             store = \"pkcs11\"\n\
             module = {}\n\
             token = {}\n\
             label = {}\n",
            q(&t.module.to_string_lossy()),
            q(&t.token),
            q(&t.label),
        );
        if let Some(p) = &t.pin_file {
            out.push_str(&format!("pin_file = {}\n", q(&p.to_string_lossy())));
        }
        out
    }
}

/// Errors finding, opening or using the device key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key file.
    #[error(transparent)]
    File(#[from] KeyError),
    /// The token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The PIN.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// `config.toml`, which names the store.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `DIR/device.pub` could not be read or is not a key.
    #[error("{0}: {1}")]
    PublicKey(String, String),
    /// The token's key is not the one this folder's chain is signed with.
    #[error(
        "the key `{label}` in token `{token}` is device {found}, but {path} is device {expected}: \
         this is not this folder's token (or key label)"
    )]
    Mismatch {
        /// The token label.
        token: String,
        /// The key label.
        label: String,
        /// `DIR/device.pub`.
        path: String,
        /// The device id of `device.pub`.
        expected: String,
        /// The device id of the token's key.
        found: String,
    },
    /// A PIN was given for a key file.
    #[error("a PIN was given, but this device's key is the file {0}, which takes none")]
    PinForFile(String),
    /// A token needs a PIN and none was given.
    #[error(
        "the device key is in PKCS#11 token `{0}`: give its PIN with --pin - (stdin) or \
         --pin-file FILE, or name a PIN file in the [key] section of {1}"
    )]
    NoPin(String, String),
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.toml")
}

/// The key store `dir`'s `config.toml` names. Only the `[key]` section is
/// read, so that `status`, `verify`, `enroll` and `sync` keep working on a
/// folder whose capture settings are wrong; a folder without `config.toml`
/// (or without the section) keeps its key in the file.
///
/// # Errors
/// [`StoreError::Config`] for a file that cannot be read or parsed, or a
/// `[key]` section that is not valid.
pub fn store_of_dir(dir: &Path) -> Result<KeyStore, StoreError> {
    let path = config_path(dir);
    let p = || path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyStore::File),
        Err(e) => return Err(ConfigError::Io(p(), e).into()),
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| ConfigError::Parse(p(), e.to_string()))?;
    match table.get("key") {
        None => Ok(KeyStore::File),
        Some(v) => Ok(v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(p(), e.to_string()))?),
    }
}

/// The public key of the device of folder `dir`, without the PIN: derived
/// from `device.key` for a key file (its 0600 check included, as before
/// tokens), read from `device.pub` for a token.
///
/// # Errors
/// As [`store_of_dir`]; [`KeyError`] for the key file;
/// [`StoreError::PublicKey`] for `device.pub`.
pub fn public_key(dir: &Path) -> Result<VerifyingKey, StoreError> {
    match store_of_dir(dir)? {
        KeyStore::File => file_key(dir).map(|k| k.verifying_key()),
        KeyStore::Pkcs11(_) => read_pub(dir),
    }
}

/// The key file, with a better word when it is missing beside a
/// `device.pub`: a folder whose `[key]` section (naming a token) was lost.
fn file_key(dir: &Path) -> Result<SigningKey, StoreError> {
    match keyfile::load(dir) {
        Err(KeyError::Missing(..)) if dir.join(keyfile::PUB_FILE).exists() => {
            Err(StoreError::PublicKey(
                dir.join(keyfile::KEY_FILE).display().to_string(),
                format!(
                    "missing, but {} is there: if this device's key is in a token, \
                     restore the [key] section of {}",
                    keyfile::PUB_FILE,
                    config_path(dir).display()
                ),
            ))
        }
        other => Ok(other?),
    }
}

/// `DIR/device.pub`: 64 hex digits, the Ed25519 public key.
///
/// # Errors
/// [`StoreError::PublicKey`].
pub fn read_pub(dir: &Path) -> Result<VerifyingKey, StoreError> {
    let path = dir.join(keyfile::PUB_FILE);
    let bad = |why: String| StoreError::PublicKey(path.display().to_string(), why);
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let mut b = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut b).map_err(|_| bad("expected 64 hex digits".into()))?;
    VerifyingKey::from_bytes(&b).map_err(|_| bad("not an Ed25519 public key".into()))
}

/// Open the signer of folder `dir`, whose store is `store`, with the PIN
/// from `pin` (or the store's `pin_file`) for a token. A token's key must
/// be the one `device.pub` names: the chain must not change keys midway.
///
/// # Errors
/// [`StoreError::PinForFile`] for a PIN given to a key file;
/// [`StoreError::NoPin`]; the key file's, the PIN's and the token's
/// errors; [`StoreError::Mismatch`].
pub fn open(
    dir: &Path,
    store: &KeyStore,
    pin: Option<&PinSource>,
) -> Result<DeviceKey, StoreError> {
    match store {
        KeyStore::File => {
            if pin.is_some() {
                return Err(StoreError::PinForFile(
                    dir.join(keyfile::KEY_FILE).display().to_string(),
                ));
            }
            Ok(file_key(dir)?.into())
        }
        KeyStore::Pkcs11(t) => {
            let from_config = t.pin_file.clone().map(PinSource::File);
            let Some(source) = pin.or(from_config.as_ref()) else {
                return Err(StoreError::NoPin(
                    t.token.clone(),
                    config_path(dir).display().to_string(),
                ));
            };
            let expected = read_pub(dir)?;
            let signer = pkcs11::TokenSigner::open(t, pin::read(source)?)?;
            let found = signer.public_key();
            if found != expected {
                return Err(StoreError::Mismatch {
                    token: t.token.clone(),
                    label: t.label.clone(),
                    path: dir.join(keyfile::PUB_FILE).display().to_string(),
                    expected: fieldseal_proto::identity::DeviceId::from_key(&expected).to_string(),
                    found: fieldseal_proto::identity::DeviceId::from_key(&found).to_string(),
                });
            }
            Ok(DeviceKey::new(signer))
        }
    }
}

/// [`open`] with the store `dir`'s `config.toml` names.
///
/// # Errors
/// As [`store_of_dir`] and [`open`].
pub fn open_dir(dir: &Path, pin: Option<&PinSource>) -> Result<DeviceKey, StoreError> {
    open(dir, &store_of_dir(dir)?, pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KeyStore, String> {
        let t: toml::Table = toml::from_str(text).unwrap();
        t["key"]
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())
    }

    #[test]
    fn the_key_section_names_the_store_and_round_trips() {
        assert_eq!(parse("[key]\n").unwrap(), KeyStore::File);
        assert_eq!(parse("[key]\nstore = \"file\"\n").unwrap(), KeyStore::File);
        let t = KeyStore::Pkcs11(TokenKey {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: "cam \"17\"".into(),
            label: "fieldseal-device".into(),
            pin_file: Some("/etc/fieldseal/pin".into()),
        });
        assert_eq!(parse(&t.config_section()).unwrap(), t);
        assert_eq!(KeyStore::File.config_section(), "");
        for (bad, why) in [
            (
                "[key]\nstore = \"tpm\"\n",
                "expected \"file\" or \"pkcs11\"",
            ),
            (
                "[key]\nstore = \"pkcs11\"\ntoken = \"t\"\nlabel = \"l\"\n",
                "needs `module`",
            ),
            (
                "[key]\nstore = \"pkcs11\"\nmodule = \"m\"\nlabel = \"l\"\n",
                "needs `token`",
            ),
            ("[key]\nmodule = \"m\"\n", "go with store = \"pkcs11\""),
            ("[key]\npin = \"1234\"\n", "unknown field `pin`"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_folder_without_a_key_section_keeps_its_key_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(store_of_dir(dir.path()).unwrap(), KeyStore::File);
        std::fs::write(
            dir.path().join("config.toml"),
            crate::config::DEFAULT_CONFIG,
        )
        .unwrap();
        assert_eq!(store_of_dir(dir.path()).unwrap(), KeyStore::File);
        let k = keyfile::create(dir.path()).unwrap();
        assert_eq!(public_key(dir.path()).unwrap(), k.verifying_key());
        let signer = open_dir(dir.path(), None).unwrap();
        assert_eq!(signer.public_key(), k.verifying_key());
        // The key file's signatures are the same bytes as the key's own.
        assert_eq!(signer.sign(b"m"), Signer::sign(&k, b"m"));
        let pin = PinSource::File(dir.path().join("pin"));
        assert!(matches!(
            open_dir(dir.path(), Some(&pin)),
            Err(StoreError::PinForFile(_))
        ));
    }

    #[test]
    fn a_token_folder_without_its_pin_or_with_its_section_lost_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let t = KeyStore::Pkcs11(TokenKey {
            module: "/nonexistent/module.so".into(),
            token: "cam17".into(),
            label: "fieldseal-device".into(),
            pin_file: None,
        });
        let cfg = format!("{}{}", crate::config::DEFAULT_CONFIG, t.config_section());
        std::fs::write(dir.path().join("config.toml"), &cfg).unwrap();
        let e = open_dir(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("token `cam17`") && e.contains("--pin -"), "{e}");
        // The public key comes from device.pub, without the token.
        let k = SigningKey::from_bytes(&[3; 32]);
        std::fs::write(
            dir.path().join(keyfile::PUB_FILE),
            format!("{}\n", hex::encode(k.verifying_key().as_bytes())),
        )
        .unwrap();
        assert_eq!(public_key(dir.path()).unwrap(), k.verifying_key());
        // The section lost: not "run init", which would make another key.
        std::fs::write(
            dir.path().join("config.toml"),
            crate::config::DEFAULT_CONFIG,
        )
        .unwrap();
        let e = public_key(dir.path()).unwrap_err().to_string();
        assert!(e.contains("restore the [key] section"), "{e}");
    }
}
