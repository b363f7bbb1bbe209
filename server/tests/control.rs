//! The control socket of a running server: a request line over the cap is
//! answered with an error and its connection closed, and the server goes
//! on answering other connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use fieldseal_server::control::{socket_path, Response, MAX_REQUEST};
use fieldseal_server::{start, RunOptions};

/// A hang guard, not a measurement: the answer comes as soon as the cap is
/// read.
const PATIENCE: Duration = Duration::from_secs(60);

fn ask(sock: &std::path::Path, line: &[u8]) -> (String, Vec<u8>) {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let line = line.to_vec();
        // Writes fail once the server closes the connection: expected.
        std::thread::spawn(move || {
            let _ = s.write_all(&line);
            let _ = s.shutdown(std::net::Shutdown::Write);
        })
    };
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer)
        .expect("an answer before the hang guard");
    let mut after = Vec::new();
    // Closed: an end of stream, or a reset when the server closed with
    // bytes of ours unread (Linux tells the peer so, after what it sent).
    match r.read_to_end(&mut after) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection closes: {e}"),
    }
    writer.join().unwrap();
    (answer, after)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_request_line_is_refused_and_the_server_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("a long password".into())).unwrap();
    let r = start(
        &dir,
        RunOptions {
            quic: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .unwrap();
    let sock = socket_path(&dir);
    let outcome = tokio::task::spawn_blocking(move || {
        // 16 MiB and no newline: refused once the cap is read.
        let (answer, after) = ask(&sock, &vec![b'x'; 16 << 20]);
        let resp: Response = serde_json::from_str(&answer).unwrap();
        let Response::Error { message } = resp else {
            panic!("not an error: {answer}")
        };
        assert!(
            message.contains(&format!("longer than {MAX_REQUEST} bytes")),
            "{message}"
        );
        assert!(after.is_empty(), "nothing after the refusal, then closed");
        // Another connection is served as before, two requests on it.
        let (answer, _) = ask(&sock, b"{\"op\":\"device_list\"}\n{\"op\":\"user_list\"}\n");
        let resp: Response = serde_json::from_str(&answer).unwrap();
        assert!(
            matches!(resp, Response::Devices { ref devices, .. } if devices.is_empty()),
            "{resp:?}"
        );
    })
    .await;
    r.shutdown().await;
    outcome.unwrap();
}

/// An admin command given while a server starts: the server holds the index
/// before its control socket is bound. The command must wait for the
/// socket, not fail on the index's lock.
#[test]
fn an_admin_command_during_a_server_start_waits_for_its_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("a long password".into())).unwrap();
    // The "server": the index held for good, the socket bound a moment later.
    let db = fieldseal_server::db::Db::open(&dir).unwrap();
    let sock = socket_path(&dir);
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert!(line.contains("device_list"), "{line}");
        (&s).write_all(b"{\"status\":\"devices\",\"devices\":[]}\n")
            .unwrap();
        drop(db);
    });
    let resp = control_request(&dir);
    server.join().unwrap();
    assert!(
        matches!(resp, Response::Devices { ref devices, .. } if devices.is_empty()),
        "{resp:?}"
    );
}

fn control_request(dir: &std::path::Path) -> Response {
    fieldseal_server::control::request(dir, fieldseal_server::control::Request::DeviceList)
        .expect("answered by the server once its socket is there")
}
