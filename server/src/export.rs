//! Export of a case as a package that proves itself offline
//! (`docs/FORMAT.md` §10): [`plan`] decides and signs everything small (it
//! appends the `export` custody leaves first, then signs the checkpoint
//! that proves them, so the package proves its own export); [`write`]
//! streams the ustar file, segment bytes straight from the blob store,
//! checking each against its signed hash on the way. The command line and
//! `GET /api/cases/{number}/export` share both.
//!
//! What the package covers, per device: from the first to the last entry of
//! the case's recordings (`casecheck::case_compliance`'s attachments), plus
//! the entry before and the entry after (or the chain head), with the
//! receipts, the media held, and inclusion proofs of every entry leaf and of
//! the custody leaves about the case or those entries.
//! Tests: `http/export_tests.rs` (through the API, with every tampering).

mod file;
#[cfg(test)]
mod golden_tests;
mod readme;
mod write;

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::chainlog;
use fieldseal_proto::checkpoint::VerifierKey;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::identity::{sha256, DeviceId, Hash32};
use fieldseal_proto::leaf::{CustodyAction, Leaf};
use fieldseal_proto::package::{self as pkg, DeviceRange, Manifest, ManifestMember, Withheld};
use fieldseal_proto::receipt::Receipt;
use serde::{Deserialize, Serialize};

use crate::audit::Access;
use crate::catalogue::Catalogue;
use crate::chainindex::ChainIndex;
use crate::Shared;

pub use file::{to_file, Written};
pub use write::{write, BlobOpener};

/// Why a package could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The output file exists: an export never overwrites.
    #[error("{} exists: not overwriting it", .0.display())]
    Exists(std::path::PathBuf),
    /// No such case.
    #[error("no case {0}")]
    NoCase(String),
    /// A device of the case is not enrolled here.
    #[error("device {0} of the case is not enrolled")]
    NoDevice(DeviceId),
    /// The archive does not hold an entry the range needs.
    #[error("the archive has no accepted entry {1} of device {0}")]
    NoEntry(DeviceId, u64),
    /// A blob does not hash to what its entry signed: the package would not
    /// verify. Run `scrub`.
    #[error("blob {0} is damaged (it does not hash to its name): run scrub first")]
    Damaged(String),
    /// The index, a chain log, the compliance check or the log failed.
    #[error("{0}")]
    Archive(String),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn archive(e: impl std::fmt::Display) -> ExportError {
    ExportError::Archive(e.to_string())
}

/// One member of the package to be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMember {
    /// Its name in the archive.
    pub name: String,
    /// Length.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The bytes, base64, for everything but media; media is read from the
    /// blob named by `sha256`.
    pub bytes: Option<String>,
}

/// Everything of a package but the segment bytes: what the control socket
/// hands the command line, which then reads the blobs itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The case.
    pub case: String,
    /// The export id.
    pub export_id: String,
    /// Export time, µs.
    pub created_us: i64,
    /// The members, in package order.
    pub members: Vec<PlanMember>,
    /// Fingerprints of the CA, receipt and log keys.
    pub fingerprints: [String; 3],
}

impl Plan {
    /// The package's length in bytes.
    pub fn len(&self) -> u64 {
        let block = fieldseal_proto::ustar::BLOCK as u64;
        self.members
            .iter()
            .map(|m| block + m.size + fieldseal_proto::ustar::padding(m.size) as u64)
            .sum::<u64>()
            + 2 * block
    }

    /// Never: a package holds at least its keys and manifest.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes of media to copy.
    pub fn media_bytes(&self) -> u64 {
        self.members
            .iter()
            .filter(|m| m.bytes.is_none())
            .map(|m| m.size)
            .sum()
    }
}

/// What the package holds of one device.
struct DevicePart {
    range: DeviceRange,
    key: VerifyingKey,
    chain: Vec<u8>,
    receipts: Vec<Receipt>,
    receipts_log: Vec<u8>,
    media: Vec<(u64, Hash32, u64)>,
}

/// Make the plan of case `number`'s package: compliance, the ranges, the
/// `export` leaves (by `actor`), a fresh checkpoint, proofs, manifest.
///
/// # Errors
/// No such case; index, chain log or log failures.
pub fn plan(
    shared: &Shared,
    catalogue: &Catalogue,
    number: &str,
    actor: &str,
    now_us: i64,
) -> Result<Plan, ExportError> {
    plan_as(shared, catalogue, number, actor, now_us, &new_export_id())
}

