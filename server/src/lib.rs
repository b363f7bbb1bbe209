//! # fieldseal-server
//!
//! Ingest of device chains over QUIC with mutual TLS: enrolment of devices
//! with one-time tokens and a small CA, the sync protocol (hash-first signed
//! entries answered with signed receipts, resumable segment uploads
//! acknowledged once verified and durable), the per-device chain logs and
//! blob store, the sled index and an append-only transparency log whose leaf
//! index each receipt carries. On demand and in the background it verifies
//! stored chains and re-hashes blobs (`archive.rs`); it signs log checkpoints
//! and gives proofs on the command line (`tlog.rs`). Admin commands reach the
//! running server over a Unix control socket.
//!
//! The files are the source of truth and the index a cache of them:
//! `reindex.rs` rebuilds it, and rolls forward at start what a crash left
//! between the transparency log and the index.
//!
//! Where things are:
//! - `datadir.rs`: the data folder's layout, the only place that knows a
//!   path; `fsutil.rs`: durable writes (fsync of file and folder);
//! - `storage.rs`: chain logs and partial uploads; `equivocation.rs`: the
//!   refused conflicting entries of each device, the first kept, all counted;
//!   `blobstore.rs`: verified segment bytes behind the `BlobStore` trait
//!   (folder, in-memory twin); `leaflog.rs`: `leaves.log`;
//! - `chainindex/`: the `ChainIndex` trait (heads, accepted entries, media
//!   held, the transparency log's appends and proofs) with its in-memory
//!   twin and conformance checks; `db/`: the sled index that implements it,
//!   plus devices, tokens and users;
//! - `ingest/` and `quic/`: the ingest state machines with their executor,
//!   and the QUIC driver that only moves bytes;
//!   `pki.rs`: CA and TLS; `admin.rs`: init, devices, enrolment;
//!   `renew.rs`: device certificates renewed over the sync connection;
//! - `archive.rs`, `tlog.rs`, `reindex.rs`: verify and scrub, checkpoints
//!   and proofs, rebuilding the index; `control.rs`: the admin socket;
//! - `retention.rs`: which media may leave the archive (retention days,
//!   decided cases, legal holds) and the job that expires it;
//!   `report.rs`: the annual report (Art. 35).
//!
//! Errors are `thiserror` enums per concern (`StartError` for starting);
//! `anyhow` is for `main.rs` alone.
//!
//! It signs a checkpoint every `checkpoint_interval_secs` when the log grew.
//!
//! Ingest decisions (one entry, a group commit, an upload's resume point)
//! are sans-IO state machines in `ingest/`, carried out by its blocking
//! executor; the QUIC driver (`quic/`) only moves bytes between them and
//! the network.
//!
//! What it does **not** do yet: the HTTP API and web UI, cases, compliance,
//! checkpoints and proofs served to clients, export (later issues).
#![forbid(unsafe_code)]

pub mod admin;
pub mod archive;
pub mod audit;
pub mod auth;
pub mod blobstore;
pub mod casecheck;
pub mod cases;
pub mod catalogue;
pub mod chainindex;
pub mod compliance;
pub mod config;
pub mod control;
pub mod datadir;
pub mod db;
pub mod equivocation;
pub mod export;
pub mod fault;
pub mod fsutil;
pub mod http;
pub mod ingest;
pub mod leaflog;
pub mod localtime;
pub mod metrics;
pub mod pki;
pub mod quic;
pub mod reindex;
pub mod renew;
pub mod report;
pub mod retention;
pub mod runlock;
pub mod storage;
pub mod timeline;
pub mod tlog;
pub mod users;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use fieldseal_proto::identity::DeviceId;

use crate::blobstore::BlobStore;
use crate::config::Config;
use crate::db::{Db, DeviceRecord};
use crate::pki::{Allowed, Ca};
use crate::storage::Storage;

