//! The queue in front of the group commit: control streams queue their
//! `SubmitEntry` and wait for the answer; the committer task gathers what is
//! queued into one group and hands it to the blocking executor
//! (`crate::ingest::submit_group_blocking`). Only queueing and gathering
//! here: decisions are `IngestBatch`'s, durability the executor's.

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::msg::Message;

use crate::ingest::{internal, submit_group_blocking};
use crate::Shared;

/// An entry waiting for the committer, with where to send its answer.
#[derive(Debug)]
pub struct Pending {
    key: VerifyingKey,
    bytes: Vec<u8>,
    answer: tokio::sync::oneshot::Sender<Message>,
}

/// At most this many entries are made durable together. Under load the
/// entries that arrive while one group is being fsynced form the next, so
/// three fsyncs serve hundreds of devices; the bound keeps one group's
/// latency (signature checks, writes) well under a millisecond per entry.
const MAX_GROUP: usize = 256;

/// The queue in front of the committer: deep enough for a burst from every
/// connected device; a full queue makes submitters wait (backpressure).
pub const INGEST_QUEUE: usize = 4096;

/// Handle one `SubmitEntry`: queue it for the committer and wait for the
/// answer, which is sent only once the decision is durable.
pub(super) async fn submit(shared: &Arc<Shared>, key: VerifyingKey, bytes: Vec<u8>) -> Message {
    let t0 = std::time::Instant::now();
    let (answer, rx) = tokio::sync::oneshot::channel();
    if shared
        .ingest
        .send(Pending { key, bytes, answer })
        .await
        .is_err()
    {
        return internal(0, "the server is shutting down");
    }
    let m = rx
        .await
        .unwrap_or_else(|_| internal(0, "the server is shutting down"));
    let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared.counters.answered(&m, us);
    m
}

/// The committer: takes whatever entries are queued (up to [`MAX_GROUP`]),
/// makes them durable together on the blocking pool, and answers each.
pub(crate) async fn committer(shared: Arc<Shared>, mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let (items, answers): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|p| ((p.key, p.bytes), p.answer))
            .unzip();
        let n = items.len();
        let s = shared.clone();
        let replies = tokio::task::spawn_blocking(move || submit_group_blocking(&s, &items))
            .await
            .unwrap_or_else(|e| (0..n).map(|_| internal(0, &e)).collect());
        for (tx, m) in answers.into_iter().zip(replies) {
            let _ = tx.send(m);
        }
    }
}
