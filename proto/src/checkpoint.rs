//! Signed checkpoints of the transparency log, in the C2SP `tlog-checkpoint`
//! and `signed-note` text formats, so that existing transparency-log tooling
//! and witnesses can read and cosign them.
//!
//! A checkpoint commits the log to the root of its first `size` leaves at a
//! server time. Only [`Checkpoint::body`] makes the bytes that are signed, and
//! only [`Checkpoint::verify`] turns a note back into a checkpoint: a note's
//! text is never trusted before a signature by the expected key has verified.
//!
//! Layout (see `docs/FORMAT.md`, "Checkpoints"); `\n` is one byte 0x0A, `—`
//! is U+2014 (bytes E2 80 94):
//!
//! ```text
//! <origin>\n                          body: the signed bytes, all lines non-empty
//! <tree size, decimal>\n
//! <base64 of the 32-byte root>\n
//! time <unix seconds, decimal>\n      fieldseal extension line (C2SP allows extension lines)
//! \n                                  the blank line ending the body
//! — <key name> <base64(key id (4) || ed25519 signature (64))>\n   one line per signer
//!
//! key id = first 4 bytes of SHA-256(key name || 0x0A || 0x01 || 32-byte public key)
//! verifier key = <key name>+<key id, 8 lowercase hex>+<base64(0x01 || public key)>
//! ```

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use thiserror::Error;

use crate::identity::{sha256_parts, Hash32, Signer};

/// Maximum length of a note in bytes. Our checkpoints are a few hundred
/// bytes; 8 KiB leaves room for 16 cosignatures with long names while keeping
/// a hostile note cheap to reject.
pub const MAX_NOTE_LEN: usize = 8192;
/// Maximum number of signature lines; C2SP requires verifiers to accept at
/// least 16.
pub const MAX_SIGNATURES: usize = 16;
/// Maximum length in bytes of an origin or a key name.
pub const MAX_NAME_LEN: usize = 256;
/// The signed-note signature type byte of Ed25519.
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// The prefix of the fieldseal time extension line.
pub const TIME_LINE_PREFIX: &str = "time ";

/// What starts every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// Bytes of an Ed25519 signature in a note: key id and signature.
const ED25519_BLOB_LEN: usize = 4 + 64;

/// Why a note or a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note is longer than [`MAX_NOTE_LEN`]; nothing else was looked at.
    #[error("note of {len} bytes exceeds the maximum {max}")]
    TooLong {
        /// The length of the note.
        len: usize,
        /// [`MAX_NOTE_LEN`].
        max: usize,
    },
    /// A control character other than newline (a carriage return, a tab, …).
    #[error("note contains a control character other than newline")]
    ControlCharacter,
    /// No blank line separates the text from the signatures.
    #[error("note has no blank line before its signatures")]
    NoSignatures,
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("{count} signature lines exceed the maximum {max}")]
    TooManySignatures {
        /// The number of signature lines.
        count: usize,
        /// [`MAX_SIGNATURES`].
        max: usize,
    },
    /// A signature line that does not have the signed-note form.
    #[error("malformed signature line: {0}")]
    BadSignatureLine(&'static str),
    /// A key name that is empty, too long, or contains whitespace or `+`.
    #[error("invalid key name")]
    BadKeyName,
    /// An origin that is empty, too long, or contains whitespace or `+`.
    #[error("invalid origin")]
    BadOrigin,
    /// The checkpoint text does not have exactly the four expected lines.
    #[error("malformed checkpoint: {0}")]
    BadBody(&'static str),
    /// A signature from the expected key (same name and key id) failed to
    /// verify: the whole note is rejected.
    #[error("the signature by the expected key does not verify")]
    BadSignature,
    /// No signature line comes from the expected key.
    #[error("no signature by the expected key")]
    NoTrustedSignature,
    /// A verifier key string that is not `<name>+<hex id>+<base64 key>`.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(&'static str),
}

/// The signed-note key id of an Ed25519 key: the first 4 bytes of
/// `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let h = sha256_parts(&[name.as_bytes(), b"\n", &[SIG_TYPE_ED25519], key.as_bytes()]);
    [h[0], h[1], h[2], h[3]]
}

/// The rule for key names and origins: non-empty, at most [`MAX_NAME_LEN`]
/// bytes, no whitespace (Unicode), no `+`, no control characters. (C2SP only
/// recommends this for origins; fieldseal requires it, and the log's key name
/// is its origin.)
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

fn check_key_name(name: &str) -> Result<(), CheckpointError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(CheckpointError::BadKeyName)
    }
}

/// A decimal number as C2SP writes sizes: ASCII digits only, no sign, no
/// leading zero unless the number is 0, and within u64.
fn parse_decimal(s: &str) -> Option<u64> {
    let digits_only = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// One signature line of a note, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name on the line.
    pub key_name: String,
    /// The 4-byte key id.
    pub key_id: [u8; 4],
    /// The signature bytes after the key id (64 for Ed25519).
    pub signature: Vec<u8>,
}

