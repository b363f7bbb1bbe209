//! A stand-in for gpsd on loopback, for tests that need a device with a
//! steady fix and no NMEA log (the browser test): it speaks just enough of
//! gpsd's JSON protocol — the `VERSION` banner, then a `TPV` report with a
//! 3D fix every half second, timed now — to whoever connects. The position
//! test against the real gpsd is `tests/tests/gps_e2e.rs` (gpsfake).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The stand-in: serves until dropped.
#[derive(Debug)]
pub struct StandIn {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

/// Where the stand-in's receiver is: 44.0110000 N, 87.3000000 E.
pub const LAT: f64 = 44.011;
/// Longitude of the stand-in's receiver.
pub const LON: f64 = 87.3;
/// Its horizontal error estimate, metres (the agent states 5).
pub const EPH: f64 = 4.2;

impl StandIn {
    /// Listen on 127.0.0.1, any free port.
    ///
    /// # Panics
    /// If it cannot listen.
    pub fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in gpsd");
        let port = listener.local_addr().expect("its address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let s3 = Arc::clone(&s2);
                        std::thread::spawn(move || serve(c, &s3));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        StandIn { port, stop }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(c: TcpStream, stop: &AtomicBool) {
    let _ = c.set_nonblocking(false);
    let mut watch = Vec::new();
    if BufReader::new(&c).read_until(b'\n', &mut watch).is_err() {
        return;
    }
    let mut w = &c;
    let banner =
        r#"{"class":"VERSION","release":"3.22","rev":"stand-in","proto_major":3,"proto_minor":14}"#;
    if writeln!(w, "{banner}").is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let tpv = format!(
            r#"{{"class":"TPV","device":"/dev/stand-in","mode":3,"time":"{}","lat":{LAT:.9},"lon":{LON:.9},"eph":{EPH}}}"#,
            utc_now()
        );
        if writeln!(w, "{tpv}").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Now as RFC 3339 UTC, as gpsd writes its times.
fn utc_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    fieldseal_proto::entry::utc_text(i64::try_from(d.as_micros()).expect("a date"))
}
