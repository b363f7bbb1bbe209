//! The device key inside a PKCS#11 token (softhsm2, Debian's software
//! token), end to end with the real binaries: a private softhsm2 with one
//! token; `init --pkcs11` generates the key there (PIN from stdin); the
//! device enrols (public key only, no PIN), records with the PIN from a
//! file, syncs over mutual TLS whose handshake the token signs (PIN from
//! stdin), and its chain verifies — on the device, on the server (its copy
//! is byte for byte the device's), with `fieldseal-verify` on the device
//! folder and on an exported package, and with the independent Python
//! verifier — exactly as a file-keyed device recorded the same way does.
//! No private key file exists anywhere in the device's folder.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use fieldseal_agent::devicekey::softhsm::SoftHsm;
use fieldseal_proto::identity::DeviceId;
use fieldseal_server::datadir::DataDir;
use fieldseal_server::now_us;
use fieldseal_tests::http::{login, request};
use fieldseal_tests::procs::{self, ok, Agent};
use fieldseal_tests::{Harness, ADMIN_PASSWORD};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);
const CASE: &str = "CJ-2026-0815";

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Record 3 s of a seizure tagged with the case, then sync everything.
fn record_and_sync(a: &Agent, pin_file: Option<&Path>, pin: Option<&str>) {
    let mut args = vec![
        "record",
        "--duration",
        "3",
        "--fast",
        "--case",
        CASE,
        "--activity",
        "seizure",
    ];
    let p = pin_file.map(|p| p.to_str().expect("utf-8").to_owned());
    if let Some(p) = &p {
        args.extend(["--pin-file", p]);
    }
    ok(&a.run(&args, 2 * MINUTE));
    match pin {
        Some(pin) => ok(&a.run_with_stdin(
            &["sync", "--until-drained", "--pin", "-"],
            &format!("{pin}\n"),
            2 * MINUTE,
        )),
        None => ok(&a.run(&["sync", "--until-drained"], 2 * MINUTE)),
    };
}

fn device_id(a: &Agent) -> DeviceId {
    let s: Value = serde_json::from_str(&ok(&a.run(&["status", "--json"], MINUTE))).unwrap();
    s["device"].as_str().unwrap().parse().unwrap()
}

/// `fieldseal-verify --json PATH`: exit 0 and its report.
fn verify_json(path: &Path) -> Value {
    let out = Command::new(procs::bin("fieldseal-verify"))
        .arg("--json")
        .arg(path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{report}{}", stderr(&out));
    serde_json::from_str(&report).unwrap()
}

/// What does not depend on which key signed or when: every field but the
/// device id, hashes, keys and times.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    ![
                        "device",
                        "hash",
                        "key",
                        "wall",
                        "_us",
                        "fingerprint",
                        "sha256",
                        "bytes",
                        "len",
                    ]
                    .iter()
                    .any(|w| k.contains(w))
                })
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        other => other.clone(),
    }
}

/// Every file under `dir` (the data folder), for the private-key search.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

