//! `fieldseal-agent`: the edge recorder. Thin: parses the command line, sets
//! up logging and calls the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldseal_agent::control::{self, Request};
use fieldseal_agent::devicekey::{self, pin::PinSource, pkcs11::TokenKey, KeyStore};
use fieldseal_agent::sync::{self, SyncStore};
use fieldseal_agent::syncstore::{head_from_receipts, FsSyncStore};
use fieldseal_agent::{config, index, keyfile, run, spool};
use fieldseal_proto::identity::{DeviceId, Signer};

/// fieldseal agent: records enforcement audio-video without interruption into
/// hash-chained, signed, power-loss-safe segments.
#[derive(Debug, Parser)]
#[command(name = "fieldseal-agent", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Args)]
struct DataArg {
    /// The agent's data folder (key, config, chain, media).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
}

/// The PIN of a device key in a PKCS#11 token (a key file takes none).
#[derive(Debug, clap::Args)]
struct PinArgs {
    /// Read the token's user PIN from stdin: `--pin -`. Nothing else is
    /// taken here: a command line is readable by every user.
    #[arg(long, value_name = "-", conflicts_with = "pin_file")]
    pin: Option<String>,
    /// Read the token's user PIN from this file (mode 0600). Without
    /// either, `pin_file` of config.toml's [key] section, if any.
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
}

impl PinArgs {
    fn source(self) -> anyhow::Result<Option<PinSource>> {
        Ok(PinSource::from_args(self.pin.as_deref(), self.pin_file)?)
    }
}

