//! The evidence itself over HTTP: a device's accepted entries, one entry
//! with its signed bytes, the device key and the server's receipt, and a
//! segment's bytes (with HTTP ranges).
//!
//! Who may read: custodians and supervisors everything; an officer only the
//! entries made while they carried the device (device custody at the
//! entry's wall time); admins nothing (they manage users and devices, not
//! evidence). Evidence an officer may not read is "not found" to them, as if
//! it did not exist, and the refusal is a `denied` custody leaf.
//!
//! Every read that succeeds is a `view` custody leaf of the transparency log
//! (`audit.rs`), appended **before** any of the evidence is sent: if the
//! access log cannot record it, nothing is sent.
//!
//! Media bytes stream from the blob store's reader and are hashed on the
//! way: the last chunk of the answer is held back until the whole blob has
//! hashed to the entry's signed SHA-256 and length, and on a mismatch the
//! answer is cut off short of its `Content-Length`, so a client never gets
//! a complete answer of wrong bytes. A range therefore costs a read of the
//! whole blob (one segment: a few MB).

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::{Entry, SegmentBody, SignedEntry, PTS_HZ};
use fieldseal_proto::identity::{DeviceId, Hash32, Sha256Stream};
use fieldseal_proto::leaf::CustodyAction;
use fieldseal_proto::receipt::Receipt;

use crate::audit::{self, Access};
use crate::auth::Role;
use crate::cases::officer_at;
use crate::chainindex::ChainIndex;
use crate::Shared;

use super::auth::{Authed, ClientAddr};
use super::error::{ErrorBody, Path};
use super::{ApiError, AppState};

/// Roles that read evidence at all (an officer only their own).
const READERS: &[Role] = &[Role::Custodian, Role::Supervisor, Role::Officer];

/// Most entries one listing gives.
pub const MAX_LIST: usize = 1000;

/// A device id in a path: 16 lower-case hex digits.
///
/// # Errors
/// 400 naming `device`.
pub fn device_param(v: &str) -> Result<DeviceId, ApiError> {
    v.parse()
        .map_err(|_| ApiError::invalid("device", "16 lower-case hex digits"))
}

fn seq_param(v: &str) -> Result<u64, ApiError> {
    v.parse()
        .map_err(|_| ApiError::invalid("seq", "an unsigned 64-bit integer"))
}

/// Whose entries the caller may read.
pub(super) enum Scope {
    /// Everything.
    All,
    /// Only those of devices this officer (certificate) carried.
    Officer(String),
}

pub(super) fn scope(s: &AppState, who: &Authed) -> Result<Scope, ApiError> {
    who.require(s, READERS, "read evidence")?;
    Ok(match who.0.role {
        // An officer user without a certificate carried nothing.
        Role::Officer => Scope::Officer(who.0.officer.clone().unwrap_or_default()),
        _ => Scope::All,
    })
}

/// The same answer for evidence that does not exist and evidence the
/// caller may not see.
fn not_found() -> ApiError {
    ApiError::not_found("no such evidence")
}

/// An accepted entry as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntryInfo {
    /// Its seq.
    pub seq: u64,
    /// `segment`, or the event's name (`recording-started`, …).
    pub kind: String,
    /// Device wall clock (µs) at a segment's first frame; an event's time.
    pub start_wall_us: i64,
    /// Device wall clock (µs) at a segment's end; an event's time.
    pub end_wall_us: i64,
    /// The case number it was signed with.
    pub case: Option<String>,
    /// The activity type it was signed with.
    pub activity: Option<String>,
    /// A segment's recording id (32 hex digits): its playlist is
    /// `/api/devices/{device}/recordings/{recording}/playlist.m3u8`.
    pub recording: Option<String>,
    /// A segment's media.
    pub media: Option<MediaInfo>,
    /// Where the entry says the device was (`docs/FORMAT.md` §3.1.1).
    pub position: super::position::EntryPosition,
    /// Server time of its receipt (µs).
    pub receipt_us: Option<i64>,
}

