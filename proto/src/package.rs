//! The export package: one POSIX ustar file that proves a case's recordings
//! offline (`docs/FORMAT.md` §10). This module owns its member names, the
//! JSON of its manifest and proofs, the bytes the server signs over the
//! manifest, and (in `package/verify.rs`) the verifier, which takes the
//! members as bytes and does no I/O.
//!
//! ```text
//! fieldseal-package/README.txt                       how to verify, in Chinese and English
//! fieldseal-package/keys/ca.crt                      the server's device CA certificate (DER)
//! fieldseal-package/keys/receipt.pub                 the receipt key, 64 hex digits + LF
//! fieldseal-package/keys/log.vkey                    the checkpoint verifier key (§6.6) + LF
//! fieldseal-package/devices/<id>/device.pub          per device, in device id order
//! fieldseal-package/devices/<id>/device.crt
//! fieldseal-package/devices/<id>/chain.log
//! fieldseal-package/devices/<id>/receipts.log
//! fieldseal-package/devices/<id>/media/<seq:012>.ts  in seq order
//! fieldseal-package/compliance.json
//! fieldseal-package/log/checkpoint.txt
//! fieldseal-package/log/proofs.json
//! fieldseal-package/manifest.json
//! fieldseal-package/manifest.sig                     hex(Ed25519(receipt key, MANIFEST_PREFIX ‖ manifest.json)) + LF
//! ```

pub mod verify;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::identity::{sha256, DeviceId, Hash32, Signer};

pub use verify::{verify, verify_with, Member, PackageFinding, PackageReport};

/// The folder every member lives in.
pub const ROOT: &str = "fieldseal-package/";
/// The manifest's `format`.
pub const FORMAT: &str = "fieldseal-package/1";
/// Domain separation of the manifest signature.
pub const MANIFEST_PREFIX: &[u8] = b"fieldseal/package/v1\0";
/// The largest member that is not media a verifier reads into memory
/// (chain logs, receipts, proofs of a long case stay far below it).
pub const MAX_META: u64 = 256 << 20;

/// `fieldseal-package/README.txt`.
pub fn readme() -> String {
    format!("{ROOT}README.txt")
}
/// `fieldseal-package/keys/ca.crt`.
pub fn ca_cert() -> String {
    format!("{ROOT}keys/ca.crt")
}
/// `fieldseal-package/keys/receipt.pub`.
pub fn receipt_pub() -> String {
    format!("{ROOT}keys/receipt.pub")
}
/// `fieldseal-package/keys/log.vkey`.
pub fn log_vkey() -> String {
    format!("{ROOT}keys/log.vkey")
}
/// `fieldseal-package/devices/<id>/device.pub`.
pub fn device_pub(d: DeviceId) -> String {
    format!("{ROOT}devices/{d}/device.pub")
}
/// `fieldseal-package/devices/<id>/device.crt`.
pub fn device_crt(d: DeviceId) -> String {
    format!("{ROOT}devices/{d}/device.crt")
}
/// `fieldseal-package/devices/<id>/chain.log`.
pub fn chain_log(d: DeviceId) -> String {
    format!("{ROOT}devices/{d}/chain.log")
}
/// `fieldseal-package/devices/<id>/receipts.log`.
pub fn receipts_log(d: DeviceId) -> String {
    format!("{ROOT}devices/{d}/receipts.log")
}
/// `fieldseal-package/devices/<id>/media/<seq, 12 digits>.ts`.
pub fn media(d: DeviceId, seq: u64) -> String {
    format!("{ROOT}devices/{d}/media/{seq:012}.ts")
}
/// `fieldseal-package/compliance.json`.
pub fn compliance() -> String {
    format!("{ROOT}compliance.json")
}
/// `fieldseal-package/log/checkpoint.txt`.
pub fn checkpoint() -> String {
    format!("{ROOT}log/checkpoint.txt")
}
/// `fieldseal-package/log/proofs.json`.
pub fn proofs() -> String {
    format!("{ROOT}log/proofs.json")
}
/// `fieldseal-package/manifest.json`.
pub fn manifest() -> String {
    format!("{ROOT}manifest.json")
}
/// `fieldseal-package/manifest.sig`.
pub fn manifest_sig() -> String {
    format!("{ROOT}manifest.sig")
}

/// Is this member a segment's media (hashed, never held in memory whole)?
pub fn is_media(name: &str) -> bool {
    name.starts_with(&format!("{ROOT}devices/")) && name.contains("/media/")
}

/// The export custody leaf's `detail` for the export `id` (§6.8 action 2).
pub fn export_detail(id: &str) -> String {
    format!("package {id}")
}

