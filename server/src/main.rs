//! `fieldseal-server`: a thin command line over the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldseal_server::control::{self, Request, Response};

/// The name errors begin with.
const NAME: &str = "fieldseal-server";

#[derive(Debug, Parser)]
#[command(
    name = "fieldseal-server",
    version,
    about = "fieldseal evidence server"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a data folder: CA, server certificate, receipt key, config, admin user.
    Init {
        /// The data folder to create (it must not hold keys already).
        #[arg(long)]
        data: PathBuf,
        /// Extra DNS names or IP addresses for the server certificate.
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Run the server (QUIC ingest and the HTTP API) until SIGINT or SIGTERM.
    Run {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// QUIC (UDP) listen address; overrides config.toml.
        #[arg(long)]
        quic: Option<SocketAddr>,
        /// HTTP (TCP) listen address of the API; overrides config.toml. Plain
        /// HTTP on loopback, TLS with the server's certificate elsewhere.
        #[arg(long)]
        http: Option<SocketAddr>,
    },
    /// Manage devices.
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// Manage the people who log in: officers, custodians, supervisors, admins.
    /// Passwords are read from FIELDSEAL_USER_PASSWORD, else from one line of
    /// standard input.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Verify stored chains: signatures, links, media, receipts' head and
    /// stored receipts. Exit 0 all ok, 1 findings, 2 unreadable.
    Verify {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// One device (16 hex digits); every device by default.
        #[arg(long)]
        device: Option<String>,
        /// Print the JSON reports.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every blob; damaged ones are moved aside and asked for again.
    /// Exit 0 none damaged, 1 damage found, 2 unreadable.
    Scrub {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the index from the files (chain logs, leaves.log, blobs):
    /// chain heads, entries, receipts, media held and the log's tree. Devices,
    /// tokens and users are kept. The server must not be running. Exit 0
    /// rebuilt, 1 rebuilt but the files disagree somewhere (printed), 2 failed.
    Reindex {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention rule: remove the media (never the entries,
    /// receipts or log leaves) of segments past `retention_days`, unless a
    /// decided case or a legal hold keeps them; each expiry is an `expire`
    /// leaf of the log. Prints what it expired (or would).
    Retention {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Change nothing; print what would be expired.
        #[arg(long)]
        dry_run: bool,
        /// Apply the rule as of this time (RFC 3339 or µs since the epoch),
        /// for tests; now by default.
        #[arg(long)]
        now: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export a case as one package that proves itself offline
    /// (docs/FORMAT.md §10): a POSIX tar file that `fieldseal-verify FILE`
    /// checks. Works while the server runs (through its control socket);
    /// never overwrites FILE. Records an `export` leaf in the log.
    Export {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// The case number.
        #[arg(long)]
        case: String,
        /// The package file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// The transparency log: checkpoints and proofs.
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
}

#[derive(Debug, Subcommand)]
enum LogCmd {
    /// Print the log's verifier key: the key that signs checkpoints, under the
    /// log's origin (docs/FORMAT.md §6.6), to publish for witnesses and courts.
    Key {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
    },
    /// Sign a checkpoint of the log, print it and append it to checkpoints.log.
    Checkpoint {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
    },
    /// Inclusion proof of an entry's leaf in the latest checkpoint (JSON).
    Prove {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// The device id (16 hex digits, as `device list` shows it).
        #[arg(long)]
        device: String,
        /// The entry's seq.
        #[arg(long)]
        seq: u64,
    },
    /// Consistency proof from a tree size to the latest checkpoint (JSON).
    Consistency {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// The earlier tree size to prove the log grew from.
        #[arg(long)]
        from: u64,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCmd {
    /// Issue a one-time enrolment token for a new device.
    Add {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// The device's name, as people will know it (e.g. cam-017).
        #[arg(long)]
        name: String,
        /// Token validity in seconds (default from config.toml, 24 h).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// Issue a one-time token that re-enrols an enrolled device with its own
    /// key: one that was revoked and is trusted again, whose certificate
    /// expired before it renewed, or whose enrolment was cut short before it
    /// kept its certificate. Enrolling with it lifts the revocation.
    Reenrol {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Device id (16 hex digits).
        id: String,
        /// Token validity in seconds (default from config.toml, 24 h).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// List enrolled devices: id, name, when enrolled and revoked (local
    /// time), and an ALARM line under any that equivocated.
    List {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
    },
    /// Revoke a device: no new handshakes, open connections closed.
    Revoke {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Device id (16 hex digits).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Add a user.
    Add {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Login name.
        #[arg(long)]
        name: String,
        /// officer, custodian, supervisor or admin.
        #[arg(long)]
        role: String,
        /// For an officer: the enforcement-certificate number of a known officer.
        #[arg(long)]
        officer: Option<String>,
    },
    /// List users.
    List {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
    },
    /// Disable a user: no more logins, every session ends. Users are never deleted.
    Disable {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Login name.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Login name.
        name: String,
    },
    /// Set a new password; every session of the user ends.
    Passwd {
        /// The server's data folder (made by `init`).
        #[arg(long)]
        data: PathBuf,
        /// Login name.
        name: String,
    },
}

/// A password from FIELDSEAL_USER_PASSWORD or one line of standard input.
fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FIELDSEAL_USER_PASSWORD") {
        return Ok(p);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("password (10 characters or more): ");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !p.is_empty(),
        "no password given (FIELDSEAL_USER_PASSWORD or standard input)"
    );
    Ok(p)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn print(resp: Response) -> anyhow::Result<()> {
    let tz = fieldseal_server::localtime::zone();
    let when = |us: i64| fieldseal_server::localtime::format_us_in(us, &tz);
    match resp {
        Response::Token(t) => {
            println!("device:  {}", t.name);
            println!("token:   {}", t.token);
            println!("expires: {}", when(t.expires_us));
        }
        Response::Devices {
            devices,
            cert_not_after,
            equivocations,
        } => {
            let now = fieldseal_server::now_us().div_euclid(1_000_000);
            for d in devices {
                let state = match d.revoked_us {
                    Some(at) => format!("revoked {}", when(at)),
                    None => "active".into(),
                };
                // Whether it can still sync: its certificate's last second.
                let cert = match cert_not_after.get(&d.id.to_string()) {
                    Some(&t) if t < now => format!(
                        "  certificate expired {} (re-enrol: `device reenrol {}`)",
                        when(t.saturating_mul(1_000_000)),
                        d.id
                    ),
                    Some(&t) => {
                        format!("  certificate until {}", when(t.saturating_mul(1_000_000)))
                    }
                    None => String::new(),
                };
                println!(
                    "{}  {:8}  enrolled {}  {state}{cert}",
                    d.id,
                    d.name,
                    when(d.enrolled_us)
                );
                if let Some(e) = equivocations.get(&d.id.to_string()) {
                    let at = |us: Option<i64>| us.map_or_else(|| "?".into(), when);
                    println!(
                        "  ALARM: {} equivocation(s), the first {}, the latest {} (seq {}); \
                         the first {} kept: GET /api/devices/{}/equivocations",
                        e.count,
                        at(e.first_us),
                        at(e.last_us),
                        e.last_seq.map_or("-".into(), |s| s.to_string()),
                        e.kept,
                        d.id
                    );
                }
            }
        }
        Response::Device(d) => println!("{} revoked", d.id),
        Response::Users { users } => {
            for u in users {
                let state = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{:24}  {:10}  {:8}  {}",
                    u.name,
                    u.role,
                    state,
                    u.officer.unwrap_or_default()
                );
            }
        }
        Response::User(u) => {
            let state = if u.disabled { "disabled" } else { "active" };
            println!("{}  {}  {}", u.name, u.role, state);
        }
        Response::Output { text, .. } => print!("{text}"),
        Response::Export(_) => anyhow::bail!("unexpected export plan"),
        Response::Error { message } => anyhow::bail!(message),
    }
    Ok(())
}

/// Run a command that verifies or proves, and exit with its status: 0 ok,
/// 1 findings, 2 when the archive could not be read (nothing printed on
/// standard output then, a message on standard error).
/// `log key`: read from the data folder's config and receipt key, so it
/// works whether or not the server runs (nothing here touches the index).
fn print_log_key(data: &std::path::Path) -> anyhow::Result<()> {
    let cfg = fieldseal_server::config::Config::load(data)
        .with_context(|| format!("config in {}", data.display()))?;
    let key = fieldseal_server::admin::load_receipt_key(data)?;
    let vkey = fieldseal_server::tlog::verifier_key(&cfg, &key.verifying_key())?;
    println!("{vkey}");
    Ok(())
}

async fn archive_command(data: PathBuf, req: Request) -> ! {
    let resp = tokio::task::spawn_blocking(move || control::request(&data, req)).await;
    let code = match resp {
        Ok(Ok(Response::Output { code, text })) => {
            print!("{text}");
            i32::from(code)
        }
        Ok(Ok(Response::Error { message })) => {
            report(NAME, &anyhow::anyhow!(message));
            2
        }
        Ok(Ok(other)) => {
            report(NAME, &anyhow::anyhow!("unexpected answer {other:?}"));
            2
        }
        Ok(Err(e)) => {
            report(NAME, &e.into());
            2
        }
        Err(e) => {
            report(NAME, &e.into());
            2
        }
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(code)
}

/// Write a case's package with a progress bar on a terminal, a line every
/// tenth otherwise; then say what was written and what to compare.
fn export(data: &std::path::Path, case: &str, out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_message(format!("export {case}"));
        b
    });
    let mut tenth = 0;
    let mut progress = |done: u64, total: u64| match &bar {
        Some(b) => {
            b.set_length(total);
            b.set_position(done);
        }
        None => {
            let now = done.saturating_mul(10) / total.max(1);
            if now > tenth {
                tenth = now;
                eprintln!("export {case}: {done} of {total} bytes ({}%)", now * 10);
            }
        }
    };
    let w = fieldseal_server::export::to_file(data, case, out, &mut progress)
        .with_context(|| format!("export of case {case}"))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let [ca, receipt, log] = &w.plan.fingerprints;
    println!("wrote {} ({} bytes)", w.path.display(), w.bytes);
    println!("package sha256:          {}", w.sha256);
    println!("export id:               {}", w.plan.export_id);
    println!("CA key fingerprint:      {ca}");
    println!("receipt key fingerprint: {receipt}");
    println!("log key fingerprint:     {log}");
    println!("verify with: fieldseal-verify {}", w.path.display());
    Ok(())
}

/// Print `e` the way every fieldseal binary does: `NAME: error: what` on
/// one line, then each cause not already said, one per line. Never a
/// backtrace (a user error is not a bug, whatever RUST_BACKTRACE says).
fn report(name: &str, e: &anyhow::Error) {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // Messages that embed their source ("x: y") would say y twice.
        if out.contains(&text) {
            continue;
        }
        if out.is_empty() {
            out = format!("{name}: error: {text}");
        } else {
            out.push_str(&format!("\n  caused by: {text}"));
        }
    }
    eprintln!("{out}");
}

fn main() -> std::process::ExitCode {
    // Every file and folder the server makes is the owner's alone, sled's
    // included (it takes no mode): see `fsutil.rs`.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let res = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(real_main(cli)));
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report(NAME, &e);
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Init { data, names } => {
            let pw = std::env::var("FIELDSEAL_ADMIN_PASSWORD").ok();
            let r = fieldseal_server::admin::init(&data, &names, pw)
                .with_context(|| format!("init {}", data.display()))?;
            println!("initialised {}", data.display());
            println!("receipt key: {}", r.receipt_key);
            if let Some(p) = r.generated_password {
                println!("admin password (shown once): {p}");
            }
        }
        Cmd::Run { data, quic, http } => {
            let opts = fieldseal_server::RunOptions { quic, http };
            fieldseal_server::run(&data, opts, shutdown_signal()).await?;
        }
        Cmd::Device { cmd } => {
            let (data, req) = match cmd {
                DeviceCmd::Add {
                    data,
                    name,
                    ttl_secs,
                } => (data, Request::DeviceAdd { name, ttl_secs }),
                DeviceCmd::Reenrol { data, id, ttl_secs } => {
                    (data, Request::DeviceReenrol { id, ttl_secs })
                }
                DeviceCmd::List { data } => (data, Request::DeviceList),
                DeviceCmd::Revoke { data, id } => (data, Request::DeviceRevoke { id }),
            };
            let resp = tokio::task::spawn_blocking(move || control::request(&data, req)).await??;
            print(resp)?;
        }
        Cmd::User { cmd } => {
            let (data, req) = match cmd {
                UserCmd::Add {
                    data,
                    name,
                    role,
                    officer,
                } => {
                    let password = read_password()?;
                    (
                        data,
                        Request::UserAdd {
                            name,
                            role,
                            officer,
                            password,
                        },
                    )
                }
                UserCmd::List { data } => (data, Request::UserList),
                UserCmd::Disable { data, name } => (
                    data,
                    Request::UserChange {
                        name,
                        disabled: Some(true),
                        password: None,
                        role: None,
                    },
                ),
                UserCmd::Enable { data, name } => (
                    data,
                    Request::UserChange {
                        name,
                        disabled: Some(false),
                        password: None,
                        role: None,
                    },
                ),
                UserCmd::Passwd { data, name } => {
                    let password = Some(read_password()?);
                    (
                        data,
                        Request::UserChange {
                            name,
                            disabled: None,
                            password,
                            role: None,
                        },
                    )
                }
            };
            let resp = tokio::task::spawn_blocking(move || control::request(&data, req)).await??;
            print(resp)?;
        }
        Cmd::Verify { data, device, json } => {
            archive_command(data, Request::Verify { device, json }).await
        }
        Cmd::Scrub { data, json } => archive_command(data, Request::Scrub { json }).await,
        Cmd::Reindex { data, json } => {
            let code = match fieldseal_server::reindex::reindex_offline(&data) {
                Ok(o) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&o)?);
                    } else {
                        print!("{}", o.human());
                    }
                    i32::from(!o.ok())
                }
                Err(e) => {
                    report(NAME, &e.into());
                    2
                }
            };
            std::process::exit(code)
        }
        Cmd::Retention {
            data,
            dry_run,
            now,
            json,
        } => {
            let now_us = match now.as_deref() {
                None => None,
                Some(t) => Some(fieldseal_server::retention::parse_time(t).with_context(|| {
                    format!("--now {t:?}: not RFC 3339 nor µs since the epoch")
                })?),
            };
            archive_command(
                data,
                Request::Retention {
                    now_us,
                    dry_run,
                    json,
                },
            )
            .await
        }
        Cmd::Export { data, case, out } => {
            tokio::task::spawn_blocking(move || export(&data, &case, &out)).await??;
        }
        Cmd::Log { cmd } => {
            let (data, req) = match cmd {
                LogCmd::Key { data } => return print_log_key(&data),
                LogCmd::Checkpoint { data } => (data, Request::LogCheckpoint),
                LogCmd::Prove { data, device, seq } => (data, Request::LogProve { device, seq }),
                LogCmd::Consistency { data, from } => (data, Request::LogConsistency { from }),
            };
            archive_command(data, req).await
        }
    }
    Ok(())
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
