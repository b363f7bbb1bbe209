//! The independent Python verifier (`tests/independent/fieldseal_verify.py`),
//! written from `docs/FORMAT.md` alone, must pass its self-test over the
//! golden vectors and agree with the Rust verifier on damaged packages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_proto::chain::{verify_chain, MediaObservation, VerifyOptions};
use fieldseal_proto::chainlog::{put_record, split_lossy};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::sha256;
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script() -> PathBuf {
    workspace_root().join("tests/independent/fieldseal_verify.py")
}

#[test]
fn python_self_test_over_the_vectors() {
    let out = Command::new("python3")
        .arg(script())
        .arg("--self-test")
        .arg(workspace_root().join("proto/tests/vectors"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "self-test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(", 0 failed"), "last line: {last}");
}

/// An evidence package as files, before it is written out.
#[derive(Debug, Clone)]
struct Package {
    key: VerifyingKey,
    log: Vec<u8>,
    media: BTreeMap<u64, Vec<u8>>,
}

impl Package {
    fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir.join("media")).expect("mkdir");
        std::fs::write(
            dir.join("device.pub"),
            format!("{}\n", hex::encode(self.key.as_bytes())),
        )
        .expect("device.pub");
        std::fs::write(dir.join("chain.log"), &self.log).expect("chain.log");
        for (seq, bytes) in &self.media {
            std::fs::write(dir.join(format!("media/{seq:012}.ts")), bytes).expect("media");
        }
    }
}

/// The fields both verifiers must agree on. Findings are compared as
/// `(seq, kind)` in report order, so their number and order count too (their
/// `detail` texts are not part of the format).
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    ok: bool,
    entries: u64,
    segments: u64,
    events: u64,
    head_seq: Option<u64>,
    head_hash: Option<String>,
    media_verified: u64,
    findings: Vec<(Option<u64>, String)>,
}

fn rust_summary(p: &Package) -> Summary {
    let (log, error) = split_lossy(&p.log);
    let media = p
        .media
        .iter()
        .map(|(&seq, bytes)| {
            let obs = MediaObservation::Present {
                sha256: sha256(bytes),
                len: u64::try_from(bytes.len()).expect("small"),
            };
            (seq, obs)
        })
        .collect();
    let opts = VerifyOptions {
        media: Some(media),
        ordered: true,
        ..Default::default()
    };
    let report = verify_chain(&p.key, log.records.iter().copied(), &opts);
    let mut findings: Vec<(Option<u64>, String)> = report
        .findings
        .iter()
        .map(|f| (f.seq, f.kind.as_str().to_string()))
        .collect();
    // A torn tail or a damaged record length is reported by the package
    // verifier (`fieldseal-verify`) as a `malformed` finding without seq,
    // placed first.
    if log.torn_tail > 0 || error.is_some() {
        findings.insert(0, (None, "malformed".to_string()));
    }
    Summary {
        ok: findings.is_empty(),
        entries: report.entries,
        segments: report.segments,
        events: report.events,
        head_seq: report.head_seq,
        head_hash: report.head_hash,
        media_verified: report.media_verified,
        findings,
    }
}

fn python_summary(p: &Package, dir: &Path) -> Summary {
    p.write(dir);
    let out = Command::new("python3")
        .arg(script())
        .arg("--json")
        .arg(dir)
        .output()
        .expect("python3 runs");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let ok = report["ok"].as_bool().expect("ok");
    assert_eq!(out.status.code(), Some(if ok { 0 } else { 1 }), "exit code");
    let findings = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["seq"].as_u64(),
                f["kind"].as_str().expect("kind").to_string(),
            )
        })
        .collect();
    Summary {
        ok,
        entries: report["entries"].as_u64().expect("entries"),
        segments: report["segments"].as_u64().expect("segments"),
        events: report["events"].as_u64().expect("events"),
        head_seq: report["head_seq"].as_u64(),
        head_hash: report["head_hash"].as_str().map(str::to_string),
        media_verified: report["media_verified"].as_u64().expect("media_verified"),
        findings,
    }
}

fn log_of(records: &[Vec<u8>]) -> Vec<u8> {
    let mut log = Vec::new();
    for r in records {
        put_record(&mut log, r);
    }
    log
}

