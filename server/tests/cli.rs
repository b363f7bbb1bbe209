//! The real `fieldseal-server` binary: init, admin commands with and without
//! a running server, clean shutdown on SIGTERM.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn server(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldseal-server"))
        .args(args)
        .arg("--data")
        .arg(dir)
        .env("FIELDSEAL_ADMIN_PASSWORD", "")
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn init_admin_run_and_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    let out = stdout(&server(&["init"], &dir));
    assert!(out.contains("admin password (shown once):"), "{out}");
    for f in ["ca.key", "server.key", "receipt.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let again = server(&["init"], &dir);
    assert!(!again.status.success(), "init refuses an existing folder");

    // Without a server: the command opens the index itself.
    let out = stdout(&server(&["device", "add", "--name", "cam1"], &dir));
    assert!(out.contains("token:"), "{out}");

    let mut run = Command::new(env!("CARGO_BIN_EXE_fieldseal-server"))
        .args([
            "run",
            "--quic",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = fieldseal_server::datadir::DataDir::new(&dir).control_socket();
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(t0.elapsed() < Duration::from_secs(20), "server started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // With the server running: through the control socket (the index is locked).
    let out = stdout(&server(
        &["device", "add", "--name", "cam2", "--ttl-secs", "60"],
        &dir,
    ));
    assert!(out.contains("token:"), "{out}");
    let out = stdout(&server(&["device", "list"], &dir));
    assert_eq!(out, "", "no device enrolled yet");
    let bad = server(&["device", "revoke", "0000000000000000"], &dir);
    assert!(!bad.status.success());

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(run.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "server stopped");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(!sock.exists(), "control socket removed");
}

#[test]
fn users_are_managed_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    stdout(&server(&["init"], &dir));
    let user = |args: &[&str], password: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fieldseal-server"));
        c.arg("user")
            .args(args)
            .arg("--data")
            .arg(&dir)
            .env("RUST_LOG", "warn");
        match password {
            Some(p) => c.env("FIELDSEAL_USER_PASSWORD", p),
            None => c.env_remove("FIELDSEAL_USER_PASSWORD"),
        };
        c.stdin(Stdio::null()).output().expect("runs")
    };
    let out = stdout(&user(
        &["add", "--name", "ann", "--role", "custodian"],
        Some("a long password"),
    ));
    assert!(out.contains("ann  custodian  active"), "{out}");
    // Refusals say why and change nothing.
    for (args, pw, why) in [
        (
            vec!["add", "--name", "ann", "--role", "custodian"],
            Some("a long password"),
            "exists",
        ),
        (
            vec!["add", "--name", "bob", "--role", "root"],
            Some("a long password"),
            "unknown role",
        ),
        (
            vec!["add", "--name", "bob", "--role", "custodian"],
            Some("short"),
            "10 to 1024",
        ),
        (
            vec!["add", "--name", "bob", "--role", "officer"],
            Some("a long password"),
            "--officer",
        ),
        (
            vec!["add", "--name", "bob", "--role", "custodian"],
            None,
            "no password",
        ),
        (vec!["disable", "zed"], None, "no user zed"),
    ] {
        let o = user(&args, pw);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let out = stdout(&user(&["disable", "ann"], None));
    assert!(out.contains("disabled"), "{out}");
    stdout(&user(&["passwd", "ann"], Some("another long one")));
    let list = stdout(&user(&["list"], None));
    assert!(
        list.contains("ann") && list.contains("disabled") && list.contains("admin"),
        "{list}"
    );
    assert!(!list.contains("bob"), "{list}");
}
