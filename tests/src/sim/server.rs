//! The simulated server: the real ingest state machines over in-memory
//! stores, with the QUIC driver's bookkeeping (live connections, one
//! upload per segment, entries gathered into group commits) done here by
//! hand. What is durable survives [`Server::restart`]; what the real server
//! keeps only in memory (connections, uploads in progress, entries queued
//! for the next group, partial bytes not yet fsynced) does not.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_proto::ack::MediaAck;
use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::identity::{sha256, DeviceId, Hash32};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::msg::Message;
use fieldseal_proto::msg::{
    Detail, SeqList, UploadFailCode, UploadFailed, UploadOffset, UploadQuery, Welcome,
    MAX_RESEND_MEDIA, PROTOCOL_VERSION,
};
use fieldseal_server::blobstore::{BlobStore, MemStore};
use fieldseal_server::chainindex::{ChainIndex, MemIndex};
use fieldseal_server::ingest::{
    self, AcceptedEntry, Completion, IngestBatch, SegmentStore, UploadPlan,
};

use super::wire::{Body, Stream};

/// What the store holds of a segment, for [`ingest::plan_query`].
struct View<'a> {
    index: &'a MemIndex,
    blobs: &'a MemStore,
    partials: &'a BTreeMap<(DeviceId, u64), Partial>,
}

impl SegmentStore for View<'_> {
    type Error = String;
    fn media_held(&self, device: DeviceId, seq: u64) -> Result<bool, String> {
        self.index.has_media(device, seq).map_err(|e| e.to_string())
    }
    fn blob_exists(&self, hash: &Hash32) -> Result<bool, String> {
        Ok(self.blobs.stat(hash).map_err(|e| e.to_string())?.is_some())
    }
    fn partial_len(&self, device: DeviceId, seq: u64) -> Result<u64, String> {
        Ok(self
            .partials
            .get(&(device, seq))
            .map_or(0, |p| p.bytes.len() as u64))
    }
}

/// A reply: connection, stream, what.
pub type Reply = (u64, Stream, Body);

/// An upload stream as the server sees it.
#[derive(Debug, Clone)]
enum Up {
    /// Waiting for `UploadQuery`.
    Query,
    /// Offset sent, waiting for `UploadBegin`.
    Begin { seq: u64 },
    /// Receiving `left` more raw bytes of `seq`.
    Bytes { seq: u64, left: u64, overrun: bool },
}

/// Bytes of an upload in progress: `durable` of them survive a restart.
#[derive(Debug, Default, Clone)]
struct Partial {
    bytes: Vec<u8>,
    durable: usize,
}

/// The simulated server.
#[derive(Debug)]
pub struct Server {
    /// The receipt key.
    pub receipt_key: SigningKey,
    /// Enrolled devices and whether each is revoked.
    pub devices: BTreeMap<DeviceId, (VerifyingKey, bool)>,
    // --- durable: the index, chain logs, the log, blobs, synced partials ---
    /// The index (heads, accepted entries, media held, the log's tree): the
    /// server's in-memory twin of the sled index, flushed once per group.
    pub index: MemIndex,
    /// Accepted entries per device, as the chain log holds them.
    pub chain_logs: BTreeMap<DeviceId, Vec<Vec<u8>>>,
    /// Refused conflicting entries, kept as evidence.
    pub equivocations: BTreeMap<DeviceId, Vec<Vec<u8>>>,
    /// The transparency log's leaves, as `leaves.log` holds them.
    pub leaves: Vec<Leaf>,
    /// Verified segment bytes.
    pub blobs: MemStore,
    partials: BTreeMap<(DeviceId, u64), Partial>,
    // --- volatile ---
    live: BTreeMap<DeviceId, u64>,
    conns: BTreeMap<u64, DeviceId>,
    streams: BTreeMap<(u64, u64), Up>,
    uploading: BTreeSet<(DeviceId, u64)>,
    queue: Vec<(u64, DeviceId, Vec<u8>)>,
    /// Bytes written to a partial between two fsyncs (the real server: 8 MiB).
    pub sync_every: usize,
    /// Restarts so far.
    pub restarts: u64,
    /// Answers to upload queries not yet taken by the pair: (device, seq,
    /// offset), the whole length for media held whole (answered `UploadAck`).
    pub query_answers: Vec<(DeviceId, u64, u64)>,
}