fn call(http: std::net::SocketAddr, token: &str, method: &str, path: &str, body: Value) {
    let body = body.to_string();
    let a = block(|| request(http, method, path, Some(token), Some(&body))).unwrap();
    assert!(
        (200..300).contains(&a.status),
        "{method} {path}: {}",
        a.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_keyed_in_a_softhsm2_token_records_syncs_and_verifies_like_a_file_keyed_one() {
    let hsm = SoftHsm::new("fieldseal-cam")
        .expect("softhsm2 is not installed: run scripts/install-deps.sh");
    let (var, conf) = hsm.env();
    let env = vec![(var.to_string(), conf.display().to_string())];
    let h = Harness::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ca = DataDir::new(h.path()).ca_cert();
    let module = hsm.module.to_str().unwrap().to_owned();

    // init --pkcs11, the PIN on stdin.
    let dir = tmp.path().join("cam-token");
    let a = block(|| {
        Agent::init_with(
            &dir,
            &["--pkcs11", &module, "--token", &hsm.token, "--pin", "-"],
            env.clone(),
            Some(&format!("{}\n", hsm.pin)),
        )
    });
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        cfg.contains("store = \"pkcs11\"") && !cfg.contains(&hsm.pin),
        "{cfg}"
    );
    // A second init of the folder is refused, the token untouched.
    let again = block(|| {
        a.run_with_stdin(
            &[
                "init", "--pkcs11", &module, "--token", &hsm.token, "--pin", "-",
            ],
            &format!("{}\n", hsm.pin),
            MINUTE,
        )
    });
    assert!(!again.status.success(), "{}", stderr(&again));
    // Without its PIN the device does not record, and says how to give it.
    let e = stderr(&block(|| {
        a.run(&["record", "--duration", "1", "--fast"], MINUTE)
    }));
    assert!(e.contains("--pin -") && e.contains("fieldseal-cam"), "{e}");
    // A PIN on the command line is refused.
    let e = stderr(&block(|| {
        a.run(
            &["record", "--duration", "1", "--fast", "--pin", &hsm.pin],
            MINUTE,
        )
    }));
    assert!(e.contains("readable by every user"), "{e}");

    // Enrolment needs the public key only: no PIN.
    let token = h.token("cam-token", 3600).unwrap();
    block(|| a.enroll(&h.server_addr(), &token, &ca));
    let pin_file = tmp.path().join("pin");
    hsm.write_pin(&pin_file);
    block(|| record_and_sync(&a, Some(&pin_file), Some(&hsm.pin)));

    // No private key file: no device.key, and no file in the folder holds
    // the device's private key in any form the agent or rustls ever wrote:
    // no PKCS#8 Ed25519 key, no seed in hex (any 64 hex digits) and, in the
    // small files (chain, receipts, markers), no 32 bytes from which the
    // device's public key derives.
    assert!(!dir.join("device.key").exists());
    let public = fieldseal_agent::devicekey::read_pub(&dir).unwrap();
    let is_seed = |b: &[u8]| {
        <[u8; 32]>::try_from(b)
            .is_ok_and(|s| ed25519_dalek::SigningKey::from_bytes(&s).verifying_key() == public)
    };
    let pkcs8 = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
    ];
    let mut all = Vec::new();
    files(&dir, &mut all);
    for f in &all {
        let bytes = std::fs::read(f).unwrap();
        let name = f.display();
        assert!(
            !bytes.windows(pkcs8.len()).any(|w| w == pkcs8),
            "{name} holds a PKCS#8 Ed25519 key"
        );
        for word in String::from_utf8_lossy(&bytes).split(|c: char| !c.is_ascii_hexdigit()) {
            let seed = hex::decode(word).unwrap_or_default();
            assert!(!is_seed(&seed), "{name} holds the private key in hex");
        }
        if bytes.len() <= 64 * 1024 {
            assert!(
                !bytes.windows(32).any(is_seed),
                "{name} holds the private key"
            );
        }
    }

    // The same recording with a key file, for comparison.
    let b = block(|| Agent::init(&tmp.path().join("cam-file")));
    let token = h.token("cam-file", 3600).unwrap();
    block(|| b.enroll(&h.server_addr(), &token, &ca));
    block(|| record_and_sync(&b, None, None));

    let server = DataDir::new(h.path());
    let mut reports = Vec::new();
    for d in [&a, &b] {
        // On the device, and on the server: its copy is the device's chain.
        ok(&block(|| d.run(&["verify"], MINUTE)));
        let id = block(|| device_id(d));
        let theirs = std::fs::read(server.chain_log(id)).unwrap();
        let ours = std::fs::read(d.dir.join("chain.log")).unwrap();
        assert_eq!(theirs, ours, "the server's copy of the chain differs");
        // The device folder as an evidence package.
        reports.push(block(|| verify_json(&d.dir)));
        // The independent verifier (FORMAT.md alone, its own Ed25519).
        let py = block(|| {
            Command::new("python3")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("independent/fieldseal_verify.py"))
                .arg(&d.dir)
                .output()
                .unwrap()
        });
        assert!(
            py.status.success(),
            "{}{}",
            String::from_utf8_lossy(&py.stdout),
            stderr(&py)
        );
    }
    assert_eq!(reports[0]["ok"], true);
    assert_eq!(
        shape(&reports[0]),
        shape(&reports[1]),
        "token: {:#}\nfile: {:#}",
        reports[0],
        reports[1]
    );

    // An export of the case (both devices' recordings) verifies offline.
    let http = h.server.http_addr;
    let admin = block(|| login(http, "admin", ADMIN_PASSWORD));
    call(
        http,
        &admin,
        "POST",
        "/api/officers",
        json!({"certificate": "CJ-815",
        "name": "Officer", "valid_from": "2020-01-01", "valid_until": "2099-12-31"}),
    );
    call(
        http,
        &admin,
        "POST",
        "/api/cases",
        json!({"number": CASE,
        "body": "Test District Bureau", "officers": ["CJ-815"]}),
    );
    call(
        http,
        &admin,
        "POST",
        &format!("/api/cases/{CASE}/activities"),
        json!({"id": "A1",
        "kind": "seizure", "place": "12 Test Road", "start_us": now_us() - 3_600_000_000i64,
        "end_us": now_us(), "officers": ["CJ-815"]}),
    );
    let file = tmp.path().join("case.tar");
    let out = block(|| {
        Command::new(procs::bin("fieldseal-server"))
            .args(["export", "--data"])
            .arg(h.path())
            .args(["--case", CASE, "--out"])
            .arg(&file)
            .output()
            .unwrap()
    });
    ok(&out);
    let report = block(|| verify_json(&file));
    let token_device = block(|| device_id(&a)).to_string();
    assert!(report.to_string().contains(&token_device), "{report:#}");
    h.server.shutdown().await;
}
