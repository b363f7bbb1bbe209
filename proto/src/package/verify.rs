//! The package verifier (`docs/FORMAT.md` §10.5): from the members of a
//! package (names, hashes, and the bytes of every member that is not
//! media), a [`PackageReport`] of everything wrong. It never stops at the
//! first problem; `ok` is true only without findings.
//!
//! ```text
//! keys ─► manifest signature ─► members = manifest
//!   │
//!   ├─► per device: certificate ← CA; chain (chain.rs) with media; receipts ─► entry leaves
//!   └─► checkpoint (log key) ─► inclusion of every entry leaf and custody leaf ─► export leaves
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::chain::{self, FindingKind, MediaObservation, SignatureCheck, VerifyOptions};
use crate::chainlog;
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::codec::{Decode, Encode};
use crate::entry::SignedEntry;
use crate::identity::{sha256, DeviceId, Hash32};
use crate::leaf::{CustodyAction, Leaf};
use crate::receipt::Receipt;
use crate::x509::Certificate;

use super::{
    check_manifest_sig, fingerprint, hash_hex, parse_key_member, DeviceRange, Manifest, Proofs,
    Withheld, FORMAT,
};

/// One member of a package as the caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// Its name in the archive.
    pub name: String,
    /// Its length.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: Hash32,
    /// The bytes; `None` for media, which the caller hashes as it reads.
    pub data: Option<&'a [u8]>,
}

impl<'a> Member<'a> {
    /// A member held in memory.
    pub fn from_bytes(name: &str, data: &'a [u8]) -> Member<'a> {
        Member {
            name: name.to_owned(),
            size: data.len() as u64,
            sha256: sha256(data),
            data: Some(data),
        }
    }
}

/// One thing wrong with a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageFinding {
    /// What (the kinds of §10.5, or a chain finding kind of §5).
    pub kind: &'static str,
    /// The member concerned, if one.
    pub member: Option<String>,
    /// The device concerned, if one.
    pub device: Option<DeviceId>,
    /// The entry concerned, if one.
    pub seq: Option<u64>,
    /// For humans.
    pub detail: String,
}

/// The key fingerprints a court compares with the published ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Fingerprints {
    /// SHA-256 of the CA's Ed25519 public key, hex.
    pub ca: Option<String>,
    /// SHA-256 of the receipt key, hex.
    pub receipt: Option<String>,
    /// SHA-256 of the log (checkpoint) key, hex.
    pub log: Option<String>,
    /// The log's verifier key as published (§6.6).
    pub log_vkey: Option<String>,
}

/// A custody leaf of the package, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustodyLine {
    /// Leaf index.
    pub index: u64,
    /// Server time, µs.
    pub time_us: i64,
    /// Action.
    pub action: CustodyAction,
    /// Who.
    pub actor: String,
    /// Whose recordings.
    pub device: DeviceId,
    /// First seq.
    pub first_seq: u64,
    /// Last seq.
    pub last_seq: u64,
    /// Case.
    pub case: Option<String>,
    /// Detail.
    pub detail: Option<String>,
}

/// The verification report of a package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackageReport {
    /// True iff `findings` is empty.
    pub ok: bool,
    /// The case, from the manifest.
    pub case: Option<String>,
    /// The export id, from the manifest.
    pub export_id: Option<String>,
    /// Export time, µs.
    pub created_us: Option<i64>,
    /// Key fingerprints.
    pub fingerprints: Fingerprints,
    /// The checkpoint's tree size.
    pub tree_size: Option<u64>,
    /// The checkpoint's time, Unix seconds.
    pub checkpoint_time: Option<u64>,
    /// Members in the archive.
    pub members: u64,
    /// One chain report per device (§5).
    pub devices: Vec<chain::Report>,
    /// Segments whose media the manifest says is not in the package.
    pub withheld: Vec<Withheld>,
    /// The custody leaves, proved.
    pub custody: Vec<CustodyLine>,
    /// Everything wrong.
    pub findings: Vec<PackageFinding>,
}