fn failed(seq: u64, code: UploadFailCode, detail: &str) -> Body {
    Body::Msg(Message::UploadFailed(UploadFailed {
        seq,
        code,
        detail: Detail::lossy(detail),
    }))
}

impl Server {
    /// A server with no device.
    pub fn new(receipt_key: SigningKey) -> Server {
        Server {
            receipt_key,
            devices: BTreeMap::new(),
            index: MemIndex::new(),
            chain_logs: BTreeMap::new(),
            equivocations: BTreeMap::new(),
            leaves: Vec::new(),
            blobs: MemStore::new(),
            partials: BTreeMap::new(),
            live: BTreeMap::new(),
            conns: BTreeMap::new(),
            streams: BTreeMap::new(),
            uploading: BTreeSet::new(),
            queue: Vec::new(),
            sync_every: 3000,
            restarts: 0,
            query_answers: Vec::new(),
        }
    }

    /// Enrol a device.
    pub fn enroll(&mut self, key: VerifyingKey) {
        self.devices.insert(DeviceId::from_key(&key), (key, false));
    }

    /// Revoke a device: refuse its handshakes, close its connection.
    pub fn revoke(&mut self, device: DeviceId) -> Vec<Reply> {
        if let Some(d) = self.devices.get_mut(&device) {
            d.1 = true;
        }
        match self.live.get(&device).copied() {
            Some(conn) => {
                self.drop_conn(conn);
                vec![(conn, Stream::Control, Body::Close("revoked"))]
            }
            None => Vec::new(),
        }
    }

    /// The server process dies and starts again: connections, uploads in
    /// progress, the queued group and unsynced partial bytes are gone.
    /// Returns the connections that were live (their devices see them break).
    pub fn restart(&mut self) -> Vec<u64> {
        self.restarts += 1;
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        self.live.clear();
        self.conns.clear();
        self.streams.clear();
        self.uploading.clear();
        self.queue.clear();
        // Index writes not flushed are lost (a group is flushed before it
        // is answered, so none should be pending between steps).
        self.index.crash(0);
        for p in self.partials.values_mut() {
            p.bytes.truncate(p.durable);
        }
        self.partials.retain(|_, p| !p.bytes.is_empty());
        conns
    }

    /// A connection from the device with `key` (TLS authenticated it).
    /// `false`: the handshake is refused (unknown or revoked).
    pub fn accept(&mut self, conn: u64, key: &VerifyingKey) -> bool {
        let device = DeviceId::from_key(key);
        if !matches!(self.devices.get(&device), Some((k, false)) if k == key) {
            return false;
        }
        // One connection per device: a new one supersedes the old.
        if let Some(old) = self.live.insert(device, conn) {
            self.drop_conn(old);
        }
        self.conns.insert(conn, device);
        true
    }