/// The server clock, µs since the epoch. The only place it is read.
pub fn now_us() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// State shared by every connection of a running server.
#[derive(Debug)]
pub struct Shared {
    /// The data folder.
    pub dir: PathBuf,
    /// The index.
    pub db: Db,
    /// Files.
    pub storage: Storage,
    /// Each device's equivocations: counted, the first kept in full.
    pub equivocations: equivocation::Equivocations,
    /// Verified segment bytes.
    pub blobs: Arc<dyn BlobStore>,
    /// Configuration.
    pub cfg: Config,
    /// Receipt-signing key.
    pub receipt_key: SigningKey,
    /// The CA that issues device certificates.
    pub ca: Ca,
    /// Devices that may complete a sync handshake.
    pub allowed: Allowed,
    /// Live sync connections per device, to close them on revocation.
    live: Mutex<HashMap<DeviceId, Vec<quinn::Connection>>>,
    /// Entries on their way to the committer (`quic::committer`).
    ingest: tokio::sync::mpsc::Sender<quic::Pending>,
    /// Its other end, until `start` hands it to the committer task.
    ingest_rx: Mutex<Option<tokio::sync::mpsc::Receiver<quic::Pending>>>,
    /// One group commit at a time (heads and the log frontier are
    /// read-modify-write), whoever commits: the committer or a test.
    commit_lock: Mutex<()>,
    /// Set when a group commit failed after its leaves became durable:
    /// ingest refuses everything until a restart rolls forward.
    ingest_poisoned: std::sync::OnceLock<String>,
    /// Uploads in progress, by (device, seq): one writer per partial file.
    uploading: Mutex<HashSet<(DeviceId, u64)>>,
    /// Ingest counters for `/metrics`.
    pub counters: metrics::Counters,
    /// Logged-in sessions of the HTTP API (kept here so that a user changed
    /// through the control socket loses them at once).
    pub sessions: auth::Sessions,
    /// Set when shutting down: long blocking work (a scrub) stops at the
    /// next blob instead of holding the runtime's shutdown for hours.
    pub stopping: AtomicBool,
    /// Admission limits of QUIC connections before authentication.
    pub gate: Arc<quic::limits::Gate>,
}

impl Shared {
    /// The server's state on `dir`, loaded as `run` loads it (config, index,
    /// keys, a roll-forward after a crash) but serving nothing: for work that
    /// needs all of it without a running server (the retention job, the
    /// compliance benchmark).
    ///
    /// # Errors
    /// As [`start`], less the listeners.
    pub fn open(dir: &Path) -> Result<Shared, StartError> {
        Shared::load(dir, Config::load(dir)?)
    }

    /// As [`Shared::open`], without waiting for an index another process
    /// holds (an admin command that then asks a starting server instead).
    ///
    /// # Errors
    /// As [`Shared::open`]; at once when the index is held.
    pub fn open_once(dir: &Path) -> Result<Shared, StartError> {
        Shared::load_waiting(dir, Config::load(dir)?, Duration::ZERO)
    }

    /// Load with `cfg`, waiting up to 10 s for an index another process holds.
    fn load(dir: &Path, cfg: Config) -> Result<Shared, StartError> {
        Shared::load_waiting(dir, cfg, Duration::from_secs(10))
    }

    fn load_waiting(dir: &Path, cfg: Config, wait: Duration) -> Result<Shared, StartError> {
        let db = Db::open_waiting(dir, wait)?;
        let allowed = Allowed::default();
        for d in db.devices()? {
            if d.revoked_us.is_none() {
                allowed.insert(d.key.to_bytes());
            }
        }
        let blobs =
            blobstore::open_configured(dir, &cfg.blobs).map_err(|source| StartError::Io {
                what: "the blob store",
                source,
            })?;
        let receipt_key = admin::load_receipt_key(dir)?;
        let (ingest, ingest_rx) = tokio::sync::mpsc::channel(quic::INGEST_QUEUE);
        reindex::roll_forward(dir, &db, blobs.as_ref(), &receipt_key)?;
        reindex::reconcile_media(&db, blobs.as_ref())?;
        let equivocations = equivocation::Equivocations::open(dir, cfg.equivocations_kept)
            .map_err(|source| StartError::Io {
                what: "the equivocation records",
                source,
            })?;
        Ok(Shared {
            dir: dir.to_path_buf(),
            storage: Storage::new(dir),
            equivocations,
            blobs,
            receipt_key,
            ca: Ca::load(dir)?,
            db,
            allowed,
            live: Mutex::default(),
            ingest,
            ingest_rx: Mutex::new(Some(ingest_rx)),
            commit_lock: Mutex::new(()),
            ingest_poisoned: std::sync::OnceLock::new(),
            uploading: Mutex::default(),
            sessions: auth::Sessions::default(),
            counters: metrics::Counters::default(),
            stopping: AtomicBool::new(false),
            gate: Arc::new(quic::limits::Gate::new(quic::limits::Limits::from_config(
                &cfg,
            ))),
            cfg,
        })
    }

    /// Sync connections open now.
    pub fn live_connections(&self) -> usize {
        quic::registry::count(&self.live)
    }

    /// QUIC connections counted by the admission limits now: (all,
    /// unauthenticated).
    pub fn quic_connections(&self) -> (usize, usize) {
        self.gate.lock().counts()
    }

    /// Whether the device has a sync connection open now.
    pub fn is_live(&self, d: DeviceId) -> bool {
        quic::registry::has(&self.live, d)
    }