/// Findings as they are found.
#[derive(Default)]
struct Found(Vec<PackageFinding>);

impl Found {
    fn add(&mut self, kind: &'static str, detail: impl Into<String>) -> &mut PackageFinding {
        self.0.push(PackageFinding {
            kind,
            member: None,
            device: None,
            seq: None,
            detail: detail.into(),
        });
        self.0.last_mut().expect("just pushed")
    }
}

impl PackageFinding {
    fn member(&mut self, m: &str) -> &mut Self {
        self.member = Some(m.to_owned());
        self
    }
    fn at(&mut self, d: DeviceId, seq: Option<u64>) -> &mut Self {
        self.device = Some(d);
        self.seq = seq;
        self
    }
}

/// The package as the verifier goes through it.
struct Ctx<'m, 'a> {
    by_name: HashMap<&'m str, &'m Member<'a>>,
    found: Found,
    receipt_key: Option<VerifyingKey>,
    ca: Option<(VerifyingKey, Vec<u8>)>,
    proofs: HashMap<u64, (Vec<u8>, Vec<Hash32>)>,
    checkpoint: Option<Checkpoint>,
    /// How each device's chain checks its signatures.
    signatures: SignatureCheck,
}

impl<'a> Ctx<'_, 'a> {
    /// The bytes of a member the package must have.
    fn data(&mut self, name: &str) -> Option<&'a [u8]> {
        match self.by_name.get(name).map(|m| m.data) {
            Some(Some(d)) => Some(d),
            Some(None) => {
                self.found
                    .add("member-missing", "held as media, but it is not media")
                    .member(name);
                None
            }
            None => {
                self.found
                    .add("member-missing", "the package has no such member")
                    .member(name);
                None
            }
        }
    }

    /// Is `leaf` leaf `index` of the checkpoint's tree? Findings say why not.
    fn prove(&mut self, index: u64, leaf: &[u8], what: &str) -> bool {
        let Some(cp) = &self.checkpoint else {
            return false; // the checkpoint finding says enough
        };
        let Some((data, path)) = self.proofs.get(&index) else {
            self.found.add(
                "inclusion",
                format!("no inclusion proof of leaf {index} ({what})"),
            );
            return false;
        };
        if data != leaf {
            self.found.add(
                "inclusion",
                format!("leaf {index} in proofs.json is not the leaf of {what}"),
            );
            return false;
        }
        let h = crate::merkle::leaf_hash(leaf);
        match crate::merkle::verify_inclusion(&h, index, cp.size, path, &cp.root) {
            Ok(()) => true,
            Err(e) => {
                self.found.add(
                    "inclusion",
                    format!("leaf {index} ({what}) is not proved in the checkpoint: {e}"),
                );
                false
            }
        }
    }
}