    /// The connection broke or closed: what its uploads wrote is fsynced
    /// (as the real server does on a lost connection), their slots freed.
    pub fn drop_conn(&mut self, conn: u64) {
        let Some(device) = self.conns.remove(&conn) else {
            return;
        };
        if self.live.get(&device) == Some(&conn) {
            self.live.remove(&device);
        }
        let streams: Vec<(u64, u64)> = self
            .streams
            .range((conn, 0)..=(conn, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in streams {
            if let Some(up) = self.streams.remove(&k) {
                self.end_stream(device, &up, true);
            }
        }
        self.queue.retain(|(c, _, _)| *c != conn);
    }

    fn end_stream(&mut self, device: DeviceId, up: &Up, sync: bool) {
        let seq = match up {
            Up::Query => return,
            Up::Begin { seq } | Up::Bytes { seq, .. } => *seq,
        };
        if sync {
            if let Some(p) = self.partials.get_mut(&(device, seq)) {
                p.durable = p.bytes.len();
            }
        }
        self.uploading.remove(&(device, seq));
    }

    /// Is a group waiting to be committed?
    pub fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    /// A packet from a device.
    pub fn on_packet(&mut self, conn: u64, stream: Stream, body: Body) -> Vec<Reply> {
        let Some(&device) = self.conns.get(&conn) else {
            return Vec::new();
        };
        match (stream, body) {
            (_, Body::Broken | Body::Close(_)) => {
                self.drop_conn(conn);
                Vec::new()
            }
            (Stream::Control, Body::Msg(Message::Hello(h))) => {
                if h.device_id != device || h.protocol_version != PROTOCOL_VERSION {
                    self.drop_conn(conn);
                    return vec![(conn, Stream::Control, Body::Close("bad hello"))];
                }
                vec![(conn, Stream::Control, Body::Msg(self.welcome(device)))]
            }
            (Stream::Control, Body::Msg(Message::SubmitEntry(s))) => {
                self.queue.push((conn, device, s.entry.into_vec()));
                Vec::new()
            }
            (Stream::Control, _) => {
                self.drop_conn(conn);
                vec![(conn, Stream::Control, Body::Close("unexpected on control"))]
            }
            (Stream::Upload(n), body) => self.on_upload(conn, device, n, body),
        }
    }

    fn welcome(&self, device: DeviceId) -> Message {
        let head = self.head(device);
        let missing = self
            .index
            .missing_media(device, MAX_RESEND_MEDIA)
            .expect("the memory index does not fail");
        Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_time_us: 0,
            next_seq_expected: head.next_seq,
            resend_media: SeqList::new(missing).expect("bounded by MAX_RESEND_MEDIA"),
        })
    }

    /// Commit every queued entry as one group with [`IngestBatch`] and
    /// answer each: chain logs, then the leaves, then the index written and
    /// flushed once, as the executor does.
    pub fn commit(&mut self, now_us: i64) -> Vec<Reply> {
        let queue = std::mem::take(&mut self.queue);
        let items: Vec<_> = queue
            .iter()
            .map(|(_, device, bytes)| (self.devices[device].0, bytes.clone()))
            .collect();
        let mut batch = IngestBatch::new();
        // As the executor does: the group's signatures checked together
        // (one thread: the simulation runs on virtual time).
        batch.handle_group(&self.index, &items, 1);
        let plan = batch.finish();
        for d in &plan.devices {
            let log = self.chain_logs.entry(d.device).or_default();
            log.extend(plan.records(d).into_iter().map(<[u8]>::to_vec));
        }
        for (device, bytes) in &plan.equivocations {
            self.equivocations
                .entry(*device)
                .or_default()
                .push(bytes.clone());
        }
        let leaves = plan.leaves(now_us);
        let first = self.index.log_append_many(&leaves).expect("memory");
        self.leaves.extend(leaves);
        let receipts = plan.receipts(first, now_us, &self.receipt_key);
        for (k, r) in receipts.iter().enumerate() {
            let a = &plan.accepted[k];
            self.index
                .put_entry_unflushed(a.device, a.entry.seq(), &plan.index_record(k, r))
                .expect("memory");
        }
        for d in &plan.devices {
            let len = self.chain_logs[&d.device].len() as u64;
            self.index
                .put_head_unflushed(d.device, d.head, len)
                .expect("memory");
        }
        self.index.flush().expect("memory");
        let messages = ingest::answers(&plan, Ok(&receipts));
        queue
            .iter()
            .zip(messages)
            .filter(|((conn, _, _), _)| self.conns.contains_key(conn))
            .map(|((conn, _, _), m)| (*conn, Stream::Control, Body::Msg(m)))
            .collect()
    }

