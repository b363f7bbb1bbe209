//! `devices`: many simulated devices, stepped up until the server falls behind.

use super::*;

/// One simulated device.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) store: Arc<BenchStore>,
    pub(crate) writer: Mutex<ChainWriter>,
    pub(crate) cfg: SyncConfig,
    pub(crate) media_dir: PathBuf,
    pub(crate) segments: AtomicU64,
}

/// Media of the simulated devices: one random body shared by all, made
/// unique per segment by a suffix (the server stores by content, so equal
/// files would not be uploaded twice). The body's SHA-256 state is computed
/// once, so a segment costs the load generator a file write, not a hash.
#[derive(Debug)]
pub(crate) struct Media {
    pub(crate) body: Vec<u8>,
    pub(crate) state: Sha256,
}

impl Media {
    pub(crate) fn new(len: usize) -> Self {
        let mut body = vec![0u8; len];
        rand_core::RngCore::fill_bytes(&mut SplitMix(0x006d_6564_6961), &mut body);
        let mut state = Sha256::new();
        state.update(&body);
        Media { body, state }
    }
}

pub(crate) async fn new_device(
    i: usize,
    server: &str,
    server_data: &Path,
    work: &Path,
    segment_secs: u32,
    latencies: &Arc<Latencies>,
) -> anyhow::Result<Arc<Device>> {
    let key = device_key(1_000_000 + i as u64);
    let e = enroll(&key, server, server_data).await?;
    let mut cfg = SyncConfig::from_enrollment(server, key.clone(), &e);
    cfg.machine.backoff_base = Duration::from_millis(200);
    cfg.machine.backoff_max = Duration::from_secs(2);
    let media_dir = work.join(format!("device-{i:05}"));
    std::fs::create_dir_all(&media_dir)?;
    let store = Arc::new(BenchStore::new(latencies.clone(), true));
    let mut writer = ChainWriter::new(key, segment_secs);
    for e in writer.start()? {
        store.push(&e, None);
    }
    Ok(Arc::new(Device {
        store,
        writer: Mutex::new(writer),
        cfg,
        media_dir,
        segments: AtomicU64::new(0),
    }))
}

/// Record one segment: write its file, sign its entry, make both "durable".
pub(crate) fn record_segment(d: &Device, media: &Media) -> anyhow::Result<()> {
    let n = d.segments.fetch_add(1, Ordering::Relaxed);
    let suffix =
        Sha256::digest([d.media_dir.as_os_str().as_encoded_bytes(), &n.to_be_bytes()].concat());
    let path = d.media_dir.join(format!("{n:08}.ts"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&media.body)?;
        f.write_all(&suffix)?;
    }
    let mut h = media.state.clone();
    h.update(suffix);
    let len = (media.body.len() + suffix.len()) as u64;
    let mut w = d.writer.lock().expect("lock");
    let e = w.segment(h.finalize().into(), len)?;
    // Under the writer's lock: entries reach the store in seq order.
    d.store.push(&e, Some(path));
    Ok(())
}

/// Where the simulated devices sync to and keep their media.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) server: &'a str,
    pub(crate) server_data: &'a Path,
    pub(crate) work: &'a Path,
    pub(crate) segment_secs: u32,
}

/// Enrol devices until `all` holds `count`, 16 at a time.
pub(crate) async fn enroll_up_to(
    all: &mut Vec<Arc<Device>>,
    count: usize,
    place: &Place<'_>,
    latencies: &Arc<Latencies>,
) -> anyhow::Result<()> {
    while all.len() < count {
        let mut set = tokio::task::JoinSet::new();
        for i in all.len()..count.min(all.len() + 16) {
            let (server, server_data, work, latencies) = (
                place.server.to_string(),
                place.server_data.to_path_buf(),
                place.work.to_path_buf(),
                latencies.clone(),
            );
            let segment_secs = place.segment_secs;
            set.spawn(async move {
                new_device(i, &server, &server_data, &work, segment_secs, &latencies)
                    .await
                    .map(|d| (i, d))
            });
        }
        let mut got = Vec::new();
        while let Some(r) = set.join_next().await {
            got.push(r??);
        }
        got.sort_by_key(|(i, _)| *i);
        all.extend(got.into_iter().map(|(_, d)| d));
    }
    Ok(())
}

/// Tasks of running devices, and the switch that stops them.
pub(crate) type Running = (
    watch::Sender<bool>,
    tokio::task::JoinSet<anyhow::Result<()>>,
);

/// Start `devices`: each its sync client, and a segment every
/// `segment_secs` from a random phase.
pub(crate) fn start_devices(
    devices: &[Arc<Device>],
    media: &Arc<Media>,
    segment_secs: u32,
    rng: &mut SplitMix,
) -> Running {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let period = Duration::from_secs(u64::from(segment_secs));
    for d in devices {
        let (d2, stop) = (d.clone(), stop_rx.clone());
        tasks.spawn(async move {
            sync::run_sync(d2.store.clone(), d2.cfg.clone(), Arc::default(), stop)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        });
        // Devices start their segments at random phases, as real ones would.
        let phase = Duration::from_micros(rng.next_u64() % (u64::from(segment_secs) * 1_000_000));
        let (d2, media, mut stop) = (d.clone(), media.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let (d3, m) = (d2.clone(), media.clone());
                        tokio::task::spawn_blocking(move || record_segment(&d3, &m)).await??;
                    }
                    _ = stop.changed() => return Ok(()),
                }
            }
        });
    }
    (stop_tx, tasks)
}

