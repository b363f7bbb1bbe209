//! The client against a stand-in gpsd on loopback: what it asks for, and
//! what the tracker makes of a gpsd that is absent, answers, goes away,
//! comes back, or is not gpsd at all.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use fieldseal_proto::entry::{Event, NoFix, Position};

use super::{Backoff, Gps, WATCH};

const FAST: Backoff = Backoff {
    min: Duration::from_millis(20),
    max: Duration::from_millis(100),
};
const AGE: Duration = Duration::from_secs(60);

/// A port on 127.0.0.1 with nothing listening (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (up to 20 s, polling) until `f` holds; the events seen meanwhile.
fn until(gps: &Gps, what: &str, f: impl Fn(&Gps) -> bool) -> Vec<Event> {
    let end = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !f(gps) {
        seen.extend(gps.take_events(Instant::now()));
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; events {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    seen.extend(gps.take_events(Instant::now()));
    seen
}

/// Accept one connection, check that it asks for JSON reports, send `lines`.
fn serve(listener: &TcpListener, lines: &[&str]) -> TcpStream {
    let (stream, _) = listener.accept().unwrap();
    let mut asked = Vec::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_until(b'\n', &mut asked)
        .unwrap();
    assert_eq!(asked, WATCH);
    let mut w = stream.try_clone().unwrap();
    for l in lines {
        w.write_all(l.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
    }
    stream
}

const VERSION: &str =
    r#"{"class":"VERSION","release":"3.22","rev":"3.22","proto_major":3,"proto_minor":14}"#;
const TPV: &str = r#"{"class":"TPV","device":"/dev/pts/1","mode":3,"time":"2026-07-01T08:00:08.000Z","lat":44.011071667,"lon":87.300100000,"eph":17.100}"#;
const NO_FIX: &str =
    r#"{"class":"TPV","device":"/dev/pts/1","mode":1,"time":"2026-07-01T08:00:09.000Z"}"#;

#[test]
fn off_says_no_receiver_and_signs_nothing() {
    let g = Gps::off();
    assert!(!g.enabled());
    assert_eq!(
        g.position_at(Instant::now()),
        Position::NoFix(NoFix::NoReceiver)
    );
    assert!(g.take_events(Instant::now()).is_empty());
}

#[test]
fn no_gpsd_at_all_is_unreachable_from_the_first_entry_with_one_event() {
    let g = Gps::start(&format!("127.0.0.1:{}", closed_port()), AGE, FAST);
    // `start` waited for the first attempt: no race with the first entry.
    assert_eq!(
        g.position_at(Instant::now()),
        Position::NoFix(NoFix::ReceiverUnreachable)
    );
    // Many retries later, still one event.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        g.take_events(Instant::now()),
        [Event::ReceiverUnreachable { last_fix_us: None }]
    );
    assert!(g.take_events(Instant::now()).is_empty());
}

#[test]
fn gpsd_answers_goes_away_and_comes_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, gone) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let first = serve(&listener, &[VERSION, TPV, NO_FIX]);
        // When the test has seen the fix, gpsd goes away...
        let _ = gone.recv();
        drop(first);
        drop(listener);
    });
    let g = Gps::start(&addr.to_string(), AGE, FAST);
    let events = until(&g, "the fix", |g| {
        matches!(g.position_at(Instant::now()), Position::Fix { .. })
    });
    assert_eq!(
        events,
        [Event::FixAcquired {
            fix_us: 1_782_892_808_000_000
        }]
    );
    let Position::Fix { point, fix_us } = g.position_at(Instant::now()) else {
        unreachable!()
    };
    assert_eq!(
        (point.lat_e7, point.lon_e7, point.accuracy_m, fix_us),
        (440_110_717, 873_001_000, 18, 1_782_892_808_000_000)
    );
    go.send(()).unwrap();
    server.join().unwrap();
    let events = until(&g, "gpsd gone", |g| {
        g.position_at(Instant::now()) == Position::NoFix(NoFix::ReceiverUnreachable)
    });
    assert_eq!(
        events,
        [Event::ReceiverUnreachable {
            last_fix_us: Some(1_782_892_808_000_000)
        }]
    );
    // ...and comes back on the same port.
    let listener = TcpListener::bind(addr).unwrap();
    let server = std::thread::spawn(move || serve(&listener, &[VERSION]));
    let events = until(&g, "gpsd back", |g| {
        g.position_at(Instant::now()) == Position::NoFix(NoFix::NotYet)
    });
    assert_eq!(events, [Event::ReceiverBack]);
    drop(server.join().unwrap());
}

#[test]
fn a_peer_that_is_not_gpsd_is_unreachable() {
    for first in [
        "SSH-2.0-OpenSSH_9.2p1".to_string(),
        // No newline within the longest line read.
        "x".repeat(usize::try_from(super::MAX_LINE).unwrap() + 10),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(first.as_bytes());
            let _ = s.write_all(b"\n");
            // Keep it open: the client must leave by itself.
            std::thread::sleep(Duration::from_millis(500));
        });
        let g = Gps::start(&addr.to_string(), AGE, FAST);
        let events = until(&g, "unreachable", |g| {
            g.position_at(Instant::now()) == Position::NoFix(NoFix::ReceiverUnreachable)
        });
        assert_eq!(events, [Event::ReceiverUnreachable { last_fix_us: None }]);
        server.join().unwrap();
    }
}