    /// Answer an `UploadQuery` as the executor does: carry out the plan's
    /// repair steps until it resumes or refuses.
    fn answer_query(
        &mut self,
        device: DeviceId,
        q: &UploadQuery,
    ) -> Result<u64, (UploadFailCode, String)> {
        let accepted = self.accepted(device, q.seq);
        for _ in 0..4 {
            let view = View {
                index: &self.index,
                blobs: &self.blobs,
                partials: &self.partials,
            };
            let plan = ingest::plan_query(device, q, accepted.as_ref(), &view).expect("memory");
            match plan {
                UploadPlan::MarkHeld => self.index.put_media(device, q.seq).expect("memory"),
                UploadPlan::VerifyPartial {
                    media_hash,
                    media_len,
                } => {
                    self.verify_partial(device, q.seq, media_hash, media_len);
                }
                UploadPlan::Discard => {
                    self.partials.remove(&(device, q.seq));
                }
                UploadPlan::Resume(offset) => return Ok(offset),
                UploadPlan::Refuse(code, detail) => return Err((code, detail)),
            }
        }
        panic!("upload query of {} did not settle", q.seq)
    }

    /// The signed acknowledgement of held media. Its server time is 0: the
    /// simulated server has no clock between commits, and no one reads it.
    fn ack(&self, device: DeviceId, seq: u64, media: (Hash32, u64)) -> Message {
        Message::UploadAck(MediaAck::sign(device, seq, media, 0, &self.receipt_key))
    }

    fn on_upload(&mut self, conn: u64, device: DeviceId, n: u64, body: Body) -> Vec<Reply> {
        let key = (conn, n);
        let state = self.streams.get(&key).cloned().unwrap_or(Up::Query);
        let reply = |b: Body| vec![(conn, Stream::Upload(n), b)];
        match (state, body) {
            (Up::Query, Body::Msg(Message::UploadQuery(q))) => {
                let seq = q.seq;
                if !self.uploading.insert((device, seq)) {
                    let why = "another upload of this segment is running";
                    return reply(failed(seq, UploadFailCode::Internal, why));
                }
                self.streams.insert(key, Up::Begin { seq });
                let answer = self.answer_query(device, &q);
                if let Ok(offset) = answer {
                    self.query_answers.push((device, seq, offset));
                }
                match answer {
                    Ok(offset) if offset == q.media_len => {
                        // Held whole: the signed acknowledgement at once (FORMAT.md §7.5).
                        let m = self.ack(device, seq, (q.media_hash, offset));
                        self.end(conn, device, n, Body::Msg(m))
                    }
                    Ok(offset) => reply(Body::Msg(Message::UploadOffset(UploadOffset {
                        seq,
                        offset,
                    }))),
                    Err((code, d)) => self.end(conn, device, n, failed(seq, code, &d)),
                }
            }
            (Up::Begin { seq }, Body::Msg(Message::UploadBegin(b))) => {
                let accepted = self.accepted(device, seq);
                let held = self.partial_len(device, seq);
                if b.seq != seq {
                    return self.end(
                        conn,
                        device,
                        n,
                        failed(seq, UploadFailCode::BadOffset, "another seq"),
                    );
                }
                match ingest::check_begin(&b, accepted.as_ref(), held) {
                    Ok((_, left)) => {
                        self.streams.insert(
                            key,
                            Up::Bytes {
                                seq,
                                left,
                                overrun: false,
                            },
                        );
                        Vec::new()
                    }
                    Err((code, d)) => self.end(conn, device, n, failed(seq, code, &d)),
                }
            }
            (Up::Bytes { seq, left, overrun }, Body::Data(bytes)) => {
                let take = (bytes.len() as u64).min(left);
                let p = self.partials.entry((device, seq)).or_default();
                p.bytes
                    .extend_from_slice(&bytes[..usize::try_from(take).expect("small")]);
                if p.bytes.len() - p.durable >= self.sync_every {
                    p.durable = p.bytes.len();
                }
                self.streams.insert(
                    key,
                    Up::Bytes {
                        seq,
                        left: left - take,
                        overrun: overrun || take < bytes.len() as u64,
                    },
                );
                Vec::new()
            }
            (Up::Bytes { seq, left, overrun }, Body::Fin) => {
                if overrun || left > 0 {
                    return self.end(
                        conn,
                        device,
                        n,
                        failed(
                            seq,
                            UploadFailCode::LengthMismatch,
                            "stream length differs from len",
                        ),
                    );
                }
                let signed = self
                    .accepted(device, seq)
                    .and_then(|a| a.media)
                    .expect("checked at begin");
                let bytes = self
                    .partials
                    .get(&(device, seq))
                    .map(|p| p.bytes.clone())
                    .unwrap_or_default();
                let got = (sha256(&bytes), bytes.len() as u64);
                let answer = match ingest::check_complete(signed, got) {
                    Completion::Store => {
                        assert!(self.verify_partial(device, seq, signed.0, signed.1));
                        Body::Msg(self.ack(device, seq, signed))
                    }
                    Completion::Short(_) => failed(seq, UploadFailCode::Internal, "short"),
                    Completion::Mismatch => {
                        self.partials.remove(&(device, seq));
                        failed(
                            seq,
                            UploadFailCode::HashMismatch,
                            "bytes do not match media_hash",
                        )
                    }
                };
                self.end(conn, device, n, answer)
            }
            (state, Body::Fin) => {
                // The device ended the stream early: nothing more to do.
                self.streams.remove(&key);
                self.end_stream(device, &state, true);
                Vec::new()
            }
            (state, _) => {
                self.streams.remove(&key);
                self.end_stream(device, &state, true);
                reply(failed(0, UploadFailCode::BadOffset, "unexpected message"))
            }
        }
    }