/// As [`plan`], under the given export id. Everything else in a package
/// follows from the archive, the keys and `now_us` (the export leaves and
/// the checkpoint carry it, the manifest and the tar headers too), so the
/// same archive, time and id give the same bytes: the golden package of
/// `proto/tests/vectors/` is made this way (`golden_tests.rs`).
///
/// # Errors
/// As [`plan`].
pub fn plan_as(
    shared: &Shared,
    catalogue: &Catalogue,
    number: &str,
    actor: &str,
    now_us: i64,
    export_id: &str,
) -> Result<Plan, ExportError> {
    let db = &shared.db;
    let case = db
        .case(number)
        .map_err(archive)?
        .ok_or_else(|| ExportError::NoCase(number.to_owned()))?;
    let report =
        crate::casecheck::case_compliance(shared, catalogue, &case, now_us).map_err(archive)?;
    let mut ranges: BTreeMap<DeviceId, (u64, u64)> = BTreeMap::new();
    for r in report.activities.iter().flat_map(|a| &a.recordings) {
        let e = ranges.entry(r.device).or_insert((r.first_seq, r.last_seq));
        *e = (e.0.min(r.first_seq), e.1.max(r.last_seq));
    }
    let parts = ranges
        .iter()
        .map(|(&d, &(a, b))| device_part(shared, d, a, b))
        .collect::<Result<Vec<_>, _>>()?;
    let export_id = export_id.to_owned();
    for p in &parts {
        let id: DeviceId = p.range.device.parse().expect("our own device id");
        let a = Access::new(CustodyAction::Export, actor)
            .entries(id, p.range.first_seq, p.range.last_seq)
            .case(number)
            .detail(pkg::export_detail(&export_id));
        crate::audit::record_blocking_at(shared, &a, now_us).map_err(archive)?;
    }
    let key = &shared.receipt_key;
    crate::tlog::checkpoint(&shared.dir, db, &shared.cfg, key, now_us).map_err(archive)?;
    let (cp, note) = crate::tlog::latest(&shared.dir, &shared.cfg, key).map_err(archive)?;
    let proofs = proofs(shared, number, &parts, cp.size)?;
    let compliance = serde_json::to_vec_pretty(&report).map_err(archive)?;
    let vkey = VerifierKey::new(&crate::tlog::origin(&shared.cfg), key.verifying_key())
        .map_err(archive)?;
    let ca_key = fieldseal_proto::x509::Certificate::parse(&shared.ca.cert_der)
        .ok()
        .and_then(|c| VerifyingKey::from_bytes(&c.subject_key).ok())
        .ok_or_else(|| archive("ca.crt is not an Ed25519 certificate"))?;
    let fingerprints = [
        pkg::fingerprint(&ca_key),
        pkg::fingerprint(&key.verifying_key()),
        pkg::fingerprint(vkey.key()),
    ];
    let mut m = Members::default();
    let readme = readme::text(number, &export_id, &fingerprints, &vkey.to_string());
    m.bytes(pkg::readme(), readme.into_bytes());
    m.bytes(pkg::ca_cert(), shared.ca.cert_der.clone());
    m.bytes(pkg::receipt_pub(), pkg::key_member(&key.verifying_key()));
    m.bytes(pkg::log_vkey(), format!("{vkey}\n").into_bytes());
    let mut withheld = Vec::new();
    for p in &parts {
        device_members(shared, p, &mut m, &mut withheld)?;
    }
    m.bytes(pkg::compliance(), compliance);
    m.bytes(pkg::checkpoint(), note.into_bytes());
    m.bytes(
        pkg::proofs(),
        serde_json::to_vec_pretty(&proofs).map_err(archive)?,
    );
    let manifest = Manifest {
        format: pkg::FORMAT.into(),
        case: number.to_owned(),
        export_id: export_id.clone(),
        created_us: now_us,
        devices: parts.iter().map(|p| p.range.clone()).collect(),
        withheld,
        members: m.listed(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(archive)?;
    let sig = pkg::sign_manifest(&json, key);
    m.bytes(pkg::manifest(), json);
    m.bytes(pkg::manifest_sig(), sig);
    Ok(Plan {
        case: number.to_owned(),
        export_id,
        created_us: now_us,
        members: m.0,
        fingerprints,
    })
}

/// 128 random bits, hex.
fn new_export_id() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// The members as they are added.
#[derive(Default)]
struct Members(Vec<PlanMember>);

impl Members {
    fn bytes(&mut self, name: String, data: Vec<u8>) {
        use base64::Engine;
        self.0.push(PlanMember {
            name,
            size: data.len() as u64,
            sha256: hex::encode(sha256(&data)),
            bytes: Some(base64::engine::general_purpose::STANDARD.encode(data)),
        });
    }
    fn blob(&mut self, name: String, hash: &Hash32, size: u64) {
        self.0.push(PlanMember {
            name,
            size,
            sha256: hex::encode(hash),
            bytes: None,
        });
    }
    fn listed(&self) -> Vec<ManifestMember> {
        self.0
            .iter()
            .map(|m| ManifestMember {
                name: m.name.clone(),
                size: m.size,
                sha256: m.sha256.clone(),
            })
            .collect()
    }
}

/// Entries `first-1 ..= last+1` (or to the head) of device `d`, their
/// receipts and the media they name.
fn device_part(
    shared: &Shared,
    d: DeviceId,
    first: u64,
    last: u64,
) -> Result<DevicePart, ExportError> {
    let db = &shared.db;
    let key = db
        .device(d)
        .map_err(archive)?
        .ok_or(ExportError::NoDevice(d))?
        .key;
    let head = db.head(d).map_err(archive)?.next_seq.saturating_sub(1);
    let (from, to) = (
        first.saturating_sub(1),
        if last < head { last + 1 } else { last },
    );
    let count = usize::try_from(to - from + 1).map_err(archive)?;
    let entries =
        crate::archive::accepted_range(&shared.dir, db, d, from, count).map_err(archive)?;
    let (mut chain, mut receipts, mut receipts_log, mut media) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, seq) in (from..=to).enumerate() {
        let (e, bytes) = entries
            .get(i)
            .filter(|(e, _)| e.seq() == seq)
            .ok_or(ExportError::NoEntry(d, seq))?;
        let a = db
            .entry(d, seq)
            .map_err(archive)?
            .ok_or(ExportError::NoEntry(d, seq))?;
        chainlog::put_record(&mut chain, bytes);
        chainlog::put_record(&mut receipts_log, &a.receipt);
        receipts.push(Receipt::from_bytes(&a.receipt).map_err(archive)?);
        if let Some(s) = e.entry.segment() {
            media.push((seq, s.media_sha256, s.media_len));
        }
    }
    let range = DeviceRange {
        device: d.to_string(),
        first_seq: first,
        last_seq: last,
        from_seq: from,
        to_seq: to,
        head_seq: head,
    };
    Ok(DevicePart {
        range,
        key,
        chain,
        receipts,
        receipts_log,
        media,
    })
}

/// A device's members: key, certificate (issued now by the CA for the
/// enrolled key), chain, receipts, media held; what is not held, withheld.
fn device_members(
    shared: &Shared,
    p: &DevicePart,
    m: &mut Members,
    withheld: &mut Vec<Withheld>,
) -> Result<(), ExportError> {
    let d = DeviceId::from_key(&p.key);
    let cert = shared
        .ca
        .issue_device_cert(p.key.as_bytes())
        .map_err(archive)?;
    m.bytes(pkg::device_pub(d), pkg::key_member(&p.key));
    m.bytes(pkg::device_crt(d), cert);
    m.bytes(pkg::chain_log(d), p.chain.clone());
    m.bytes(pkg::receipts_log(d), p.receipts_log.clone());
    for &(seq, hash, len) in &p.media {
        if shared.db.has_media(d, seq).map_err(archive)? {
            m.blob(pkg::media(d, seq), &hash, len);
            continue;
        }
        let reason = match shared.db.expired(d, seq).map_err(archive)? {
            Some(_) => "expired under the retention rule (an expire leaf of the log says when)",
            None => "not uploaded to the archive (yet)",
        };
        withheld.push(Withheld {
            device: d.to_string(),
            seq,
            reason: reason.into(),
        });
    }
    Ok(())
}

/// Inclusion proofs of every entry leaf of the parts and of the custody
/// leaves about the case or its entries, against the tree of `size`.
fn proofs(
    shared: &Shared,
    number: &str,
    parts: &[DevicePart],
    size: u64,
) -> Result<pkg::Proofs, ExportError> {
    let db = &shared.db;
    let mut leaves: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for p in parts {
        for r in &p.receipts {
            let leaf = Leaf::Entry {
                device: r.device_id,
                seq: r.seq,
                entry_hash: r.entry_hash,
                server_time_us: r.server_time_us,
            };
            leaves.insert(r.log_index, leaf.to_bytes());
        }
    }
    for item in db.custody_leaves(0) {
        let (index, data) = item.map_err(archive)?;
        if index >= size {
            break;
        }
        if concerns(&data, number, parts) {
            leaves.insert(index, data);
        }
    }
    let mut out = Vec::with_capacity(leaves.len());
    for (index, data) in leaves {
        let path = db.log_inclusion(index, size).map_err(archive)?;
        out.push(pkg::ProvedLeaf {
            index,
            leaf: hex::encode(&data),
            proof: path.iter().map(hex::encode).collect(),
        });
    }
    Ok(pkg::Proofs {
        tree_size: size,
        leaves: out,
    })
}

/// Is this custody leaf about the case, or about entries in the package?
fn concerns(data: &[u8], number: &str, parts: &[DevicePart]) -> bool {
    let Ok(Leaf::Custody {
        device,
        first_seq,
        last_seq,
        case,
        ..
    }) = Leaf::from_bytes(data)
    else {
        return false;
    };
    case.as_deref() == Some(number)
        || parts.iter().any(|p| {
            p.range.device == device.to_string()
                && first_seq <= p.range.to_seq
                && last_seq >= p.range.from_seq
        })
}
