//! `fieldseal-verify`: check an exported evidence package with nothing but the
//! package. It depends on `fieldseal-proto` and the standard library alone (no
//! server, network or database), so that a court or a defence expert can build
//! and run it: `cargo build --release -p fieldseal-proto --bin fieldseal-verify`.
//!
//! The library crate does no I/O; this binary is its thin file-reading driver.
//! Two kinds of input: an export package, one POSIX tar file
//! (docs/FORMAT.md §10, verified by `fieldseal_proto::package`), and a
//! package folder (a device's own folder, docs/FORMAT.md §9).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fieldseal_proto::chain::{verify_chain, MediaObservation, SignatureCheck, VerifyOptions};
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::{Hash32, Sha256Stream};
use fieldseal_proto::{package, ustar};

const USAGE: &str = "\
fieldseal-verify: verify a fieldseal evidence package offline

USAGE:
    fieldseal-verify [--json] PACKAGE_FILE
    fieldseal-verify [--json] [--no-media] PACKAGE_DIR

A PACKAGE_FILE is an export package from `fieldseal-server export` (a POSIX tar
file): every signature, hash, chain link, receipt, certificate, inclusion proof,
the checkpoint and the signed manifest are checked, and the fingerprints of the
server's CA, receipt and log keys are printed: compare them with the published
ones. A PACKAGE_DIR is a folder holding device.pub (the device's Ed25519 public key in
hex), chain.log (its signed entries) and media/ (one file per segment, named by
the segment's sequence number, e.g. media/000000000042.ts); optionally head.txt
(\"SEQ ENTRY_HASH\" from the server's receipts). The format is specified in
docs/FORMAT.md.

OPTIONS:
    --json       print the report as JSON (the format of docs/FORMAT.md §5)
    --no-media   check the entries only, not the media files
    -h, --help   this text

EXIT STATUS:
    0  the package verifies: every signature, link, hash and gap is accounted for
    1  the package does not verify: the report lists each finding
    2  the package could not be read (not a tar file, missing file, bad key,
       usage error)
";

/// Media file name of the segment with sequence number `seq`.
fn media_name(seq: u64) -> String {
    format!("{seq:012}.ts")
}

/// Threads for checking signatures: one per core (the answers do not
/// depend on it).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(io::stderr(), "fieldseal-verify: error: {msg}");
    ExitCode::from(2)
}

fn read_key(dir: &Path) -> Result<ed25519_dalek::VerifyingKey, String> {
    let path = dir.join("device.pub");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| format!("{}: not 64 hex digits", path.display()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| format!("{}: not a valid Ed25519 public key", path.display()))
}

fn read_head(dir: &Path) -> Result<Option<(u64, Hash32)>, String> {
    let path = dir.join("head.txt");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let bad = || format!("{}: expected \"SEQ ENTRY_HASH\"", path.display());
    let mut parts = text.split_whitespace();
    let seq = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(parts.next().ok_or_else(bad)?, &mut hash).map_err(|_| bad())?;
    Ok(Some((seq, hash)))
}

/// Hash a file in 1 MiB reads: constant memory whatever the segment size.
fn hash_file(path: &Path) -> io::Result<(Hash32, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256Stream::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((h.finish(), len))
}

/// One member as read from the file: media hashed on the way, the rest kept.
struct Read1 {
    name: String,
    size: u64,
    sha256: Hash32,
    data: Option<Vec<u8>>,
}

/// Read a package file member by member, in constant memory for media.
fn read_package(path: &Path) -> Result<Vec<Read1>, String> {
    let err = |e: io::Error| format!("{}: {e}", path.display());
    let mut f = io::BufReader::with_capacity(1 << 20, File::open(path).map_err(err)?);
    let (mut out, mut at) = (Vec::new(), 0u64);
    let mut block = [0u8; ustar::BLOCK];
    loop {
        f.read_exact(&mut block)
            .map_err(|_| format!("{}: ends inside the archive at byte {at}", path.display()))?;
        let Some(h) = ustar::parse_header(&block, at).map_err(|e| e.to_string())? else {
            // The end: a second zero block, then nothing but zeros.
            let mut rest = Vec::new();
            f.read_to_end(&mut rest).map_err(err)?;
            if rest.len() < ustar::BLOCK || rest.iter().any(|&b| b != 0) {
                return Err(format!("{}: not a complete tar archive", path.display()));
            }
            return Ok(out);
        };
        let mut take = (&mut f).take(h.size);
        let (sha256, data) = if package::is_media(&h.name) {
            let mut st = Sha256Stream::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = take.read(&mut buf).map_err(err)?;
                if n == 0 {
                    break;
                }
                st.update(&buf[..n]);
            }
            (st.finish(), None)
        } else if h.size > package::MAX_META {
            return Err(format!(
                "{}: member {} is too large",
                path.display(),
                h.name
            ));
        } else {
            let mut d = Vec::new();
            take.read_to_end(&mut d).map_err(err)?;
            (fieldseal_proto::identity::sha256(&d), Some(d))
        };
        let pad = ustar::padding(h.size);
        let mut skip = [0u8; ustar::BLOCK];
        f.read_exact(&mut skip[..pad])
            .map_err(|_| format!("{}: ends inside member {}", path.display(), h.name))?;
        if take_short(&data, h.size) {
            return Err(format!("{}: ends inside member {}", path.display(), h.name));
        }
        at += (ustar::BLOCK + pad) as u64 + h.size;
        out.push(Read1 {
            name: h.name,
            size: h.size,
            sha256,
            data,
        });
    }
}

