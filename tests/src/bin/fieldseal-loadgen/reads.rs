//! `reads`: authenticated reads of one case over the HTTP API at a fixed
//! rate while simulated devices sync, in windows that alternate with and
//! without the reads (ABBA), to show what the reads cost the devices'
//! receipts on the same machine.

use super::devices::{
    cpu_seconds, enroll_up_to, loadavg, percentile, server_pid, start_devices, stop_devices,
    Device, Media, Place,
};
use super::httpc::{self, Conn};
use super::*;

/// The case the reads fetch, made over the API first.
const CASE: &str = "BENCH-READS-0001";
const OFFICER: &str = "BENCH-001";

/// Reads of one path at a fixed rate over a few keep-alive connections.
#[derive(Debug, Clone)]
struct ReadLoad {
    addr: SocketAddr,
    token: String,
    path: String,
    rate: f64,
    conns: usize,
}

/// What the reads of one window got.
#[derive(Debug, Default)]
struct ReadStats {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// From the moment each read was due (not sent: a late send counts).
    micros: Vec<u64>,
}

impl ReadStats {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn merge(&mut self, o: ReadStats) {
        self.ok += o.ok;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.micros.extend(o.micros);
    }
}

/// One measured window.
#[derive(Debug)]
struct Window {
    secs: f64,
    receipts: Vec<u64>,
    reads: Option<ReadStats>,
    loadavg: String,
    server_cores: Option<f64>,
    loadgen_cores: Option<f64>,
}

pub(crate) async fn reads(args: &Args) -> anyhow::Result<()> {
    let http: SocketAddr = args
        .get("http")?
        .parse()
        .map_err(|_| anyhow!("--http: HOST:PORT of the server's HTTP API"))?;
    let user = args.0.get("user").map_or("admin", String::as_str);
    let token = login(http, user, args.get("password")?).await?;
    let load = ReadLoad {
        addr: http,
        path: make_case(http, &token).await?,
        token,
        rate: args.num("rate", 1000.0)?,
        conns: args.num("connections", 8)?,
    };
    if !(load.rate > 0.0 && load.conns > 0) {
        bail!("--rate and --connections must be above 0");
    }
    let (server, server_data, work) = (
        args.get("server")?,
        args.path("server-data")?,
        args.path("work")?,
    );
    let count: usize = args.num("devices", 100)?;
    let rate_bps: u64 = args.num("rate-bps", 2_000_000)?;
    let segment_secs: u32 = args.num("segment-secs", 4)?;
    let (seconds, warmup): (f64, f64) = (args.num("seconds", 16.0)?, args.num("warmup", 8.0)?);
    let pairs: usize = args.num("pairs", 2)?;
    let pid = server_pid(args)?;
    let seg_len = usize::try_from(rate_bps * u64::from(segment_secs) / 8)? - 32;
    let media = Arc::new(Media::new(seg_len));
    let latencies: Arc<Latencies> = Arc::default();
    let mut all: Vec<Arc<Device>> = Vec::new();
    let place = Place {
        server,
        server_data: &server_data,
        work: &work,
        segment_secs,
    };
    enroll_up_to(&mut all, count, &place, &latencies).await?;
    eprintln!("loadgen: {count} devices enrolled");
    let (stop_tx, mut tasks) = start_devices(&all, &media, segment_secs, &mut SplitMix(42));
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    let (mut quiet, mut loaded) = (Vec::new(), Vec::new());
    for p in 0..pairs {
        // ABBA: without the reads first in even pairs, with them in odd ones.
        let order = if p % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_reads in order {
            let w = window(&latencies, seconds, pid, with_reads.then_some(&load)).await;
            println!("window={} {}", quiet.len() + loaded.len() + 1, w.line());
            if with_reads {
                loaded.push(w);
            } else {
                quiet.push(w);
            }
        }
    }
    stop_devices(&stop_tx, &mut tasks).await?;
    println!("{}", summary(count, &load, &quiet, &loaded));
    Ok(())
}

/// Log in; the bearer token.
async fn login(http: SocketAddr, user: &str, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"user": user, "password": password}).to_string();
    let v = httpc::call(http, "POST", "/api/login", None, Some(&body), &[200]).await?;
    Ok(v["token"]
        .as_str()
        .ok_or_else(|| anyhow!("login: no token in {v}"))?
        .to_owned())
}

