//! The gpsd client: one thread with a plain TCP connection to gpsd, which
//! asks for JSON reports (`?WATCH={"enable":true,"json":true}`) and feeds
//! what it reads to the [`Tracker`]. It decides nothing itself.
//!
//! - gpsd counts as reachable once its `VERSION` banner arrives (a port that
//!   accepts and says nothing, or something else, is not gpsd);
//! - a connection that ends, a line longer than [`MAX_LINE`], or no banner
//!   within [`BANNER_WAIT`] count as unreachable; the client then retries
//!   after a backoff that doubles up to its maximum, and starts again from
//!   the minimum only after a connection that lasted;
//! - reads wait at most [`POLL`], so a stop is seen quickly; the tracker's
//!   lock is held only to hand over one report.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::tpv::{self, Report};
use super::Tracker;

/// Longest line read. gpsd's longest reports (SKY with many satellites)
/// are a few kB; anything longer is not gpsd speaking.
pub const MAX_LINE: u64 = 64 * 1024;
/// How long a connected gpsd may take to send its banner (it sends it at once).
pub const BANNER_WAIT: Duration = Duration::from_secs(5);
/// How long a read or connect waits before the thread looks at its stop flag.
pub const POLL: Duration = Duration::from_millis(250);
/// A connection that lasted this long resets the backoff.
const STEADY: Duration = Duration::from_secs(30);

/// What gpsd is sent after connecting.
pub const WATCH: &[u8] = b"?WATCH={\"enable\":true,\"json\":true}\n";

/// Backoff between connection attempts.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// After the first failure.
    pub min: Duration,
    /// At most.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s, doubling to 30 s: gpsd that was restarted is seen again within
    /// half a minute, and one that is not installed costs a connection
    /// attempt every 30 s (on loopback, a refused connect).
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// The running client thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct Client {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Shared between the thread and [`Client::wait_decided`].
type Shared = Arc<(Mutex<Tracker>, Condvar)>;

impl Client {
    /// Start the thread for gpsd at `addr` (`host:port`).
    ///
    /// # Panics
    /// If the thread cannot be spawned.
    pub fn start(addr: String, tracker: Shared, backoff: Backoff) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("gpsd".into())
            .spawn(move || run(&addr, &tracker, &s2, backoff))
            .expect("spawn the gpsd thread");
        Client {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wait until the tracker has heard whether gpsd answers, at most `limit`.
pub fn wait_decided(shared: &Shared, limit: Duration) {
    let (lock, cv) = &**shared;
    let guard = lock.lock().expect("tracker lock");
    let _ = cv
        .wait_timeout_while(guard, limit, |t| !t.decided())
        .expect("tracker lock");
}

fn with<R>(shared: &Shared, f: impl FnOnce(&mut Tracker) -> R) -> R {
    let (lock, cv) = &**shared;
    let r = f(&mut lock.lock().expect("tracker lock"));
    cv.notify_all();
    r
}

/// Sleep `d`, in steps of [`POLL`], unless stopped. Returns false if stopped.
fn pause(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::Relaxed)
}

fn run(addr: &str, shared: &Shared, stop: &AtomicBool, backoff: Backoff) {
    let mut wait = backoff.min;
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        match connect(addr) {
            Ok(stream) => {
                if let Err(why) = session(stream, shared, stop) {
                    tracing::debug!(addr, %why, "gpsd connection ended");
                }
            }
            Err(e) => tracing::debug!(addr, error = %e, "gpsd does not answer"),
        }
        with(shared, |t| t.link_down(Instant::now()));
        if began.elapsed() >= STEADY {
            wait = backoff.min;
        }
        if !pause(stop, wait) {
            break;
        }
        wait = (wait * 2).min(backoff.max);
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let mut last = std::io::Error::new(ErrorKind::NotFound, "no address");
    for a in addrs {
        // A blackholed host must not hold the thread for the OS's minutes.
        match TcpStream::connect_timeout(&a, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Read reports until the connection ends or the client stops. `Ok` only
/// for a stop.
fn session(mut stream: TcpStream, shared: &Shared, stop: &AtomicBool) -> Result<(), String> {
    stream
        .set_read_timeout(Some(POLL))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.write_all(WATCH).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let connected = Instant::now();
    let mut up = false;
    let mut line = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !up && connected.elapsed() > BANNER_WAIT {
            return Err("no gpsd banner".into());
        }
        let room = MAX_LINE.saturating_sub(line.len() as u64);
        match (&mut reader).take(room).read_until(b'\n', &mut line) {
            Ok(0) if room > 0 => return Err("closed".into()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
        if line.last() != Some(&b'\n') {
            if line.len() as u64 >= MAX_LINE {
                return Err("line too long".into());
            }
            continue; // the rest of the line comes with the next read
        }
        let now = Instant::now();
        match tpv::parse(line.trim_ascii()) {
            Ok(Report::Version) if !up => {
                up = true;
                with(shared, |t| t.link_up(now));
            }
            Ok(Report::Tpv(fix)) if up => with(shared, |t| t.report(fix, now)),
            Ok(_) => {}
            Err(e) if !up => return Err(e.to_string()),
            // One bad line from gpsd costs that line only.
            Err(e) => tracing::debug!(error = %e, "gpsd sent a line that does not read"),
        }
        line.clear();
    }
}
