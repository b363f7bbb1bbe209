//! `fieldseal-loadgen`: the network load driver of `make bench`
//! (`scripts/bench/net.sh`). Every mode talks to a real `fieldseal-server run`
//! (or, for `sink`, stands in for one) over QUIC with the agent's own sync
//! client, `fieldseal_agent::sync`.
//!
//! ```text
//! upload  --server HOST:PORT --server-data DIR --media DIR --seed N [--max-uploads K]
//!     enrol a fresh device, sign one segment entry per file of DIR (sorted),
//!     then time `sync_until_drained`: every entry receipted and verified,
//!     every segment verified and durable on the server and acknowledged.
//!     `--max-uploads` overrides the sync client's uploads at once (for
//!     experiments; the benchmark uses the agent's default).
//! ceiling --server HOST:PORT --server-data DIR --media DIR --seed N
//!     the same files over one quinn connection to `sink`, with the sync
//!     client's TLS and transport settings and as many streams at once as the
//!     sync client uses: no entries, no storage, no hashing.
//! sink    --listen ADDR --server-data DIR --seed N
//!     the other end of `ceiling`: reads each stream and discards it.
//! plain   --server HOST:PORT --cert FILE --media DIR [--streams N]
//!     the reference for `ceiling`: the same files, loaded into memory first,
//!     sent by a bare quinn client (quinn's defaults, 2 MiB socket buffers as
//!     quinn's `perf` tool) to `plain-sink`, N streams at once (default: the
//!     sync client's).
//! plain-sink --listen ADDR --cert-out FILE
//!     the other end of `plain`: a bare quinn server with a self-signed
//!     certificate (written to FILE, DER), reading each stream to its end.
//! devices --server HOST:PORT --server-data DIR --work DIR --counts 10,50,...
//!         [--seconds 24] [--warmup 8] [--rate-bps 2000000] [--segment-secs 4]
//!         [--server-pid PID]
//!     simulated devices, each on its own QUIC connection, each signing a
//!     segment entry every segment-secs and uploading rate-bps of media;
//!     steps up the count until receipts' p99 reaches 1 s or the backlog grows.
//!     Each step's line gives the CPU (in cores) the load generator and, with
//!     --server-pid, the server used over its window.
//! reads   --server HOST:PORT --server-data DIR --work DIR --http HOST:PORT
//!         --password P [--user admin] [--devices 100] [--rate 1000]
//!         [--connections 8] [--seconds 16] [--warmup 8] [--pairs 2]
//!         [--rate-bps 2000000] [--segment-secs 4] [--server-pid PID]
//!     logs in over HTTP, makes a case with three activities, starts the
//!     simulated devices as `devices` does, then measures windows with and
//!     without `GET /api/cases/{id}` at --rate a second over --connections
//!     keep-alive connections, in ABBA order; one line per window and a
//!     last line with the receipts' latency of each kind pooled.
//! ```
//!
//! Results go to standard output as `key=value` lines that the script reads.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ed25519_dalek::SigningKey;
use fieldseal_agent::sync::{self, tls, Enrollment, MediaRef, Progress, SyncConfig, SyncStore};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::entry::{
    Body, ChainHead, Clock, CodecParams, Event, SegmentBody, SignedEntry, PTS_HZ,
};
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::receipt::Receipt;
use fieldseal_server::control::{self, Request, Response};
use fieldseal_server::pki;
use fieldseal_tests::SplitMix;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

mod devices;
mod httpc;
mod plain;
mod reads;
mod store;
mod transfer;

use devices::devices;
use plain::{plain, plain_sink};
use reads::reads;
use store::{hash_file, media_files, BenchStore, ChainWriter, Latencies};
use transfer::{ceiling, sink, upload};

fn main() -> anyhow::Result<()> {
    fieldseal_tests::init_tracing();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = argv.split_first() else {
        bail!("usage: fieldseal-loadgen upload|ceiling|sink|plain|plain-sink|devices|reads --flag value ...");
    };
    let args = Args::parse(rest)?;
    // Two workers: the machine the benchmark is written for has two cores,
    // shared with the server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match mode.as_str() {
            "upload" => upload(&args).await,
            "ceiling" => ceiling(&args).await,
            "plain" => plain(&args).await,
            "plain-sink" => plain_sink(&args).await,
            "sink" => sink(&args).await,
            "devices" => devices(&args).await,
            "reads" => reads(&args).await,
            other => bail!("unknown mode {other}"),
        }
    })
}

/// `--flag value` pairs.
#[derive(Debug)]
struct Args(HashMap<String, String>);

impl Args {
    fn parse(rest: &[String]) -> anyhow::Result<Args> {
        let mut m = HashMap::new();
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| anyhow!("expected --flag, got {flag}"))?;
            let value = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
            m.insert(name.to_string(), value.clone());
        }
        Ok(Args(m))
    }
    fn get(&self, name: &str) -> anyhow::Result<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("--{name} is required"))
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow!("--{name}: not a number: {v}")),
        }
    }
    fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        Ok(PathBuf::from(self.get(name)?))
    }
}

/// A device key derived from a seed, so that `sink` and `ceiling` agree on it.
fn device_key(seed: u64) -> SigningKey {
    let mut rng = SplitMix(seed ^ 0x5eed_f1e1_d5ea_1000);
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rng, &mut b);
    SigningKey::from_bytes(&b)
}

/// Enrol `key` with the running server whose data folder is `server_data`
/// (a token through its control socket, then the enrolment handshake).
async fn enroll(key: &SigningKey, server: &str, server_data: &Path) -> anyhow::Result<Enrollment> {
    let dir = server_data.to_path_buf();
    let resp = tokio::task::spawn_blocking(move || {
        control::request(
            &dir,
            Request::DeviceAdd {
                name: "loadgen".into(),
                ttl_secs: Some(3600),
            },
        )
    })
    .await??;
    let Response::Token(t) = resp else {
        bail!("device add: unexpected answer {resp:?}");
    };
    Ok(sync::enroll(key, server, &t.token, Some(server_data.join("ca.crt"))).await?)
}
