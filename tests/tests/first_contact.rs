//! First contact: what a new user meets running the binaries with careless
//! input (issue 13, "Errors and first contact", and item 3, file
//! permissions). Each case drives the real binaries and checks what they
//! print and leave behind. Needs them built
//! (`cargo build -p fieldseal-agent -p fieldseal-server`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fieldseal_tests::procs::{bin, ok, stable_udp_port, wait_limited, Agent};

const PASSWORD: &str = "first-contact-admin";

/// Run the binaries under the umask most systems give (022): whatever is
/// private must be made so by the binaries themselves.
fn usual_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
}

fn server_cmd(args: &[&str], data: &Path) -> Command {
    let mut c = Command::new(bin("fieldseal-server"));
    c.args(args)
        .arg("--data")
        .arg(data)
        .env("FIELDSEAL_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn server(args: &[&str], data: &Path) -> Output {
    let child = server_cmd(args, data)
        .spawn()
        .expect("spawn fieldseal-server");
    wait_limited(
        child,
        Duration::from_secs(60),
        &format!("fieldseal-server {args:?}"),
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `fieldseal-server run` child, stopped when dropped.
struct Server {
    child: Child,
    quic: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let quic = format!("127.0.0.1:{}", stable_udp_port());
        let child = server_cmd(&["run", "--quic", &quic, "--http", "127.0.0.1:0"], data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let sock = data.join("control.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, quic }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Every file and folder under `root` (itself included) that group or
/// others may reach.
fn open_to_others(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).expect("stat");
        if m.permissions().mode() & 0o077 != 0 {
            bad.push(format!(
                "{:o} {}",
                m.permissions().mode() & 0o7777,
                p.display()
            ));
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                todo.push(e.expect("entry").path());
            }
        }
    }
    bad
}

fn init_server(root: &Path) -> PathBuf {
    let data = root.join("server");
    ok(&server(&["init"], &data));
    data
}

fn token(data: &Path) -> String {
    let out = ok(&server(&["device", "add", "--name", "cam-1"], data));
    out.lines()
        .find_map(|l| l.strip_prefix("token:"))
        .expect("a token line")
        .trim()
        .to_owned()
}

/// Item 3: init, run, record, enroll and sync leave nothing that another
/// user can read, on either side, and the control sockets are private from
/// the moment they exist.
#[test]
fn everything_made_by_init_run_record_and_sync_is_private() {
    usual_umask();
    let t = tempfile::tempdir().unwrap();
    let data = init_server(t.path());
    let srv = Server::start(&data);
    let sock = std::fs::metadata(data.join("control.sock")).unwrap();
    assert_eq!(
        sock.permissions().mode() & 0o077,
        0,
        "server control socket"
    );
    let a = Agent::init(&t.path().join("agent"));
    ok(&a.run(
        &["record", "--duration", "2", "--fast", "--case", "C-1"],
        Duration::from_secs(120),
    ));
    a.enroll(&srv.quic, &token(&data), &data.join("ca.crt"));
    ok(&a.run(&["sync", "--until-drained"], Duration::from_secs(120)));
    // A running agent's socket.
    let mut run = a.command(&["run", "--source", "lavfi"]).spawn().unwrap();
    let asock = a.dir.join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !asock.exists() {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = std::fs::metadata(&asock).unwrap().permissions().mode();
    let _ = Command::new("kill").arg(run.id().to_string()).status();
    let _ = run.wait();
    assert_eq!(mode & 0o077, 0, "agent control socket {mode:o}");
    assert!(a.dir.join("media").is_dir() && data.join("blobs").is_dir());
    drop(srv);
    let bad: Vec<String> = [&data, &a.dir]
        .iter()
        .flat_map(|d| open_to_others(d))
        .collect();
    assert!(bad.is_empty(), "open to other users:\n{}", bad.join("\n"));
}

/// Item 3: `run` refuses a data folder, key or index that others can
/// read, naming it and the chmod that fixes it; both binaries.
#[test]
fn run_refuses_a_data_folder_others_can_read() {
    let t = tempfile::tempdir().unwrap();
    let data = init_server(t.path());
    for (path, mode, fix) in [
        (data.clone(), 0o755, "chmod 700"),
        (data.join("ca.key"), 0o644, "chmod 600"),
        (data.join("index"), 0o750, "chmod 700"),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = server(
            &["run", "--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"],
            &data,
        );
        let e = stderr(&o);
        assert!(!o.status.success(), "{e}");
        assert!(e.contains(&format!("{fix} {}", path.display())), "{e}");
        assert!(e.contains("open to other users"), "{e}");
        let back = if mode == 0o644 { 0o600 } else { 0o700 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(back)).unwrap();
    }
    let a = Agent::init(&t.path().join("agent"));
    std::fs::set_permissions(&a.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = a.run(
        &["record", "--duration", "1", "--fast"],
        Duration::from_secs(60),
    );
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains(&format!("chmod 700 {}", a.dir.display())), "{e}");
    // Nothing was recorded on the open folder.
    assert!(
        !a.dir.join("chain.log").exists()
            || std::fs::metadata(a.dir.join("chain.log")).unwrap().len() == 0
    );
}

/// An admin command given a folder that is not a data folder refuses, and
/// creates nothing there (it used to create index/ and leaves.log).
#[test]
fn admin_commands_refuse_a_folder_that_is_not_a_data_folder() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("not-data");
    std::fs::create_dir(&empty).unwrap();
    let cmds: [&[&str]; 6] = [
        &["device", "add", "--name", "x"],
        &["device", "list"],
        &["device", "revoke", "0011223344556677"],
        &["scrub"],
        &["verify"],
        &["user", "list"],
    ];
    for args in cmds {
        let o = server(args, &empty);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}: {e}");
        assert!(
            e.contains("not a data folder (no config.toml)"),
            "{args:?}: {e}"
        );
        assert!(e.starts_with("fieldseal-server: error: "), "{args:?}: {e}");
        let left: Vec<_> = std::fs::read_dir(&empty).unwrap().collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
}

/// A second `run` on a folder says at once which process holds it; the
/// first goes on serving.
#[test]
fn a_second_run_names_the_server_holding_the_folder_at_once() {
    let t = tempfile::tempdir().unwrap();
    let data = init_server(t.path());
    let first = Server::start(&data);
    let began = Instant::now();
    let o = server(
        &["run", "--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        &data,
    );
    let took = began.elapsed();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    let want = format!(
        "another server (pid {}) holds the data folder",
        first.child.id()
    );
    assert!(e.contains(&want), "{e}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    ok(&server(&["device", "list"], &data));
}

/// Errors name what they are about, once, in one style, with no backtrace
/// (RUST_BACKTRACE=1 is set) and no colour codes on a pipe.
#[test]
fn errors_name_the_thing_once_without_backtraces_or_colour() {
    let t = tempfile::tempdir().unwrap();
    let data = init_server(t.path());
    let check = |e: &str| {
        assert!(!e.contains("acktrace") && !e.contains('\u{1b}'), "{e}");
        let first = e.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("fieldseal-server: error: ")
                || first.starts_with("fieldseal-agent: error: "),
            "{e}"
        );
    };
    // The address in use: which one, and the flag that sets it.
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let o = server(&["run", "--quic", &addr, "--http", "127.0.0.1:0"], &data);
    let e = stderr(&o);
    check(&e);
    assert!(e.contains(&addr) && e.contains("--quic"), "{e}");
    assert_eq!(e.matches("Address already in use").count(), 1, "{e}");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let e = stderr(&server(
        &["run", "--quic", "127.0.0.1:0", "--http", &addr],
        &data,
    ));
    check(&e);
    assert!(e.contains(&addr) && e.contains("--http"), "{e}");
    // The config file and the line of a TOML error.
    let cfg = data.join("config.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("quic_listen = [\n");
    std::fs::write(&cfg, text).unwrap();
    let e = stderr(&server(&["run"], &data));
    check(&e);
    assert!(
        e.contains(&cfg.display().to_string()) && e.contains("line"),
        "{e}"
    );
    // The agent: a folder never initialised, a key missing.
    let a = Agent {
        dir: t.path().join("nothing"),
        env: Vec::new(),
    };
    std::fs::create_dir(&a.dir).unwrap();
    let e = stderr(&a.run(&["status"], Duration::from_secs(30)));
    check(&e);
    assert!(
        e.contains("device.key") && e.contains("run `fieldseal-agent init"),
        "{e}"
    );
}

/// An agent whose config.toml is missing or emptied says so, naming the
/// file, instead of recording on defaults.
#[test]
fn an_agent_without_its_config_says_so_instead_of_using_defaults() {
    let t = tempfile::tempdir().unwrap();
    let a = Agent::init(&t.path().join("agent"));
    let cfg = a.dir.join("config.toml");
    for (contents, want) in [
        (None, "config.toml: missing"),
        (Some(""), "config.toml: empty"),
    ] {
        match contents {
            None => std::fs::remove_file(&cfg).unwrap(),
            Some(c) => std::fs::write(&cfg, c).unwrap(),
        }
        let o = a.run(
            &["record", "--duration", "1", "--fast"],
            Duration::from_secs(60),
        );
        let e = stderr(&o);
        assert!(!o.status.success(), "{e}");
        assert!(
            e.contains(&cfg.display().to_string()) && e.contains(want),
            "{e}"
        );
    }
    assert!(
        !a.dir.join("chain.log").exists(),
        "recorded without a config"
    );
}

/// `sync --until-drained` with the server gone says what is left, and gives
/// up after --timeout with a non-zero status.
#[test]
fn sync_until_drained_reports_progress_and_gives_up_after_its_timeout() {
    let t = tempfile::tempdir().unwrap();
    let data = init_server(t.path());
    let a = Agent::init(&t.path().join("agent"));
    {
        let srv = Server::start(&data);
        a.enroll(&srv.quic, &token(&data), &data.join("ca.crt"));
    }
    ok(&a.run(
        &["record", "--duration", "2", "--fast"],
        Duration::from_secs(120),
    ));
    let began = Instant::now();
    let o = a.run(
        &["sync", "--until-drained", "--timeout", "8s"],
        Duration::from_secs(60),
    );
    let took = began.elapsed();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert!(e.contains("gave up after 8 s (--timeout)"), "{e}");
    assert!(
        e.contains("not acknowledged; server not reached yet"),
        "{e}"
    );
    assert!(
        e.lines().filter(|l| l.starts_with("sync: ")).count() >= 1,
        "no progress line: {e}"
    );
}
