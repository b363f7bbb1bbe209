//! Hands segments to the consumer without ever blocking the capture thread.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use super::{CaptureStats, CapturedSegment};

/// Segments on their way out: sent if the channel has room, otherwise kept (bounded) and retried.
#[derive(Debug)]
pub(crate) struct Outbox {
    tx: SyncSender<CapturedSegment>,
    backlog: VecDeque<CapturedSegment>,
    max_backlog: usize,
    stats: Arc<CaptureStats>,
    consumer_gone: bool,
}

impl Outbox {
    pub(crate) fn new(
        tx: SyncSender<CapturedSegment>,
        max_backlog: usize,
        stats: Arc<CaptureStats>,
    ) -> Self {
        Outbox {
            tx,
            backlog: VecDeque::new(),
            max_backlog: max_backlog.max(1),
            stats,
            consumer_gone: false,
        }
    }

    /// Queues a finished segment and sends what the channel takes.
    pub(crate) fn push(&mut self, segment: CapturedSegment) {
        CaptureStats::add(&self.stats.segments_emitted, 1);
        CaptureStats::add(&self.stats.bytes_emitted, segment.bytes.len() as u64);
        self.backlog.push_back(segment);
        self.pump();
        if self.backlog.is_empty() {
            return;
        }
        // FIFO: a non-empty backlog still holds the segment just pushed.
        CaptureStats::add(&self.stats.segments_backlogged, 1);
        if self.backlog.len() > self.max_backlog {
            if let Some(lost) = self.backlog.pop_front() {
                CaptureStats::add(&self.stats.segments_dropped, 1);
                tracing::error!(
                    index = lost.index,
                    "segment backlog full: oldest undelivered segment dropped"
                );
            }
        }
        self.stats
            .backlog_high_water
            .fetch_max(self.backlog.len() as u64, Ordering::Relaxed);
    }

    /// Sends backlogged segments while the channel has room.
    pub(crate) fn pump(&mut self) {
        if self.consumer_gone {
            return;
        }
        while let Some(segment) = self.backlog.pop_front() {
            match self.tx.try_send(segment) {
                Ok(()) => CaptureStats::add(&self.stats.segments_delivered, 1),
                Err(TrySendError::Full(segment)) => {
                    self.backlog.push_front(segment);
                    return;
                }
                Err(TrySendError::Disconnected(segment)) => {
                    // Keep it: the caller gets it back from `stop()`.
                    tracing::warn!("segment consumer went away; keeping segments for stop()");
                    self.backlog.push_front(segment);
                    self.consumer_gone = true;
                    return;
                }
            }
        }
    }

    /// Last attempt to send; returns what is still undelivered, in order.
    pub(crate) fn finish(mut self) -> Vec<CapturedSegment> {
        self.pump();
        self.backlog.into()
    }
}
