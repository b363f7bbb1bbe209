//! The fault-injection framework: seeded scenarios and the invariant checked
//! after every one of them (issue 6).
//!
//! A [`Scenario`] takes its seed from `FIELDSEAL_SEED` or makes one up, prints
//! it, and prints it again with the command that replays it if the scenario
//! fails (a panic while it is alive). Randomness of the scenario (which faults,
//! when, how long) comes from [`Scenario::rng`]; thread scheduling and the
//! kernel still vary between runs, so a replay takes the same decisions, not
//! necessarily the same interleaving.
//!
//! The invariant ([`check`]):
//!
//! 1. every entry acknowledged by the server (a receipt the agent holds) is in
//!    the server's archive with the receipt's hash, and every media
//!    acknowledgement has a blob whose bytes hash to the signed hash; the
//!    server's own verification (`archive::verify`) of the device is clean;
//! 2. every entry ever made durable on the agent is on the server or still on
//!    the agent (same hash), and so is every segment's media;
//! 3. every gap in the chain is explained by a signed event (the verifier's
//!    report gives each gap its signed reason; none may lack one);
//! 4. no process panicked ([`panics`] counts panics in this process, and
//!    [`log_panicked`] scans the logs of child processes);
//! 5. memory stayed bounded ([`peak_rss_kb`]: `VmHWM` of a process).
//!
//! Iteration counts come from environment variables ([`iterations`]) so that
//! `make test` runs a short form and `make soak` a long one. With
//! `FIELDSEAL_FAULT_LOG=FILE`, each scenario appends one JSON line of figures
//! to FILE (scripts/soak.sh turns them into docs/RELIABILITY.md).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::chain::{verify_chain, FindingKind, MediaObservation, Report, VerifyOptions};
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::{sha256, DeviceId, Hash32};
use fieldseal_proto::receipt::Receipt;

use crate::relay::SplitMix;

/// A seeded scenario. Keep it alive for the whole scenario: dropping it
/// during a panic prints the seed and how to replay it.
#[derive(Debug)]
pub struct Scenario {
    name: String,
    seed: u64,
    started: Instant,
}

impl Scenario {
    /// Start scenario `name` with the seed from `FIELDSEAL_SEED`, or a fresh
    /// one, and print it.
    ///
    /// # Panics
    /// If `FIELDSEAL_SEED` is set but not a number.
    pub fn new(name: &str) -> Scenario {
        install_panic_counter();
        let seed = match std::env::var("FIELDSEAL_SEED") {
            Ok(s) => s.parse().expect("FIELDSEAL_SEED is a u64"),
            Err(_) => {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let t = t.as_secs() ^ u64::from(t.subsec_nanos()) << 20;
                let mut h = SplitMix(
                    t ^ name
                        .bytes()
                        .fold(0u64, |a, b| a.rotate_left(5) ^ u64::from(b)),
                );
                // Keep seeds short enough to type.
                h.next_u64() % 1_000_000_000
            }
        };
        eprintln!("scenario {name}: seed {seed}");
        Scenario {
            name: name.to_string(),
            seed,
            started: Instant::now(),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An independent random stream of this scenario (`stream` tells the
    /// streams apart: relay, fault schedule, …).
    pub fn rng(&self, stream: u64) -> SplitMix {
        let mut r = SplitMix(self.seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64();
        r
    }

    /// Append the scenario's figures to `FIELDSEAL_FAULT_LOG`, if set.
    pub fn record(&self, verdict: &Verdict, iterations: u64, extra: &[(&str, String)]) {
        let Ok(path) = std::env::var("FIELDSEAL_FAULT_LOG") else {
            return;
        };
        let mut line = format!(
            "{{\"scenario\":\"{}\",\"seed\":{},\"iterations\":{},\"acknowledged\":{},\"durable\":{},\"lost\":{},\"ok\":{},\"seconds\":{:.1}",
            self.name,
            self.seed,
            iterations,
            verdict.acknowledged,
            verdict.durable,
            verdict.lost.len(),
            verdict.problems.is_empty() && verdict.lost.is_empty(),
            self.started.elapsed().as_secs_f64()
        );
        for (k, v) in extra {
            line.push_str(&format!(",\"{k}\":\"{}\"", v.replace('"', "'")));
        }
        line.push_str("}\n");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // target/debug/deps/NAME-HASH → NAME, the test target to rerun.
            let target = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .and_then(|s| s.rsplit_once('-').map(|(n, _)| n.to_string()))
                .unwrap_or_else(|| "faults".into());
            eprintln!(
                "scenario {} FAILED with seed {}: replay with FIELDSEAL_SEED={} cargo test -p fieldseal-tests --test {target} -- {}",
                self.name, self.seed, self.seed, self.name
            );
        }
    }
}

/// The iteration count from environment variable `var`, else `short`.
///
/// # Panics
/// If the variable is set but not a number.
pub fn iterations(var: &str, short: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v} is not a number")),
        Err(_) => short,
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static HOOK: Once = Once::new();

fn install_panic_counter() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            prev(info);
        }));
    });
}