/// A signed note split into its text and its signature lines. Parsing checks
/// the form only; [`Note::verify`] checks a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// Split a signed note. The text is everything up to and including the
    /// newline before the **last** blank line; every line after that blank
    /// line is a signature line.
    ///
    /// # Errors
    /// [`CheckpointError::TooLong`] (checked first), [`CheckpointError::ControlCharacter`],
    /// [`CheckpointError::NoSignatures`], [`CheckpointError::TooManySignatures`]
    /// (checked before any line is decoded), [`CheckpointError::BadSignatureLine`],
    /// [`CheckpointError::BadKeyName`].
    pub fn parse(note: &str) -> Result<Note, CheckpointError> {
        if note.len() > MAX_NOTE_LEN {
            return Err(CheckpointError::TooLong {
                len: note.len(),
                max: MAX_NOTE_LEN,
            });
        }
        // UTF-8 multi-byte sequences never contain bytes below 0x80.
        if note.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(CheckpointError::ControlCharacter);
        }
        let blank = note.rfind("\n\n").ok_or(CheckpointError::NoSignatures)?;
        let text = &note[..=blank];
        let block = &note[blank + 2..];
        if block.is_empty() {
            return Err(CheckpointError::NoSignatures);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or(CheckpointError::BadSignatureLine(
                "the last line must end in a newline",
            ))?;
        let count = block.split('\n').count();
        if count > MAX_SIGNATURES {
            return Err(CheckpointError::TooManySignatures {
                count,
                max: MAX_SIGNATURES,
            });
        }
        let signatures = block
            .split('\n')
            .map(parse_signature_line)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note text: the bytes the signatures cover, ending in a newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order, none of them verified.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Check that the note is signed by the Ed25519 key `key` under `key_name`.
    /// Lines from other keys (another name or another key id) are ignored; every
    /// line from this key must verify (`verify_strict`), and there must be one.
    ///
    /// # Errors
    /// [`CheckpointError::BadSignature`] if a line from this key does not
    /// verify; [`CheckpointError::NoTrustedSignature`] if there is none.
    pub fn verify(&self, key_name: &str, key: &VerifyingKey) -> Result<(), CheckpointError> {
        let id = key_id(key_name, key);
        let mut verified = false;
        for line in self
            .signatures
            .iter()
            .filter(|s| s.key_name == key_name && s.key_id == id)
        {
            let bytes: [u8; 64] = line
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| CheckpointError::BadSignature)?;
            key.verify_strict(self.text.as_bytes(), &Signature::from_bytes(&bytes))
                .map_err(|_| CheckpointError::BadSignature)?;
            verified = true;
        }
        if verified {
            Ok(())
        } else {
            Err(CheckpointError::NoTrustedSignature)
        }
    }
}

fn parse_signature_line(line: &str) -> Result<NoteSignature, CheckpointError> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(CheckpointError::BadSignatureLine(
            "must start with an em dash and a space",
        ))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(CheckpointError::BadSignatureLine(
            "must be a key name, a space and base64",
        ))?;
    check_key_name(name)?;
    // Standard base64 with padding; the engine rejects non-canonical encodings,
    // so one signature has exactly one accepted spelling.
    let blob = BASE64
        .decode(b64)
        .map_err(|_| CheckpointError::BadSignatureLine("signature is not standard base64"))?;
    if blob.len() < 5 {
        return Err(CheckpointError::BadSignatureLine(
            "signature shorter than a key id",
        ));
    }
    Ok(NoteSignature {
        key_name: name.to_owned(),
        key_id: [blob[0], blob[1], blob[2], blob[3]],
        signature: blob[4..].to_vec(),
    })
}

/// The signature line a signer adds under `text`: `— <name> <base64>\n`.
fn signature_line(text: &str, key_name: &str, signer: &impl Signer) -> String {
    let sig = signer.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(ED25519_BLOB_LEN);
    blob.extend_from_slice(&key_id(key_name, &signer.public_key()));
    blob.extend_from_slice(&sig.to_bytes());
    format!("{SIGNATURE_PREFIX}{key_name} {}\n", BASE64.encode(blob))
}

/// Sign a note text with one Ed25519 key: the text, a blank line, one
/// signature line.
///
/// # Errors
/// [`CheckpointError::BadKeyName`]; [`CheckpointError::BadBody`] if the text
/// is empty, does not end in a newline, or contains a control character other
/// than newline; [`CheckpointError::TooLong`] if the note would exceed
/// [`MAX_NOTE_LEN`].
pub fn sign_note(
    text: &str,
    key_name: &str,
    signer: &impl Signer,
) -> Result<String, CheckpointError> {
    check_key_name(key_name)?;
    if text.is_empty() || !text.ends_with('\n') {
        return Err(CheckpointError::BadBody("note text must end in a newline"));
    }
    if text.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(CheckpointError::BadBody(
            "note text contains a control character",
        ));
    }
    let note = format!("{text}\n{}", signature_line(text, key_name, signer));
    if note.len() > MAX_NOTE_LEN {
        return Err(CheckpointError::TooLong {
            len: note.len(),
            max: MAX_NOTE_LEN,
        });
    }
    Ok(note)
}

