//! Blobs on an S3-compatible object store (Garage, MinIO, AWS S3), through
//! the `object_store` crate.
//!
//! Keys, under the bucket:
//!
//! ```text
//! blobs/<sha256 hex>          a held blob, written once, whole
//! damaged/<sha256 hex>[.N]    quarantined copies (N = 1, 2, … for later ones)
//! ```
//!
//! How each part of the [`BlobStore`] contract is kept:
//! - **visible only once whole and durable**: a put is one PUT (up to
//!   [`PART`] bytes) or a multipart upload completed only after the last
//!   part; the store acknowledges either only after its write quorum has the
//!   bytes (Garage: 2 of 3 nodes with `replication_factor = 3`; its
//!   `data_fsync` and `metadata_fsync` make that an fsync, docs/SERVER.md).
//! - **bytes that do not hash to the name are refused**: the SHA-256 is
//!   computed while reading the source, and a mismatch aborts before the PUT
//!   or the multipart completion, so nothing becomes visible.
//! - **checked on read**: [`S3Store::open`] returns a reader that hashes what
//!   it streams and fails at the end ([`io::ErrorKind::InvalidData`]) if the
//!   bytes are not the name's: a damaged object is never read as good, by
//!   scrub, verify, the HTTP API or an export.
//! - **bounded memory**: reads stream in the HTTP body's chunks through a
//!   channel of [`READ_AHEAD`] chunks; a put holds one part.
//!
//! The trait is synchronous (the folder store's file I/O is), the S3 client
//! asynchronous: the store runs its requests on a small runtime of its own
//! ([`runtime`]), whichever thread calls, so that a call from a tokio worker
//! (ingest, HTTP) or from a plain thread (scrub, verify) works the same.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use fieldseal_proto::identity::{Hash32, Sha256Stream};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};

use super::{mismatch, BlobStore, READ_CHUNK};

/// Part size of multipart uploads, and the largest blob sent in one PUT:
/// above S3's 5 MiB minimum part, and a few seconds of video, so that most
/// segments are a single PUT and a put holds at most this much in memory.
pub const PART: usize = 8 * 1024 * 1024;

/// HTTP body chunks a reader may have buffered ahead of its consumer
/// (hyper's chunks are at most a few tens of KiB each).
const READ_AHEAD: usize = 16;

/// Blobs read at once by `verify` and `scrub` on an object store: each read
/// waits on the network more than on a core.
pub const PARALLEL_READS: usize = 8;

/// Where the bucket is and how to sign requests to it.
#[derive(Clone)]
pub struct S3Settings {
    /// `http://host:port` or `https://…`; plain HTTP only when it says so.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region requests are signed for (Garage's `s3_region`).
    pub region: String,
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The credentials file of `[blobs] credentials_file`: TOML with the two
/// keys, readable by the server's user alone.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
}

/// Access key ID and secret from `file` (which must be private, as the data
/// folder must), or else from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
///
/// # Errors
/// The file is open to others, unreadable or malformed; no file and no
/// variables.
pub fn credentials(file: Option<&Path>) -> io::Result<(String, String)> {
    if let Some(file) = file {
        crate::fsutil::check_private([file])
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
        let text = std::fs::read_to_string(file)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
        let c: CredentialsFile = toml::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", file.display()),
            )
        })?;
        return Ok((c.access_key_id, c.secret_access_key));
    }
    match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) => Ok((id, secret)),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "[blobs] kind = \"s3\" needs credentials: credentials_file, or the variables \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )),
    }
}

/// The runtime every S3 request runs on: one per process, never dropped (a
/// runtime cannot be dropped from inside another, as a `Shared` may be).
/// Two threads: the requests wait on the network, and the cores are for
/// ingest and hashing.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fieldseal-s3")
            .enable_all()
            .build()
            .expect("start the S3 client's runtime")
    })
}

/// Run `fut` on [`runtime`] and wait for it on this thread (a plain
/// channel: it works on a tokio worker too, where `block_on` would panic).
fn run<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| io::Error::other("the S3 request's task panicked"))
}

/// An `object_store` error as an I/O error: "not found" kept as such, any
/// other failure (the store unreachable, no quorum, refused, a body cut
/// off) as [`io::ErrorKind::NetworkDown`], which says nothing about the
/// bytes: scrub stops on it instead of taking the blob for damaged.
fn io_err(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => {
            io::Error::new(io::ErrorKind::NotFound, e.to_string())
        }
        e => io::Error::new(io::ErrorKind::NetworkDown, e.to_string()),
    }
}

