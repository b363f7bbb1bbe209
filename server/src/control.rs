//! The control socket: while `run` owns the index, admin commands talk to it
//! over `DIR/control.sock`, one JSON request per line, one JSON response
//! per line. When no server runs, [`Admin::open`] opens the index itself.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::admin::KeyError;
use crate::archive::ArchiveError;
use crate::blobstore::BlobStore;
use crate::config::Config;
use crate::db::{Db, DbError, DeviceRecord};
use crate::tlog::TlogError;
use crate::{admin, archive, now_us, tlog, Shared};

/// Why an admin request failed: sent back as [`Response::Error`] with its
/// text, or returned by [`request`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Not a device id (16 lowercase hex digits).
    #[error("not a device id: {0}")]
    BadDeviceId(String),
    /// A user change was refused.
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    /// No such device.
    #[error("no device {0}")]
    NoDevice(DeviceId),
    /// A scrub stopped early: the server is shutting down.
    #[error("scrub interrupted after {0} blob(s): the server is shutting down")]
    ScrubInterrupted(u64),
    /// Verify or scrub failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Checkpoint or proof failed.
    #[error(transparent)]
    Tlog(#[from] TlogError),
    /// The receipt key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The index failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The CA certificate could not be read (enrolment tokens name it).
    #[error("the CA certificate: {0}")]
    Ca(#[from] crate::pki::PkiError),
    /// The retention job failed.
    #[error(transparent)]
    Retention(#[from] crate::retention::RetentionError),
    /// Starting the server's state for an offline command failed.
    #[error(transparent)]
    Start(#[from] Box<crate::StartError>),
    /// A request that needs the server's whole state reached [`apply`].
    #[error("{0} needs the server's state")]
    NeedsState(&'static str),
    /// The folder given is not a server data folder: nothing is created in it.
    #[error("{} is not a data folder (no config.toml)", .0.display())]
    NotADataFolder(PathBuf),
    /// Talking to the socket, or opening the blob store, failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A request or response did not parse.
    #[error("control socket: {0}")]
    Json(#[from] serde_json::Error),
}

/// Pretty JSON with a final newline, as commands print it.
fn pretty(v: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("serialisable");
    s.push('\n');
    s
}
use fieldseal_proto::identity::DeviceId;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Issue an enrolment token for a new device.
    DeviceAdd {
        /// Device name.
        name: String,
        /// Token validity, seconds; the configured default when absent.
        ttl_secs: Option<u64>,
    },
    /// Issue a token that re-enrols an enrolled device (revoked, or whose
    /// certificate expired) with its own key.
    DeviceReenrol {
        /// Device id, hex.
        id: String,
        /// Token validity, seconds; the configured default when absent.
        ttl_secs: Option<u64>,
    },
    /// List devices.
    DeviceList,
    /// Revoke a device and close its connections.
    DeviceRevoke {
        /// Device id, hex.
        id: String,
    },
    /// Verify stored chains (`archive::verify`).
    Verify {
        /// One device id, hex; every device when absent.
        device: Option<String>,
        /// JSON instead of text.
        json: bool,
    },
    /// Re-hash every blob (`archive::scrub`).
    Scrub {
        /// JSON instead of text.
        json: bool,
    },
    /// Sign and store a checkpoint of the log.
    LogCheckpoint,
    /// Inclusion proof of an entry's leaf.
    LogProve {
        /// Device id, hex.
        device: String,
        /// The entry's seq.
        seq: u64,
    },
    /// Consistency proof from a size to the latest checkpoint.
    LogConsistency {
        /// The earlier size.
        from: u64,
    },
    /// Apply the retention rule (`retention::run`).
    Retention {
        /// The time to apply it at (µs); now when absent (tests).
        now_us: Option<i64>,
        /// Change nothing; say what would be done.
        dry_run: bool,
        /// JSON instead of text.
        json: bool,
    },
    /// Plan the export package of a case (`export::plan`): the command
    /// line then writes it, reading the blobs itself.
    ExportPlan {
        /// The case number.
        case: String,
    },
    /// Add a user.
    UserAdd {
        /// Login name.
        name: String,
        /// Role.
        role: String,
        /// An officer's certificate number.
        officer: Option<String>,
        /// The password (the socket is the owner's alone).
        password: String,
    },
    /// List users.
    UserList,
    /// Change a user; every session of theirs ends.
    UserChange {
        /// Login name.
        name: String,
        /// Disable (true) or enable (false).
        disabled: Option<bool>,
        /// A new password.
        password: Option<String>,
        /// A new role.
        role: Option<String>,
    },
}

/// A response on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// A new token.
    Token(admin::NewToken),
    /// Devices.
    Devices {
        /// The devices.
        devices: Vec<DeviceRecord>,
        /// The last second of each device's newest certificate, by device
        /// id (hex); devices enrolled before certificates expired have none.
        #[serde(default)]
        cert_not_after: BTreeMap<String, i64>,
        /// The equivocations of those that ever equivocated, by device id
        /// (`equivocation.rs`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        equivocations: BTreeMap<String, crate::equivocation::Summary>,
    },
    /// A device (after revocation).
    Device(DeviceRecord),
    /// Users.
    Users {
        /// The users.
        users: Vec<crate::users::UserInfo>,
    },
    /// A user (after a change).
    User(crate::users::UserInfo),
    /// An export package's plan.
    Export(Box<crate::export::Plan>),
    /// What a command prints, and its exit status (0 ok, 1 findings).
    Output {
        /// Exit status.
        code: u8,
        /// Standard output.
        text: String,
    },
    /// Failure.
    Error {
        /// Why.
        message: String,
    },
}

/// The actor of account changes made on the command line: whoever can
/// reach the control socket or the data folder owns the server.
pub const CLI_ACTOR: &str = "cli";

/// The socket path of a data folder.
pub fn socket_path(dir: &Path) -> PathBuf {
    crate::datadir::DataDir::new(dir).control_socket()
}

/// What a request changed that a running server must act on.
#[derive(Debug, Clone, Copy)]
pub enum Changed<'a> {
    /// A device was revoked: refuse its handshakes, close its connections.
    Revoked(&'a DeviceRecord),
    /// A user was changed: end their sessions.
    User(&'a str),
}

/// Apply a request to an index. `stop` interrupts a scrub or verify (the
/// server shuts down); `changed` lets the running server act on a change: drop
/// a revoked device from its
/// allow-list and close its connections.
pub fn apply(
    dir: &Path,
    db: &Db,
    blobs: &dyn BlobStore,
    cfg: &Config,
    req: Request,
    stop: &AtomicBool,
    changed: impl FnOnce(Changed<'_>),
) -> Response {
    let device_id = |id: &str| -> Result<DeviceId, ControlError> {
        id.parse()
            .map_err(|_| ControlError::BadDeviceId(id.to_owned()))
    };
    // Account changes are access-log leaves, whether a server runs or not.
    let log = |a: &crate::audit::Access| crate::audit::append(db, a);
    let output = |ok: bool, text: String| Response::Output {
        code: u8::from(!ok),
        text,
    };
    let res: Result<Response, ControlError> = (|| match req {
        Request::DeviceAdd { name, ttl_secs } => Ok(Response::Token(admin::device_add(
            db,
            &crate::pki::ca_sha256(dir)?,
            &name,
            ttl_secs.unwrap_or(cfg.enroll_token_ttl_secs),
            now_us(),
        )?)),
        Request::Verify { device, json } => {
            let device = device.as_deref().map(device_id).transpose()?;
            let v = archive::verify(dir, db, blobs, device, now_us(), stop)?;
            let text = if json { pretty(&v) } else { v.human() };
            Ok(output(v.ok, text))
        }
        Request::Scrub { json } => {
            let v = archive::scrub(dir, db, blobs, now_us(), stop)?;
            if !v.complete {
                return Err(ControlError::ScrubInterrupted(v.blobs));
            }
            let text = if json { pretty(&v) } else { v.human() };
            Ok(output(v.ok, text))
        }
        Request::LogCheckpoint => {
            let key = admin::load_receipt_key(dir)?;
            Ok(output(
                true,
                tlog::checkpoint(dir, db, cfg, &key, now_us())?,
            ))
        }
        Request::LogProve { device, seq } => {
            let key = admin::load_receipt_key(dir)?;
            let p = tlog::prove(dir, db, cfg, &key, device_id(&device)?, seq)?;
            Ok(output(true, pretty(&p)))
        }
        Request::LogConsistency { from } => {
            let key = admin::load_receipt_key(dir)?;
            Ok(output(
                true,
                pretty(&tlog::consistency(dir, db, cfg, &key, from)?),
            ))
        }
        Request::UserAdd {
            name,
            role,
            officer,
            password,
        } => Ok(Response::User(crate::users::add(
            db,
            &log,
            CLI_ACTOR,
            crate::users::NewUser {
                name: &name,
                role: &role,
                officer: officer.as_deref(),
                password: &password,
            },
        )?)),
        Request::UserList => Ok(Response::Users {
            users: crate::users::list(db)?,
        }),
        Request::UserChange {
            name,
            disabled,
            password,
            role,
        } => {
            let c = crate::users::Change {
                disabled,
                password: password.as_deref(),
                role: role.as_deref(),
                officer: None,
            };
            let u = crate::users::change(db, &log, CLI_ACTOR, &name, c)?;
            changed(Changed::User(&u.name));
            Ok(Response::User(u))
        }
        Request::Retention { .. } => Err(ControlError::NeedsState("retention")),
        Request::ExportPlan { .. } => Err(ControlError::NeedsState("export")),
        Request::DeviceReenrol { id, ttl_secs } => {
            let id = device_id(&id)?;
            match admin::device_reenrol(
                db,
                &crate::pki::ca_sha256(dir)?,
                id,
                ttl_secs.unwrap_or(cfg.enroll_token_ttl_secs),
                now_us(),
            )? {
                Some(t) => Ok(Response::Token(t)),
                None => Err(ControlError::NoDevice(id)),
            }
        }
        Request::DeviceList => {
            let devices = db.devices()?;
            let mut cert_not_after = BTreeMap::new();
            let mut equivocations = BTreeMap::new();
            for d in &devices {
                if let Some(c) = db.current_cert(d.id)? {
                    cert_not_after.insert(d.id.to_string(), c.not_after);
                }
                let e = crate::equivocation::load(dir, d.id)?;
                if e.count > 0 {
                    equivocations.insert(d.id.to_string(), e);
                }
            }
            Ok(Response::Devices {
                devices,
                cert_not_after,
                equivocations,
            })
        }
        Request::DeviceRevoke { id } => {
            let id = device_id(&id)?;
            match admin::device_revoke(db, id, now_us())? {
                Some(d) => {
                    changed(Changed::Revoked(&d));
                    Ok(Response::Device(d))
                }
                None => Err(ControlError::NoDevice(id)),
            }
        }
    })();
    res.unwrap_or_else(|e| Response::Error {
        message: e.to_string(),
    })
}

/// Apply the retention rule for an admin command.
fn retention(shared: &Shared, now: Option<i64>, dry_run: bool, json: bool) -> Response {
    match crate::retention::run(shared, now.unwrap_or_else(now_us), dry_run) {
        Ok(o) => Response::Output {
            code: 0,
            text: if json { pretty(&o) } else { o.human() },
        },
        Err(e) => Response::Error {
            message: e.to_string(),
        },
    }
}

/// Plan a case's export for the command line (actor [`CLI_ACTOR`]).
fn export_plan(shared: &Shared, case: &str) -> Response {
    let res = crate::load_catalogue(&shared.dir)
        .map_err(|e| e.to_string())
        .and_then(|cat| {
            crate::export::plan(shared, &cat, case, CLI_ACTOR, now_us()).map_err(|e| e.to_string())
        });
    match res {
        Ok(p) => Response::Export(Box::new(p)),
        Err(message) => Response::Error { message },
    }
}

/// Answer a request with the running server's state: what needs all of it
/// (retention, export) here, the rest through [`apply`].
fn answer(s: &Shared, req: Request) -> Response {
    if let Request::ExportPlan { case } = &req {
        return export_plan(s, case);
    }
    if let Request::Retention {
        now_us,
        dry_run,
        json,
    } = req
    {
        return retention(s, now_us, dry_run, json);
    }
    apply(
        &s.dir,
        &s.db,
        s.blobs.as_ref(),
        &s.cfg,
        req,
        &s.stopping,
        |c| match c {
            Changed::Revoked(d) => s.revoked(d),
            Changed::User(user) => {
                let n = s.sessions.revoke_user(user);
                tracing::info!(user, sessions = n, "user changed; sessions ended");
            }
        },
    )
}

/// Longest request line accepted, as the agent caps its own control
/// socket's (`agent/src/control.rs`): a request is a few hundred bytes, the
/// longest field a new password (at most 1024 bytes, up to six times that
/// once JSON escapes it); this stops a confused or hostile local client from
/// making the server buffer a line without end.
pub const MAX_REQUEST: usize = 64 * 1024;

/// One request line read from a connection.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line (its newline removed), or the last bytes before the
    /// end of the stream.
    Request(Vec<u8>),
    /// More than [`MAX_REQUEST`] bytes without a newline: the rest is not
    /// read.
    TooLong,
    /// The client closed the connection.
    End,
}

/// Read one request line of at most [`MAX_REQUEST`] bytes (newline not
/// counted), never buffering more than that.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Line> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let cap = u64::try_from(MAX_REQUEST).expect("small") + 1;
    let n = r.take(cap).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(Line::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Request(buf));
    }
    if buf.len() > MAX_REQUEST {
        return Ok(Line::TooLong);
    }
    Ok(Line::Request(buf))
}

/// Serve the control socket until the task is dropped. Each connection
/// carries requests one line at a time; a line over [`MAX_REQUEST`] is
/// answered with an error and the connection is closed (what follows it
/// cannot be told apart from the next request).
pub(crate) async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = tokio::io::BufReader::new(r);
            loop {
                let (resp, last) = match read_line(&mut r).await {
                    Ok(Line::End) | Err(_) => break,
                    Ok(Line::TooLong) => {
                        tracing::warn!(
                            max = MAX_REQUEST,
                            "control socket: request line too long; connection closed"
                        );
                        let message = format!(
                            "bad request: longer than {MAX_REQUEST} bytes without a newline; \
                             connection closed"
                        );
                        (Response::Error { message }, true)
                    }
                    Ok(Line::Request(line)) => match serde_json::from_slice::<Request>(&line) {
                        Ok(req) => {
                            let s = shared.clone();
                            let resp = tokio::task::spawn_blocking(move || answer(&s, req))
                                .await
                                .unwrap_or_else(|e| Response::Error {
                                    message: e.to_string(),
                                });
                            (resp, false)
                        }
                        Err(e) => {
                            let message = format!("bad request: {e}");
                            (Response::Error { message }, false)
                        }
                    },
                };
                let mut out = serde_json::to_string(&resp).expect("serialisable");
                out.push('\n');
                if w.write_all(out.as_bytes()).await.is_err() || last {
                    break;
                }
            }
        });
    }
}