/// An officer and a case with three activities (an 8 h seizure, a hearing,
/// on-site enforcement); the path of the case, read once to check it.
async fn make_case(http: SocketAddr, token: &str) -> anyhow::Result<String> {
    let t = Some(token);
    let officer = serde_json::json!({"certificate": OFFICER, "name": "bench",
        "valid_from": "2026-01-01", "valid_until": "2030-12-31"});
    httpc::call(
        http,
        "POST",
        "/api/officers",
        t,
        Some(&officer.to_string()),
        &[201],
    )
    .await?;
    // 2026-07-01T09:00:00Z, an hour for each of the short ones.
    let (t0, hour) = (1_782_896_400_000_000i64, 3_600_000_000i64);
    let activity = |id: &str, kind: &str, from: i64, to: i64| {
        serde_json::json!({"id": id, "kind": kind, "place": "bench", "start_us": from,
            "end_us": to, "officers": [OFFICER]})
    };
    let case = serde_json::json!({"number": CASE, "body": "bench", "officers": [OFFICER],
        "activities": [
            activity("seizure", "seizure", t0, t0 + 8 * hour),
            activity("hearing", "hearing", t0 + 9 * hour, t0 + 10 * hour),
            activity("on-site", "on-site-enforcement", t0 + 11 * hour, t0 + 12 * hour)]});
    // 409: made by an earlier run on the same server.
    httpc::call(
        http,
        "POST",
        "/api/cases",
        t,
        Some(&case.to_string()),
        &[201, 409],
    )
    .await?;
    let path = format!("/api/cases/{CASE}");
    let v = httpc::call(http, "GET", &path, t, None, &[200]).await?;
    if v["number"] != CASE || v["activities"].as_array().map(Vec::len) != Some(3) {
        bail!("GET {path}: not the case made: {v}");
    }
    Ok(path)
}

/// Receipt latencies (and the reads' if `load`) over `seconds`.
async fn window(
    latencies: &Latencies,
    seconds: f64,
    pid: Option<u32>,
    load: Option<&ReadLoad>,
) -> Window {
    latencies.micros.lock().expect("lock").clear();
    latencies.open.store(true, Ordering::Relaxed);
    let loadavg = loadavg();
    let cpu0 = (
        cpu_seconds("self"),
        pid.and_then(|p| cpu_seconds(&p.to_string())),
    );
    let t0 = Instant::now();
    let reads = match load {
        Some(l) => Some(l.run(Duration::from_secs_f64(seconds)).await),
        None => {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            None
        }
    };
    latencies.open.store(false, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let cores = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / secs);
    let loadgen_cores = cores(cpu0.0, cpu_seconds("self"));
    let server_cores = cores(cpu0.1, pid.and_then(|p| cpu_seconds(&p.to_string())));
    let mut receipts = std::mem::take(&mut *latencies.micros.lock().expect("lock"));
    receipts.sort_unstable();
    Window {
        secs,
        receipts,
        reads,
        loadavg,
        server_cores,
        loadgen_cores,
    }
}

