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

/// The sync client, on its own thread with a small tokio runtime, so that the
/// network never touches the capture or the chain writer.
pub(super) struct SyncThread {
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
    /// What the sync client did this run (acknowledgements refused, …),
    /// for `status`.
    pub(super) progress: Arc<crate::sync::driver::Progress>,
}

impl SyncThread {
    /// Start syncing if the device is enrolled (`DIR/server.txt` exists).
    pub(super) fn start(
        dir: &Path,
        store: Arc<crate::syncstore::FsSyncStore>,
    ) -> Option<SyncThread> {
        if !dir.join("server.txt").exists() {
            return None;
        }
        let cfg = match crate::sync::SyncConfig::from_data_dir(dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "sync is not configured correctly; recording goes on without it");
                return None;
            }
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let progress = Arc::new(crate::sync::driver::Progress::default());
        let p2 = Arc::clone(&progress);
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
                if let Err(e) = rt.block_on(crate::sync::driver::run_sync(store, cfg, p2, rx)) {
                    tracing::error!(error = %e, "sync stopped");
                }
            })
            .expect("spawn sync thread");
        Some(SyncThread {
            stop,
            thread,
            progress,
        })
    }

    pub(super) fn finish(self, store: &crate::syncstore::FsSyncStore, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        while store.backlog().0 > 0 && std::time::Instant::now() < deadline {
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
