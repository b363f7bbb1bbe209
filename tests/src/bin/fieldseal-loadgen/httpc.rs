//! A keep-alive HTTP/1.1 client over one tokio `TcpStream`, enough for the
//! server's JSON API on loopback: one request at a time, answers with a
//! `Content-Length` (axum's JSON answers have one). Hand-written because
//! the workspace has no HTTP client and this one is 80 lines.

use super::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Answers larger than this are refused (the bench reads one case).
const MAX_BODY: usize = 1 << 20;

/// One connection.
#[derive(Debug)]
pub(crate) struct Conn {
    s: BufReader<TcpStream>,
    addr: SocketAddr,
    line: String,
}

impl Conn {
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s: BufReader::new(s),
            addr,
            line: String::new(),
        })
    }

    /// The bytes of a request; `body` is JSON.
    pub(crate) fn request_bytes(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            head.push_str("\r\n");
        }
        head.into_bytes()
    }

    /// Send `req` (from [`Conn::request_bytes`]) and read the answer's
    /// status and body into `body`.
    pub(crate) async fn exchange(&mut self, req: &[u8], body: &mut Vec<u8>) -> io::Result<u16> {
        self.s.get_mut().write_all(req).await?;
        let status = self.read_head_line().await?;
        let status: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("not an HTTP status line: {status:?}")))?;
        let mut len = None;
        loop {
            let h = self.read_head_line().await?;
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let len = len.ok_or_else(|| bad("an answer without Content-Length".into()))?;
        if len > MAX_BODY {
            return Err(bad(format!("an answer of {len} bytes")));
        }
        body.resize(len, 0);
        self.s.read_exact(body).await?;
        Ok(status)
    }

    /// One line of the head, without its CRLF.
    async fn read_head_line(&mut self) -> io::Result<String> {
        self.line.clear();
        if self.s.read_line(&mut self.line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// One request on a fresh connection; the answer must have status `want`
/// (any of them). Returns the body as JSON (`null` when empty).
pub(crate) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    want: &[u16],
) -> anyhow::Result<serde_json::Value> {
    let mut c = Conn::connect(addr)
        .await
        .with_context(|| format!("connect to the HTTP API at {addr}"))?;
    let req = c.request_bytes(method, path, token, body);
    let mut out = Vec::new();
    let status = c
        .exchange(&req, &mut out)
        .await
        .with_context(|| format!("{method} {path}"))?;
    if !want.contains(&status) {
        bail!(
            "{method} {path}: status {status}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    if out.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&out).with_context(|| format!("{method} {path}: not JSON"))
}
