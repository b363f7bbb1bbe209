//! A running capture and the bridge thread that forwards its segments, in
//! order, to the chain writer's input channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::capture::{
    Capture, CaptureConfig, CaptureHandle, CaptureStats, CaptureSummary, CapturedSegment,
    FfmpegCapture, SyntheticCapture,
};
use crate::control::{Request, Response};

pub(super) enum Input {
    Segment(CapturedSegment),
    CaptureEnded(CaptureSummary),
    Request(Request, Sender<Response>),
}

/// A running capture: the handle (shared so mute works while the bridge owns
/// the stop), and the bridge thread that forwards its segments in order.
pub(super) struct Session {
    handle: Arc<Mutex<Option<CaptureHandle>>>,
    stop: Arc<AtomicBool>,
    pub(super) stats: Arc<CaptureStats>,
    bridge: Option<JoinHandle<()>>,
}

impl Session {
    pub(super) fn start(
        cfg: &CaptureConfig,
        synthetic: bool,
        inputs: SyncSender<Input>,
    ) -> Result<Session, crate::capture::CaptureError> {
        // Two segments of slack: the writer is normally milliseconds behind.
        let (tx, rx) = mpsc::sync_channel::<CapturedSegment>(2);
        let handle = if synthetic {
            let mut c = SyntheticCapture::new(
                cfg.max_media_secs
                    .map(|s| u64::from(s / cfg.segment_secs.max(1)).max(1)),
            );
            c.config = cfg.clone();
            c.start(tx)?
        } else {
            FfmpegCapture::new(cfg.clone()).start(tx)?
        };
        let stats = handle.stats();
        let handle = Arc::new(Mutex::new(Some(handle)));
        let stop = Arc::new(AtomicBool::new(false));
        let (h2, s2) = (Arc::clone(&handle), Arc::clone(&stop));
        let bridge = std::thread::Builder::new()
            .name("capture-bridge".into())
            .spawn(move || bridge(rx, h2, s2, inputs))
            .expect("spawn bridge thread");
        Ok(Session {
            handle,
            stop,
            stats,
            bridge: Some(bridge),
        })
    }

    pub(super) fn set_muted(&self, muted: bool) {
        if let Some(h) = self.handle.lock().expect("capture handle lock").as_ref() {
            h.set_muted(muted);
        }
    }

    pub(super) fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.request_stop();
        if let Some(b) = self.bridge.take() {
            let _ = b.join();
        }
    }
}

/// Forward segments from the capture to the writer in order; on a stop
/// request, stop the capture and forward what it still had, then report its end.
fn bridge(
    rx: Receiver<CapturedSegment>,
    handle: Arc<Mutex<Option<CaptureHandle>>>,
    stop: Arc<AtomicBool>,
    inputs: SyncSender<Input>,
) {
    let mut stopped: Option<CaptureSummary> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(seg) => {
                if inputs.send(Input::Segment(seg)).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let finished = handle
            .lock()
            .expect("capture handle lock")
            .as_ref()
            .is_none_or(CaptureHandle::is_finished);
        if stopped.is_none() && (stop.load(Ordering::Relaxed) || finished) {
            let h = handle.lock().expect("capture handle lock").take();
            stopped = h.map(CaptureHandle::stop);
        }
    }
    let mut summary = match stopped {
        Some(s) => s,
        None => match handle.lock().expect("capture handle lock").take() {
            Some(h) => h.stop(),
            None => return,
        },
    };
    // The channel's segments came first (forwarded above); then the backlog.
    for seg in std::mem::take(&mut summary.undelivered) {
        if inputs.send(Input::Segment(seg)).is_err() {
            return;
        }
    }
    let _ = inputs.send(Input::CaptureEnded(summary));
}
