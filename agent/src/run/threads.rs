//! The run's helper threads: the sync client (its own small tokio runtime)
//! and the control socket's listener, both feeding or reading the chain
//! writer without ever blocking it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::session::Input;
use crate::control::{self, Response};
use crate::devicekey::DeviceKey;

/// How often a recorder whose device the server refused looks whether it
/// was enrolled again (the refusal marker gone): a file's existence, cheap.
const REFUSED_POLL: Duration = Duration::from_secs(5);

/// The run's sync: a [`SyncThread`] while it may sync; while the server's
/// refusal of the device stands (revoked, certificate expired), none, and a
/// look every [`REFUSED_POLL`] for a re-enrolment, after which it starts
/// again with the new certificate — the recorder need not be restarted.
pub(super) struct Syncing {
    /// The device key, for the handshakes of every sync thread started.
    key: DeviceKey,
    /// What the sync clients did this run (acknowledgements refused, …),
    /// for `status`: one for the run, shared by every thread started.
    progress: Arc<crate::sync::driver::Progress>,
    thread: Option<SyncThread>,
    refused: bool,
    checked: std::time::Instant,
}

impl Syncing {
    /// Start syncing if the device is enrolled and not refused.
    pub(super) fn start(
        dir: &Path,
        key: DeviceKey,
        store: &Arc<crate::syncstore::FsSyncStore>,
    ) -> Syncing {
        let refused = !matches!(crate::sync::standing::load_refusal(dir), Ok(None));
        let progress = Arc::new(crate::sync::driver::Progress::default());
        Syncing {
            thread: SyncThread::start(dir, key.clone(), Arc::clone(store), Arc::clone(&progress)),
            key,
            progress,
            refused,
            checked: std::time::Instant::now(),
        }
    }

    /// What the sync clients did this run.
    pub(super) fn progress(&self) -> Arc<crate::sync::driver::Progress> {
        Arc::clone(&self.progress)
    }

    /// Was sync started (the device is enrolled)?
    pub(super) fn enabled(&self) -> bool {
        self.thread.is_some() || self.refused
    }

    /// Notice a refusal that ended the sync thread, and a re-enrolment that
    /// lifted it.
    pub(super) fn poll(&mut self, dir: &Path, store: &Arc<crate::syncstore::FsSyncStore>) {
        if self.thread.as_ref().is_some_and(SyncThread::was_refused) {
            if let Some(t) = self.thread.take() {
                t.finish_now();
            }
            self.refused = true;
        }
        if !self.refused || self.checked.elapsed() < REFUSED_POLL {
            return;
        }
        self.checked = std::time::Instant::now();
        if matches!(crate::sync::standing::load_refusal(dir), Ok(None)) {
            tracing::info!("enrolled again: syncing");
            self.refused = false;
            self.thread = SyncThread::start(
                dir,
                self.key.clone(),
                Arc::clone(store),
                Arc::clone(&self.progress),
            );
        }
    }

    /// Stop, giving the last entries `grace` to reach the server.
    pub(super) fn finish(self, store: &crate::syncstore::FsSyncStore, grace: Duration) {
        if let Some(t) = self.thread {
            t.finish(store, grace);
        }
    }
}

/// The sync client, on its own thread with a small tokio runtime, so that the
/// network never touches the capture or the chain writer.
pub(super) struct SyncThread {
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
    /// Set when the run ended because the server refused the device.
    refused: Arc<AtomicBool>,
}

impl SyncThread {
    /// Start syncing if the device is enrolled (`DIR/server.txt` exists),
    /// with the run's device key `key` for the handshakes.
    pub(super) fn start(
        dir: &Path,
        key: DeviceKey,
        store: Arc<crate::syncstore::FsSyncStore>,
        progress: Arc<crate::sync::driver::Progress>,
    ) -> Option<SyncThread> {
        if !dir.join("server.txt").exists() {
            return None;
        }
        // The server refused this device for good (revoked, or its
        // certificate expired): recording goes on, syncing does not until
        // it is enrolled again.
        match crate::sync::standing::load_refusal(dir) {
            Ok(None) => {}
            Ok(Some(r)) => {
                tracing::warn!("not syncing: {}", r.advice());
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "the refusal marker cannot be read; not syncing");
                return None;
            }
        }
        let cfg = match crate::sync::SyncConfig::from_data_dir_with(dir, key) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "sync is not configured correctly; recording goes on without it");
                return None;
            }
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let refused = Arc::new(AtomicBool::new(false));
        let refused_flag = Arc::clone(&refused);
        let thread = std::thread::Builder::new()
            .name("sync".into())
            .spawn(move || {
                // One worker: uploads must not take CPU from the encoder.
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "no runtime for sync");
                        return;
                    }
                };
                match rt.block_on(crate::sync::driver::run_sync(store, cfg, progress, rx)) {
                    Ok(_) => {}
                    // Said (with what to do) where it was kept.
                    Err(crate::sync::SyncError::Refused(r)) => {
                        tracing::error!("{}", r.advice());
                        refused_flag.store(true, Ordering::Relaxed);
                    }
                    Err(e) => tracing::error!(error = %e, "sync stopped"),
                }
            })
            .expect("spawn sync thread");
        Some(SyncThread {
            stop,
            thread,
            refused,
        })
    }

    fn was_refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    /// Join a thread that has ended (or end it).
    fn finish_now(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }

    pub(super) fn finish(self, store: &crate::syncstore::FsSyncStore, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        // A sync that ended by itself (the device was refused) sends nothing more.
        while store.backlog().0 > 0
            && std::time::Instant::now() < deadline
            && !self.thread.is_finished()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

pub(super) fn spawn_control(
    listener: std::os::unix::net::UnixListener,
    tx: SyncSender<Input>,
    shutdown: Arc<AtomicBool>,
) {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if shutdown.load(Ordering::Relaxed) {
                    // Requests after a shutdown began are refused, not queued.
                    if let Ok(s) = stream {
                        let _ = control::write_response(
                            &s,
                            &Response::err("the agent is shutting down"),
                        );
                    }
                    continue;
                }
                let Ok(stream) = stream else { continue };
                let resp = match control::read_request(&stream) {
                    Ok(req) => {
                        let (rtx, rrx) = mpsc::channel();
                        if tx.send(Input::Request(req, rtx)).is_err() {
                            return;
                        }
                        rrx.recv()
                            .unwrap_or_else(|_| Response::err("the agent stopped"))
                    }
                    // The OS error alone, as before the typed error: the
                    // client already knows it is talking to the socket.
                    Err(control::ControlError::Io(e)) => Response::err(e.to_string()),
                    Err(e) => Response::err(e.to_string()),
                };
                let _ = control::write_response(&stream, &resp);
            }
        })
        .expect("spawn control thread");
}