/// A segment's media as the archive holds it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MediaInfo {
    /// SHA-256 the entry signed, hex.
    pub sha256: String,
    /// Length the entry signed.
    pub len: u64,
    /// The bytes are held: they arrived, hashed to `sha256`, and no scrub
    /// has found them damaged since.
    pub held: bool,
    /// When they were verified and stored (µs), if known.
    pub verified_us: Option<i64>,
}

fn info(sh: &Shared, e: &SignedEntry) -> Result<EntryInfo, ApiError> {
    let (d, seq, x) = (e.entry.device, e.seq(), &e.entry);
    let tag = crate::db::entry_tag(x);
    let (mut start, mut end) = (x.wall_us, x.wall_us);
    let mut media = None;
    let mut recording = None;
    if let Some(s) = x.segment() {
        start = segment_start_wall(x, s);
        recording = Some(hex::encode(s.recording));
        let ticks = i128::from(s.end_pts) - i128::from(s.start_pts);
        let dur = i64::try_from(ticks * 1_000_000 / i128::from(PTS_HZ)).unwrap_or(i64::MAX);
        end = start.saturating_add(dur);
        let held = sh.db.has_media(d, seq).map_err(ApiError::internal)?;
        media = Some(MediaInfo {
            sha256: hex::encode(s.media_sha256),
            len: s.media_len,
            held,
            verified_us: if held {
                sh.db.media_time(d, seq).map_err(ApiError::internal)?
            } else {
                None
            },
        });
    }
    let receipt_us = receipt(sh, d, seq)?.map(|(r, _)| r.server_time_us);
    Ok(EntryInfo {
        seq,
        kind: x
            .event()
            .map_or_else(|| "segment".to_owned(), |ev| ev.name().to_owned()),
        start_wall_us: start,
        end_wall_us: end,
        case: tag.map(|(c, _)| c.to_owned()),
        activity: tag.and_then(|(_, a)| a.map(str::to_owned)),
        recording,
        media,
        position: x.position.as_ref().into(),
        receipt_us,
    })
}

/// Device wall clock (µs) at a segment's first frame: the entry's wall
/// time less the monotonic time since that frame.
pub(super) fn segment_start_wall(x: &Entry, s: &SegmentBody) -> i64 {
    let since = i64::try_from(x.mono_us.saturating_sub(s.start_mono_us)).unwrap_or(0);
    x.wall_us.saturating_sub(since)
}

/// The stored receipt of `(d, seq)`, decoded, with its bytes.
fn receipt(sh: &Shared, d: DeviceId, seq: u64) -> Result<Option<(Receipt, Vec<u8>)>, ApiError> {
    let Some(a) = sh.db.entry(d, seq).map_err(ApiError::internal)? else {
        return Ok(None);
    };
    let r = Receipt::from_bytes(&a.receipt).map_err(ApiError::internal)?;
    Ok(Some((r, a.receipt)))
}

/// May `scope` read an entry made at device wall time `t_us`?
pub(super) fn may_read(
    sh: &Shared,
    scope: &Scope,
    d: DeviceId,
    t_us: i64,
) -> Result<bool, ApiError> {
    match scope {
        Scope::All => Ok(true),
        Scope::Officer(cert) => {
            let custody = sh.db.custody_of(d).map_err(ApiError::internal)?;
            Ok(officer_at(&custody, d, t_us) == Some(cert.as_str()))
        }
    }
}

/// Refuse an officer's read of evidence that is not theirs: a `denied`
/// leaf, then "not found".
pub(super) async fn deny(
    s: &AppState,
    who: &Authed,
    addr: &str,
    d: DeviceId,
    seqs: (u64, u64),
    what: &str,
) -> ApiError {
    s.metrics
        .denials
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let a = Access::new(CustodyAction::Denied, &who.0.user)
        .entries(d, seqs.0, seqs.1)
        .detail(format!("{what} from {addr}: not in the officer's custody"));
    match audit::record(&s.shared, a).await {
        Ok(_) => not_found(),
        Err(e) => ApiError::internal(e),
    }
}

