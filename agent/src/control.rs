//! The local control socket, `DIR/control.sock`: how `fieldseal-agent start`,
//! `stop`, `status` … reach a running agent. One request per connection, one
//! line of JSON each way:
//!
//! ```text
//! → {"cmd":"start","case":"CJ-2026-0001","activity":"seizure"}
//! ← {"ok":true,"message":"recording"}
//! ← {"ok":false,"error":"already recording"}
//! ```
//!
//! The socket is created with mode 0600 inside the data folder: only the
//! device's own user can command the recorder.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest request line accepted: requests are tiny; this stops a confused
/// client from making the agent buffer without end.
const MAX_REQUEST: u64 = 4096;

/// A request to the running agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Start recording.
    Start {
        /// Case number.
        #[serde(default)]
        case: Option<String>,
        /// Activity type.
        #[serde(default)]
        activity: Option<String>,
    },
    /// Stop recording.
    Stop,
    /// Change the tags.
    Tag {
        /// Case number.
        #[serde(default)]
        case: Option<String>,
        /// Activity type.
        #[serde(default)]
        activity: Option<String>,
    },
    /// Officer identity shown.
    IdentityShown {
        /// Officer.
        #[serde(default)]
        officer: Option<String>,
    },
    /// Mute audio.
    Mute,
    /// Unmute audio.
    Unmute,
    /// Report the state.
    Status,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// What happened (when ok).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why not (when not ok).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Structured data (status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Response {
    /// A success with a message.
    pub fn ok(message: impl Into<String>) -> Self {
        Response {
            ok: true,
            message: Some(message.into()),
            error: None,
            data: None,
        }
    }
    /// A refusal.
    pub fn err(error: impl Into<String>) -> Self {
        Response {
            ok: false,
            message: None,
            error: Some(error.into()),
            data: None,
        }
    }
}

/// Path of the socket in a data folder.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No agent is running in that folder.
    #[error("no agent is running with data folder {0} (start one with `fieldseal-agent run --data {0}`)")]
    NotRunning(String),
    /// The conversation failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The answer was not understood.
    #[error("control socket: bad answer: {0}")]
    BadAnswer(String),
    /// The request was not understood (the agent answers with this).
    #[error("bad request: {0}")]
    BadRequest(#[source] serde_json::Error),
    /// The request line is longer than the cap: the rest is not read, and
    /// the connection is closed (the agent answers with this).
    #[error("bad request: longer than {MAX_REQUEST} bytes without a newline; connection closed")]
    TooLong,
}

/// Send one request to the agent running in `dir`.
///
/// # Errors
/// [`ControlError::NotRunning`] when nothing listens; I/O and protocol errors.
pub fn request(dir: &Path, req: &Request) -> Result<Response, ControlError> {
    let path = socket_path(dir);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning(dir.display().to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    // Generous: a stop may wait for the segment in progress (up to its length).
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    let mut line = serde_json::to_string(req).expect("request serialises");
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream.take_limited()).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| ControlError::BadAnswer(e.to_string()))
}

trait TakeLimited {
    fn take_limited(self) -> std::io::Take<UnixStream>;
}

impl TakeLimited for UnixStream {
    fn take_limited(self) -> std::io::Take<UnixStream> {
        std::io::Read::take(self, 1 << 20)
    }
}

/// Bind the control socket in `dir`, replacing a stale one left by a crash.
///
/// # Errors
/// I/O errors, or another agent already listening there.
pub fn bind(dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(dir);
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another agent is running with data folder {}",
                    dir.display()
                ),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    // The owner's alone from the moment it exists: whoever connects can
    // stop a recording.
    crate::fsutil::with_private_umask(|| UnixListener::bind(&path))
}

/// Read one request from a connection.
///
/// # Errors
/// [`ControlError::Io`], or [`ControlError::BadRequest`] for a request that
/// does not parse and [`ControlError::TooLong`] for one over the cap
/// (answered by the caller).
pub fn read_request(stream: &UnixStream) -> Result<Request, ControlError> {
    let mut line = Vec::new();
    BufReader::new(std::io::Read::take(stream, MAX_REQUEST)).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') && line.len() as u64 >= MAX_REQUEST {
        return Err(ControlError::TooLong);
    }
    serde_json::from_slice(&line).map_err(ControlError::BadRequest)
}

/// Write the answer to a connection.
///
/// # Errors
/// I/O errors.
pub fn write_response(mut stream: &UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_string(resp).expect("response serialises");
    line.push('\n');
    stream.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_over_the_cap_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let listener = bind(dir.path()).unwrap();
        let path = socket_path(dir.path());
        let ask = |bytes: Vec<u8>| {
            let mut c = UnixStream::connect(&path).unwrap();
            let w = std::thread::spawn(move || {
                let _ = c.write_all(&bytes);
            });
            let (s, _) = listener.accept().unwrap();
            let r = read_request(&s);
            drop(s);
            w.join().unwrap();
            r
        };
        let huge = vec![b'x'; 1 << 20];
        let e = ask(huge).unwrap_err();
        assert!(matches!(e, ControlError::TooLong), "{e}");
        assert!(e.to_string().contains("longer than 4096 bytes"), "{e}");
        assert_eq!(
            ask(b"{\"cmd\":\"status\"}\n".to_vec()).unwrap(),
            Request::Status
        );
        assert!(matches!(
            ask(b"{".to_vec()),
            Err(ControlError::BadRequest(_))
        ));
    }
}