/// A kept member shorter than its header says: the file ended inside it.
/// (A short media member shows up as a short padding read or header.)
fn take_short(data: &Option<Vec<u8>>, size: u64) -> bool {
    data.as_ref().is_some_and(|d| d.len() as u64 != size)
}

/// Verify an export package file (docs/FORMAT.md §10).
fn verify_file(path: &Path, json: bool) -> ExitCode {
    let read = match read_package(path) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let members: Vec<package::Member<'_>> = read
        .iter()
        .map(|r| package::Member {
            name: r.name.clone(),
            size: r.size,
            sha256: r.sha256,
            data: r.data.as_deref(),
        })
        .collect();
    let report = package::verify_with(&members, SignatureCheck::Batch { threads: threads() });
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        print!("{report}");
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let mut json = false;
    let mut media = true;
    let mut dir: Option<PathBuf> = None;
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("--json") => json = true,
            Some("--no-media") => media = false,
            Some("-h" | "--help") => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some(s) if s.starts_with('-') => return fail(format!("unknown option {s}\n\n{USAGE}")),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return fail(format!("more than one package given\n\n{USAGE}")),
        }
    }
    let Some(dir) = dir else {
        return fail(format!("no package given\n\n{USAGE}"));
    };
    if dir.is_file() {
        if !media {
            return fail("--no-media is for package folders only");
        }
        return verify_file(&dir, json);
    }
    let key = match read_key(&dir) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let expected_head = match read_head(&dir) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let log_path = dir.join("chain.log");
    let log_bytes = match std::fs::read(&log_path) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", log_path.display())),
    };
    let (log, damage) = chainlog::split_lossy(&log_bytes);
    let mut opts = VerifyOptions {
        expected_head,
        ordered: true,
        signatures: SignatureCheck::Batch { threads: threads() },
        ..Default::default()
    };
    if media {
        let mut observed = BTreeMap::new();
        for rec in &log.records {
            let Ok(e) = SignedEntry::from_bytes(rec) else {
                continue;
            };
            if e.entry.segment().is_none() {
                continue;
            }
            let path = dir.join("media").join(media_name(e.seq()));
            let obs = match hash_file(&path) {
                Ok((sha256, len)) => MediaObservation::Present { sha256, len },
                Err(err) => MediaObservation::Absent {
                    note: Some(format!("{}: {err}", path.display())),
                },
            };
            observed.insert(e.seq(), obs);
        }
        opts.media = Some(observed);
    }
    let mut report = verify_chain(&key, log.records.iter().copied(), &opts);
    // Damage to the log file itself is a finding too: entries after it are unreadable.
    if let Some(err) = damage {
        report.findings.insert(
            0,
            fieldseal_proto::chain::Finding {
                seq: None,
                kind: fieldseal_proto::chain::FindingKind::Malformed,
                detail: format!("chain.log is damaged at byte {}: {err}", log.complete_len),
            },
        );
    } else if log.torn_tail > 0 {
        report.findings.insert(
            0,
            fieldseal_proto::chain::Finding {
                seq: None,
                kind: fieldseal_proto::chain::FindingKind::Malformed,
                detail: format!(
                    "chain.log ends with {} bytes of a torn record (a power cut while \
                     appending; the agent cuts it off when it next starts)",
                    log.torn_tail
                ),
            },
        );
    }
    report.ok = report.findings.is_empty();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        print!("{report}");
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