/// Verify a package from its members, in archive order.
pub fn verify(members: &[Member<'_>]) -> PackageReport {
    verify_with(members, SignatureCheck::default())
}

/// [`verify`], with the chains' signatures checked as `signatures` says (on
/// more threads, say); the report is the same.
pub fn verify_with(members: &[Member<'_>], signatures: SignatureCheck) -> PackageReport {
    let mut cx = Ctx {
        signatures,
        by_name: HashMap::new(),
        found: Found::default(),
        receipt_key: None,
        ca: None,
        proofs: HashMap::new(),
        checkpoint: None,
    };
    for m in members {
        if cx.by_name.insert(&m.name, m).is_some() {
            cx.found
                .add("member-extra", "the name appears more than once")
                .member(&m.name);
        }
    }
    let mut report = PackageReport {
        ok: false,
        case: None,
        export_id: None,
        created_us: None,
        fingerprints: Fingerprints::default(),
        tree_size: None,
        checkpoint_time: None,
        members: members.len() as u64,
        devices: Vec::new(),
        withheld: Vec::new(),
        custody: Vec::new(),
        findings: Vec::new(),
    };
    read_keys(&mut cx, &mut report.fingerprints);
    let manifest = read_manifest(&mut cx, members);
    read_log(&mut cx, &mut report);
    if let Some(m) = &manifest {
        report.case = Some(m.case.clone());
        report.export_id = Some(m.export_id.clone());
        report.created_us = Some(m.created_us);
        report.withheld.clone_from(&m.withheld);
        for d in &m.devices {
            if let Some(r) = verify_device(&mut cx, m, d) {
                report.devices.push(r);
            }
        }
        report.custody = custody(&mut cx, m);
        check_compliance(&mut cx, &m.case);
    }
    report.findings = cx.found.0;
    report.ok = report.findings.is_empty();
    report
}

/// The three keys: the receipt key, the log's verifier key, the CA.
fn read_keys(cx: &mut Ctx<'_, '_>, fp: &mut Fingerprints) {
    let name = super::receipt_pub();
    if let Some(d) = cx.data(&name) {
        match parse_key_member(d) {
            Ok(k) => {
                fp.receipt = Some(fingerprint(&k));
                cx.receipt_key = Some(k);
            }
            Err(e) => _ = cx.found.add("key", e).member(&name),
        }
    }
    let name = super::ca_cert();
    if let Some(d) = cx.data(&name) {
        match ca_key(d) {
            Ok(k) => {
                fp.ca = Some(fingerprint(&k));
                let subject = Certificate::parse(d).expect("parsed").subject.to_vec();
                cx.ca = Some((k, subject));
            }
            Err(e) => _ = cx.found.add("certificate", e).member(&name),
        }
    }
}

/// The CA's key from its self-signed certificate.
fn ca_key(der: &[u8]) -> Result<VerifyingKey, String> {
    let c = Certificate::parse(der).map_err(|e| format!("CA {e}"))?;
    let k = VerifyingKey::from_bytes(&c.subject_key)
        .map_err(|_| "the CA key is not an Ed25519 point".to_owned())?;
    c.verify_signed_by(&k)
        .map_err(|e| format!("CA certificate is not self-signed: {e}"))?;
    if c.issuer != c.subject {
        return Err("CA certificate: issuer is not its subject".into());
    }
    Ok(k)
}

/// The manifest, its signature, and the members it lists.
fn read_manifest(cx: &mut Ctx<'_, '_>, members: &[Member<'_>]) -> Option<Manifest> {
    let (mname, sname) = (super::manifest(), super::manifest_sig());
    let json = cx.data(&mname)?;
    let manifest: Manifest = match serde_json::from_slice(json) {
        Ok(m) => m,
        Err(e) => {
            cx.found
                .add("manifest", format!("does not parse: {e}"))
                .member(&mname);
            return None;
        }
    };
    if manifest.format != FORMAT {
        cx.found
            .add(
                "manifest",
                format!("format {:?} is not {FORMAT}", manifest.format),
            )
            .member(&mname);
        return None;
    }
    if let (Some(sig), Some(key)) = (cx.data(&sname), cx.receipt_key) {
        if let Err(e) = check_manifest_sig(json, sig, &key) {
            cx.found.add("manifest-signature", e).member(&sname);
        }
    }
    // The archive must end with the manifest and its signature.
    let tail: Vec<&str> = members
        .iter()
        .rev()
        .take(2)
        .map(|m| m.name.as_str())
        .collect();
    if tail != [sname.as_str(), mname.as_str()] {
        cx.found.add(
            "member-order",
            "the package does not end with manifest.json and manifest.sig",
        );
    }
    compare_members(cx, &manifest, members, [&mname, &sname]);
    Some(manifest)
}

/// Every member the manifest lists, with its size and hash, and no other.
fn compare_members(cx: &mut Ctx<'_, '_>, m: &Manifest, members: &[Member<'_>], own: [&str; 2]) {
    let listed: HashSet<&str> = m.members.iter().map(|x| x.name.as_str()).collect();
    for x in &m.members {
        match cx.by_name.get(x.name.as_str()) {
            None => {
                _ = cx
                    .found
                    .add(
                        "member-missing",
                        "listed in the manifest, not in the package",
                    )
                    .member(&x.name)
            }
            Some(a) if hash_hex(&x.sha256) != Some(a.sha256) || a.size != x.size => {
                let detail = format!(
                    "{} bytes with SHA-256 {}; the manifest says {} bytes with {}",
                    a.size,
                    hex::encode(a.sha256),
                    x.size,
                    x.sha256
                );
                cx.found.add("member-altered", detail).member(&x.name);
            }
            Some(_) => {}
        }
    }
    for a in members {
        if !listed.contains(a.name.as_str()) && !own.contains(&a.name.as_str()) {
            cx.found
                .add("member-extra", "in the package, not in the manifest")
                .member(&a.name);
        }
    }
    let order: Vec<&str> = members
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| listed.contains(n))
        .collect();
    let want: Vec<&str> = m
        .members
        .iter()
        .map(|x| x.name.as_str())
        .filter(|n| cx.by_name.contains_key(n))
        .collect();
    if order != want {
        cx.found.add(
            "member-order",
            "the members are not in the order the manifest lists them",
        );
    }
}

/// The checkpoint (log key) and the proofs.
fn read_log(cx: &mut Ctx<'_, '_>, report: &mut PackageReport) {
    let vname = super::log_vkey();
    let vkey = cx.data(&vname).and_then(|d| {
        let parsed = std::str::from_utf8(d)
            .ok()
            .and_then(|t| t.strip_suffix('\n'))
            .ok_or_else(|| "not UTF-8 text ending in a line feed".to_owned())
            .and_then(|t| t.parse::<VerifierKey>().map_err(|e| e.to_string()));
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                cx.found.add("key", format!("log key: {e}")).member(&vname);
                None
            }
        }
    });
    if let Some(v) = &vkey {
        report.fingerprints.log = Some(fingerprint(v.key()));
        report.fingerprints.log_vkey = Some(v.to_string());
    }
    let cname = super::checkpoint();
    if let (Some(d), Some(v)) = (cx.data(&cname), &vkey) {
        match std::str::from_utf8(d)
            .map_err(|e| e.to_string())
            .and_then(|n| v.verify_checkpoint(n).map_err(|e| e.to_string()))
        {
            Ok(cp) => {
                report.tree_size = Some(cp.size);
                report.checkpoint_time = Some(cp.time_unix);
                cx.checkpoint = Some(cp);
            }
            Err(e) => {
                _ = cx
                    .found
                    .add(
                        "checkpoint",
                        format!("does not verify with the log key: {e}"),
                    )
                    .member(&cname)
            }
        }
    }
    let pname = super::proofs();
    let Some(d) = cx.data(&pname) else { return };
    let proofs: Proofs = match serde_json::from_slice(d) {
        Ok(p) => p,
        Err(e) => {
            cx.found
                .add("inclusion", format!("proofs.json does not parse: {e}"))
                .member(&pname);
            return;
        }
    };
    if cx
        .checkpoint
        .as_ref()
        .is_some_and(|c| c.size != proofs.tree_size)
    {
        cx.found
            .add(
                "inclusion",
                "proofs.json is for another tree size than the checkpoint",
            )
            .member(&pname);
    }
    for l in proofs.leaves {
        let leaf = hex::decode(&l.leaf).ok();
        let path: Option<Vec<Hash32>> = l.proof.iter().map(|h| hash_hex(h)).collect();
        match (leaf, path) {
            (Some(leaf), Some(path)) => _ = cx.proofs.insert(l.index, (leaf, path)),
            _ => {
                _ = cx
                    .found
                    .add("inclusion", format!("leaf {} is not hex", l.index))
                    .member(&pname)
            }
        }
    }
}

/// One device: its certificate, its chain with media, its receipts and
/// their leaves.
fn verify_device(cx: &mut Ctx<'_, '_>, m: &Manifest, d: &DeviceRange) -> Option<chain::Report> {
    let Ok(id) = d.device.parse::<DeviceId>() else {
        cx.found
            .add("manifest", format!("{:?} is not a device id", d.device));
        return None;
    };
    let key = device_key(cx, id)?;
    let log = cx.data(&super::chain_log(id)).unwrap_or_default();
    let (split, damage) = chainlog::split_lossy(log);
    if damage.is_some() || split.torn_tail > 0 {
        cx.found
            .add("malformed", "chain.log is damaged or torn")
            .member(&super::chain_log(id));
    }
    let entries: Vec<Option<SignedEntry>> = split
        .records
        .iter()
        .map(|r| SignedEntry::from_bytes(r).ok())
        .collect();
    check_range(cx, id, d, &entries);
    let opts = VerifyOptions {
        media: Some(observations(cx, m, id, &entries)),
        ordered: true,
        signatures: cx.signatures,
        ..Default::default()
    };
    let mut report = chain::verify_chain(&key, split.records.iter().copied(), &opts);
    // The chain before `from_seq` is not in the package, by design: the
    // one missing-entry finding for 0..from_seq is no finding here.
    report
        .findings
        .retain(|f| !(d.from_seq > 0 && f.kind == FindingKind::MissingEntry && f.seq == Some(0)));
    report.ok = report.findings.is_empty();
    for f in &report.findings {
        cx.found
            .add(f.kind.as_str(), f.detail.clone())
            .at(id, f.seq);
    }
    check_receipts(cx, id, &entries);
    Some(report)
}

/// The device key, and its certificate from the CA.
fn device_key(cx: &mut Ctx<'_, '_>, id: DeviceId) -> Option<VerifyingKey> {
    let (pname, cname) = (super::device_pub(id), super::device_crt(id));
    let key = match parse_key_member(cx.data(&pname)?) {
        Ok(k) => k,
        Err(e) => {
            cx.found.add("key", e).member(&pname).at(id, None);
            return None;
        }
    };
    if DeviceId::from_key(&key) != id {
        cx.found
            .add("key", "device.pub is not the key of this device id")
            .member(&pname)
            .at(id, None);
    }
    let Some(der) = cx.data(&cname) else {
        return Some(key);
    };
    let problem = match (Certificate::parse(der), &cx.ca) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(_), None) => None, // the CA's own finding says enough
        (Ok(c), Some((ca, subject))) => {
            if c.issuer != subject.as_slice() {
                Some("the certificate's issuer is not the CA".into())
            } else if let Err(e) = c.verify_signed_by(ca) {
                Some(format!("not issued by the CA: {e}"))
            } else if c.subject_key != *key.as_bytes() {
                Some("the CA certified another key than device.pub".into())
            } else if c.subject_cn() != Some(id.to_string()) {
                Some("the certificate's common name is not the device id".into())
            } else {
                None
            }
        }
    };
    if let Some(p) = problem {
        cx.found.add("certificate", p).member(&cname).at(id, None);
    }
    Some(key)
}