    /// A device was revoked: refuse its handshakes and close its connections.
    pub fn revoked(&self, d: &DeviceRecord) {
        self.allowed.remove(&d.key.to_bytes());
        // Taken over even if a panic poisoned the lock: a revocation must
        // close the device's connections.
        for c in quic::registry::take(&self.live, d.id) {
            c.close(quic::CLOSE_REVOKED, b"device revoked");
        }
        tracing::warn!(device = %d.id, "device revoked; connections closed");
    }
}

/// Options of `run` that override the configuration file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// QUIC listen address.
    pub quic: Option<SocketAddr>,
    /// HTTP listen address (`config.toml`'s `http_listen` otherwise).
    pub http: Option<SocketAddr>,
}

/// A server started by [`start`].
#[derive(Debug)]
pub struct Running {
    /// The bound QUIC address (useful with port 0).
    pub quic_addr: SocketAddr,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// Shared state, for tests and the control socket.
    pub shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    http: http::serve::HttpServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Held until the server has shut down.
    _lock: runlock::RunLock,
}

impl Running {
    /// Stop accepting, close every connection, flush the index, remove the
    /// control socket.
    pub async fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.http.shutdown().await;
        self.endpoint
            .close(quic::CLOSE_SHUTDOWN, b"server shutting down");
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        let _ = self.shared.db.flush();
        let _ = std::fs::remove_file(control::socket_path(&self.shared.dir));
        // Connection tasks end once their connections are closed; wait for
        // them to let go of the index, so that its lock is free on return
        // (for an admin command, or a restart in the same process).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while Arc::strong_count(&self.shared) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The last entries accepted get under a signed checkpoint before the
        // server goes away.
        if self.shared.cfg.checkpoint_interval_secs > 0 {
            checkpoint_if_grown(self.shared.clone()).await;
        }
    }
}

/// Scrub every `every`, the first time one interval after start (not at
/// once: after a restart, devices catching up come first).
async fn scrub_loop(shared: Arc<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let s = shared.clone();
        let res = tokio::task::spawn_blocking(move || {
            archive::scrub(&s.dir, &s.db, s.blobs.as_ref(), now_us(), &s.stopping)
        })
        .await;
        match res {
            Ok(Ok(o)) if !o.complete => tracing::info!(blobs = o.blobs, "scrub interrupted"),
            Ok(Ok(o)) if o.ok => tracing::info!(blobs = o.blobs, bytes = o.bytes, "scrub: ok"),
            Ok(Ok(o)) => tracing::error!(
                blobs = o.blobs,
                damaged = o.damaged.len(),
                "ALARM scrub: damaged blobs moved to damaged/, their media asked for again"
            ),
            Ok(Err(e)) => tracing::error!("scrub failed: {e:#}"),
            Err(e) => tracing::error!("scrub task: {e}"),
        }
    }
}

/// Apply the retention rule every `every`, the first time one interval
/// after start (`retention.rs`).
async fn retention_loop(shared: Arc<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let s = shared.clone();
        let res = tokio::task::spawn_blocking(move || retention::run(&s, now_us(), false)).await;
        match res {
            Ok(Ok(o)) => tracing::info!(
                ranges = o.expired.len(),
                segments = o.expired.iter().map(|r| r.segments.len()).sum::<usize>(),
                blobs_deleted = o.blobs_deleted.len(),
                "retention: done"
            ),
            Ok(Err(e)) => tracing::error!("retention failed: {e:#}"),
            Err(e) => tracing::error!("retention task: {e}"),
        }
    }
}