/// Append the `view` leaf of a read; the evidence goes out only after it.
pub(super) async fn viewed(
    s: &AppState,
    who: &Authed,
    addr: &str,
    d: DeviceId,
    seqs: (u64, u64),
    what: &str,
) -> Result<(), ApiError> {
    let a = Access::new(CustodyAction::View, &who.0.user)
        .entries(d, seqs.0, seqs.1)
        .detail(format!("{what} from {addr}"));
    audit::record(&s.shared, a)
        .await
        .map(|_| ())
        .map_err(ApiError::internal)
}

/// Run blocking index and file reads off the async workers.
async fn blocking<T: Send + 'static>(
    s: &Arc<AppState>,
    f: impl FnOnce(&Shared) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let st = s.clone();
    tokio::task::spawn_blocking(move || f(&st.shared))
        .await
        .map_err(ApiError::internal)?
}

/// One accepted entry of a known device with its stored record, or 404.
fn one_entry(sh: &Shared, d: DeviceId, seq: u64) -> Result<(SignedEntry, Vec<u8>), ApiError> {
    if sh.db.device(d).map_err(ApiError::internal)?.is_none() {
        return Err(not_found());
    }
    crate::archive::accepted_range(&sh.dir, &sh.db, d, seq, 1)
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|(e, _)| e.seq() == seq)
        .ok_or_else(not_found)
}

/// A page of a device's entries.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// First seq (default 0).
    #[serde(default)]
    from: u64,
    /// Most entries (default 100, at most 1000).
    limit: Option<usize>,
}

/// A page of entries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntryList {
    /// The device.
    #[schema(value_type = String)]
    pub device: DeviceId,
    /// The entries the caller may read, in seq order.
    pub entries: Vec<EntryInfo>,
    /// The `from` of the next page, if the chain goes on.
    pub next: Option<u64>,
}

/// A device's accepted entries, a page at a time.
#[utoipa::path(get, path = "/api/devices/{device}/entries", tag = "evidence",
    params(("device" = String, Path, description = "device id, 16 hex digits"), ListQuery),
    responses((status = 200, body = EntryList), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_entries(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(device): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<EntryList>, ApiError> {
    let scope = scope(&s, &who)?;
    let d = device_param(&device)?;
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::invalid("limit", format!("1 to {MAX_LIST}")));
    }
    let from = q.from;
    let officer = matches!(scope, Scope::Officer(_));
    let (list, ever) = blocking(&s, move |sh| list_page(sh, &scope, d, from, limit)).await?;
    if officer && !ever {
        return Err(deny(&s, &who, &addr, d, (from, from), "entry list").await);
    }
    if let (Some(first), Some(last)) = (list.entries.first(), list.entries.last()) {
        viewed(&s, &who, &addr, d, (first.seq, last.seq), "entry list").await?;
    }
    Ok(Json(list))
}

/// The page, and whether the scope could ever read anything of `d` (an
/// officer who never carried it could not).
fn list_page(
    sh: &Shared,
    scope: &Scope,
    d: DeviceId,
    from: u64,
    limit: usize,
) -> Result<(EntryList, bool), ApiError> {
    if sh.db.device(d).map_err(ApiError::internal)?.is_none() {
        return Err(not_found());
    }
    let ever = match scope {
        Scope::All => true,
        Scope::Officer(cert) => sh
            .db
            .custody_of(d)
            .map_err(ApiError::internal)?
            .iter()
            .any(|c| &c.officer == cert),
    };
    let page = crate::archive::accepted_range(&sh.dir, &sh.db, d, from, limit)
        .map_err(ApiError::internal)?;
    let (head, _) = sh.db.head_and_log_len(d).map_err(ApiError::internal)?;
    let end = from.saturating_add(limit as u64);
    let mut entries = Vec::new();
    for (e, _) in &page {
        if ever && may_read(sh, scope, d, e.entry.wall_us)? {
            entries.push(info(sh, e)?);
        }
    }
    let list = EntryList {
        device: d,
        entries,
        next: (end < head.next_seq).then_some(end),
    };
    Ok((list, ever))
}

