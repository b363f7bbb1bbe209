//! The second verifier (`tests/second-verifier/`, Python, written from
//! `docs/FORMAT.md` alone) against the reference: it must pass over the golden
//! vectors and the sample chain printed in FORMAT.md §8.1, and print the same
//! §5 report as `fieldseal-verify --json` for the sample package, intact and
//! tampered in the ways FORMAT.md names. Skipped (with a note) when `python3`
//! is not installed; `make test` installs it (scripts/install-deps.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use fieldseal_tests::procs::bin;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> Option<Command> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("python3 is not installed: the second verifier is not run");
        return None;
    }
    let mut c = Command::new("python3");
    c.arg(root().join("tests/second-verifier/second_verify.py"));
    Some(c)
}

#[test]
fn second_verifier_passes_the_vectors_and_the_documented_sample() {
    let Some(mut py) = python() else { return };
    let out = py
        .arg("vectors")
        .arg(root().join("proto/tests/vectors"))
        .arg(root().join("docs/FORMAT.md"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with(", 0 failed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sample chain of `entries.json` as a FORMAT.md §9 package.
struct Sample {
    public_key: String,
    entries: Vec<Vec<u8>>,
    hashes: Vec<String>,
    media: Vec<(u64, Vec<u8>)>,
}

fn sample() -> Sample {
    let text = std::fs::read_to_string(root().join("proto/tests/vectors/entries.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let hex_of = |x: &Value| hex::decode(x.as_str().unwrap()).unwrap();
    let list = |k: &str| v[k].as_array().unwrap().clone();
    Sample {
        public_key: v["public_key"].as_str().unwrap().to_owned(),
        entries: list("entries")
            .iter()
            .map(|e| hex_of(&e["signed_entry"]))
            .collect(),
        hashes: list("entries")
            .iter()
            .map(|e| e["entry_hash"].as_str().unwrap().to_owned())
            .collect(),
        media: list("media")
            .iter()
            .map(|m| (m["seq"].as_u64().unwrap(), hex_of(&m["bytes"])))
            .collect(),
    }
}

impl Sample {
    fn write(&self, dir: &Path, head: Option<String>) {
        std::fs::create_dir_all(dir.join("media")).unwrap();
        std::fs::write(dir.join("device.pub"), format!("{}\n", self.public_key)).unwrap();
        let mut log = Vec::new();
        for e in &self.entries {
            log.extend_from_slice(&u16::try_from(e.len()).unwrap().to_be_bytes());
            log.extend_from_slice(e);
        }
        std::fs::write(dir.join("chain.log"), log).unwrap();
        for (seq, b) in &self.media {
            std::fs::write(dir.join(format!("media/{seq:012}.ts")), b).unwrap();
        }
        if let Some(h) = head {
            std::fs::write(dir.join("head.txt"), h).unwrap();
        }
    }
}

fn report(out: &Output) -> Option<Value> {
    serde_json::from_slice(&out.stdout).ok()
}

/// Both verifiers on `dir`: their exit codes and reports, each finding's
/// `detail` removed (its wording is not part of the format, §5).
fn both(dir: &Path) -> [(Option<i32>, Option<Value>); 2] {
    let rust = Command::new(bin("fieldseal-verify"))
        .arg("--json")
        .arg(dir)
        .output()
        .unwrap();
    let py = python()
        .expect("checked by the caller")
        .args(["package", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    [rust, py].map(|o| {
        let mut r = report(&o);
        if let Some(r) = r.as_mut() {
            drop_details(r);
        }
        (o.status.code(), r)
    })
}

/// Remove `detail` from every finding, also those of the chain reports in
/// a package report (the custody leaves' `detail` is data and stays).
fn drop_details(r: &mut Value) {
    for f in r["findings"].as_array_mut().into_iter().flatten() {
        f.as_object_mut().unwrap().remove("detail");
    }
    for d in r
        .get_mut("devices")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        drop_details(d);
    }
}

#[test]
fn second_verifier_prints_the_reference_report_for_the_sample_package() {
    if python().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = sample();
    s.write(tmp.path(), None);
    let rust = Command::new(bin("fieldseal-verify"))
        .arg("--json")
        .arg(tmp.path())
        .output()
        .unwrap();
    let py = python()
        .unwrap()
        .args(["package", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(rust.status.code(), Some(0));
    assert_eq!(py.status.code(), Some(0), "{py:?}");
    // The whole report, `detail`s included: the sample has no findings.
    assert_eq!(report(&rust).unwrap(), report(&py).unwrap());
}

/// Each tampering: a name, and what it does to a fresh sample package.
type Tamper = (&'static str, fn(&mut Sample) -> Option<String>);

fn tamperings() -> Vec<Tamper> {
    vec![
        ("receipts' head matches", |s| {
            Some(format!("4 {}\n", s.hashes[4]))
        }),
        ("tail cut, head kept", |s| {
            s.entries.pop();
            Some(format!("4 {}", s.hashes[4]))
        }),
        ("head names another hash", |_| {
            Some(format!("4 {}", "ab".repeat(32)))
        }),
        ("head at 2^64-1", |s| {
            Some(format!("18446744073709551615 {}", s.hashes[4]))
        }),
        ("media byte flipped", |s| {
            s.media[0].1[5] ^= 1;
            None
        }),
        ("media deleted", |s| {
            s.media.pop();
            None
        }),
        ("entry deleted", |s| {
            s.entries.remove(2);
            None
        }),
        ("entries swapped", |s| {
            s.entries.swap(2, 3);
            None
        }),
        ("signature bit flipped", |s| {
            let e = &mut s.entries[1];
            let last = e.len() - 1;
            e[last] ^= 0x40;
            None
        }),
        ("another device's key", |s| {
            let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
            s.public_key = hex::encode(other.as_bytes());
            None
        }),
    ]
}

#[test]
fn second_verifier_agrees_with_the_reference_on_tampered_packages() {
    if python().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (i, (name, tamper)) in tamperings().into_iter().enumerate() {
        let mut s = sample();
        let head = tamper(&mut s);
        let dir = tmp.path().join(i.to_string());
        s.write(&dir, head);
        let [rust, py] = both(&dir);
        assert!(rust.1.is_some(), "{name}: no report from fieldseal-verify");
        assert_eq!(rust, py, "{name}: the verifiers disagree");
    }
    // A torn chain.log, and an unreadable package (exit 2, no report).
    let torn = tmp.path().join("torn");
    sample().write(&torn, None);
    let log = std::fs::read(torn.join("chain.log")).unwrap();
    std::fs::write(torn.join("chain.log"), &log[..log.len() - 10]).unwrap();
    let [rust, py] = both(&torn);
    assert_eq!(rust, py, "torn chain.log");
    std::fs::remove_file(torn.join("chain.log")).unwrap();
    let [rust, py] = both(&torn);
    assert_eq!((rust.0, py.0), (Some(2), Some(2)), "no chain.log");
}

// --- export packages (FORMAT.md §10) -----------------------------------------

fn golden_tar() -> Vec<u8> {
    std::fs::read(root().join("proto/tests/vectors/export-package.tar")).unwrap()
}

/// The members of a package file, in order.
type Members = Vec<(String, Vec<u8>)>;

fn unpack(tar: &[u8]) -> Members {
    fieldseal_proto::ustar::members(tar)
        .unwrap()
        .into_iter()
        .map(|(n, d)| (n, d.to_vec()))
        .collect()
}

/// A ustar file of `members` as §10.1 writes it (mtime of the golden one).
fn pack(members: &Members) -> Vec<u8> {
    use fieldseal_proto::ustar;
    let mut out = Vec::new();
    for (name, d) in members {
        out.extend_from_slice(&ustar::header(name, d.len() as u64, 1_782_982_800).unwrap());
        out.extend_from_slice(d);
        out.resize(out.len() + ustar::padding(d.len() as u64), 0);
    }
    out.extend_from_slice(&ustar::TRAILER);
    out
}

fn member<'a>(m: &'a mut Members, suffix: &str) -> &'a mut Vec<u8> {
    &mut m.iter_mut().find(|(n, _)| n.ends_with(suffix)).unwrap().1
}

#[test]
fn second_verifier_prints_the_reference_report_for_the_golden_export_package() {
    let Some(mut py) = python() else { return };
    let path = root().join("proto/tests/vectors/export-package.tar");
    let rust = Command::new(bin("fieldseal-verify"))
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    let py = py.args(["package", "--json"]).arg(&path).output().unwrap();
    assert_eq!(rust.status.code(), Some(0), "{rust:?}");
    assert_eq!(py.status.code(), Some(0), "{py:?}");
    let stored =
        std::fs::read(root().join("proto/tests/vectors/export-package.report.json")).unwrap();
    assert_eq!(
        rust.stdout, stored,
        "fieldseal-verify differs from the stored report"
    );
    // The whole report, `detail`s included: the golden package has no findings.
    assert_eq!(report(&rust).unwrap(), report(&py).unwrap());
}

/// Each tampering of the golden package: a name, and what it does to its members.
type PackageTamper = (&'static str, fn(&mut Members));

fn package_tamperings() -> Vec<PackageTamper> {
    vec![
        ("segment byte flipped", |m| {
            member(m, "000000000002.ts")[7] ^= 1
        }),
        ("last segment dropped", |m| {
            m.retain(|(n, _)| !n.ends_with("000000000003.ts"));
        }),
        ("device.pub swapped", |m| {
            let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
            *member(m, "device.pub") = format!("{}\n", hex::encode(other.as_bytes())).into();
        }),
        ("receipt altered", |m| {
            member(m, "receipts.log")[2 + 131 + 40] ^= 1
        }),
        ("proof altered", |m| {
            let p = member(m, "proofs.json");
            let at = p.windows(9).position(|w| w == b"\"proof\": ").unwrap() + 20;
            p[at] = if p[at] == b'0' { b'1' } else { b'0' };
        }),
        ("manifest altered", |m| {
            let j = member(m, "manifest.json");
            let t = String::from_utf8(j.clone()).unwrap();
            *j = t.replace("1782982800000000", "1782982800000001").into();
        }),
        ("chain tail cut", |m| {
            let log = member(m, "chain.log");
            let mut at = 0;
            let mut starts = Vec::new();
            while at < log.len() {
                starts.push(at);
                at += 2 + usize::from(u16::from_be_bytes([log[at], log[at + 1]]));
            }
            log.truncate(*starts.last().unwrap());
        }),
        ("receipt key missing", |m| {
            m.retain(|(n, _)| !n.ends_with("receipt.pub"));
        }),
        ("members reordered", |m| m.swap(1, 2)),
        ("log key without its line feed", |m| {
            _ = member(m, "log.vkey").pop()
        }),
        ("checkpoint missing", |m| {
            m.retain(|(n, _)| !n.ends_with("checkpoint.txt"));
        }),
    ]
}

#[test]
fn second_verifier_agrees_with_the_reference_on_tampered_export_packages() {
    if python().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (i, (name, tamper)) in package_tamperings().into_iter().enumerate() {
        let mut m = unpack(&golden_tar());
        tamper(&mut m);
        let path = tmp.path().join(format!("{i}.tar"));
        std::fs::write(&path, pack(&m)).unwrap();
        let [rust, py] = both(&path);
        assert_eq!(
            rust.0,
            Some(1),
            "{name}: fieldseal-verify does not refuse it"
        );
        assert_eq!(rust, py, "{name}: the verifiers disagree");
    }
    // A file cut inside a member is unreadable to both (exit 2, no report).
    let path = tmp.path().join("cut.tar");
    let tar = golden_tar();
    std::fs::write(&path, &tar[..tar.len() / 2]).unwrap();
    let [rust, py] = both(&path);
    assert_eq!((rust, py), ((Some(2), None), (Some(2), None)), "cut file");
}
