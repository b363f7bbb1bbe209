//! Power loss across the whole data folder (issue 13): what `init` leaves is
//! durable when it exits, on both sides, and a chain log torn by a cut is
//! read alike by the agent's `verify` and by `fieldseal-verify`.
//!
//! Needs the workspace binaries built, and `strace`.

use std::path::Path;
use std::process::Command;

use fieldseal_tests::fsync_audit::audit;
use fieldseal_tests::procs::bin;

#[test]
fn the_audit_sees_a_file_written_without_fsync() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("d");
    let f = root.join("f");
    let script = format!("mkdir {} && echo x > {}", root.display(), f.display());
    let problems = audit(Command::new("sh").args(["-c", &script]), &root);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("data of") && p.ends_with("/d/f not fsynced")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("name ") && p.contains("/d not durable")),
        "{problems:?}"
    );
}

#[test]
fn agent_init_leaves_nothing_a_cut_could_lose() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("new").join("agent");
    let problems = audit(
        Command::new(bin("fieldseal-agent"))
            .args(["init", "--data"])
            .arg(&dir),
        &dir,
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn server_init_leaves_nothing_a_cut_could_lose() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("new").join("server");
    let problems = audit(
        Command::new(bin("fieldseal-server"))
            .args(["init", "--data"])
            .arg(&dir)
            .env("FIELDSEAL_ADMIN_PASSWORD", "correct horse battery"),
        &dir,
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

fn verdict(cmd: &mut Command) -> (Option<i32>, serde_json::Value) {
    let out = cmd.output().unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

fn both(dir: &Path) -> [(Option<i32>, serde_json::Value); 2] {
    [
        verdict(
            Command::new(bin("fieldseal-agent"))
                .args(["verify", "--json", "--data"])
                .arg(dir),
        ),
        verdict(Command::new(bin("fieldseal-verify")).arg("--json").arg(dir)),
    ]
}

#[test]
fn a_torn_chain_log_tail_is_malformed_in_both_verifiers_until_the_agent_starts() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a");
    let agent = |args: &[&str]| {
        let out = Command::new(bin("fieldseal-agent"))
            .args(args)
            .arg("--data")
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    agent(&["init"]);
    let cfg = std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .replace("width = 1280", "width = 320")
        .replace("height = 720", "height = 240")
        .replace("segment_seconds = 4", "segment_seconds = 1");
    std::fs::write(dir.join("config.toml"), cfg).unwrap();
    agent(&["record", "--fast", "--duration", "2"]);
    // The power went while the next record was being appended: part of it
    // reached the disk.
    let log = dir.join("chain.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let head = bytes[..50].to_vec();
    bytes.extend_from_slice(&head);
    std::fs::write(&log, &bytes).unwrap();
    for (tool, (code, report)) in ["fieldseal-agent verify", "fieldseal-verify"]
        .iter()
        .zip(both(&dir))
    {
        assert_eq!(code, Some(1), "{tool}: {report}");
        let first = &report["findings"][0];
        assert_eq!(first["kind"], "malformed", "{tool}: {report}");
        assert!(first["seq"].is_null(), "{tool}: {report}");
        assert!(
            first["detail"]
                .as_str()
                .unwrap()
                .contains("50 bytes of a torn record"),
            "{tool}: {report}"
        );
    }
    // The next start cuts the torn record off: both agree the folder verifies.
    std::fs::write(dir.join("running"), "1\n").unwrap();
    agent(&["record", "--fast", "--duration", "1"]);
    for (tool, (code, report)) in ["fieldseal-agent verify", "fieldseal-verify"]
        .iter()
        .zip(both(&dir))
    {
        assert_eq!(code, Some(0), "{tool}: {report}");
    }
}
