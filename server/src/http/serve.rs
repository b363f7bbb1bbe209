//! Serving the API on a TCP listener: plain HTTP when the listener is bound
//! to loopback (a reverse proxy or the same machine), TLS with the server's
//! certificate (rustls, the ring provider) otherwise, or when asked.
//!
//! The server's certificate is an Ed25519 one, from the CA that issues the
//! devices' certificates. Programs (curl, an OpenSSL 3 or rustls client)
//! accept it; today's browsers do not implement Ed25519 in TLS, so a browser
//! reaches the web page through loopback or a reverse proxy in front.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::datadir::DataDir;
use crate::pki;

/// A running HTTP listener.
#[derive(Debug)]
pub struct HttpServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// TLS or plain.
    pub tls: bool,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Stop accepting and give requests in flight a moment to finish.
    pub async fn shutdown(self) {
        self.handle
            .graceful_shutdown(Some(std::time::Duration::from_secs(2)));
        let _ = self.task.await;
    }
}

/// The TLS configuration of the HTTP listener: the server's certificate
/// and key, HTTP/1.1.
///
/// # Errors
/// The certificate or key cannot be read.
pub fn tls_config(dir: &Path) -> Result<rustls::ServerConfig, pki::PkiError> {
    let d = DataDir::new(dir);
    let cert = pki::read_cert(&d.server_cert())?;
    let key = pki::read_key(&d.server_key())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(pki::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Bind `addr` and serve `app` on it; TLS unless the address is loopback
/// and `force_tls` is off.
///
/// # Errors
/// The address cannot be bound; the TLS files cannot be read.
pub fn start(
    dir: &Path,
    addr: SocketAddr,
    force_tls: bool,
    app: axum::Router,
) -> Result<HttpServer, crate::StartError> {
    let io = |source| crate::StartError::Io {
        what: "the HTTP listener",
        source,
    };
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| crate::StartError::Listen {
            what: "HTTP (TCP)",
            addr,
            set_by: "--http, or http_listen in config.toml",
            source,
        })?;
    listener.set_nonblocking(true).map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let handle = axum_server::Handle::new();
    let tls = force_tls || !addr.ip().is_loopback();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let task = if tls {
        let cfg = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls_config(dir)?));
        let server = axum_server::from_tcp_rustls(listener, cfg).handle(handle.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve(service).await {
                tracing::error!("HTTP listener: {e}");
            }
        })
    } else {
        let server = axum_server::from_tcp(listener).handle(handle.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve(service).await {
                tracing::error!("HTTP listener: {e}");
            }
        })
    };
    tracing::info!(%addr, tls, "HTTP API listening");
    Ok(HttpServer {
        addr,
        tls,
        handle,
        task,
    })
}