/// chain.log holds exactly `from_seq..=to_seq`, which the manifest's range
/// rules allow.
fn check_range(
    cx: &mut Ctx<'_, '_>,
    id: DeviceId,
    d: &DeviceRange,
    entries: &[Option<SignedEntry>],
) {
    let want_from = d.first_seq.saturating_sub(1);
    let want_to_ok = d.to_seq == d.last_seq.saturating_add(1)
        || (d.to_seq == d.last_seq && d.last_seq == d.head_seq);
    if d.first_seq > d.last_seq || d.from_seq != want_from || !want_to_ok || d.to_seq > d.head_seq {
        cx.found
            .add(
                "range",
                format!("the manifest's range of {id} breaks the range rules"),
            )
            .at(id, None);
    }
    let seqs: Vec<Option<u64>> = entries
        .iter()
        .map(|e| e.as_ref().map(SignedEntry::seq))
        .collect();
    let want: Vec<Option<u64>> = (d.from_seq..=d.to_seq).map(Some).collect();
    if seqs != want {
        cx.found
            .add(
                "range",
                format!(
                    "chain.log does not hold exactly entries {}..={} in order",
                    d.from_seq, d.to_seq
                ),
            )
            .member(&super::chain_log(id))
            .at(id, None);
    }
}

/// What the package holds of each segment's media.
fn observations(
    cx: &Ctx<'_, '_>,
    m: &Manifest,
    id: DeviceId,
    entries: &[Option<SignedEntry>],
) -> BTreeMap<u64, MediaObservation> {
    let withheld: HashSet<u64> = m
        .withheld
        .iter()
        .filter(|w| w.device == id.to_string())
        .map(|w| w.seq)
        .collect();
    let mut out = BTreeMap::new();
    for e in entries
        .iter()
        .flatten()
        .filter(|e| e.entry.segment().is_some())
    {
        let obs = match cx.by_name.get(super::media(id, e.seq()).as_str()) {
            Some(x) => MediaObservation::Present {
                sha256: x.sha256,
                len: x.size,
            },
            None if withheld.contains(&e.seq()) => MediaObservation::Released,
            None => MediaObservation::Absent {
                note: Some("the segment's media file is not in the package".into()),
            },
        };
        out.insert(e.seq(), obs);
    }
    out
}