/// How long an admin command waits for the index while another process
/// holds it: a server that is starting holds it before its control socket
/// is bound (roll-forward, listeners), and another admin command holds it
/// for the moment its work takes.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Send `req` over a connected control socket and read the answer.
fn over_socket(mut s: UnixStream, req: &Request) -> Result<Response, ControlError> {
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp)?;
    Ok(serde_json::from_str(&resp)?)
}

/// Whether `e` says the index is held by another process. sled says so
/// only in words ("could not acquire lock on …"), so the words are matched.
fn index_held(e: &DbError) -> bool {
    match e {
        DbError::Sled(sled::Error::Io(io)) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

/// Run one admin request: through the socket of a running server if there
/// is one, else on the index opened directly. A server that starts
/// meanwhile holds the index before it answers on its socket: the command
/// then waits for the socket rather than fail on the lock.
///
/// # Errors
/// I/O errors talking to the socket, an answer that does not parse; index
/// errors.
pub fn request(dir: &Path, req: Request) -> Result<Response, ControlError> {
    // Before anything that would create the index or leaves.log: a typo in
    // --data must not leave a half data folder behind.
    if !crate::datadir::DataDir::new(dir).config().is_file() {
        return Err(ControlError::NotADataFolder(dir.to_path_buf()));
    }
    let deadline = std::time::Instant::now() + INDEX_WAIT;
    loop {
        if let Ok(s) = UnixStream::connect(socket_path(dir)) {
            return over_socket(s, &req);
        }
        let held = match offline(dir, &req) {
            Err(ControlError::Db(e)) if index_held(&e) => e,
            Err(ControlError::Start(e)) if matches!(&*e, crate::StartError::Index(db) if index_held(db)) => {
                match *e {
                    crate::StartError::Index(db) => db,
                    _ => unreachable!("matched above"),
                }
            }
            other => return other,
        };
        if std::time::Instant::now() >= deadline {
            return Err(held.into());
        }
        tracing::debug!(error = %held, "index held by another process; waiting");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Run `req` on the data folder itself: no server answers on its socket.
fn offline(dir: &Path, req: &Request) -> Result<Response, ControlError> {
    if matches!(req, Request::Retention { .. } | Request::ExportPlan { .. }) {
        // The job needs the server's whole state (its leaves go through
        // `audit`): load it as `run` would, without serving.
        let shared = Shared::open_once(dir).map_err(|e| ControlError::Start(Box::new(e)))?;
        return Ok(answer(&shared, req.clone()));
    }
    let cfg = Config::load(dir).unwrap_or_default();
    // The index first: holding its lock means no server runs here, so
    // opening the blob store may clean up temp files.
    let db = Db::open(dir)?;
    let blobs = crate::blobstore::open_configured(dir, &cfg.blobs)?;
    Ok(apply(
        dir,
        &db,
        blobs.as_ref(),
        &cfg,
        req.clone(),
        &AtomicBool::new(false),
        // No server runs: no connection to close, no session to end.
        |_| {},
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<Line> {
        let mut r = tokio::io::BufReader::new(input);
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r).await.unwrap();
            let stop = matches!(l, Line::End | Line::TooLong);
            out.push(l);
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn a_line_over_the_cap_is_refused_without_reading_on() {
        let at_cap = vec![b'a'; MAX_REQUEST];
        let mut input = at_cap.clone();
        input.push(b'\n');
        input.extend_from_slice(b"{}");
        assert_eq!(
            lines(&input).await,
            vec![
                Line::Request(at_cap),
                Line::Request(b"{}".to_vec()),
                Line::End
            ]
        );
        let mut over = vec![b'a'; MAX_REQUEST + 1];
        over.push(b'\n');
        assert_eq!(lines(&over).await, vec![Line::TooLong]);
        let huge = vec![b'{'; 8 * MAX_REQUEST];
        let mut r = tokio::io::BufReader::new(huge.as_slice());
        assert_eq!(read_line(&mut r).await.unwrap(), Line::TooLong);
        // No more than the cap (and one byte) was taken from the stream.
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut rest)
            .await
            .unwrap();
        assert_eq!(rest.len(), huge.len() - MAX_REQUEST - 1);
    }
}