    fn end(&mut self, conn: u64, device: DeviceId, n: u64, answer: Body) -> Vec<Reply> {
        if let Some(up) = self.streams.remove(&(conn, n)) {
            self.end_stream(device, &up, true);
        }
        vec![(conn, Stream::Upload(n), answer)]
    }

    fn partial_len(&self, device: DeviceId, seq: u64) -> u64 {
        self.partials
            .get(&(device, seq))
            .map_or(0, |p| p.bytes.len() as u64)
    }

    /// Check a complete partial against the signed hash and length: a blob
    /// (and media held) if it matches, discarded if not.
    fn verify_partial(&mut self, device: DeviceId, seq: u64, hash: Hash32, len: u64) -> bool {
        let Some(p) = self.partials.remove(&(device, seq)) else {
            return false;
        };
        if p.bytes.len() as u64 != len || sha256(&p.bytes) != hash {
            return false;
        }
        self.blobs
            .put(&hash, &mut p.bytes.as_slice())
            .expect("verified bytes are stored");
        self.index.put_media(device, seq).expect("memory");
        true
    }

    fn accepted(&self, device: DeviceId, seq: u64) -> Option<AcceptedEntry> {
        self.index
            .entry(device, seq)
            .expect("the memory index does not fail")
    }

    fn has_media(&self, device: DeviceId, seq: u64) -> bool {
        self.index.has_media(device, seq).expect("memory")
    }

    /// What the server holds of `device`: its chain head.
    pub fn head(&self, device: DeviceId) -> ChainHead {
        self.index.head(device).expect("memory")
    }

    /// Does the server hold the verified media of `(device, seq)`?
    pub fn holds_media(&self, device: DeviceId, seq: u64, hash: &Hash32) -> bool {
        self.has_media(device, seq)
            && fieldseal_server::blobstore::rehash(&self.blobs, hash).is_ok_and(|(h, _)| h == *hash)
    }
}