/// SHA-256 fingerprint of an Ed25519 public key: the hash of its 32 bytes,
/// lowercase hex. What a court compares with the published ones.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(sha256(key.as_bytes()))
}

/// The manifest: what the package holds, signed by the receipt key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The case number.
    pub case: String,
    /// 32 lowercase hex digits naming this export; the export leaves' detail
    /// is `package <export_id>`.
    pub export_id: String,
    /// Server time of the export, µs since the epoch.
    pub created_us: i64,
    /// Per device, in device id order: what the package covers.
    pub devices: Vec<DeviceRange>,
    /// Segments in the chains whose media is not in the package, and why.
    pub withheld: Vec<Withheld>,
    /// Every member before `manifest.json`, in package order.
    pub members: Vec<ManifestMember>,
}

/// What the package holds of one device's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRange {
    /// Device id, 16 hex digits.
    pub device: String,
    /// First seq of the case's recordings.
    pub first_seq: u64,
    /// Last seq of the case's recordings (inclusive).
    pub last_seq: u64,
    /// First seq in `chain.log`: `first_seq − 1` (the neighbour that proves
    /// the start), or 0 when `first_seq` is 0.
    pub from_seq: u64,
    /// Last seq in `chain.log`: `last_seq + 1`, or `last_seq` when it was
    /// the device's chain head at export.
    pub to_seq: u64,
    /// The device's chain head at export.
    pub head_seq: u64,
}

/// A segment whose media the package does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withheld {
    /// Device id.
    pub device: String,
    /// The segment's seq.
    pub seq: u64,
    /// Why (not yet uploaded, expired by the retention rule).
    pub reason: String,
}

/// One member as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestMember {
    /// Its name.
    pub name: String,
    /// Its length.
    pub size: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// `log/proofs.json`: an inclusion proof for every leaf the package relies
/// on, all against the one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proofs {
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// By leaf index, ascending.
    pub leaves: Vec<ProvedLeaf>,
}

/// One leaf with its audit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvedLeaf {
    /// Leaf index.
    pub index: u64,
    /// Leaf data (§6.8), hex.
    pub leaf: String,
    /// Audit path (§6.2), hex, the leaf's sibling first.
    pub proof: Vec<String>,
}

/// The bytes the receipt key signs over a manifest.
pub fn manifest_signing_bytes(manifest_json: &[u8]) -> Vec<u8> {
    [MANIFEST_PREFIX, manifest_json].concat()
}

/// The `manifest.sig` member for `manifest_json`.
pub fn sign_manifest(manifest_json: &[u8], key: &impl Signer) -> Vec<u8> {
    let sig = key.sign(&manifest_signing_bytes(manifest_json));
    format!("{}\n", hex::encode(sig.to_bytes())).into_bytes()
}

/// Check `manifest.sig` (128 hex digits and a LF) over `manifest_json`.
///
/// # Errors
/// A description of what is wrong.
pub fn check_manifest_sig(
    manifest_json: &[u8],
    sig: &[u8],
    key: &VerifyingKey,
) -> Result<(), &'static str> {
    let text = sig
        .strip_suffix(b"\n")
        .ok_or("manifest.sig does not end with a line feed")?;
    let mut s = [0u8; 64];
    if text.iter().any(u8::is_ascii_uppercase) {
        return Err("manifest.sig is not lowercase hex");
    }
    hex::decode_to_slice(text, &mut s).map_err(|_| "manifest.sig is not 128 hex digits")?;
    key.verify_strict(
        &manifest_signing_bytes(manifest_json),
        &Signature::from_bytes(&s),
    )
    .map_err(|_| "the manifest's signature does not verify with the receipt key")
}

/// A key member: 64 lowercase hex digits and a LF.
pub fn key_member(key: &VerifyingKey) -> Vec<u8> {
    format!("{}\n", hex::encode(key.as_bytes())).into_bytes()
}

/// Read a key member as [`key_member`] writes it.
///
/// # Errors
/// A description of what is wrong.
pub fn parse_key_member(bytes: &[u8]) -> Result<VerifyingKey, &'static str> {
    let text = bytes
        .strip_suffix(b"\n")
        .ok_or("key does not end with a line feed")?;
    if text.iter().any(u8::is_ascii_uppercase) {
        return Err("key is not lowercase hex");
    }
    let mut k = [0u8; 32];
    hex::decode_to_slice(text, &mut k).map_err(|_| "key is not 64 hex digits")?;
    VerifyingKey::from_bytes(&k).map_err(|_| "key is not an Ed25519 point")
}

/// Parse 64 hex digits.
pub(crate) fn hash_hex(s: &str) -> Option<Hash32> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).ok()?;
    Some(h)
}