/// Sign a checkpoint if the log grew since the latest one (`tlog.rs`).
async fn checkpoint_if_grown(shared: Arc<Shared>) {
    let res = tokio::task::spawn_blocking(move || {
        tlog::checkpoint_if_grown(
            &shared.dir,
            &shared.db,
            &shared.cfg,
            &shared.receipt_key,
            now_us(),
        )
    })
    .await;
    match res {
        Ok(Ok(Some(note))) => {
            let size = note.lines().nth(1).unwrap_or("?").to_owned();
            tracing::info!(size, "checkpoint signed");
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!("ALARM checkpoint not signed: {e:#}"),
        Err(e) => tracing::error!("checkpoint task: {e}"),
    }
}

/// Every `every`, sign a checkpoint if the log grew.
async fn checkpoint_loop(shared: Arc<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        checkpoint_if_grown(shared.clone()).await;
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `config.toml` is missing or wrong.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The index could not be opened (or another server holds it).
    #[error(transparent)]
    Index(#[from] db::DbError),
    /// The receipt key could not be loaded.
    #[error(transparent)]
    Key(#[from] admin::KeyError),
    /// The CA could not be loaded.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// Rolling the index forward after a crash failed.
    #[error(transparent)]
    Reindex(#[from] reindex::ReindexError),
    /// The QUIC endpoint could not be set up (TLS configuration).
    #[error(transparent)]
    Endpoint(#[from] quic::EndpointError),
    /// A listen address could not be bound (in use, not local).
    #[error("cannot listen for {what} on {addr} (set by {set_by}): {source}")]
    Listen {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Where the address comes from, to change it.
        set_by: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A file or socket of the data folder failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `catalogue.toml` is wrong.
    #[error("{}: {source}", path.display())]
    Catalogue {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: catalogue::CatalogueError,
    },
    /// The data folder, a key or the index is open to other users.
    #[error(transparent)]
    NotPrivate(#[from] fsutil::NotPrivate),
    /// Another server runs on the data folder.
    #[error(transparent)]
    Locked(#[from] runlock::LockError),
    /// `start` was called twice on one state.
    #[error("the server was already started")]
    AlreadyStarted,
}

/// Start the server on `dir` in the current tokio runtime.
///
/// # Errors
/// Missing or bad keys, config or index; the address is in use.
pub async fn start(dir: &Path, opts: RunOptions) -> Result<Running, StartError> {
    let cfg = Config::load(dir)?;
    let data = datadir::DataDir::new(dir);
    fsutil::check_private(data.private_paths().iter().map(PathBuf::as_path))?;
    // Before the index: a second server is told at once who holds it.
    let lock = runlock::take(dir)?;
    let catalogue = load_catalogue(dir)?;
    let shared = Arc::new(Shared::load(dir, cfg)?);
    let addr = opts.quic.unwrap_or(shared.cfg.quic_listen);
    let endpoint = quic::endpoint(&shared, addr).map_err(|e| match e {
        quic::EndpointError::Io(source) => StartError::Listen {
            what: "QUIC (UDP)",
            addr,
            set_by: "--quic, or quic_listen in config.toml",
            source,
        },
        other => other.into(),
    })?;
    let io = |what| move |source| StartError::Io { what, source };
    let quic_addr = endpoint.local_addr().map_err(io("the QUIC socket"))?;
    let sock = control::socket_path(dir);
    let _ = std::fs::remove_file(&sock);
    // Whoever can connect can enrol and revoke devices: the owner's alone
    // from the moment it exists (and inside a folder that is the owner's).
    let listener = fsutil::with_private_umask(|| tokio::net::UnixListener::bind(&sock))
        .map_err(io("the control socket"))?;
    // Bound before any task starts: a busy address fails the start cleanly.
    let app = http::app(Arc::new(http::AppState::new(shared.clone(), catalogue)));
    let http_addr = opts.http.unwrap_or(shared.cfg.http_listen);
    let http = http::serve::start(dir, http_addr, shared.cfg.http_tls, app)?;
    // Taken once, at start; a panic cannot have poisoned it before.
    let committer_rx = shared
        .ingest_rx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .ok_or(StartError::AlreadyStarted)?;
    let mut tasks = vec![
        tokio::spawn(quic::committer(shared.clone(), committer_rx)),
        tokio::spawn(quic::accept_loop(endpoint.clone(), shared.clone())),
        tokio::spawn(control::serve(listener, shared.clone())),
    ];
    if shared.cfg.scrub_interval_secs > 0 {
        let every = Duration::from_secs(shared.cfg.scrub_interval_secs);
        tasks.push(tokio::spawn(scrub_loop(shared.clone(), every)));
    }
    if shared.cfg.checkpoint_interval_secs > 0 {
        let every = Duration::from_secs(shared.cfg.checkpoint_interval_secs);
        tasks.push(tokio::spawn(checkpoint_loop(shared.clone(), every)));
    }
    if shared.cfg.retention_interval_secs > 0 {
        let every = Duration::from_secs(shared.cfg.retention_interval_secs);
        tasks.push(tokio::spawn(retention_loop(shared.clone(), every)));
    }
    tracing::info!(%quic_addr, http = %http.addr, dir = %dir.display(), "fieldseal server running");
    Ok(Running {
        quic_addr,
        http_addr: http.addr,
        shared,
        endpoint,
        http,
        tasks,
        _lock: lock,
    })
}

/// The published catalogue: `catalogue.toml` in the data folder, else the
/// one Article 27 itself implies.
///
/// # Errors
/// A `catalogue.toml` that cannot be read or is wrong.
pub fn load_catalogue(dir: &Path) -> Result<catalogue::Catalogue, StartError> {
    let path = datadir::DataDir::new(dir).catalogue();
    match std::fs::read_to_string(&path) {
        Ok(text) => catalogue::Catalogue::from_toml(&text)
            .map_err(|source| StartError::Catalogue { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(catalogue::Catalogue::article_27())
        }
        Err(source) => Err(StartError::Io {
            what: "catalogue.toml",
            source,
        }),
    }
}

/// Run until `shutdown` completes, then shut down cleanly.
///
/// # Errors
/// As [`start`].
pub async fn run(
    dir: &Path,
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let running = start(dir, opts).await?;
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}