/// Panics so far in this process (a task of the in-process server or sync
/// client that panicked is counted even though tokio swallows it).
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Does a child process's log show a panic?
pub fn log_panicked(log: &str) -> bool {
    log.contains("panicked at")
}

/// Peak resident set of process `pid` in KiB (`VmHWM`), if readable.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What the agent holds now: its entries and which segments' media it
/// still has with the right bytes.
#[derive(Debug, Clone, Default)]
pub struct AgentView {
    /// Signed entries, by seq.
    pub entries: BTreeMap<u64, SignedEntry>,
    /// Segments whose media the agent holds and whose bytes hash right.
    pub media_ok: BTreeSet<u64>,
    /// Receipts the agent holds (acknowledged entries).
    pub receipts: BTreeMap<u64, Receipt>,
    /// Segments whose media the server acknowledged.
    pub media_acked: BTreeSet<u64>,
}

impl AgentView {
    /// Read an agent data folder (`chain.log`, `media/`, `receipts.log`,
    /// `acks.log`) as `fieldseal-agent` writes it.
    ///
    /// # Errors
    /// `chain.log` unreadable.
    pub fn from_dir(dir: &Path) -> anyhow::Result<AgentView> {
        let mut v = AgentView::default();
        let bytes = std::fs::read(dir.join("chain.log")).unwrap_or_default();
        let (log, _) = chainlog::split_lossy(&bytes);
        for r in log.records {
            if let Ok(e) = SignedEntry::from_bytes(r) {
                v.entries.insert(e.seq(), e);
            }
        }
        for (seq, e) in &v.entries {
            if let Some(s) = e.entry.segment() {
                let p = dir
                    .join("media")
                    .join(fieldseal_agent::spool::media_name(*seq));
                if let Ok(b) = std::fs::read(&p) {
                    if sha256(&b) == s.media_sha256 {
                        v.media_ok.insert(*seq);
                    }
                }
            }
        }
        let rb = std::fs::read(dir.join("receipts.log")).unwrap_or_default();
        let (rlog, _) = chainlog::split_lossy(&rb);
        for r in rlog.records {
            if let Ok(r) = Receipt::from_bytes(r) {
                v.receipts.insert(r.seq, r);
            }
        }
        // The signed acknowledgements the agent kept (FORMAT.md §9): each was
        // checked against the receipt key before it was written.
        let (acks, _) = fieldseal_agent::acks::read_log(&fieldseal_agent::spoolfs::StdFs, dir)?;
        v.media_acked.extend(acks.iter().map(|k| k.ack.seq));
        Ok(v)
    }

    /// The view of an in-memory sync store and its media files.
    pub fn from_mem(store: &fieldseal_agent::sync::MemStore) -> AgentView {
        use fieldseal_agent::sync::SyncStore;
        let mut v = AgentView::default();
        let Some(head) = store.head() else {
            return v;
        };
        for seq in 0..=head {
            if let Ok(Some(b)) = store.entry(seq) {
                if let Ok(e) = SignedEntry::from_bytes(&b) {
                    if let Ok(Some(m)) = store.media(seq) {
                        if std::fs::read(&m.path).is_ok_and(|b| sha256(&b) == m.sha256) {
                            v.media_ok.insert(seq);
                        }
                    }
                    v.entries.insert(seq, e);
                }
            }
        }
        v.receipts = store.receipts();
        v.media_acked = store.acked();
        v
    }

    /// What this view shows durable: entry hashes and segment media hashes.
    pub fn durable(&self) -> Durable {
        let mut d = Durable::default();
        self.add_to(&mut d);
        d
    }

    /// Merge this view into the record of everything ever durable.
    pub fn add_to(&self, d: &mut Durable) {
        for (seq, e) in &self.entries {
            d.entries.entry(*seq).or_insert_with(|| e.hash());
            if let Some(s) = e.entry.segment() {
                if self.media_ok.contains(seq) {
                    d.media.entry(*seq).or_insert(s.media_sha256);
                }
            }
        }
    }
}

/// Everything ever seen durable on the agent over a scenario.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    /// Entry hash by seq.
    pub entries: BTreeMap<u64, Hash32>,
    /// Media hash by seq, for segments whose bytes were complete.
    pub media: BTreeMap<u64, Hash32>,
}