#[derive(Debug, clap::Args)]
struct Tags {
    /// Case number the recording belongs to.
    #[arg(long, value_name = "NUMBER")]
    case: Option<String>,
    /// Activity type (e.g. seizure, demolition, on-site-enforcement, hearing).
    #[arg(long, value_name = "TYPE")]
    activity: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the data folder: a new device key and a commented config file.
    /// The key is a file (mode 0600), or with --pkcs11 generated inside a
    /// PKCS#11 token, which it never leaves.
    Init {
        #[command(flatten)]
        data: DataArg,
        /// Generate the key inside a PKCS#11 token: the token's module
        /// (e.g. /usr/lib/softhsm/libsofthsm2.so).
        #[arg(long, value_name = "MODULE", requires = "token")]
        pkcs11: Option<PathBuf>,
        /// With --pkcs11: the token's label.
        #[arg(long, value_name = "LABEL", requires = "pkcs11")]
        token: Option<String>,
        /// With --pkcs11: the label of the key pair in the token.
        #[arg(
            long,
            value_name = "LABEL",
            requires = "pkcs11",
            default_value = "fieldseal-device"
        )]
        key_label: String,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Run the recorder: capture continuously (pre-event buffer) and record when told.
    /// Commands (start, stop, tag, …) reach it through DIR/control.sock.
    /// SIGINT/SIGTERM stop it cleanly, with a signed stop event.
    Run {
        #[command(flatten)]
        data: DataArg,
        /// Source: lavfi (synthetic camera), file:PATH, v4l2:/dev/videoN[,alsa:DEVICE].
        #[arg(long, value_name = "SPEC")]
        source: Option<String>,
        /// Pre-event buffer in seconds (overrides the config; 0 turns it off).
        #[arg(long, value_name = "SECS")]
        pre_event: Option<u32>,
        /// Produce frames as fast as possible instead of in real time (tests).
        #[arg(long, hide = true)]
        fast: bool,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Record for a fixed duration and exit: run + start + stop, for scripts.
    Record {
        #[command(flatten)]
        data: DataArg,
        /// Source: lavfi (synthetic camera), file:PATH, v4l2:/dev/videoN[,alsa:DEVICE].
        #[arg(long, value_name = "SPEC")]
        source: Option<String>,
        /// How long: seconds, or with a unit (90s, 5m, 1h).
        #[arg(long, value_name = "D", value_parser = parse_duration)]
        duration: u32,
        #[command(flatten)]
        tags: Tags,
        /// Produce frames as fast as possible instead of in real time (tests).
        #[arg(long, hide = true)]
        fast: bool,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Tell the running recorder to start recording.
    Start {
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        tags: Tags,
    },
    /// Tell the running recorder to stop recording (at the end of the segment in progress).
    Stop {
        #[command(flatten)]
        data: DataArg,
    },
    /// Change the case or activity of the running recorder.
    Tag {
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        tags: Tags,
    },
    /// Sign a mark into the chain.
    Mark {
        #[command(flatten)]
        data: DataArg,
        /// What to mark.
        #[arg(value_enum)]
        what: MarkWhat,
        /// Officer name or certificate number.
        #[arg(long)]
        officer: Option<String>,
    },
    /// Mute the microphone (silence is recorded; the mute is a signed event).
    Mute {
        #[command(flatten)]
        data: DataArg,
    },
    /// Unmute the microphone.
    Unmute {
        #[command(flatten)]
        data: DataArg,
    },
    /// Show the recorder's state, the latest recording (case, activity, start
    /// and stop in local time) and events, chain head, spool use, sync backlog,
    /// and acknowledgements that prove nothing.
    Status {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify the local chain and media, then list its recordings and events
    /// in local time; exit 0 iff everything verifies.
    Verify {
        #[command(flatten)]
        data: DataArg,
        /// Print the JSON report (docs/FORMAT.md §5).
        #[arg(long)]
        json: bool,
    },
    /// Enrol this device with a server: send its public key with a one-time token
    /// and receive a client certificate bound to it (the same key signs the chain).
    Enroll {
        #[command(flatten)]
        data: DataArg,
        /// The server's QUIC address.
        #[arg(long, value_name = "HOST:PORT")]
        server: String,
        /// The one-time token from `fieldseal-server device add`
        /// (`SECRET.CA_SHA256`): it names the server's CA, so the device
        /// trusts no other server with it. `-` reads it from stdin (the
        /// command line of a process is readable by every user).
        #[arg(
            long,
            value_name = "T",
            required_unless_present = "token_file",
            conflicts_with = "token_file"
        )]
        token: Option<String>,
        /// Read the token from this file instead.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The server's CA certificate (PEM), if at hand: it must be the CA
        /// the token names. Not needed: the token alone is enough.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// Send everything not yet on the server: entries hash-first, then segment
    /// bytes. (A running recorder syncs by itself; then this waits for it.)
    Sync {
        #[command(flatten)]
        data: DataArg,
        /// Exit 0 once every entry has a receipt and every segment is acknowledged.
        #[arg(long)]
        until_drained: bool,
        /// Give up after this long (seconds, or 90s, 5m, 1h), with exit
        /// status 1 and what is left.
        #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10m")]
        timeout: u32,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Rebuild the index from the chain log (the files are the source of truth).
    Reindex {
        #[command(flatten)]
        data: DataArg,
    },
    /// Benchmarks: fill an initialised, empty data folder with a sample chain of SEGMENTS
    /// segments (stand-in media of MEDIA_BYTES each), to measure start-up against spool size.
    #[command(hide = true)]
    FillSpool {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        segments: u32,
        #[arg(long, default_value_t = 1024)]
        media_bytes: usize,
        #[command(flatten)]
        pin: PinArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MarkWhat {
    /// The officer showed identity documents (Art. 26).
    IdentityShown,
}

/// The enrolment token: given, `-` for stdin, or from a file.
fn read_token(token: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    let raw = match (token.as_deref(), file) {
        (Some("-"), _) => {
            let mut t = String::new();
            std::io::stdin()
                .read_line(&mut t)
                .context("reading the token from stdin")?;
            t
        }
        (Some(t), _) => t.to_owned(),
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading the token from {}", f.display()))?,
        (None, None) => anyhow::bail!("no token: give --token or --token-file"),
    };
    Ok(raw.trim().to_owned())
}

fn parse_duration(s: &str) -> Result<u32, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    let n: u32 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 20, 90s, 5m, 1h)"))?;
    n.checked_mul(mult)
        .filter(|&d| d > 0)
        .ok_or_else(|| format!("`{s}`: the duration must be positive and under 136 years"))
}

/// Print `e` the way every fieldseal binary does: `fieldseal-agent: error:
/// what` on one line, then each cause not already said, one per line. Never
/// a backtrace (a user error is not a bug, whatever RUST_BACKTRACE says).
fn report(e: &anyhow::Error) {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // Messages that embed their source ("x: y") would say y twice.
        if out.contains(&text) {
            continue;
        }
        if out.is_empty() {
            out = format!("fieldseal-agent: error: {text}");
        } else {
            out.push_str(&format!("\n  caused by: {text}"));
        }
    }
    eprintln!("{out}");
}

fn main() -> ExitCode {
    // Every file and folder the agent makes is the owner's alone, sled's
    // included (it takes no mode): see `fsutil.rs`.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "fieldseal_agent=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::from(2)
        }
    }
}

