//! Verifying an agent's data folder in place: its chain, its media and
//! the acknowledgements it keeps (`fieldseal-agent verify`).

use std::collections::BTreeSet;
use std::path::Path;

use fieldseal_proto::chain::{
    verify_chain, MediaObservation, Report, SignatureCheck, VerifyOptions,
};
use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::Hash32;

use super::{hash_file, io_err, media_name, read_released, SpoolError};
use crate::spoolfs::StdFs;

/// Verify the chain and media in `dir` (read-only: works beside a running
/// agent), and every acknowledgement kept in `acks.log`: each must be signed
/// by the receipt key from enrolment and name a segment of the chain with
/// its media hash and length (`bad-ack` otherwise). Media in `released.log`
/// counts as released only with such a proof; without one it is missing.
///
/// # Errors
/// I/O errors reading the chain log, `released.log` or `acks.log`.
pub fn verify_dir(
    dir: &Path,
    key: &ed25519_dalek::VerifyingKey,
    expected_head: Option<(u64, Hash32)>,
) -> Result<Report, SpoolError> {
    let log_path = crate::chainlog::path(dir);
    let log = crate::chainlog::read_from(&StdFs, &log_path, 0).map_err(io_err(&log_path))?;
    let released = read_released(&StdFs, dir)?;
    let mut segments = std::collections::BTreeMap::new();
    for rec in log.records() {
        if let Ok(e) = SignedEntry::from_bytes(rec.bytes) {
            if let Some(s) = e.entry.segment() {
                let media = (s.media_sha256, s.media_len);
                segments.entry(e.seq()).or_insert((e.entry.device, media));
            }
        }
    }
    let (proven, mut ack_findings) = check_acks(dir, &segments)?;
    let mut media = std::collections::BTreeMap::new();
    for &seq in segments.keys() {
        let obs = if released.contains(&seq) && proven.contains(&seq) {
            MediaObservation::Released
        } else if released.contains(&seq) {
            MediaObservation::Absent {
                note: Some("released.log names it, but no kept acknowledgement of the server proves the hand-over".into()),
            }
        } else {
            let p = dir.join("media").join(media_name(seq));
            match hash_file(&p) {
                Ok((sha256, len)) => MediaObservation::Present { sha256, len },
                Err(err) => MediaObservation::Absent {
                    note: Some(format!("{}: {err}", p.display())),
                },
            }
        };
        media.insert(seq, obs);
    }
    let opts = VerifyOptions {
        media: Some(media),
        ordered: true,
        expected_head,
        // The signatures together, on every core (proto's sigbatch).
        signatures: SignatureCheck::Batch {
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        },
        ..Default::default()
    };
    let mut report = verify_chain(key, log.records().map(|r| r.bytes), &opts);
    // As `fieldseal-verify` reads a package (docs/FORMAT.md §9): damage, or a
    // torn final record, is one `malformed` finding. A torn tail is what a
    // power cut while appending leaves, and the agent cuts it off when it next
    // starts; until then the folder is not a package a verifier may call ok
    // (it cannot tell a cut from a cut-off file), and the two tools agree.
    let broken = match log.damage() {
        Some(e) => Some(format!("chain.log is damaged at byte {}: {e}", log.end())),
        None if log.torn_tail() > 0 => Some(format!(
            "chain.log ends with {} bytes of a torn record (a power cut while appending; \
             the agent cuts it off when it next starts)",
            log.torn_tail()
        )),
        None => None,
    };
    if let Some(detail) = broken {
        report.findings.insert(
            0,
            fieldseal_proto::chain::Finding {
                seq: None,
                kind: fieldseal_proto::chain::FindingKind::Malformed,
                detail,
            },
        );
        report.ok = false;
    }
    if !ack_findings.is_empty() {
        report.findings.append(&mut ack_findings);
        report.findings.sort_by_key(|f| (f.seq, f.kind));
        report.ok = false;
    }
    Ok(report)
}

/// Check every record of `acks.log` against the receipt key and the chain's
/// segments (seq → device, media hash and length). Returns the seqs whose
/// hand-over is proven, and a `bad-ack` finding for every record that proves
/// nothing (seq `None` for one that does not even read as an acknowledgement).
fn check_acks(
    dir: &Path,
    segments: &std::collections::BTreeMap<
        u64,
        (fieldseal_proto::identity::DeviceId, (Hash32, u64)),
    >,
) -> Result<(BTreeSet<u64>, Vec<fieldseal_proto::chain::Finding>), SpoolError> {
    use crate::acks::{proves, read_log, Segment};
    use fieldseal_proto::chain::{Finding, FindingKind};
    let path = dir.join("acks.log");
    let (kept, unreadable) = read_log(&StdFs, dir).map_err(io_err(&path))?;
    let receipt_key = crate::syncstore::read_receipt_key(&StdFs, dir);
    let mut proven = BTreeSet::new();
    let mut findings = Vec::new();
    for k in &kept {
        let seq = k.ack.seq;
        let seg = segments
            .get(&seq)
            .map(|&(device, media)| Segment { device, seq, media });
        match proves(k, seg, receipt_key.as_ref()) {
            Ok(()) => {
                proven.insert(seq);
            }
            Err(why) => findings.push(Finding {
                seq: Some(seq),
                kind: FindingKind::BadAck,
                detail: format!(
                    "acks.log: the acknowledgement of segment {seq} proves nothing: {why}"
                ),
            }),
        }
    }
    if unreadable > 0 {
        findings.push(Finding {
            seq: None,
            kind: FindingKind::BadAck,
            detail: format!(
                "acks.log: {unreadable} record(s) do not read as a kept acknowledgement"
            ),
        });
    }
    Ok((proven, findings))
}