/// One receipt per entry, by the receipt key, naming the entry; each
/// receipt's leaf in the checkpoint.
fn check_receipts(cx: &mut Ctx<'_, '_>, id: DeviceId, entries: &[Option<SignedEntry>]) {
    let name = super::receipts_log(id);
    let Some(bytes) = cx.data(&name) else { return };
    let records = match chainlog::split(bytes) {
        Ok(l) if l.torn_tail == 0 => l.records,
        _ => {
            cx.found
                .add("receipt", "receipts.log is damaged")
                .member(&name)
                .at(id, None);
            return;
        }
    };
    if records.len() != entries.len() {
        cx.found
            .add(
                "receipt",
                format!("{} receipts for {} entries", records.len(), entries.len()),
            )
            .member(&name)
            .at(id, None);
    }
    for (rec, e) in records.iter().zip(entries) {
        let Some(e) = e else { continue };
        let seq = Some(e.seq());
        let r = match Receipt::from_bytes(rec) {
            Ok(r) => r,
            Err(err) => {
                cx.found
                    .add("receipt", format!("does not decode: {err}"))
                    .at(id, seq);
                continue;
            }
        };
        let problem = if cx.receipt_key.is_some_and(|k| r.verify(&k).is_err()) {
            Some("the receipt's signature does not verify with the receipt key".to_owned())
        } else if r.device_id != id || r.seq != e.seq() {
            Some(format!("the receipt is for {} seq {}", r.device_id, r.seq))
        } else if r.entry_hash != e.hash() {
            Some(format!(
                "the server accepted entry hash {}, the chain holds {}",
                hex::encode(r.entry_hash),
                hex::encode(e.hash())
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            cx.found.add("receipt", p).at(id, seq);
            continue;
        }
        let leaf = Leaf::Entry {
            device: id,
            seq: r.seq,
            entry_hash: r.entry_hash,
            server_time_us: r.server_time_us,
        };
        let what = format!("entry {} of {id}", r.seq);
        let before = cx.found.0.len();
        // Without a checkpoint `prove` adds nothing: tag only its own finding.
        if !cx.prove(r.log_index, &leaf.to_bytes(), &what) && cx.found.0.len() > before {
            if let Some(f) = cx.found.0.last_mut() {
                f.at(id, seq);
            }
        }
    }
}

/// Every custody leaf of proofs.json, proved; one export leaf per device.
fn custody(cx: &mut Ctx<'_, '_>, m: &Manifest) -> Vec<CustodyLine> {
    let mut leaves: Vec<(u64, Vec<u8>)> = cx
        .proofs
        .iter()
        .map(|(&i, (l, _))| (i, l.clone()))
        .collect();
    leaves.sort_unstable();
    let mut out = Vec::new();
    for (index, data) in leaves {
        let Ok(Leaf::Custody {
            time_us,
            action,
            actor,
            device,
            first_seq,
            last_seq,
            case,
            detail,
        }) = Leaf::from_bytes(&data)
        else {
            continue; // entry leaves are proved with their receipts
        };
        if cx.prove(index, &data, "a custody leaf") {
            out.push(CustodyLine {
                index,
                time_us,
                action,
                actor,
                device,
                first_seq,
                last_seq,
                case,
                detail,
            });
        }
    }
    let want = super::export_detail(&m.export_id);
    for d in &m.devices {
        let exported = out.iter().any(|l| {
            l.action == CustodyAction::Export
                && l.device.to_string() == d.device
                && (l.first_seq, l.last_seq) == (d.first_seq, d.last_seq)
                && l.case.as_deref() == Some(m.case.as_str())
                && l.detail.as_deref() == Some(want.as_str())
        });
        if !exported {
            cx.found.add(
                "custody",
                format!(
                    "no proved export leaf of case {} for {} {}..={} naming {want:?}",
                    m.case, d.device, d.first_seq, d.last_seq
                ),
            );
        }
    }
    out
}

/// compliance.json is JSON about this case.
fn check_compliance(cx: &mut Ctx<'_, '_>, case: &str) {
    let name = super::compliance();
    let Some(d) = cx.data(&name) else { return };
    let ok = serde_json::from_slice::<serde_json::Value>(d)
        .is_ok_and(|v| v.get("case").and_then(|c| c.as_str()) == Some(case));
    if !ok {
        cx.found
            .add(
                "compliance",
                "compliance.json is not the report of this case",
            )
            .member(&name);
    }
}

impl fmt::Display for PackageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        writeln!(
            f,
            "package of case {} (export {}): {}",
            or(&self.case),
            or(&self.export_id),
            if self.ok { "OK" } else { "FAILED" }
        )?;
        writeln!(
            f,
            "compare these fingerprints (SHA-256 of each public key) with the published ones:"
        )?;
        writeln!(f, "  CA key:      {}", or(&self.fingerprints.ca))?;
        writeln!(f, "  receipt key: {}", or(&self.fingerprints.receipt))?;
        writeln!(f, "  log key:     {}", or(&self.fingerprints.log))?;
        writeln!(f, "  log verifier key: {}", or(&self.fingerprints.log_vkey))?;
        if let (Some(s), Some(t)) = (self.tree_size, self.checkpoint_time) {
            writeln!(f, "checkpoint: {s} leaves, signed at {t} (Unix seconds)")?;
        }
        writeln!(f, "{} members", self.members)?;
        for r in &self.devices {
            write!(f, "{r}")?;
        }
        for w in &self.withheld {
            writeln!(
                f,
                "media not in the package: {} seq {}: {}",
                w.device, w.seq, w.reason
            )?;
        }
        writeln!(
            f,
            "custody ({} leaves, each proved in the checkpoint):",
            self.custody.len()
        )?;
        for c in &self.custody {
            let action = serde_json::to_value(c.action).ok();
            let action = action.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
            writeln!(
                f,
                "  leaf {}: {} by {} at {} µs, {} {}..={}{}",
                c.index,
                action,
                c.actor,
                c.time_us,
                c.device,
                c.first_seq,
                c.last_seq,
                c.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )?;
        }
        if !self.findings.is_empty() {
            writeln!(f, "findings:")?;
            for x in &self.findings {
                let mut at = Vec::new();
                if let Some(d) = x.device {
                    at.push(format!("device {d}"));
                }
                if let Some(s) = x.seq {
                    at.push(format!("seq {s}"));
                }
                if let Some(m) = &x.member {
                    at.push(m.clone());
                }
                let at = if at.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", at.join(", "))
                };
                writeln!(f, "  {}{at}: {}", x.kind, x.detail)?;
            }
        }
        Ok(())
    }
}