/// One entry with its proof of origin.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntryDetail {
    /// What the listing says of it.
    #[serde(flatten)]
    pub info: EntryInfo,
    /// The signed entry as the device sent it (`docs/FORMAT.md` §3), hex.
    pub signed_entry: String,
    /// The device's Ed25519 public key, hex.
    pub device_key: String,
    /// The server's signed receipt (`docs/FORMAT.md` §5), hex.
    pub receipt: String,
    /// The receipt's log index: the entry's leaf in the transparency log.
    pub log_index: u64,
}

/// One accepted entry: its signed bytes, the device key and the receipt,
/// so that the caller can check the signature and the log inclusion.
#[utoipa::path(get, path = "/api/devices/{device}/entries/{seq}", tag = "evidence",
    params(("device" = String, Path, description = "device id, 16 hex digits"),
        ("seq" = u64, Path, description = "the entry's seq")),
    responses((status = 200, body = EntryDetail), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_entry(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path((device, seq)): Path<(String, String)>,
) -> Result<Json<EntryDetail>, ApiError> {
    let scope = scope(&s, &who)?;
    let (d, seq) = (device_param(&device)?, seq_param(&seq)?);
    let (detail, allowed) = blocking(&s, move |sh| {
        let (e, record) = one_entry(sh, d, seq)?;
        let allowed = may_read(sh, &scope, d, e.entry.wall_us)?;
        let key = sh
            .db
            .device(d)
            .map_err(ApiError::internal)?
            .ok_or_else(not_found)?
            .key;
        let (r, receipt) = receipt(sh, d, seq)?.ok_or_else(not_found)?;
        let detail = EntryDetail {
            info: info(sh, &e)?,
            signed_entry: hex::encode(record),
            device_key: hex::encode(key.as_bytes()),
            receipt: hex::encode(receipt),
            log_index: r.log_index,
        };
        Ok((detail, allowed))
    })
    .await?;
    if !allowed {
        return Err(deny(&s, &who, &addr, d, (seq, seq), "entry").await);
    }
    viewed(&s, &who, &addr, d, (seq, seq), "entry").await?;
    Ok(Json(detail))
}

/// What a media read needs once it is allowed.
struct MediaTarget {
    hash: Hash32,
    len: u64,
    allowed: bool,
}

fn media_target(
    sh: &Shared,
    scope: &Scope,
    d: DeviceId,
    seq: u64,
) -> Result<MediaTarget, ApiError> {
    let (e, _) = one_entry(sh, d, seq)?;
    if !may_read(sh, scope, d, e.entry.wall_us)? {
        // Nothing more about it: not even whether it is a segment.
        return Ok(MediaTarget {
            hash: [0; 32],
            len: 0,
            allowed: false,
        });
    }
    let Some(seg) = e.entry.segment() else {
        return Err(ApiError::not_found("the entry is not a segment"));
    };
    // Only bytes the index holds as verified are ever served.
    let held = sh.db.has_media(d, seq).map_err(ApiError::internal)?;
    let stored = sh
        .blobs
        .stat(&seg.media_sha256)
        .map_err(ApiError::internal)?;
    if !held || stored != Some(seg.media_len) {
        return Err(ApiError::not_found("the segment's bytes are not held"));
    }
    Ok(MediaTarget {
        hash: seg.media_sha256,
        len: seg.media_len,
        allowed: true,
    })
}

/// A segment's bytes (`video/mp2t`), whole or one range
/// (`Range: bytes=a-b`, `a-`, `-n`), with the media SHA-256 as `ETag`.
#[utoipa::path(get, path = "/api/devices/{device}/entries/{seq}/media", tag = "evidence",
    params(("device" = String, Path, description = "device id, 16 hex digits"),
        ("seq" = u64, Path, description = "the segment's seq")),
    responses((status = 200, description = "the bytes", content_type = "video/mp2t"),
        (status = 206, description = "a range of the bytes", content_type = "video/mp2t"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 416, body = ErrorBody)))]