/// Blobs in an S3 bucket. See the module doc.
pub struct S3Store {
    s3: Arc<AmazonS3>,
    /// For messages: `s3://bucket` at the endpoint.
    name: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("name", &self.name).finish()
    }
}

impl S3Store {
    /// A client for the bucket. Nothing is sent yet.
    ///
    /// # Errors
    /// The settings are invalid (an endpoint that is not a URL).
    pub fn new(s: &S3Settings) -> io::Result<S3Store> {
        // reqwest's rustls without a bundled provider: ring, as for QUIC
        // and the HTTP API. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = AmazonS3Builder::new()
            .with_endpoint(&s.endpoint)
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(&s.secret_access_key)
            // Garage and MinIO are addressed by path (host/bucket/key).
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                ClientOptions::new().with_allow_http(s.endpoint.starts_with("http://")),
            )
            .build()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(S3Store {
            s3: Arc::new(s3),
            name: format!("s3://{} at {}", s.bucket, s.endpoint),
        })
    }

    fn key(hash: &Hash32) -> Key {
        Key::from(format!("blobs/{}", hex::encode(hash)))
    }

    fn damaged_key(hash: &Hash32, n: u32) -> Key {
        match n {
            0 => Key::from(format!("damaged/{}", hex::encode(hash))),
            n => Key::from(format!("damaged/{}.{n}", hex::encode(hash))),
        }
    }

    /// HEAD: the object's length, `None` if absent.
    fn head(&self, key: Key) -> io::Result<Option<u64>> {
        let s3 = self.s3.clone();
        match run(async move { s3.head(&key).await })? {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Upload what `src` yields under `key` if it hashes to `hash`: one PUT
    /// up to [`PART`] bytes, a multipart upload (aborted on any failure)
    /// above.
    fn upload(&self, hash: &Hash32, key: Key, src: &mut dyn Read) -> io::Result<u64> {
        let mut h = Sha256Stream::new();
        let first = read_part(src, &mut h)?;
        let mut len = first.len() as u64;
        if first.len() < PART {
            let got = h.finish();
            if got != *hash {
                return Err(mismatch(hash, &got));
            }
            let s3 = self.s3.clone();
            run(async move { s3.put(&key, PutPayload::from(first)).await })?.map_err(io_err)?;
            return Ok(len);
        }
        let s3 = self.s3.clone();
        let mut up = run(async move { s3.put_multipart(&key).await })?.map_err(io_err)?;
        let res = (|| {
            let mut part = first;
            loop {
                let fut = up.put_part(PutPayload::from(part));
                run(fut)?.map_err(io_err)?;
                part = read_part(src, &mut h)?;
                if part.is_empty() {
                    break;
                }
                len += part.len() as u64;
            }
            let got = h.clone().finish();
            if got != *hash {
                return Err(mismatch(hash, &got));
            }
            Ok(())
        })();
        match res {
            Ok(()) => {
                run(async move { up.complete().await })?.map_err(io_err)?;
                Ok(len)
            }
            Err(e) => {
                // Parts of an aborted upload are never visible; a failed
                // abort leaves them to the bucket's lifecycle rule.
                if let Ok(Err(ae)) = run(async move { up.abort().await }) {
                    tracing::warn!(error = %ae, "could not abort a multipart upload");
                }
                Err(e)
            }
        }
    }
}

/// Up to [`PART`] bytes of `src` (fewer only at its end), hashed into `h`.
fn read_part(src: &mut dyn Read, h: &mut Sha256Stream) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(PART);
    let mut chunk = vec![0u8; READ_CHUNK];
    while buf.len() < PART {
        let want = (PART - buf.len()).min(READ_CHUNK);
        match src.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from(buf))
}

/// A GET's body as it arrives, checked against the name at its end.
struct CheckedReader {
    want: Hash32,
    /// Length the HEAD of the GET announced.
    want_len: u64,
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    hash: Sha256Stream,
    len: u64,
    done: bool,
}

