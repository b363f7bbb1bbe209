//! # fieldseal-tests
//!
//! End-to-end and fault-injection tests that run agent and server together,
//! in one process: a server on `127.0.0.1:0` in a temporary folder, agents
//! with an in-memory store, and a [`relay::Relay`] between them that loses,
//! delays, reorders, duplicates or cuts datagrams.
#![forbid(unsafe_code)]

pub mod blobfaults;
pub mod faults;
pub mod flood;
pub mod fsync_audit;
pub mod garage;
pub mod gpsd;
pub mod http;
pub mod lazyfs;
pub mod powercut;
pub mod procs;
pub mod relay;
pub mod sim;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use fieldseal_agent::sync::{self, Enrollment, MemStore, SyncConfig};
use fieldseal_proto::sample::{self, SampleChain};
use fieldseal_server::{admin, RunOptions, Running};

pub use relay::{Relay, SplitMix};

/// Route the test's tracing to the test output (once).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The password of the `admin` user that a [`Harness`] creates.
pub const ADMIN_PASSWORD: &str = "test-password";

/// A running server in a temporary folder.
#[derive(Debug)]
pub struct Harness {
    /// The data folder (deleted on drop).
    pub dir: tempfile::TempDir,
    /// The server.
    pub server: Running,
}

impl Harness {
    /// Initialise a data folder and start a server on `127.0.0.1:0`.
    ///
    /// # Errors
    /// Any failure to set up.
    pub async fn start() -> anyhow::Result<Harness> {
        Harness::start_with(tempfile::tempdir()?).await
    }

    /// As [`Harness::start`], with the data folder in `parent` (a small
    /// filesystem, for disk-full scenarios).
    ///
    /// # Errors
    /// Any failure to set up.
    pub async fn start_in(parent: &Path) -> anyhow::Result<Harness> {
        Harness::start_with(tempfile::tempdir_in(parent)?).await
    }

    /// As [`Harness::start`], with the server's `config.toml` edited by
    /// `edit` after `init` (e.g. a short upload deadline).
    ///
    /// # Errors
    /// Any failure to set up.
    pub async fn start_configured(edit: impl FnOnce(String) -> String) -> anyhow::Result<Harness> {
        Harness::start_edited(tempfile::tempdir()?, edit).await
    }

    async fn start_with(dir: tempfile::TempDir) -> anyhow::Result<Harness> {
        Harness::start_edited(dir, |c| c).await
    }

    async fn start_edited(
        dir: tempfile::TempDir,
        edit: impl FnOnce(String) -> String,
    ) -> anyhow::Result<Harness> {
        init_tracing();
        admin::init(dir.path(), &[], Some(ADMIN_PASSWORD.into()))?;
        let config = fieldseal_server::datadir::DataDir::new(dir.path()).config();
        std::fs::write(&config, edit(std::fs::read_to_string(&config)?))?;
        let server = fieldseal_server::start(
            dir.path(),
            RunOptions {
                quic: Some("127.0.0.1:0".parse()?),
                http: Some("127.0.0.1:0".parse()?),
            },
        )
        .await?;
        Ok(Harness { dir, server })
    }

    /// The data folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The server's address as `HOST:PORT`.
    pub fn server_addr(&self) -> String {
        self.server.quic_addr.to_string()
    }

    /// Issue an enrolment token valid for `ttl_secs`.
    ///
    /// # Errors
    /// Index errors.
    pub fn token(&self, name: &str, ttl_secs: u64) -> anyhow::Result<String> {
        Ok(admin::device_add(
            &self.server.shared.db,
            &fieldseal_server::pki::ca_sha256(self.path())?,
            name,
            ttl_secs,
            fieldseal_server::now_us(),
        )?
        .token)
    }

    /// Issue a token that enrols device `id` again (`device reenrol`).
    ///
    /// # Errors
    /// Index errors; `id` is not enrolled.
    pub fn reenrol_token(
        &self,
        id: fieldseal_proto::identity::DeviceId,
        ttl_secs: u64,
    ) -> anyhow::Result<String> {
        admin::device_reenrol(
            &self.server.shared.db,
            &fieldseal_server::pki::ca_sha256(self.path())?,
            id,
            ttl_secs,
            fieldseal_server::now_us(),
        )?
        .map(|t| t.token)
        .ok_or_else(|| anyhow::anyhow!("device {id} is not enrolled"))
    }

    /// Enrol `key` with a fresh token (directly, not through a relay).
    ///
    /// # Errors
    /// Enrolment errors.
    pub async fn enroll(&self, key: &SigningKey) -> anyhow::Result<Enrollment> {
        let token = self.token("test device", 3600)?;
        Ok(sync::enroll(
            key,
            &self.server_addr(),
            &token,
            Some(fieldseal_server::datadir::DataDir::new(self.path()).ca_cert()),
        )
        .await?)
    }

    /// A sync configuration for tests: connect to `addr` (a relay, usually),
    /// short idle timeout and backoff so that faults heal within seconds.
    pub fn sync_config(addr: &str, key: &SigningKey, e: &Enrollment) -> SyncConfig {
        let mut cfg = SyncConfig::from_enrollment(addr, key.clone(), e);
        cfg.idle_timeout = Duration::from_secs(3);
        cfg.machine.backoff_base = Duration::from_millis(100);
        cfg.machine.backoff_max = Duration::from_secs(1);
        cfg.machine.upload_retry = Duration::from_millis(300);
        cfg
    }
}

/// An enrolled device of a [`Harness`] with a signed sample chain in an
/// in-memory store: what most sync scenarios start from.
#[derive(Debug)]
pub struct Device {
    /// Its key.
    pub key: SigningKey,
    /// Its enrolment (client certificate, CA, receipt key).
    pub enrollment: Enrollment,
    /// The store holding its chain and media.
    pub store: Arc<MemStore>,
    /// The chain.
    pub chain: SampleChain,
    /// The folder of its media files (deleted on drop).
    pub media_dir: tempfile::TempDir,
}

impl Harness {
    /// Enrol a device keyed by `seed` with a fresh token and give it a
    /// sample chain (`recordings` segments per recording, `media_len` bytes
    /// each).
    ///
    /// # Errors
    /// Enrolment or I/O errors.
    pub async fn device(
        &self,
        seed: u8,
        recordings: &[u32],
        media_len: usize,
    ) -> anyhow::Result<Device> {
        let key = key(seed);
        let enrollment = self.enroll(&key).await?;
        let media_dir = tempfile::tempdir()?;
        let (store, chain) = store_with_chain(&key, recordings, media_len, media_dir.path())?;
        Ok(Device {
            key,
            enrollment,
            store,
            chain,
            media_dir,
        })
    }
}

/// A device key from a one-byte seed.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A store holding a real signed sample chain (`recordings` segments per
/// recording, `media_len` bytes per segment), with media files in `dir`.
///
/// # Errors
/// I/O errors writing the media files.
pub fn store_with_chain(
    key: &SigningKey,
    recordings: &[u32],
    media_len: usize,
    dir: &Path,
) -> anyhow::Result<(Arc<MemStore>, SampleChain)> {
    let chain = sample::build(key, recordings, media_len);
    let store = Arc::new(MemStore::new(dir));
    for e in &chain.entries {
        store.push(e, chain.media.get(&e.seq()).map(Vec::as_slice))?;
    }
    Ok((store, chain))
}
