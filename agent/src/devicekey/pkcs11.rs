//! The device key inside a PKCS#11 token (a secure element, a TPM's PKCS#11
//! face, or softhsm2 in tests), through the `cryptoki` bindings.
//!
//! - [`generate`]: `init --pkcs11` makes an Ed25519 key pair inside the token
//!   (CKM_EC_EDWARDS_KEY_PAIR_GEN), the private half sensitive and never
//!   extractable, both halves on the token under one label. Only the public
//!   key comes out.
//! - [`TokenSigner`]: signs with CKM_EDDSA (pure Ed25519, RFC 8032: the same
//!   signature bytes a key file makes), through one logged-in session behind
//!   a mutex: a PKCS#11 session must not be used from two threads at once, and
//!   the chain writer and the sync client's handshakes share the one key.
//!
//! Every signature the token returns is verified against its public key
//! before it is used: a faulty token cannot put a bad signature in the chain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ed25519_dalek::{Signature, VerifyingKey};
use fieldseal_proto::identity::{DeviceId, SignError, Signer};

/// CKA_EC_PARAMS of an Ed25519 key: the DER of the curve's OID 1.3.101.112
/// (RFC 8410). PKCS#11 3.0 also allows the printable string "edwards25519";
/// the OID is what softhsm2 2.6 and most tokens take.
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// A key in a token, as `config.toml`'s `[key]` section names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// The token's PKCS#11 module (a shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The label of the key pair inside the token.
    pub label: String,
    /// A file holding the PIN (mode 0600), if the device is to start unattended.
    pub pin_file: Option<PathBuf>,
}

/// Errors of the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The module could not be loaded or initialised.
    #[error("PKCS#11 module {0}: {1}")]
    Module(String, CkError),
    /// No token with that label.
    #[error("no token labelled `{token}` in PKCS#11 module {module} (tokens there: {found})")]
    NoToken {
        /// The label looked for.
        token: String,
        /// The module.
        module: String,
        /// The labels of the tokens present, for the message.
        found: String,
    },
    /// The token refused the PIN.
    #[error("token `{0}` refused the PIN (tokens lock themselves after a few wrong PINs)")]
    WrongPin(String),
    /// Too many wrong PINs.
    #[error(
        "token `{0}`: the user PIN is locked after too many wrong PINs; \
         only the token's security officer can unlock it"
    )]
    PinLocked(String),
    /// No key pair with that label.
    #[error("token `{token}` holds no Ed25519 {what} labelled `{label}`")]
    NoKey {
        /// The token.
        token: String,
        /// The key label.
        label: String,
        /// "private key" or "public key".
        what: &'static str,
    },
    /// More than one.
    #[error("token `{token}` holds several Ed25519 {what}s labelled `{label}`")]
    Ambiguous {
        /// The token.
        token: String,
        /// The key label.
        label: String,
        /// "private key" or "public key".
        what: &'static str,
    },
    /// `init` would make a second key under a label in use.
    #[error(
        "token `{token}` already holds a key labelled `{label}`: give another --key-label \
         (a key already in use signs another device's chain)"
    )]
    LabelTaken {
        /// The token.
        token: String,
        /// The key label.
        label: String,
    },
    /// A key that can leave the token is not a hardware key.
    #[error(
        "the key `{label}` in token `{token}` can be exported (CKA_EXTRACTABLE, or not \
         CKA_SENSITIVE): refused; make one with `fieldseal-agent init --pkcs11`"
    )]
    Extractable {
        /// The token.
        token: String,
        /// The key label.
        label: String,
    },
    /// The public key is not an Ed25519 point.
    #[error("token `{token}`: the public key `{label}` is not an Ed25519 key")]
    BadPublicKey {
        /// The token.
        token: String,
        /// The key label.
        label: String,
    },
    /// A PKCS#11 call failed.
    #[error("token `{token}`: {op}: {source}")]
    Op {
        /// The token.
        token: String,
        /// What was being done.
        op: &'static str,
        /// The module's error.
        source: CkError,
    },
    /// A test signature did not verify.
    #[error(transparent)]
    Sign(#[from] SignError),
}

fn op<'a>(t: &'a TokenKey, op: &'static str) -> impl FnOnce(CkError) -> TokenError + 'a {
    move |source| TokenError::Op {
        token: t.token.clone(),
        op,
        source,
    }
}

/// The module of `path`, loaded and initialised once per process: the
/// chain writer and the sync client share it, and a second `C_Initialize`
/// would fail (CKR_CRYPTOKI_ALREADY_INITIALIZED).
fn context(module: &Path) -> Result<Pkcs11, TokenError> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut loaded = LOADED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = loaded.get(module) {
        return Ok(c.clone());
    }
    let fail = |e| TokenError::Module(module.display().to_string(), e);
    let c = Pkcs11::new(module).map_err(fail)?;
    match c.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(e)),
    }
    loaded.insert(module.to_path_buf(), c.clone());
    Ok(c)
}

