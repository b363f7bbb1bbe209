//! The HTTP API served by a started server: plain HTTP on loopback, TLS
//! with the server's certificate when configured (as on any other address).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use fieldseal_server::datadir::DataDir;
use fieldseal_server::{pki, RunOptions};

async fn start(dir: &Path) -> fieldseal_server::Running {
    fieldseal_server::start(
        dir,
        RunOptions {
            quic: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .unwrap()
}

fn request(stream: &mut impl ReadWrite, path: &str) -> String {
    // A TLS listener may close on a plain request before it is all written.
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    stream.read_to_string(&mut out).ok();
    out
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_loopback_serves_health_and_the_catalogue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("pw".into())).unwrap();
    let r = start(&dir).await;
    let addr = r.http_addr;
    let (health, catalogue) = tokio::task::spawn_blocking(move || {
        let h = request(&mut TcpStream::connect(addr).unwrap(), "/healthz");
        let c = request(&mut TcpStream::connect(addr).unwrap(), "/api/catalogue");
        (h, c)
    })
    .await
    .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        catalogue.contains("\"seizure\"") && catalogue.contains("查封扣押财产"),
        "{catalogue}"
    );
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_uses_the_servers_certificate_and_a_bad_catalogue_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("pw".into())).unwrap();
    let config = DataDir::new(&dir).config();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\nhttp_tls = true\n")).unwrap();
    let r = start(&dir).await;
    let addr = r.http_addr;
    let ca = pki::read_cert(&DataDir::new(&dir).ca_cert()).unwrap();
    let body = tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(pki::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn =
            rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
        let out = request(&mut tls, "/healthz");
        // Plain HTTP to a TLS listener gets nothing useful.
        let plain = request(&mut TcpStream::connect(addr).unwrap(), "/healthz");
        (out, plain)
    })
    .await
    .unwrap();
    assert!(body.0.starts_with("HTTP/1.1 200"), "{}", body.0);
    assert!(!body.1.contains("200 OK"), "{}", body.1);
    r.shutdown().await;

    // A catalogue.toml that is wrong: the server says which file and why.
    std::fs::write(
        DataDir::new(&dir).catalogue(),
        "[[activity]]\nid = \"Bad Id\"\n",
    )
    .unwrap();
    let err = fieldseal_server::start(
        &dir,
        RunOptions {
            quic: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("catalogue.toml"), "{err}");
}