impl Read for CheckedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(c)) => {
                    self.hash.update(&c);
                    self.len += c.len() as u64;
                    self.cur = c;
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvError) => {
                    // The body ended: now, and only now, are the bytes known good.
                    let got = self.hash.clone().finish();
                    if got != self.want || self.len != self.want_len {
                        return Err(mismatch(&self.want, &got));
                    }
                    self.done = true;
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

impl BlobStore for S3Store {
    fn stat(&self, hash: &Hash32) -> io::Result<Option<u64>> {
        self.head(Self::key(hash))
    }

    fn open(&self, hash: &Hash32) -> io::Result<Box<dyn Read + Send>> {
        let (s3, key) = (self.s3.clone(), Self::key(hash));
        let got = run(async move { s3.get(&key).await })?.map_err(io_err)?;
        let want_len = got.meta.size;
        let (tx, rx) = mpsc::sync_channel(READ_AHEAD);
        runtime().spawn(async move {
            let mut body = got.into_stream();
            while let Some(c) = body.next().await {
                let c = c.map_err(io_err);
                let stop = c.is_err();
                // A full channel blocks this worker until the reader takes a
                // chunk; block_in_place lets the runtime's other tasks go on.
                if tokio::task::block_in_place(|| tx.send(c)).is_err() || stop {
                    return; // the reader is gone, or the body failed
                }
            }
        });
        Ok(Box::new(CheckedReader {
            want: *hash,
            want_len,
            chunks: rx,
            cur: Bytes::new(),
            hash: Sha256Stream::new(),
            len: 0,
            done: false,
        }))
    }

    fn put(&self, hash: &Hash32, src: &mut dyn Read) -> io::Result<u64> {
        self.upload(hash, Self::key(hash), src)
    }

    /// Server-side copy to the first free `damaged/` name, then DELETE. A
    /// damaged object's bytes are copied as they are (never read as good).
    fn quarantine(&self, hash: &Hash32) -> io::Result<String> {
        if self.stat(hash)?.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {} is not held in {}", hex::encode(hash), self.name),
            ));
        }
        let mut n = 0;
        while self.head(Self::damaged_key(hash, n))?.is_some() {
            n += 1;
        }
        let (s3, from, to) = (self.s3.clone(), Self::key(hash), Self::damaged_key(hash, n));
        let shown = format!("{} {to}", self.name);
        run(async move {
            s3.copy(&from, &to).await?;
            s3.delete(&from).await
        })?
        .map_err(io_err)?;
        Ok(shown)
    }

    fn was_quarantined(&self, hash: &Hash32) -> io::Result<bool> {
        Ok(self.head(Self::damaged_key(hash, 0))?.is_some())
    }

    fn delete(&self, hash: &Hash32) -> io::Result<bool> {
        // S3's DELETE succeeds whether or not the key exists: HEAD first
        // tells the caller which it was.
        if self.stat(hash)?.is_none() {
            return Ok(false);
        }
        let (s3, key) = (self.s3.clone(), Self::key(hash));
        match run(async move { s3.delete(&key).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(io_err(e)),
        }
    }

    fn list(&self) -> io::Result<Vec<Hash32>> {
        let s3 = self.s3.clone();
        let metas = run(async move {
            let prefix = Key::from("blobs");
            let mut out = Vec::new();
            let mut pages = s3.list(Some(&prefix));
            while let Some(m) = pages.next().await {
                out.push(m?.location);
            }
            Ok::<_, object_store::Error>(out)
        })?
        .map_err(io_err)?;
        let mut out: Vec<Hash32> = metas
            .iter()
            .filter_map(|k| k.filename())
            .filter_map(|n| hex::decode(n).ok())
            .filter_map(|v| Hash32::try_from(v).ok())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    fn parallel_reads(&self) -> usize {
        PARALLEL_READS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_credentials_file_others_can_read_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s3.toml");
        std::fs::write(&f, "access_key_id = \"GKx\"\nsecret_access_key = \"s\"\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = credentials(Some(&f)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(credentials(Some(&f)).unwrap(), ("GKx".into(), "s".into()));
    }

    #[test]
    fn blobs_table_parses_and_an_incomplete_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s3.toml");
        std::fs::write(&f, "access_key_id = \"GKx\"\nsecret_access_key = \"s\"\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg: crate::config::Config = toml::from_str(&format!(
            "[blobs]\nkind = \"s3\"\nbucket = \"b\"\ncredentials_file = \"{}\"\n",
            f.display()
        ))
        .unwrap();
        assert_eq!(cfg.blobs.kind, crate::config::BlobsKind::S3);
        let e = crate::blobstore::open_configured(d.path(), &cfg.blobs).unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
        let mut b = cfg.blobs;
        b.endpoint = Some("http://127.0.0.1:9".into());
        let s = crate::blobstore::open_configured(d.path(), &b).unwrap();
        assert_eq!(s.parallel_reads(), PARALLEL_READS);
    }
}