/// The slot holding the token labelled `t.token`.
fn slot(ctx: &Pkcs11, t: &TokenKey) -> Result<Slot, TokenError> {
    let mut found = Vec::new();
    for s in ctx.get_slots_with_token().map_err(op(t, "listing slots"))? {
        let info = ctx.get_token_info(s).map_err(op(t, "reading a token"))?;
        let label = info.label().trim_end();
        if label == t.token {
            return Ok(s);
        }
        found.push(format!("`{label}`"));
    }
    Err(TokenError::NoToken {
        token: t.token.clone(),
        module: t.module.display().to_string(),
        found: if found.is_empty() {
            "none".into()
        } else {
            found.join(", ")
        },
    })
}

fn login(session: &Session, t: &TokenKey, pin: &AuthPin) -> Result<(), TokenError> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
            Err(TokenError::WrongPin(t.token.clone()))
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::PinLocked(t.token.clone())),
        Err(e) => Err(op(t, "logging in")(e)),
    }
}

/// The one Ed25519 object of `class` labelled `t.label`.
fn one(session: &Session, t: &TokenKey, class: ObjectClass) -> Result<ObjectHandle, TokenError> {
    let what = if class == ObjectClass::PRIVATE_KEY {
        "private key"
    } else {
        "public key"
    };
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::Label(t.label.as_bytes().to_vec()),
        ])
        .map_err(op(t, "finding the key"))?;
    match found.as_slice() {
        [h] => Ok(*h),
        [] => Err(TokenError::NoKey {
            token: t.token.clone(),
            label: t.label.clone(),
            what,
        }),
        _ => Err(TokenError::Ambiguous {
            token: t.token.clone(),
            label: t.label.clone(),
            what,
        }),
    }
}

/// An Ed25519 public key from CKA_EC_POINT: a DER OCTET STRING around the
/// 32 bytes (PKCS#11 3.0), or the 32 bytes alone (some tokens).
fn parse_point(p: &[u8]) -> Option<VerifyingKey> {
    let raw: &[u8] = match p {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        _ if p.len() == 32 => p,
        _ => return None,
    };
    VerifyingKey::from_bytes(raw.try_into().ok()?).ok()
}

fn public_of(session: &Session, t: &TokenKey) -> Result<VerifyingKey, TokenError> {
    let h = one(session, t, ObjectClass::PUBLIC_KEY)?;
    let attrs = session
        .get_attributes(h, &[AttributeType::EcPoint])
        .map_err(op(t, "reading the public key"))?;
    let bad = || TokenError::BadPublicKey {
        token: t.token.clone(),
        label: t.label.clone(),
    };
    match attrs.first() {
        Some(Attribute::EcPoint(p)) => parse_point(p).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Whether the private key `h` is held the way a device key must be:
/// sensitive and not extractable.
fn stays_inside(session: &Session, t: &TokenKey, h: ObjectHandle) -> Result<bool, TokenError> {
    let attrs = session
        .get_attributes(h, &[AttributeType::Sensitive, AttributeType::Extractable])
        .map_err(op(t, "reading the key's attributes"))?;
    let mut sensitive = false;
    let mut extractable = true;
    for a in attrs {
        match a {
            Attribute::Sensitive(v) => sensitive = v,
            Attribute::Extractable(v) => extractable = v,
            _ => {}
        }
    }
    Ok(sensitive && !extractable)
}

/// Generate the device key inside the token `t.token` (logging in with
/// `pin`), labelled `t.label`, and return its public key. The key is
/// tried once (a signature, verified) before this returns.
///
/// # Errors
/// [`TokenError::LabelTaken`] if a key has that label already; the
/// module's, the token's and the PIN's errors.
pub fn generate(t: &TokenKey, pin: &AuthPin) -> Result<VerifyingKey, TokenError> {
    let ctx = context(&t.module)?;
    let session = ctx
        .open_rw_session(slot(&ctx, t)?)
        .map_err(op(t, "opening a session"))?;
    login(&session, t, pin)?;
    let taken = session
        .find_objects(&[Attribute::Label(t.label.as_bytes().to_vec())])
        .map_err(op(t, "finding the key"))?;
    if !taken.is_empty() {
        return Err(TokenError::LabelTaken {
            token: t.token.clone(),
            label: t.label.clone(),
        });
    }
    let label = Attribute::Label(t.label.as_bytes().to_vec());
    let public = [
        Attribute::Token(true),
        // Readable without the PIN: only the public half.
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(ED25519_PARAMS.to_vec()),
        label.clone(),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        label,
    ];
    session
        .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
        .map_err(op(t, "generating an Ed25519 key pair"))?;
    drop(session);
    // Open it as `run` will, which checks the attributes and signs once.
    Ok(TokenSigner::open(t, pin.clone())?.public_key())
}

/// One logged-in session and the private key's handle in it.
struct Conn {
    session: Session,
    key: ObjectHandle,
}

fn connect(ctx: &Pkcs11, t: &TokenKey, pin: &AuthPin) -> Result<(Conn, VerifyingKey), TokenError> {
    // Read-only: signing needs no write, and a token allows more of them.
    let session = ctx
        .open_ro_session(slot(ctx, t)?)
        .map_err(op(t, "opening a session"))?;
    login(&session, t, pin)?;
    let key = one(&session, t, ObjectClass::PRIVATE_KEY)?;
    if !stays_inside(&session, t, key)? {
        return Err(TokenError::Extractable {
            token: t.token.clone(),
            label: t.label.clone(),
        });
    }
    let public = public_of(&session, t)?;
    Ok((Conn { session, key }, public))
}

/// Errors after which a new session may succeed: the token was reset,
/// pulled out and put back, or its login lapsed.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid,
            _
        )
    )
}