impl ReadLoad {
    /// Reads for `dur`: each connection one every `conns / rate` seconds,
    /// the connections staggered over one such period. A read that is due
    /// while the one before is still out is sent as soon as that one is
    /// answered (tokio's `Burst`), so a slow server lowers the rate
    /// achieved and raises the latencies, which count from when each read
    /// was due.
    async fn run(&self, dur: Duration) -> ReadStats {
        let period = Duration::from_secs_f64(self.conns as f64 / self.rate);
        let start = tokio::time::Instant::now();
        let end = start + dur;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..self.conns {
            let first = start + period.mul_f64(i as f64 / self.conns as f64);
            let me = self.clone();
            set.spawn(async move { me.one_connection(first, period, end).await });
        }
        let mut all = ReadStats::default();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(s) => all.merge(s),
                Err(e) => all.error(format!("a read task failed: {e}")),
            }
        }
        all
    }

    async fn one_connection(
        &self,
        first: tokio::time::Instant,
        period: Duration,
        end: tokio::time::Instant,
    ) -> ReadStats {
        let mut st = ReadStats::default();
        let mut conn = None;
        let mut tick = tokio::time::interval_at(first, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut body = Vec::new();
        loop {
            let due = tick.tick().await;
            if due >= end {
                return st;
            }
            if conn.is_none() {
                match Conn::connect(self.addr).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        st.error(format!("connect: {e}"));
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected above");
            let req = c.request_bytes("GET", &self.path, Some(&self.token), None);
            match c.exchange(&req, &mut body).await {
                Ok(200) if !body.is_empty() => {
                    st.ok += 1;
                    st.micros
                        .push(u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                Ok(s) => st.error(format!("status {s}, {} bytes", body.len())),
                Err(e) => {
                    st.error(e.to_string());
                    conn = None;
                }
            }
        }
    }
}

impl Window {
    fn line(&self) -> String {
        let mut s = format!(
            "reads={} seconds={:.1} receipts={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} \
             loadavg={} server_cores={} loadgen_cores={}",
            u8::from(self.reads.is_some()),
            self.secs,
            self.receipts.len(),
            percentile(&self.receipts, 50),
            percentile(&self.receipts, 99),
            percentile(&self.receipts, 100),
            self.loadavg,
            opt2(self.server_cores),
            opt2(self.loadgen_cores),
        );
        if let Some(r) = &self.reads {
            let mut m = r.micros.clone();
            m.sort_unstable();
            s.push_str(&format!(
                " read_ok={} read_errors={} read_rate={:.1} read_p50_ms={:.2} read_p99_ms={:.2} \
                 read_max_ms={:.2}",
                r.ok,
                r.errors,
                r.ok as f64 / self.secs,
                percentile(&m, 50),
                percentile(&m, 99),
                percentile(&m, 100),
            ));
            if let Some(e) = &r.first_error {
                s.push_str(&format!(" first_error={e:?}"));
            }
        }
        s
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn opt2(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// The windows of each kind pooled: one `key=value` line.
fn summary(count: usize, load: &ReadLoad, quiet: &[Window], loaded: &[Window]) -> String {
    let pool = |ws: &[Window]| {
        let mut v: Vec<u64> = ws.iter().flat_map(|w| w.receipts.iter().copied()).collect();
        v.sort_unstable();
        v
    };
    let mean_cores = |ws: &[Window]| {
        let c: Vec<f64> = ws.iter().filter_map(|w| w.server_cores).collect();
        (!c.is_empty()).then(|| c.iter().sum::<f64>() / c.len() as f64)
    };
    let (q, l) = (pool(quiet), pool(loaded));
    let mut reads = ReadStats::default();
    for w in loaded {
        if let Some(r) = &w.reads {
            reads.merge(ReadStats {
                micros: r.micros.clone(),
                first_error: r.first_error.clone(),
                ..*r
            });
        }
    }
    reads.micros.sort_unstable();
    let secs: f64 = loaded.iter().map(|w| w.secs).sum();
    let (qp99, lp99) = (percentile(&q, 99), percentile(&l, 99));
    // Each window's p99, and per pair (windows i of each kind) their ratio:
    // medians of these are steadier on a shared machine than the pooled
    // p99, which one disturbed window decides.
    let p99s =
        |ws: &[Window]| -> Vec<f64> { ws.iter().map(|w| percentile(&w.receipts, 99)).collect() };
    let ratios: Vec<f64> = p99s(loaded)
        .iter()
        .zip(p99s(quiet))
        .map(|(l, q)| l / q)
        .collect();
    format!(
        "devices={count} read_target={:.0} connections={} quiet_receipts={} quiet_p50_ms={:.1} \
         quiet_p99_ms={qp99:.1} reads_receipts={} reads_p50_ms={:.1} reads_p99_ms={lp99:.1} \
         quiet_window_p99_median_ms={:.1} reads_window_p99_median_ms={:.1} p99_ratio={:.2} \
         read_ok={} read_errors={} read_rate={:.1} read_p50_ms={:.2} \
         read_p99_ms={:.2} quiet_server_cores={} reads_server_cores={}",
        load.rate,
        load.conns,
        q.len(),
        percentile(&q, 50),
        l.len(),
        percentile(&l, 50),
        median(&p99s(quiet)),
        median(&p99s(loaded)),
        median(&ratios),
        reads.ok,
        reads.errors,
        reads.ok as f64 / secs,
        percentile(&reads.micros, 50),
        percentile(&reads.micros, 99),
        opt2(mean_cores(quiet)),
        opt2(mean_cores(loaded)),
    )
}