pub async fn get_media(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path((device, seq)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = scope(&s, &who)?;
    let (d, seq) = (device_param(&device)?, seq_param(&seq)?);
    let t = blocking(&s, move |sh| media_target(sh, &scope, d, seq)).await?;
    if !t.allowed {
        return Err(deny(&s, &who, &addr, d, (seq, seq), "media").await);
    }
    let range = headers.get(header::RANGE).map(|v| v.to_str().unwrap_or(""));
    let Ok(wanted) = parse_range(range, t.len) else {
        return Ok(unsatisfiable(t.len));
    };
    let (a, b) = wanted.unwrap_or((0, t.len.saturating_sub(1)));
    viewed(
        &s,
        &who,
        &addr,
        d,
        (seq, seq),
        &format!("media bytes {a}-{b}"),
    )
    .await?;
    let reader = s.shared.blobs.open(&t.hash).map_err(ApiError::internal)?;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let want = (t.hash, t.len);
    tokio::task::spawn_blocking(move || pump(reader, (a, b), want, d, seq, &tx));
    let mut resp = Body::from_stream(Chunks(rx)).into_response();
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k, v: String| {
        h.insert(k, v.parse().expect("ASCII header value"));
    };
    set(h, header::CONTENT_TYPE, "video/mp2t".into());
    set(h, header::CONTENT_LENGTH, (b + 1 - a).to_string());
    set(h, header::ETAG, format!("\"{}\"", hex::encode(t.hash)));
    set(h, header::ACCEPT_RANGES, "bytes".into());
    set(h, header::CACHE_CONTROL, "private, no-store".into());
    if wanted.is_some() {
        set(h, header::CONTENT_RANGE, format!("bytes {a}-{b}/{}", t.len));
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(resp)
}

/// 416 with the length, as RFC 9110 §15.5.17 asks.
fn unsatisfiable(len: u64) -> Response {
    let e = ApiError {
        status: StatusCode::RANGE_NOT_SATISFIABLE,
        code: "range-not-satisfiable",
        field: Some("range".into()),
        message: format!("one range of bytes=FIRST-LAST, FIRST- or -SUFFIX within the {len} bytes"),
    };
    ([(header::CONTENT_RANGE, format!("bytes */{len}"))], e).into_response()
}

/// A `Range` header this server does not satisfy: malformed, several
/// ranges, or outside the bytes. Answered 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// The single byte range (inclusive) a `Range` header asks of `len` bytes:
/// `Ok(None)` without a header.
///
/// # Errors
/// [`Unsatisfiable`] for anything malformed, several ranges, or a range
/// outside the bytes.
pub fn parse_range(h: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(h) = h else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?.trim();
    let (first, last) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let num = |s: &str| -> Result<u64, Unsatisfiable> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Unsatisfiable);
        }
        s.parse().map_err(|_| Unsatisfiable)
    };
    if len == 0 {
        return Err(Unsatisfiable);
    }
    let range = match (first.trim(), last.trim()) {
        ("", n) => {
            let n = num(n)?;
            if n == 0 {
                return Err(Unsatisfiable);
            }
            (len - n.min(len), len - 1)
        }
        (a, "") => (num(a)?, len - 1),
        (a, b) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return Err(Unsatisfiable);
            }
            (a, b.min(len - 1))
        }
    };
    if range.0 >= len {
        return Err(Unsatisfiable);
    }
    Ok(Some(range))
}