#[test]
fn python_and_rust_agree_on_damaged_packages() {
    let key = SigningKey::from_bytes(&[0x11; 32]);
    let sample = fieldseal_proto::sample::build(&key, &[3, 2], 500);
    let records: Vec<Vec<u8>> = sample.entries.iter().map(|e| e.to_bytes()).collect();
    let good = Package {
        key: key.verifying_key(),
        log: log_of(&records),
        media: sample.media.clone(),
    };
    let first_segment = *sample.media.keys().next().expect("a segment");
    let last_segment = *sample.media.keys().last().expect("a segment");

    let mut cases: Vec<(&str, Package)> = vec![("intact", good.clone())];

    let mut p = good.clone();
    p.media.get_mut(&first_segment).expect("media")[17] ^= 0x04;
    cases.push(("media bit flipped", p));

    let mut p = good.clone();
    p.media.remove(&last_segment);
    cases.push(("media file deleted", p));

    let mut p = good.clone();
    let mut recs = records.clone();
    recs.remove(2);
    p.log = log_of(&recs);
    cases.push(("record deleted", p));

    let mut p = good.clone();
    let mut recs = records.clone();
    recs.swap(3, 4);
    p.log = log_of(&recs);
    cases.push(("records swapped", p));

    let mut p = good.clone();
    let mut recs = records.clone();
    recs.insert(3, records[2].clone());
    p.log = log_of(&recs);
    cases.push(("record duplicated", p));

    let mut p = good.clone();
    let cut = p.log.len() - 7;
    p.log.truncate(cut);
    cases.push(("chain.log truncated mid-record", p));

    let mut p = good.clone();
    p.log.push(0x01);
    cases.push(("one-byte torn tail", p));

    let mut p = good.clone();
    p.key = SigningKey::from_bytes(&[0x22; 32]).verifying_key();
    cases.push(("device.pub of another key", p));

    let mut p = good.clone();
    let mut recs = records.clone();
    let last = recs.last_mut().expect("records");
    let n = last.len();
    last[n - 10] ^= 0x80;
    p.log = log_of(&recs);
    cases.push(("last signature damaged", p));

    // FORMAT.md §4 steps 2, 3 and 5: a forged entry is reported for that and
    // not again as missing; its position still counts for the order.
    let mut forged = records[2].clone();
    let n = forged.len();
    forged[n - 1] ^= 0x01;
    let mut p = good.clone();
    let mut recs = records.clone();
    recs[2] = forged.clone();
    p.log = log_of(&recs);
    cases.push(("forged entry in place of entry 2", p));

    let mut p = good.clone();
    let mut recs = records.clone();
    recs.insert(2, forged);
    p.log = log_of(&recs);
    cases.push(("forged entry 2, then the real one", p));

    // §4 step 4 and §5: equivocation counts once in `entries`; the kept
    // version is the first in input order unless its successor, read before
    // the later version, links to the later one.
    let mut alt = sample.entries[5].entry.clone();
    alt.wall_us += 1;
    let alt = alt.sign(&key).expect("valid entry").to_bytes();
    assert_ne!(alt, records[5]);

    let mut p = good.clone();
    let mut recs = records.clone();
    recs.insert(6, alt.clone());
    p.log = log_of(&recs);
    cases.push(("equivocation: original first", p));

    let mut p = good.clone();
    let mut recs = records.clone();
    recs.insert(5, alt.clone());
    p.log = log_of(&recs);
    cases.push(("equivocation: other version first", p));

    let mut p = good.clone();
    let mut recs = records.clone();
    recs.insert(6, alt.clone());
    recs.insert(6, alt);
    p.log = log_of(&recs);
    cases.push(("equivocation: A, B, B", p));

    // §9: a record length of 0 or above 4096 is damage: reading stops there.
    for (name, len) in [
        ("record length 4097", [0x10, 0x01]),
        ("record length 0", [0x00, 0x00]),
    ] {
        let mut p = good.clone();
        let mut log = log_of(&records[..4]);
        log.extend_from_slice(&len);
        log.extend_from_slice(&log_of(&records[4..]));
        p.log = log;
        cases.push((name, p));
    }

    let mut p = good.clone();
    p.log.extend_from_slice(&[0xff, 0xff, 0x00]);
    cases.push(("oversized length in the last 3 bytes", p));

    let tmp = tempfile::tempdir().expect("tempdir");
    for (i, (name, package)) in cases.iter().enumerate() {
        let rust = rust_summary(package);
        let python = python_summary(package, &tmp.path().join(format!("case{i}")));
        assert_eq!(
            python, rust,
            "case {name:?}: Python and Rust verifiers disagree"
        );
        if let Some((entries, findings)) = expected(name) {
            let findings: Vec<(Option<u64>, String)> =
                findings.iter().map(|&(q, k)| (q, k.to_string())).collect();
            assert_eq!(
                (rust.entries, &rust.findings),
                (entries, &findings),
                "case {name:?}: not what FORMAT.md specifies"
            );
        }
        if *name == "intact" {
            assert!(rust.ok, "the intact package verifies");
        } else {
            assert!(!rust.ok, "case {name:?} is detected");
        }
    }
}

/// What FORMAT.md specifies for the cases that pin decisions of the audit
/// (tests/independent/FINDINGS.md items 1, 2 and 4): `entries` and the
/// findings as `(seq, kind)` in report order.
#[allow(clippy::type_complexity)]
fn expected(case: &str) -> Option<(u64, &'static [(Option<u64>, &'static str)])> {
    Some(match case {
        "forged entry in place of entry 2" => (9, &[(Some(2), "bad-signature")]),
        "forged entry 2, then the real one" => {
            (10, &[(Some(2), "bad-signature"), (Some(2), "out-of-order")])
        }
        "equivocation: original first" => {
            (10, &[(Some(5), "equivocation"), (Some(5), "out-of-order")])
        }
        "equivocation: other version first" => (
            10,
            &[
                (Some(5), "equivocation"),
                (Some(5), "out-of-order"),
                (Some(6), "broken-link"),
            ],
        ),
        "equivocation: A, B, B" => (
            10,
            &[
                (Some(5), "equivocation"),
                (Some(5), "equivocation"),
                (Some(5), "out-of-order"),
                (Some(5), "out-of-order"),
            ],
        ),
        "record length 4097" | "record length 0" => (4, &[(None, "malformed")]),
        "oversized length in the last 3 bytes" => (10, &[(None, "malformed")]),
        _ => return None,
    })
}