fn signals() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

fn send(dir: &Path, req: Request) -> anyhow::Result<ExitCode> {
    let resp = control::request(dir, &req)?;
    if resp.ok {
        println!("{}", resp.message.unwrap_or_default());
        Ok(ExitCode::SUCCESS)
    } else {
        report(&anyhow::anyhow!(resp.error.unwrap_or_default()));
        Ok(ExitCode::from(1))
    }
}

/// Did a power cut interrupt an earlier `init` of `dir` after its key was
/// made? The folder never recorded (no `chain.log`) and `device.pub` or
/// `config.toml` is missing or empty. A folder that recorded is never
/// "completed": its lost config is refused by `record`, not replaced by
/// defaults.
fn interrupted_init(dir: &Path) -> bool {
    let empty = |name: &str| std::fs::metadata(dir.join(name)).map_or(true, |m| m.len() == 0);
    !dir.join("chain.log").exists() && (empty(keyfile::PUB_FILE) || empty("config.toml"))
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Init {
            data,
            pkcs11,
            token,
            key_label,
            pin,
        } => {
            let token = match (pkcs11, token) {
                (Some(module), Some(token)) => Some(TokenKey {
                    module,
                    token,
                    label: key_label,
                    pin_file: None,
                }),
                _ => None,
            };
            init(&data.data, token, pin.source()?)
        }
        Cmd::Run {
            data,
            source,
            pre_event,
            fast,
            pin,
        } => {
            let shutdown = signals()?;
            let opts = run::RunOptions {
                source,
                pre_event_secs: pre_event,
                fast,
                pin: pin.source()?,
                ..Default::default()
            };
            let s = run::run(&data.data, &opts, shutdown)?;
            eprintln!(
                "stopped cleanly: {} entries signed ({} segments), {} frames dropped",
                s.entries, s.segments, s.frames_dropped
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Record {
            data,
            source,
            duration,
            tags,
            fast,
            pin,
        } => {
            let shutdown = signals()?;
            let opts = run::RunOptions {
                source,
                start: Some((tags.case, tags.activity)),
                duration_secs: Some(duration),
                fast,
                pin: pin.source()?,
                ..Default::default()
            };
            let s = run::run(&data.data, &opts, shutdown)?;
            println!(
                "recorded {duration} s: {} entries signed ({} segments), {} frames dropped",
                s.entries, s.segments, s.frames_dropped
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Start { data, tags } => send(
            &data.data,
            Request::Start {
                case: tags.case,
                activity: tags.activity,
            },
        ),
        Cmd::Stop { data } => send(&data.data, Request::Stop),
        Cmd::Tag { data, tags } => send(
            &data.data,
            Request::Tag {
                case: tags.case,
                activity: tags.activity,
            },
        ),
        Cmd::Mark {
            data,
            what,
            officer,
        } => match what {
            MarkWhat::IdentityShown => send(&data.data, Request::IdentityShown { officer }),
        },
        Cmd::Mute { data } => send(&data.data, Request::Mute),
        Cmd::Unmute { data } => send(&data.data, Request::Unmute),
        Cmd::Status { data, json } => status(&data.data, json),
        Cmd::Verify { data, json } => {
            let key = devicekey::public_key(&data.data)?;
            // The receipts prove how long the chain was: a cut tail shows.
            let head = head_from_receipts(&data.data)?;
            let report = spool::verify_dir(&data.data, &key, head)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
                print!("{}", verify_activity(&data.data)?);
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Enroll {
            data,
            server,
            token,
            token_file,
            ca,
        } => {
            let token = read_token(token, token_file)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(sync::enroll_cmd(&data.data, &server, &token, ca))?;
            println!(
                "device {} enrolled with {server}; `run` and `record` now sync to it",
                DeviceId::from_key(&devicekey::public_key(&data.data)?)
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sync {
            data,
            until_drained,
            timeout,
            pin,
        } => sync_cmd(
            &data.data,
            until_drained,
            std::time::Duration::from_secs(timeout.into()),
            pin.source()?,
        ),
        Cmd::Reindex { data } => {
            if control::socket_path(&data.data).exists()
                && control::request(&data.data, &Request::Status).is_ok()
            {
                anyhow::bail!("the agent is running; stop it before rebuilding its index");
            }
            let (idx, _) = index::Index::open_repairing(&data.data)?;
            let n = idx.rebuild(&data.data)?;
            println!("index rebuilt from chain.log: {n} entries");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::FillSpool {
            data,
            segments,
            media_bytes,
            pin,
        } => {
            let key = devicekey::open_dir(&data.data, pin.source()?.as_ref())?;
            let n = spool::fill_sample(&data.data, &key, segments, media_bytes)?;
            println!("{n} entries written");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `init`: the data folder, its device key (a file, or generated in the
/// token `token` with the PIN from `pin`) and its config.
fn init(dir: &Path, token: Option<TokenKey>, pin: Option<PinSource>) -> anyhow::Result<ExitCode> {
    // A folder whose key is in a token has one already: a key file beside it
    // would fork the chain (and replace device.pub).
    if dir.exists() {
        if let KeyStore::Pkcs11(t) = devicekey::store_of_dir(dir)? {
            anyhow::bail!(
                "{}: this device's key is in token `{}` (key `{}`) already; refusing to make another",
                dir.display(),
                t.token,
                t.label
            );
        }
    }
    let mkdir = || -> std::io::Result<()> {
        fieldseal_agent::fsutil::create_dir_durable(dir)?;
        // A folder that was there becomes the owner's alone: `run` requires it.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
    };
    let cfg = dir.join("config.toml");
    let Some(token) = token else {
        if pin.is_some() {
            anyhow::bail!("--pin and --pin-file go with --pkcs11 (a key file takes no PIN)");
        }
        mkdir().with_context(|| format!("creating {}", dir.display()))?;
        let key = match keyfile::create(dir) {
            Ok(k) => k,
            // A power cut during an earlier init left the key but not the
            // rest: finish that init, keeping the key (nothing was signed
            // with it yet: the folder has no chain).
            Err(keyfile::KeyError::Exists(_)) if interrupted_init(dir) => {
                eprintln!(
                    "completing an init that was interrupted: the key in {} is kept",
                    dir.display()
                );
                if std::fs::metadata(&cfg).is_ok_and(|m| m.len() == 0) {
                    std::fs::remove_file(&cfg)
                        .with_context(|| format!("removing the empty {}", cfg.display()))?;
                }
                keyfile::resume(dir)?
            }
            Err(e) => return Err(e.into()),
        };
        config::write_default(dir).with_context(|| format!("writing {}", cfg.display()))?;
        println!(
            "device {} initialised in {}",
            key.device_id(),
            dir.display()
        );
        println!(
            "  key:    {} (keep it secret; mode 0600)",
            dir.join(keyfile::KEY_FILE).display()
        );
        println!("  config: {}", cfg.display());
        return Ok(ExitCode::SUCCESS);
    };
    let Some(pin) = pin else {
        anyhow::bail!("--pkcs11: give the token's PIN with --pin - (stdin) or --pin-file FILE");
    };
    // Nothing of a folder initialised before may be mixed with a new key.
    for name in [keyfile::KEY_FILE, keyfile::PUB_FILE, "config.toml"] {
        let p = dir.join(name);
        if p.exists() {
            anyhow::bail!(
                "{}: exists already; `init --pkcs11` makes a new device in a new folder",
                p.display()
            );
        }
    }
    mkdir().with_context(|| format!("creating {}", dir.display()))?;
    // The key first: a power cut after it leaves a key the token holds and a
    // folder without device.pub, which a second init refuses to reuse (the
    // label is taken): give another --key-label.
    let public = devicekey::pkcs11::generate(&token, &devicekey::pin::read(&pin)?)?;
    let store = KeyStore::Pkcs11(TokenKey {
        // Recorded for unattended starts: the path only, never the PIN.
        pin_file: match &pin {
            PinSource::File(p) => Some(std::path::absolute(p)?),
            PinSource::Stdin => None,
        },
        ..token.clone()
    });
    let fs = fieldseal_agent::spoolfs::StdFs;
    fieldseal_agent::spoolfs::write_atomic(
        &fs,
        &dir.join(keyfile::PUB_FILE),
        format!("{}\n", hex::encode(public.as_bytes())).as_bytes(),
    )
    .with_context(|| format!("writing {}", dir.join(keyfile::PUB_FILE).display()))?;
    config::write_with_key(&fs, dir, &store)
        .with_context(|| format!("writing {}", cfg.display()))?;
    println!(
        "device {} initialised in {}",
        DeviceId::from_key(&public),
        dir.display()
    );
    println!(
        "  key:    `{}` in PKCS#11 token `{}` ({}): generated there, not extractable",
        token.label,
        token.token,
        token.module.display()
    );
    println!("  public: {}", dir.join(keyfile::PUB_FILE).display());
    println!(
        "  config: {} (names the token; never the PIN)",
        cfg.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn status(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let data = match control::request(dir, &Request::Status) {
        Ok(resp) => resp.data.unwrap_or_default(),
        Err(control::ControlError::NotRunning(_)) => {
            // Not running: read the folder ourselves.
            let key = DeviceId::from_key(&devicekey::public_key(dir)?);
            let (idx, _) = index::Index::open_repairing(dir)?;
            let s = idx.summary()?;
            let store = FsSyncStore::open(dir)?;
            let (no_receipt, not_acked) = store.backlog();
            let mut data = serde_json::json!({
                "entries_without_receipt": no_receipt,
                "segments_not_acknowledged": not_acked,
                "running": false,
                "state": "not running",
                "device": key.to_string(),
                "next_seq": s.next_seq,
                "segments": s.segments,
                "events": s.events,
                "spool_bytes": dir_size(&dir.join("media")) + s.log_len,
                "acks_kept": store.acks_kept(),
                "bad_acks": store.bad_acks(),
                "acks_refused": 0,
                "recent": fieldseal_agent::activity::status_recent(&store),
            });
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
            let sync = sync::standing::status(dir, dir.join("server.txt").exists(), now_us);
            if let Some(obj) = data.as_object_mut() {
                obj.extend(sync);
            }
            data
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&data)?);
    } else {
        print!(
            "{}",
            fieldseal_agent::statustext::render(&data, &fieldseal_agent::localtime::zone())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Recordings and events shown after `verify`'s report, the newest ones.
const VERIFY_SHOWN: usize = 50;

/// The recordings and events of the folder's chain for `verify`'s human
/// report, in local time.
fn verify_activity(dir: &Path) -> anyhow::Result<String> {
    use fieldseal_agent::activity::Activity;
    let path = fieldseal_agent::chainlog::path(dir);
    let log = fieldseal_agent::chainlog::read_from(&fieldseal_agent::spoolfs::StdFs, &path, 0)
        .with_context(|| format!("reading {}", path.display()))?;
    let all = Activity::from_entries(log.records().map(|r| r.bytes));
    let (recordings, events) = (all.recordings.len(), all.events.len());
    let shown = all.newest(VERIFY_SHOWN, VERIFY_SHOWN);
    let mut out = String::from("  recordings and events (device clock, local time):\n");
    out.push_str(&shown.render(&fieldseal_agent::localtime::zone(), "    "));
    let (r, e) = (
        recordings - shown.recordings.len(),
        events - shown.events.len(),
    );
    if r + e > 0 {
        out.push_str(&format!(
            "    ({r} earlier recording(s) and {e} earlier event(s) not shown)\n"
        ));
    }
    Ok(out)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// How often `sync` says what is left on standard error when it is not a
/// terminal (a terminal has the bar): often enough to see it is alive, not
/// so often that a log fills up.
const SYNC_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The progress line of `sync`.
fn sync_left(entries: u64, segments: u64, bytes: u64, reached: bool) -> String {
    format!(
        "sync: {entries} entries without receipt, {segments} segments ({bytes} bytes) not acknowledged; server {}",
        if reached { "reached" } else { "not reached yet" }
    )
}

fn sync_cmd(
    dir: &Path,
    until_drained: bool,
    timeout: std::time::Duration,
    pin: Option<PinSource>,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if !until_drained {
        anyhow::bail!("say --until-drained: `sync` runs until everything is on the server (a running recorder syncs continuously by itself)");
    }
    let bar = |total: u64| {
        let pb = indicatif::ProgressBar::new(total);
        if !std::io::stderr().is_terminal() {
            pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb
    };
    let started = std::time::Instant::now();
    // A device the server refused: nothing to try until it is enrolled again.
    if let Some(r) = sync::standing::load_refusal(dir)? {
        anyhow::bail!(
            "this device's sync is stopped: {} (the server said at {}: {})",
            r.advice(),
            sync::standing::utc(r.at_us.div_euclid(1_000_000)),
            r.reason
        );
    }
    // A running recorder owns the spool and syncs it: wait for it to drain.
    if control::request(dir, &Request::Status).is_ok() {
        let pb = bar(0);
        pb.set_message("waiting for the running recorder to sync");
        let mut said = started;
        loop {
            let data = control::request(dir, &Request::Status)?
                .data
                .unwrap_or_default();
            let left = data["entries_without_receipt"].as_u64().unwrap_or(0)
                + data["segments_not_acknowledged"].as_u64().unwrap_or(0);
            pb.set_length(pb.position() + left);
            if left == 0 {
                pb.finish_with_message("everything is on the server");
                return Ok(ExitCode::SUCCESS);
            }
            if data["sync"] == "not enrolled" {
                anyhow::bail!("this device is not enrolled: run `fieldseal-agent enroll` first");
            }
            if let Some(advice) = data["refused"]["advice"].as_str() {
                anyhow::bail!("this device's sync is stopped: {advice}");
            }
            if started.elapsed() >= timeout {
                anyhow::bail!(
                    "gave up after {} s (--timeout): the running recorder still has {left} entries and segments to sync",
                    timeout.as_secs()
                );
            }
            if !std::io::stderr().is_terminal() && said.elapsed() >= SYNC_PROGRESS_EVERY {
                said = std::time::Instant::now();
                eprintln!(
                    "sync: waiting for the running recorder: {left} entries and segments left"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    let cfg = sync::SyncConfig::open_data_dir(dir, pin.as_ref()).map_err(|e| match e {
        // The key's own message says what to do (a PIN, a token).
        sync::SyncError::Key(e) => anyhow::Error::new(e),
        e => anyhow::anyhow!("{e} (has this device been enrolled? run `fieldseal-agent enroll`)"),
    })?;
    let store = Arc::new(FsSyncStore::open(dir)?);
    let (entries, segments) = store.backlog();
    let pb = bar(entries + segments);
    pb.set_message(format!("syncing to {}", cfg.server));
    let progress = Arc::new(sync::Progress::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let p2 = Arc::clone(&progress);
    let pb2 = pb.clone();
    let s2 = Arc::clone(&store);
    let ticker = rt.spawn(async move {
        let mut said = tokio::time::Instant::now();
        loop {
            let s = p2.snapshot();
            pb2.set_position(s.receipts + s.uploads_acked);
            if !std::io::stderr().is_terminal() && said.elapsed() >= SYNC_PROGRESS_EVERY {
                said = tokio::time::Instant::now();
                let (e, g) = s2.backlog();
                eprintln!("{}", sync_left(e, g, s2.unacked_bytes(), s.connections > 0));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let run = sync::sync_until_drained(Arc::clone(&store), cfg, Arc::clone(&progress));
    let res = rt.block_on(async { tokio::time::timeout(timeout, run).await });
    ticker.abort();
    pb.finish_and_clear();
    let Ok(res) = res else {
        let (e, g) = store.backlog();
        let reached = progress.snapshot().connections > 0;
        anyhow::bail!(
            "gave up after {} s (--timeout); {}",
            timeout.as_secs(),
            sync_left(e, g, store.unacked_bytes(), reached).trim_start_matches("sync: ")
        );
    };
    let stats = res?;
    let (left_e, left_s) = store.backlog();
    if stats.entries_submitted == 0 && stats.media_bytes_sent == 0 && left_e + left_s == 0 {
        println!(
            "already in sync: every entry has a receipt and every segment is acknowledged (head {})",
            store.head().map_or("-".into(), |h| h.to_string())
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "synced: {} receipts, {} segments acknowledged, {} bytes of media sent; head {}",
        stats.receipts,
        stats.uploads_acked,
        stats.media_bytes_sent,
        store.head().map_or("-".into(), |h| h.to_string())
    );
    if stats.uploads_refused > 0 {
        eprintln!(
            "fieldseal-agent: error: the server refused {} segment(s) whose bytes do not match their signed entry: run `fieldseal-agent verify`",
            stats.uploads_refused
        );
        return Ok(ExitCode::from(1));
    }
    Ok(if left_e + left_s == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Commands and options of `cmd` (and of its subcommands) that
    /// `--help` would list without a word of explanation.
    fn unexplained(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            let explained = a.get_help().is_some() || a.get_long_help().is_some();
            if !explained && !a.is_hide_set() && id != "help" && id != "version" {
                out.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                out.push(p.clone());
            }
            unexplained(sub, &p, out);
        }
    }

    /// `--help` explains every command and every option.
    #[test]
    fn help_explains_every_command_and_option() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut out = Vec::new();
        unexplained(&cli, cli.get_name(), &mut out);
        assert!(
            out.is_empty(),
            "--help lists these without explaining them: {out:?}"
        );
    }
}
