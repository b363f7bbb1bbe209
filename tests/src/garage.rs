//! A real Garage cluster for the tests with blobs on S3: three nodes on
//! loopback, each a `garage server` child process with its own folders and
//! ports, `replication_factor = 3` and `consistency_mode = "consistent"`, a
//! layout of the three, an access key and buckets.
//!
//! The binary is `FIELDSEAL_GARAGE` if set, else the one
//! `scripts/install-deps.sh` builds into `~/.cache/fieldseal/garage/bin`,
//! else `garage` on the PATH. Without one a test is skipped with a message,
//! except in CI (`CI=true`), where that is a failure: CI runs install-deps.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fieldseal_server::blobstore::s3::{S3Settings, S3Store};

use crate::procs::stable_udp_port;

/// The access key every test cluster imports (Garage's format: `GK` and 24
/// hex digits; the secret, 64).
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
/// Its secret.
pub const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The region the nodes sign for.
pub const REGION: &str = "garage";

/// How long a node may take to answer `garage status`, and the cluster to
/// accept a bucket, on a loaded two-core machine (about 2 s when quiet).
const BOOT: Duration = Duration::from_secs(90);

/// The Garage binary, if there is one.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FIELDSEAL_GARAGE") {
        return Some(PathBuf::from(p));
    }
    let root = std::env::var_os("FIELDSEAL_GARAGE_ROOT")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/fieldseal/garage"))
        });
    if let Some(bin) = root.map(|r| r.join("bin/garage")).filter(|b| b.exists()) {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("garage"))
        .find(|b| b.exists())
}

/// The binary, or `None` after saying why the test is skipped.
///
/// # Panics
/// In CI (`CI=true`) when there is none: install-deps builds it there.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    let b = binary();
    if b.is_none() {
        let why = "no Garage binary (scripts/install-deps.sh builds it into \
                   ~/.cache/fieldseal/garage/bin; or set FIELDSEAL_GARAGE)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: {why}, and CI must run it"
        );
        eprintln!("SKIPPED {test}: {why}");
    }
    b
}

/// One node: its configuration file, ports and process.
#[derive(Debug)]
struct Node {
    dir: PathBuf,
    rpc: u16,
    s3: u16,
    id: String,
    child: Option<Child>,
}

/// Three Garage nodes on loopback, stopped and removed on drop.
#[derive(Debug)]
pub struct Garage {
    bin: PathBuf,
    nodes: Vec<Node>,
    /// The nodes' folders (deleted on drop).
    pub dir: tempfile::TempDir,
    buckets: u32,
}

impl Garage {
    /// Start three nodes, lay the cluster out and import [`KEY_ID`].
    ///
    /// # Errors
    /// A node does not start or the cluster does not form within [`BOOT`].
    pub fn start(bin: &Path) -> anyhow::Result<Garage> {
        let dir = tempfile::tempdir()?;
        let secret = hex_of(&std::process::id().to_le_bytes().repeat(8));
        let mut g = Garage {
            bin: bin.to_path_buf(),
            nodes: Vec::new(),
            dir,
            buckets: 0,
        };
        for i in 0..3 {
            let ndir = g.dir.path().join(format!("node{i}"));
            fs::create_dir_all(&ndir)?;
            let (rpc, s3) = (stable_udp_port(), stable_udp_port());
            fs::write(
                ndir.join("garage.toml"),
                format!(
                    r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
# No ack without a durable write: every write is fsynced on each node of
# its quorum before Garage answers.
metadata_fsync = true
data_fsync = true
replication_factor = 3
consistency_mode = "consistent"
# Blocks stored as sent, so that a test can damage one on disk.
compression_level = "none"
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
"#,
                    meta = ndir.join("meta").display(),
                    data = ndir.join("data").display(),
                ),
            )?;
            g.nodes.push(Node {
                dir: ndir,
                rpc,
                s3,
                id: String::new(),
                child: None,
            });
        }
        for i in 0..3 {
            g.spawn(i)?;
        }
        for i in 0..3 {
            g.wait_up(i)?;
            let out = g.cli(i, &["node", "id", "-q"])?;
            let id = out.lines().next().unwrap_or("").trim();
            g.nodes[i].id = id.split('@').next().unwrap_or("").to_string();
        }
        g.connect_all()?;
        for i in 0..3 {
            let id = g.nodes[i].id.clone();
            g.cli(0, &["layout", "assign", "-z", "dc1", "-c", "1G", &id])?;
        }
        g.cli(0, &["layout", "apply", "--version", "1"])?;
        g.cli(
            0,
            &["key", "import", "--yes", "-n", "fieldseal", KEY_ID, SECRET],
        )?;
        Ok(g)
    }

