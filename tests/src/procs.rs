//! The real binaries as child processes, for fault scenarios that need a
//! process of their own (a faked clock, a full disk, a kill). Needs the
//! workspace binaries built (`make test` builds them first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The path of workspace binary `name` next to the test executable.
///
/// # Panics
/// If it is not built.
pub fn bin(name: &str) -> PathBuf {
    // target/debug/deps/TEST-… → target/debug/NAME
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` (make test does)",
        path.display()
    );
    path
}

/// A UDP port on 127.0.0.1 that is free now and that the kernel will not
/// hand to anyone else's `bind(…:0)` later: one below Linux's ephemeral
/// range (`net.ipv4.ip_local_port_range`, 32768–60999 by default).
///
/// For a server that is killed and restarted on the same address while
/// clients keep dialling it: a port picked by `bind(…:0)` is an ephemeral
/// one, and while the server is down another test's client socket may be
/// given it, so the restart fails with "address in use".
///
/// # Panics
/// If no port in 20000–32767 is free after many tries.
pub fn stable_udp_port() -> u16 {
    use std::net::{TcpListener, UdpSocket};
    let low = ephemeral_low().unwrap_or(32768).clamp(20001, 65535);
    // Spread tests that start at once over the range: the clock's
    // nanoseconds and the process id, stepped by a prime.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) ^ (u64::from(std::process::id()) << 20);
    let span = u64::from(low - 20000);
    for _ in 0..1000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + u16::try_from((x >> 33) % span).expect("below the range");
        let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free UDP port below the ephemeral range");
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// An agent data folder driven through `fieldseal-agent`.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The data folder.
    pub dir: PathBuf,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
}

impl Agent {
    /// `init` a data folder at `dir` with a small, quick camera (320x240,
    /// 1 s segments).
    ///
    /// # Panics
    /// If init fails.
    pub fn init(dir: &Path) -> Agent {
        Agent::init_with(dir, &[], Vec::new(), None)
    }

    /// [`Agent::init`] with more arguments for `init` (`--pkcs11 …`), the
    /// environment `env` for every command, and `stdin` written to the
    /// command's standard input (a PIN for `--pin -`).
    ///
    /// # Panics
    /// If init fails.
    pub fn init_with(
        dir: &Path,
        args: &[&str],
        env: Vec<(String, String)>,
        stdin: Option<&str>,
    ) -> Agent {
        let a = Agent {
            dir: dir.to_path_buf(),
            env,
        };
        let mut all = vec!["init"];
        all.extend_from_slice(args);
        ok(&a.run_with_stdin(&all, stdin.unwrap_or(""), Duration::from_secs(30)));
        let cfg = std::fs::read_to_string(dir.join("config.toml"))
            .expect("config")
            .replace("width = 1280", "width = 320")
            .replace("height = 720", "height = 240")
            .replace("segment_seconds = 4", "segment_seconds = 1")
            .replace("video_bitrate = 2000000", "video_bitrate = 300000");
        std::fs::write(dir.join("config.toml"), cfg).expect("config");
        a
    }

    /// The command `fieldseal-agent ARGS --data DIR`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("fieldseal-agent"));
        c.args(args)
            .arg("--data")
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Run a command to its end; killed (and the test failed) after `limit`.
    ///
    /// # Panics
    /// If it cannot start or runs past `limit`.
    pub fn run(&self, args: &[&str], limit: Duration) -> Output {
        let child = self.command(args).spawn().expect("spawn fieldseal-agent");
        wait_limited(child, limit, &format!("fieldseal-agent {args:?}"))
    }

    /// [`Agent::run`] with `input` on its standard input.
    ///
    /// # Panics
    /// If it cannot start or runs past `limit`.
    pub fn run_with_stdin(&self, args: &[&str], input: &str, limit: Duration) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn fieldseal-agent");
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("write stdin");
        drop(stdin);
        wait_limited(child, limit, &format!("fieldseal-agent {args:?}"))
    }

    /// `enroll` with a server at `addr` using `token` and its CA file.
    ///
    /// # Panics
    /// If enrolment fails.
    pub fn enroll(&self, addr: &str, token: &str, ca: &Path) {
        ok(&self.run(
            &[
                "enroll",
                "--server",
                addr,
                "--token",
                token,
                "--ca",
                ca.to_str().expect("utf-8 path"),
            ],
            Duration::from_secs(60),
        ));
    }
}

/// Wait for `child` at most `limit`; kill it and panic past that.
///
/// # Panics
/// When the limit passes.
pub fn wait_limited(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    // Drain the pipes while waiting, or a chatty child blocks on a full pipe.
    let out = child.stdout.take();
    let err = child.stderr.take();
    let read = |p: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    };
    let out_t = read(out.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err_t = read(err.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// The stdout of a successful command.
///
/// # Panics
/// If it failed, with its output.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// libfaketime's preload library, if installed (Debian package `faketime`).
pub fn libfaketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A tmpfs of a given size mounted on a folder (we run as root; where
/// mounting is not permitted, [`Tmpfs::mount`] says why and the scenario is
/// skipped loudly). Unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    /// The mount point.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `bytes` on `path` (created if missing).
    ///
    /// # Errors
    /// Why it could not be mounted (not root, no permission in this
    /// container, no `mount`).
    pub fn mount(path: &Path, bytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Grow or shrink it to `bytes` (never below what is used).
    ///
    /// # Errors
    /// The remount failed.
    pub fn resize(&self, bytes: u64) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Bytes in use.
    ///
    /// # Panics
    /// If `df` fails.
    pub fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.path)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process of the test may still hold a file open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