/// The device key in a token, signing through one session at a time.
pub struct TokenSigner {
    ctx: Pkcs11,
    key: TokenKey,
    /// Kept to log in again after the token dropped the session.
    pin: AuthPin,
    public: VerifyingKey,
    conn: Mutex<Option<Conn>>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("token", &self.key.token)
            .field("label", &self.key.label)
            .field("device", &DeviceId::from_key(&self.public))
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Log in to the token and find the key; sign once to check that the
    /// token does Ed25519 (CKM_EDDSA) before the first entry depends on it.
    ///
    /// # Errors
    /// The module's, the token's and the PIN's errors; [`TokenError::Extractable`]
    /// for a key that could leave the token.
    pub fn open(t: &TokenKey, pin: AuthPin) -> Result<TokenSigner, TokenError> {
        let ctx = context(&t.module)?;
        let (conn, public) = connect(&ctx, t, &pin)?;
        let s = TokenSigner {
            ctx,
            key: t.clone(),
            pin,
            public,
            conn: Mutex::new(Some(conn)),
        };
        s.try_sign(b"fieldseal: the device key signs")?;
        Ok(s)
    }

    fn sign_with(&self, c: &Conn, msg: &[u8]) -> Result<Vec<u8>, CkError> {
        let pure = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        c.session.sign(&pure, c.key, msg)
    }

    /// Whether the private key is sensitive and not extractable, asked of
    /// the token again (`open` refuses a key that is not).
    ///
    /// # Errors
    /// The token's.
    pub fn key_stays_inside(&self) -> Result<bool, TokenError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        match conn.as_ref() {
            Some(c) => stays_inside(&c.session, &self.key, c.key),
            None => Err(TokenError::Sign(SignError(
                "no session: the last one was lost and could not be opened again".into(),
            ))),
        }
    }
}

impl Signer for TokenSigner {
    fn public_key(&self) -> VerifyingKey {
        self.public
    }

    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        let fail =
            |e: &dyn std::fmt::Display| SignError(format!("token `{}`: {e}", self.key.token));
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        // Once more through a new session if the token dropped this one: a
        // token reset or re-seated must not end a recording.
        let mut retried = false;
        let bytes = loop {
            if conn.is_none() {
                let (c, public) = connect(&self.ctx, &self.key, &self.pin).map_err(|e| fail(&e))?;
                if public != self.public {
                    return Err(fail(&"the key is not the one this signer opened"));
                }
                *conn = Some(c);
            }
            let c = conn.as_ref().expect("connected above");
            match self.sign_with(c, msg) {
                Ok(b) => break b,
                Err(e) if !retried && session_lost(&e) => {
                    tracing::warn!(token = %self.key.token, error = %e, "the token dropped its session: logging in again");
                    retried = true;
                    *conn = None;
                }
                Err(e) => return Err(fail(&e)),
            }
        };
        let sig = <[u8; 64]>::try_from(bytes.as_slice())
            .map(|b| Signature::from_bytes(&b))
            .map_err(|_| fail(&format!("a signature of {} bytes, not 64", bytes.len())))?;
        self.public
            .verify_strict(msg, &sig)
            .map_err(|_| fail(&"its signature does not verify under its public key"))?;
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_in_both_encodings() {
        let k = ed25519_dalek::SigningKey::from_bytes(&[4; 32]).verifying_key();
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(k.as_bytes());
        assert_eq!(parse_point(&der), Some(k));
        assert_eq!(parse_point(k.as_bytes()), Some(k));
        assert_eq!(parse_point(&der[..33]), None);
        assert_eq!(parse_point(&[0x04, 0x21, 0]), None);
    }
}