/// Stop the devices of [`start_devices`] and wait for their tasks.
pub(crate) async fn stop_devices(
    stop_tx: &watch::Sender<bool>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let _ = stop_tx.send(true);
    let t_stop = Instant::now();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r? {
            eprintln!("loadgen: a device task failed: {e:#}");
        }
    }
    eprintln!(
        "loadgen: stopped in {:.1} s",
        t_stop.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The `p`-th percentile (nearest rank) of sorted microseconds, in milliseconds.
pub(crate) fn percentile(sorted: &[u64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len()).div_ceil(100);
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

pub(crate) async fn devices(args: &Args) -> anyhow::Result<()> {
    let server = args.get("server")?.to_string();
    let server_data = args.path("server-data")?;
    let work = args.path("work")?;
    let counts: Vec<usize> = args
        .get("counts")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("--counts: comma-separated numbers"))?;
    let seconds: f64 = args.num("seconds", 24.0)?;
    let warmup: f64 = args.num("warmup", 8.0)?;
    let rate_bps: u64 = args.num("rate-bps", 2_000_000)?;
    let segment_secs: u32 = args.num("segment-secs", 4)?;
    let server_pid = server_pid(args)?;
    let seg_len = usize::try_from(rate_bps * u64::from(segment_secs) / 8)? - 32;
    let media = Arc::new(Media::new(seg_len));
    let latencies: Arc<Latencies> = Arc::default();
    let mut all: Vec<Arc<Device>> = Vec::new();
    let mut rng = SplitMix(42);
    let place = Place {
        server: &server,
        server_data: &server_data,
        work: &work,
        segment_secs,
    };
    for &count in &counts {
        let t_enroll = Instant::now();
        enroll_up_to(&mut all, count, &place, &latencies).await?;
        eprintln!(
            "loadgen: {count} devices enrolled ({:.1} s for the new ones)",
            t_enroll.elapsed().as_secs_f64()
        );
        let (stop_tx, mut tasks) = start_devices(&all[..count], &media, segment_secs, &mut rng);
        let pending = |all: &[Arc<Device>]| {
            all.iter().take(count).fold((0, 0), |(a, b), d| {
                let (x, y) = d.store.pending();
                (a + x, b + y)
            })
        };
        tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
        latencies.micros.lock().expect("lock").clear();
        latencies.open.store(true, Ordering::Relaxed);
        let load0 = loadavg();
        let cpu0 = (
            cpu_seconds("self"),
            server_pid.and_then(|p| cpu_seconds(&p.to_string())),
        );
        let start = pending(&all);
        let mut worst = start;
        let t0 = Instant::now();
        let mut samples = Vec::new();
        while t0.elapsed().as_secs_f64() < seconds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let p = pending(&all);
            worst = (worst.0.max(p.0), worst.1.max(p.1));
            samples.push(p.1);
        }
        latencies.open.store(false, Ordering::Relaxed);
        let window = t0.elapsed().as_secs_f64();
        // CPU used over the window, in cores (1.0 = one core busy throughout).
        let cores = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", (b - a) / window),
            _ => "-".to_string(),
        };
        let loadgen_cores = cores(cpu0.0, cpu_seconds("self"));
        let server_cores = cores(cpu0.1, server_pid.and_then(|p| cpu_seconds(&p.to_string())));
        let end = pending(&all);
        let mut lat = std::mem::take(&mut *latencies.micros.lock().expect("lock"));
        lat.sort_unstable();
        let (p50, p99) = (percentile(&lat, 50), percentile(&lat, 99));
        // Sustained: receipts' p99 under a second, and the segment backlog at
        // the end of the window no larger than at its start plus one segment
        // in flight per device (the recording of one just finished).
        let half = samples.len() / 2;
        let first: u64 = samples[..half].iter().copied().max().unwrap_or(0);
        let second: u64 = samples[half..].iter().copied().max().unwrap_or(0);
        let growing = end.1 > start.1 + count as u64 && second > first + count as u64 / 2;
        let ok = p99 < 1000.0 && !growing && !lat.is_empty();
        println!(
            "devices={count} receipts={} p50_ms={p50:.1} p99_ms={p99:.1} max_ms={:.1} \
             unreceipted_start={} unreceipted_end={} unacked_start={} unacked_end={} \
             unacked_max={} loadavg={load0} loadgen_cores={loadgen_cores} \
             server_cores={server_cores} ok={}",
            lat.len(),
            lat.last().map_or(f64::NAN, |v| *v as f64 / 1000.0),
            start.0,
            end.0,
            start.1,
            end.1,
            worst.1,
            u8::from(ok),
        );
        stop_devices(&stop_tx, &mut tasks).await?;
        if !ok {
            break;
        }
    }
    Ok(())
}

/// `--server-pid`: the server's process, to report the CPU it used in each
/// window.
pub(crate) fn server_pid(args: &Args) -> anyhow::Result<Option<u32>> {
    match args.get("server-pid") {
        Ok(p) => Ok(Some(
            p.parse()
                .map_err(|_| anyhow!("--server-pid: a process id"))?,
        )),
        Err(_) => Ok(None),
    }
}

/// User plus system CPU seconds of process `pid` ("self" for this one), all
/// its threads, from /proc/PID/stat; `None` if it cannot be read.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line (11 and 12 of `rest`),
    // in clock ticks: USER_HZ, 100 on Linux whatever the kernel's HZ.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}