/// What the server holds for one device.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// The server's own verification of the device (chain, media, receipts).
    pub report: Option<Report>,
    /// Whether `archive::verify` found nothing wrong, and its text.
    pub verify_ok: bool,
    /// Problems with the stored receipts.
    pub receipt_problems: Vec<String>,
    /// `archive::verify`'s text for humans (shown on failure).
    pub verify_text: String,
    /// Entry hash by seq, from the server's chain log.
    pub entries: BTreeMap<u64, Hash32>,
    /// The server's blob store.
    blobs: std::sync::Arc<dyn fieldseal_server::blobstore::BlobStore>,
}

impl ServerView {
    /// Read the archive of `device` in server data folder `dir` with its
    /// open index `db` (a running server's, or one opened on the folder).
    ///
    /// # Errors
    /// The archive is unreadable.
    pub fn read(
        dir: &Path,
        db: &fieldseal_server::db::Db,
        blobs: std::sync::Arc<dyn fieldseal_server::blobstore::BlobStore>,
        device: DeviceId,
    ) -> anyhow::Result<Self> {
        let stop = AtomicBool::new(false);
        let out = fieldseal_server::archive::verify(
            dir,
            db,
            blobs.as_ref(),
            Some(device),
            fieldseal_server::now_us(),
            &stop,
        )?;
        let bytes = std::fs::read(server_chain_log(dir, device)).unwrap_or_default();
        let (log, _) = chainlog::split_lossy(&bytes);
        let mut entries = BTreeMap::new();
        for r in log.records {
            if let Ok(e) = SignedEntry::from_bytes(r) {
                entries.entry(e.seq()).or_insert_with(|| e.hash());
            }
        }
        Ok(ServerView {
            report: out.devices.first().cloned(),
            verify_ok: out.ok,
            receipt_problems: out
                .receipts
                .iter()
                .flat_map(|c| {
                    c.problems
                        .iter()
                        .map(|p| format!("receipt of seq {}: {}", p.seq, p.detail))
                })
                .collect(),
            verify_text: out.human(),
            entries,
            blobs,
        })
    }

    /// Does the server hold a blob with these bytes?
    pub fn has_blob(&self, hash: &Hash32) -> bool {
        fieldseal_server::blobstore::rehash(self.blobs.as_ref(), hash)
            .is_ok_and(|(h, _)| h == *hash)
    }
}

/// Where the server keeps a device's chain log (its `DataDir` knows).
pub fn server_chain_log(dir: &Path, device: DeviceId) -> std::path::PathBuf {
    fieldseal_server::datadir::DataDir::new(dir).chain_log(device)
}

/// Where the server keeps a blob (its `DataDir` knows).
pub fn server_blob_path(dir: &Path, hash: &Hash32) -> std::path::PathBuf {
    fieldseal_server::datadir::DataDir::new(dir).blob(hash)
}

/// The outcome of the invariant check.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Entries acknowledged (receipts held by the agent).
    pub acknowledged: u64,
    /// Entries ever durable on the agent.
    pub durable: u64,
    /// Acknowledged or durable things that are nowhere: the figure that must be 0.
    pub lost: Vec<String>,
    /// Everything else wrong (a finding, an unexplained gap, a panic, memory).
    pub problems: Vec<String>,
}

impl Verdict {
    /// Fail the test with every problem, if any.
    ///
    /// # Panics
    /// When something was lost or is wrong.
    pub fn assert_ok(&self) {
        assert!(
            self.lost.is_empty() && self.problems.is_empty(),
            "invariant violated:\n lost: {:#?}\n problems: {:#?}",
            self.lost,
            self.problems
        );
    }

    /// Add a problem.
    pub fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }
}