/// A tree head of the transparency log at a server time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `fieldseal.example/log`. Also its key name.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 9162 root of the first `size` leaves.
    pub root: Hash32,
    /// Server time of signing, Unix seconds.
    pub time_unix: u64,
}

impl Checkpoint {
    /// The note text, i.e. the exact bytes that are signed.
    ///
    /// # Errors
    /// [`CheckpointError::BadOrigin`] for an empty or too long origin, or one
    /// holding whitespace, `+` or control characters.
    pub fn body(&self) -> Result<String, CheckpointError> {
        if !valid_name(&self.origin) {
            return Err(CheckpointError::BadOrigin);
        }
        Ok(format!(
            "{}\n{}\n{}\n{TIME_LINE_PREFIX}{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            self.time_unix
        ))
    }

    /// The signed note of this checkpoint, signed by `signer` as `key_name`.
    ///
    /// # Errors
    /// [`CheckpointError::BadOrigin`], [`CheckpointError::BadKeyName`].
    pub fn sign(&self, key_name: &str, signer: &impl Signer) -> Result<String, CheckpointError> {
        sign_note(&self.body()?, key_name, signer)
    }

    /// Parse a checkpoint text strictly: exactly four lines, origin, size,
    /// root and `time` line, each as [`Checkpoint::body`] writes it. Unknown
    /// extension lines are refused: fieldseal signs none.
    ///
    /// This does not check any signature; use [`Checkpoint::verify`] on notes.
    ///
    /// # Errors
    /// [`CheckpointError::BadBody`], [`CheckpointError::BadOrigin`].
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let text = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::BadBody("text must end in a newline"))?;
        let lines: Vec<&str> = text.split('\n').collect();
        let [origin, size, root, time] = lines[..] else {
            return Err(CheckpointError::BadBody(
                "expected origin, size, root and time lines",
            ));
        };
        if !valid_name(origin) {
            return Err(CheckpointError::BadOrigin);
        }
        let size = parse_decimal(size).ok_or(CheckpointError::BadBody("tree size"))?;
        let root: Hash32 = BASE64
            .decode(root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::BadBody(
                "root hash is not base64 of 32 bytes",
            ))?;
        let time_unix = time
            .strip_prefix(TIME_LINE_PREFIX)
            .and_then(parse_decimal)
            .ok_or(CheckpointError::BadBody("time line"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            time_unix,
        })
    }

    /// Verify a signed checkpoint note against the log's key and return the
    /// checkpoint. Signatures by other keys (witnesses) are allowed and
    /// ignored.
    ///
    /// # Errors
    /// Any error of [`Note::parse`], [`Note::verify`] and
    /// [`Checkpoint::parse_body`].
    pub fn verify(
        note: &str,
        key_name: &str,
        key: &VerifyingKey,
    ) -> Result<Checkpoint, CheckpointError> {
        let note = Note::parse(note)?;
        note.verify(key_name, key)?;
        Checkpoint::parse_body(note.text())
    }
}

/// An Ed25519 note verifier key with its name, printed as Go's `sumdb/note`
/// and C2SP tooling print it: `<name>+<hex key id>+<base64(0x01 || key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key: VerifyingKey,
}

impl VerifierKey {
    /// A verifier key for `key` under `name`.
    ///
    /// # Errors
    /// [`CheckpointError::BadKeyName`].
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CheckpointError> {
        check_key_name(name)?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, &self.key)
    }

    /// [`Checkpoint::verify`] with this key.
    ///
    /// # Errors
    /// As [`Checkpoint::verify`].
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::verify(note, &self.name, &self.key)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut typed = Vec::with_capacity(33);
        typed.push(SIG_TYPE_ED25519);
        typed.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            BASE64.encode(typed)
        )
    }
}

impl FromStr for VerifierKey {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The name holds no '+', but the base64 may: split at the first two.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CheckpointError::BadVerifierKey(
                "expected <name>+<id>+<key>",
            ));
        };
        check_key_name(name)?;
        let mut id = [0u8; 4];
        if id_hex.len() != 8 || id_hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(CheckpointError::BadVerifierKey(
                "key id is 8 lowercase hex digits",
            ));
        }
        hex::decode_to_slice(id_hex, &mut id)
            .map_err(|_| CheckpointError::BadVerifierKey("key id is 8 lowercase hex digits"))?;
        let typed = BASE64
            .decode(b64)
            .map_err(|_| CheckpointError::BadVerifierKey("key is not standard base64"))?;
        let [SIG_TYPE_ED25519, key @ ..] = typed.as_slice() else {
            return Err(CheckpointError::BadVerifierKey("not an Ed25519 key"));
        };
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| CheckpointError::BadVerifierKey("Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| CheckpointError::BadVerifierKey("not a valid Ed25519 point"))?;
        let vk = VerifierKey::new(name, key)?;
        if vk.key_id() != id {
            return Err(CheckpointError::BadVerifierKey(
                "key id does not match name and key",
            ));
        }
        Ok(vk)
    }
}

#[cfg(test)]
mod tests;