    /// Start node `i`'s process (output in its folder's `garage.log`).
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("garage.log"))?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(n.dir.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        n.child = Some(child);
        Ok(())
    }

    /// Wait until node `i` answers `garage status`.
    fn wait_up(&self, i: usize) -> anyhow::Result<()> {
        let end = Instant::now() + BOOT;
        loop {
            match self.cli(i, &["status"]) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > end => {
                    return Err(e.context(format!("node {i} did not come up")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Connect every running node to every other (what bootstrap peers would
    /// do, without waiting for Garage's periodic reconnection, ~30 s).
    fn connect_all(&self) -> anyhow::Result<()> {
        for a in 0..3 {
            for b in 0..3 {
                if a != b && self.running(a) && self.running(b) {
                    let peer = format!("{}@127.0.0.1:{}", self.nodes[b].id, self.nodes[b].rpc);
                    self.cli(a, &["node", "connect", &peer])?;
                }
            }
        }
        Ok(())
    }

    fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Run `garage -c NODE_CONFIG ARGS…` against node `i`; its stdout.
    ///
    /// # Errors
    /// It exits with a failure (the error has its stderr).
    pub fn cli(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(self.nodes[i].dir.join("garage.toml"))
            .args(args)
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "garage {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A new empty bucket the test key may read and write, created once the
    /// cluster accepts it (right after the layout is applied it may not).
    ///
    /// # Errors
    /// Not accepted within [`BOOT`].
    pub fn bucket(&mut self) -> anyhow::Result<String> {
        self.buckets += 1;
        let name = format!("fieldseal-{}", self.buckets);
        let end = Instant::now() + BOOT;
        while let Err(e) = self.cli(0, &["bucket", "create", &name]) {
            if Instant::now() > end {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        self.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", &name, "--key", KEY_ID,
            ],
        )?;
        Ok(name)
    }

    /// Node `i`'s S3 endpoint.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3)
    }

    /// Settings for `bucket` through node `i`'s endpoint.
    pub fn settings(&self, i: usize, bucket: &str) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint(i),
            bucket: bucket.into(),
            region: REGION.into(),
            access_key_id: KEY_ID.into(),
            secret_access_key: SECRET.into(),
        }
    }

    /// A store on `bucket` through node `i`.
    ///
    /// # Panics
    /// On invalid settings (never, for these).
    pub fn store(&self, i: usize, bucket: &str) -> S3Store {
        S3Store::new(&self.settings(i, bucket)).expect("valid settings")
    }

    /// The `[blobs]` table of a server's `config.toml` for `bucket` through
    /// node `i`, with the credentials in `creds` (written 0600).
    ///
    /// # Errors
    /// The credentials file cannot be written.
    pub fn config_toml(&self, i: usize, bucket: &str, creds: &Path) -> anyhow::Result<String> {
        write_private(
            creds,
            &format!("access_key_id = \"{KEY_ID}\"\nsecret_access_key = \"{SECRET}\"\n"),
        )?;
        Ok(format!(
            "\n[blobs]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{bucket}\"\nregion = \"{REGION}\"\ncredentials_file = \"{}\"\n",
            self.endpoint(i),
            creds.display()
        ))
    }

    /// Kill node `i` (as a crash or a pulled cable would stop it).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start node `i` again and connect it to the others at once.
    ///
    /// # Errors
    /// It does not come up within [`BOOT`].
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_up(i)?;
        self.connect_all()
    }

    /// Node `i`'s data folder (where its blocks are files).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("data")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Write `text` to a new file readable by its owner alone.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