/// The body's chunks, from the blocking reader.
struct Chunks(tokio::sync::mpsc::Receiver<io::Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Read the whole blob, hashing it, and send bytes `a..=b`; the last chunk
/// goes only once the blob hashed to `want` (SHA-256, length), otherwise
/// the body ends in an error (the client sees it cut short). Stops when the
/// client has gone.
fn pump(
    mut r: Box<dyn Read + Send>,
    (a, b): (u64, u64),
    want: (Hash32, u64),
    d: DeviceId,
    seq: u64,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
) {
    let mut h = Sha256Stream::new();
    let mut buf = vec![0u8; crate::blobstore::READ_CHUNK];
    let (mut pos, mut held): (u64, Option<Bytes>) = (0, None);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        h.update(&buf[..n]);
        let (lo, hi) = (pos, pos + n as u64);
        let (x, y) = (a.max(lo), b.saturating_add(1).min(hi));
        if x < y {
            // Both offsets are within this chunk of `n` bytes.
            let at = |v: u64| usize::try_from(v - lo).unwrap_or(n);
            let part = Bytes::copy_from_slice(&buf[at(x)..at(y)]);
            if let Some(p) = held.replace(part) {
                if tx.blocking_send(Ok(p)).is_err() {
                    return;
                }
            }
        }
        pos = hi;
    }
    if (h.finish(), pos) == want {
        if let Some(p) = held {
            let _ = tx.blocking_send(Ok(p));
        }
    } else {
        tracing::error!(%d, seq, "ALARM held media does not hash to its signed SHA-256; not served");
        let _ = tx.blocking_send(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the blob does not match its signed hash",
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_range, pump, Unsatisfiable};
    use crate::blobstore::READ_CHUNK;
    use fieldseal_proto::identity::{sha256, DeviceId, Hash32};

    /// What `pump` sends for `range` of `data` checked against `want`:
    /// the bytes, and whether the body ended in an error.
    fn run(data: &[u8], range: (usize, usize), want: (Hash32, u64)) -> (Vec<u8>, bool) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let r = Box::new(std::io::Cursor::new(data.to_vec()));
        pump(
            r,
            (range.0 as u64, range.1 as u64),
            want,
            DeviceId([1; 8]),
            0,
            &tx,
        );
        drop(tx);
        let (mut out, mut failed) = (Vec::new(), false);
        while let Ok(x) = rx.try_recv() {
            match x {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => failed = true,
            }
        }
        (out, failed)
    }

    #[test]
    fn the_last_chunk_waits_until_the_whole_blob_verified() {
        let len = READ_CHUNK * 2 + 123;
        let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let want = (sha256(&data), len as u64);
        for (a, b) in [
            (0, len - 1),
            (5, READ_CHUNK + 7),
            (READ_CHUNK - 1, READ_CHUNK),
            (READ_CHUNK * 2, len - 1),
        ] {
            assert_eq!(run(&data, (a, b), want), (data[a..=b].to_vec(), false));
        }
        let mut bad = data.clone();
        bad[len - 1] ^= 1;
        let (out, failed) = run(&bad, (0, len - 1), want);
        assert!(failed && out.len() < len, "cut short: {}", out.len());
        // Damage after the range still withholds the range's last chunk.
        assert_eq!(run(&bad, (0, 9), want), (Vec::new(), true));
        // So does a blob of the wrong length.
        assert_eq!(run(&data[..len - 1], (0, 9), want), (Vec::new(), true));
    }

    #[test]
    fn ranges_parse_as_rfc_9110_says_or_are_refused() {
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(r("bytes=0-9"), Ok(Some((0, 9))));
        assert_eq!(r("bytes=90-200"), Ok(Some((90, 99))), "last clamped");
        assert_eq!(r("bytes=99-"), Ok(Some((99, 99))));
        assert_eq!(r("bytes=-10"), Ok(Some((90, 99))));
        assert_eq!(
            r("bytes=-1000"),
            Ok(Some((0, 99))),
            "suffix longer than the bytes"
        );
        for bad in [
            "bytes=100-",
            "bytes=100-200",
            "bytes=5-4",
            "bytes=-0",
            "bytes=-",
            "bytes=a-b",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=+1-2",
            "bytes=0x1-2",
            "",
            "bytes=1",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(r(bad), Err(Unsatisfiable), "{bad}");
        }
        assert_eq!(
            parse_range(Some("bytes=0-"), 0),
            Err(Unsatisfiable),
            "nothing to give"
        );
    }
}