/// Check the invariant of issue 6 for one device.
///
/// `durable` is everything ever seen durable on the agent over the scenario
/// (snapshots taken before each fault), `agent` what it holds now, `server`
/// the archive now, `panics_before` the value of [`panics`] when the scenario
/// started, `key` the device key.
pub fn check(
    key: &VerifyingKey,
    durable: &Durable,
    agent: &AgentView,
    server: &ServerView,
    panics_before: u64,
) -> Verdict {
    let mut v = Verdict {
        acknowledged: agent.receipts.len() as u64,
        durable: durable.entries.len() as u64,
        ..Verdict::default()
    };
    // 1. Acknowledged ⇒ archived and verifies.
    // The server's own verification, except media it has not received yet
    // (still on the agent: part 2 checks that) and never acknowledged.
    if !server.verify_ok {
        let mut bad: Vec<String> = server.receipt_problems.clone();
        for f in server.report.iter().flat_map(|r| &r.findings) {
            let pending = f.kind == FindingKind::MissingMedia
                && f.seq.is_some_and(|s| !agent.media_acked.contains(&s));
            if !pending {
                bad.push(format!("{:?} at {:?}: {}", f.kind, f.seq, f.detail));
            }
        }
        if !bad.is_empty() {
            v.problem(format!("server verify: {bad:?}\n{}", server.verify_text));
        }
    }
    for (seq, r) in &agent.receipts {
        if server.entries.get(seq) != Some(&r.entry_hash) {
            v.lost.push(format!(
                "seq {seq}: receipted but not in the server's chain log"
            ));
        }
    }
    for seq in &agent.media_acked {
        let hash = agent
            .entries
            .get(seq)
            .and_then(|e| e.entry.segment().map(|s| s.media_sha256))
            .or_else(|| durable.media.get(seq).copied());
        match hash {
            Some(h) if server.has_blob(&h) => {}
            Some(_) => v.lost.push(format!(
                "seq {seq}: media acknowledged but no good blob on the server"
            )),
            None => v.problem(format!(
                "seq {seq}: media acknowledged for no known segment"
            )),
        }
    }
    // 2. Durable on the agent ⇒ on the server or still on the agent.
    for (seq, h) in &durable.entries {
        let on_agent = agent.entries.get(seq).is_some_and(|e| e.hash() == *h);
        let on_server = server.entries.get(seq) == Some(h);
        if !on_agent && !on_server {
            v.lost.push(format!(
                "seq {seq}: entry was durable on the agent, now nowhere"
            ));
        }
    }
    for (seq, h) in &durable.media {
        if !agent.media_ok.contains(seq) && !server.has_blob(h) {
            v.lost.push(format!(
                "seq {seq}: media was durable on the agent, now nowhere"
            ));
        }
    }
    // 3. Gaps explained: in the agent's chain (with its media) and the server's report.
    let local = verify_agent(key, agent);
    for r in [Some(&local), server.report.as_ref()].into_iter().flatten() {
        for g in &r.gaps {
            if g.reason.is_none() {
                v.problem(format!(
                    "unexplained gap of {:.1} s between seq {} and {}",
                    g.seconds, g.after_seq, g.before_seq
                ));
            }
        }
    }
    for f in &local.findings {
        if f.kind != FindingKind::MissingMedia || !agent_released(agent, f.seq) {
            v.problem(format!(
                "agent chain: {:?} at {:?}: {}",
                f.kind, f.seq, f.detail
            ));
        }
    }
    // 4. No panic.
    let p = panics();
    if p > panics_before {
        v.problem(format!(
            "{} panic(s) during the scenario",
            p - panics_before
        ));
    }
    v
}

/// A segment whose media the agent let go after the server acknowledged it.
fn agent_released(agent: &AgentView, seq: Option<u64>) -> bool {
    seq.is_some_and(|s| agent.media_acked.contains(&s))
}

/// The proto chain verifier over what the agent holds, media included.
pub fn verify_agent(key: &VerifyingKey, agent: &AgentView) -> Report {
    let mut media = BTreeMap::new();
    for (seq, e) in &agent.entries {
        if let Some(s) = e.entry.segment() {
            let obs = if agent.media_ok.contains(seq) {
                MediaObservation::Present {
                    sha256: s.media_sha256,
                    len: s.media_len,
                }
            } else if agent.media_acked.contains(seq) {
                MediaObservation::Released
            } else {
                MediaObservation::Absent { note: None }
            };
            media.insert(*seq, obs);
        }
    }
    let bytes: Vec<Vec<u8>> = agent.entries.values().map(Encode::to_bytes).collect();
    verify_chain(
        key,
        bytes.iter().map(Vec::as_slice),
        &VerifyOptions {
            media: Some(media),
            ordered: true,
            ..VerifyOptions::default()
        },
    )
}

/// Check that memory stayed bounded: `peak_kb` against `limit_mb` (from
/// `FIELDSEAL_RSS_LIMIT_MB` when set).
pub fn check_rss(v: &mut Verdict, what: &str, peak_kb: Option<u64>, limit_mb: u64) {
    let limit = iterations("FIELDSEAL_RSS_LIMIT_MB", limit_mb);
    match peak_kb {
        Some(kb) if kb > limit * 1024 => {
            v.problem(format!("{what}: peak RSS {} MiB > {limit} MiB", kb / 1024));
        }
        Some(_) => {}
        None => v.problem(format!("{what}: peak RSS unreadable")),
    }
}
