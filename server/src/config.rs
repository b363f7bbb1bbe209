//! The server's configuration file, `DIR/config.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why `config.toml` could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A setting has a value that cannot work.
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which setting, and why.
        what: String,
    },
}

/// `config.toml`. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// UDP address of the QUIC ingest endpoint.
    pub quic_listen: SocketAddr,
    /// TCP address of the HTTP API. Plain HTTP on a loopback address, TLS
    /// with the server's certificate on any other.
    pub http_listen: SocketAddr,
    /// TLS on the HTTP listener even on loopback.
    pub http_tls: bool,
    /// A segment's bytes must be on the server within this many seconds of
    /// its end, or compliance reports a late upload.
    pub upload_deadline_secs: u64,
    /// Offset of the enforcement body's local time from UTC, seconds: an
    /// officer's certificate is valid by local day (Changji: UTC+8).
    pub utc_offset_secs: i64,
    /// Extra DNS names or IP addresses in the server certificate (written at init).
    pub server_names: Vec<String>,
    /// How long an enrolment token stays valid, seconds.
    pub enroll_token_ttl_secs: u64,
    /// The transparency log's origin and key name in checkpoints; by default
    /// `fieldseal/<first server name>` (see `tlog::origin`).
    pub log_origin: Option<String>,
    /// Seconds between two background scrubs of every blob while `run`
    /// runs; 0 turns it off.
    pub scrub_interval_secs: u64,
    /// Seconds between two checks whether the transparency log grew; if it
    /// did, a checkpoint is signed (and once more at a clean shutdown). 0
    /// turns both off.
    pub checkpoint_interval_secs: u64,
    /// Days a segment's media is kept at least: from the end of the latest
    /// activity it belongs to, or from its receipt if it belongs to none
    /// (`retention.rs`). Media of a case that reached its decision, and
    /// media under a legal hold, is kept whatever this says.
    pub retention_days: u64,
    /// Seconds between two runs of the retention job while `run` runs; 0
    /// turns it off (`fieldseal-server retention` runs it by hand).
    pub retention_interval_secs: u64,
    /// QUIC connections of every kind at once (`quic::limits`).
    pub max_connections: usize,
    /// QUIC connections not yet authenticated as an enrolled device
    /// (handshakes, enrolments, strangers) at once.
    pub max_unauthenticated: usize,
    /// Unauthenticated QUIC connections at once from one address (IPv4, or
    /// an IPv6 /64). Enrolled devices' connections do not count.
    pub max_unauthenticated_per_address: usize,
    /// Handshakes per address per minute that did not become an enrolled
    /// device's connection.
    pub handshakes_per_address_per_minute: u32,
    /// Enrolment attempts per address per minute.
    pub enrolments_per_address_per_minute: u32,
    /// Seconds a connection may stay unauthenticated: the handshake, and on
    /// the enrolment ALPN the request, must be done by then.
    pub unauthenticated_timeout_secs: u64,
    /// Days a device certificate is valid from its issue (enrolment or
    /// renewal); devices renew with a third of it left.
    pub device_cert_days: u64,
    /// Seconds a device certificate is valid, instead of
    /// `device_cert_days`: for tests and drills that watch certificates
    /// expire and renew in seconds. Not for production.
    pub device_cert_secs: Option<u64>,
    /// Refused conflicting entries (equivocations) kept in full per device,
    /// the first ones; every later one is only counted (`equivocation.rs`).
    /// 0 keeps none in full.
    pub equivocations_kept: u64,
    /// Where verified segment bytes are kept (`[blobs]`).
    pub blobs: BlobsConfig,
}

/// Which blob store holds verified segment bytes (`blobstore.rs`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlobsKind {
    /// `DIR/blobs/` in the data folder.
    #[default]
    Folder,
    /// A bucket of an S3-compatible object store.
    S3,
}

/// `[blobs]`: the blob store. Partial uploads stay in the data folder
/// whichever it is; only verified segments go to the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsConfig {
    /// `folder` (the default) or `s3`.
    pub kind: BlobsKind,
    /// The object store's URL, `https://…` (`http://` only on a network
    /// you trust: requests are signed, not encrypted).
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: Option<String>,
    /// The region requests are signed for (Garage's `s3_region`).
    pub region: String,
    /// A TOML file with `access_key_id` and `secret_access_key`, readable by
    /// the server's user alone (mode 0600); without it the variables
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub credentials_file: Option<PathBuf>,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        BlobsConfig {
            kind: BlobsKind::Folder,
            endpoint: None,
            bucket: None,
            // Garage's default `s3_region`.
            region: "garage".into(),
            credentials_file: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quic_listen: "0.0.0.0:4433".parse().expect("valid"),
            http_listen: "127.0.0.1:8080".parse().expect("valid"),
            http_tls: false,
            upload_deadline_secs: 24 * 3600,
            utc_offset_secs: 8 * 3600,
            server_names: Vec::new(),
            enroll_token_ttl_secs: 24 * 3600,
            log_origin: None,
            scrub_interval_secs: 24 * 3600,
            // Five minutes: a verifier or witness waits at most that long
            // for a new entry's leaf to be under a signed checkpoint, and an
            // idle log signs nothing.
            checkpoint_interval_secs: 300,
            // Six months, the common practice for enforcement recordings
            // that did not become evidence (DESIGN.md, "Why it exists").
            retention_days: 183,
            retention_interval_secs: 24 * 3600,
            // A prefecture's 2,000 devices (DESIGN.md, "Scale") with room
            // for superseded connections that linger until their idle
            // timeout; strangers cannot take it (max_unauthenticated).
            max_connections: 4096,
            // Enrolment is rare and a handshake takes a few round trips: 256
            // at once is a reconnect storm's worth, and bounds what strangers
            // can hold (~the handshake state of 256 connections).
            max_unauthenticated: 256,
            // Devices behind one NAT that reconnect at once, while they are
            // still in their handshake; a stranger gets no more.
            max_unauthenticated_per_address: 16,
            // Two a second on average, with a minute's worth at once.
            handshakes_per_address_per_minute: 120,
            // An office enrolling a batch of cameras from one address.
            enrolments_per_address_per_minute: 20,
            // A handshake and an enrolment request take a few round trips
            // (~1 s on a 300 ms mobile link); 10 s is ample for a device and
            // short for someone holding connections open.
            unauthenticated_timeout_secs: 10,
            // A quarter of a year: a device renews after 60 days, so one
            // that is offline (in a drawer, out of coverage) for up to a
            // month when it falls due still renews; a lost device that was
            // never revoked stops being able to sync within 90 days.
            device_cert_days: 90,
            device_cert_secs: None,
            // An honest device never equivocates; one that does is broken or
            // forged, and its first hundred conflicting entries show how
            // (at most 4 KiB each, FORMAT.md §9: 400 KiB a device). Past
            // them a flood would only fill the disk: it is counted.
            equivocations_kept: 100,
            blobs: BlobsConfig::default(),
        }
    }
}

impl Config {
    /// How long a device certificate is valid, seconds.
    pub fn device_cert_validity_secs(&self) -> i64 {
        let secs = self
            .device_cert_secs
            .unwrap_or(self.device_cert_days.saturating_mul(86_400));
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    /// Read `DIR/config.toml`.
    ///
    /// # Errors
    /// The file cannot be read or is not valid.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let path = crate::datadir::DataDir::new(dir).config();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        cfg.check()
            .map_err(|what| ConfigError::Invalid { path, what })?;
        Ok(cfg)
    }

    /// Settings that parse but cannot work: a limit of 0 would refuse
    /// every device.
    fn check(&self) -> Result<(), String> {
        let zero = [
            ("max_connections", self.max_connections == 0),
            ("max_unauthenticated", self.max_unauthenticated == 0),
            (
                "max_unauthenticated_per_address",
                self.max_unauthenticated_per_address == 0,
            ),
            (
                "handshakes_per_address_per_minute",
                self.handshakes_per_address_per_minute == 0,
            ),
            (
                "enrolments_per_address_per_minute",
                self.enrolments_per_address_per_minute == 0,
            ),
            (
                "unauthenticated_timeout_secs",
                self.unauthenticated_timeout_secs == 0,
            ),
            ("device_cert_days", self.device_cert_days == 0),
            ("device_cert_secs", self.device_cert_secs == Some(0)),
        ];
        // X.509 dates end in 9999; an X.509 UTCTime or GeneralizedTime of
        // years past that cannot be written.
        if self.device_cert_validity_secs() > 100 * 365 * 86_400 {
            return Err("device_cert_days must be at most 36500 (100 years)".into());
        }
        match zero.iter().find(|(_, z)| *z) {
            Some((name, _)) => Err(format!("{name} must be at least 1")),
            None => Ok(()),
        }
    }

    /// The commented file `init` writes.
    pub fn commented(&self) -> String {
        let names = self
            .server_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"# fieldseal server configuration. Every setting is optional.

# UDP address the QUIC ingest endpoint listens on (`run --quic` overrides it).
quic_listen = "{}"

# TCP address of the HTTP API (`run --http` overrides it). Plain HTTP on a
# loopback address; TLS with the server's certificate on any other.
http_listen = "{}"

# Names and addresses the server certificate was issued for, besides
# localhost, 127.0.0.1 and ::1. Changing this does not reissue the certificate.
server_names = [{}]

# How long a device enrolment token stays valid, in seconds (24 h).
enroll_token_ttl_secs = {}

# Origin and key name of the transparency log's checkpoints (C2SP
# tlog-checkpoint); default "fieldseal/<first server name>", or
# "fieldseal/localhost". Changing it later changes how checkpoints verify.
# log_origin = "fieldseal/ingest.example"

# Seconds between two background scrubs (every blob re-hashed against its
# name; damaged ones are moved to damaged/ and asked of the device again).
# One day by default; 0 turns it off. `fieldseal-server scrub` runs one now.
scrub_interval_secs = {}

# Seconds between two checkpoints of the transparency log (signed and
# appended to checkpoints.log only if the log grew since the latest one;
# also once at a clean shutdown). Five minutes by default; 0 turns both off.
# `fieldseal-server log checkpoint` signs one now.
checkpoint_interval_secs = {}

# Article 27 compliance: a segment's bytes must be on the server within this
# many seconds of its end (one day by default), or it is a late upload.
upload_deadline_secs = {}

# Offset of local time from UTC in seconds (UTC+8 by default): enforcement
# certificates are valid by local day.
utc_offset_secs = {}

# Retention: a segment's media (its bytes, never its signed entry or receipt)
# is kept at least this many days from the end of the latest activity it
# belongs to, or from its receipt when it belongs to none; forever when a
# case it belongs to reached its decision, and while a legal hold covers it.
retention_days = {}

# Seconds between two runs of the retention job (one day); 0 turns it off.
# `fieldseal-server retention --dry-run` shows what it would remove.
retention_interval_secs = {}

# Connection limits (docs/SERVER.md, "Connection limits"). Enrolment lets
# clients without a certificate through the TLS handshake; these bound what
# they can hold. A connection is "unauthenticated" until it is an enrolled
# device's sync connection; devices' connections count only in the total.
# QUIC connections of every kind at once.
max_connections = {}
# Unauthenticated connections at once (handshakes, enrolments, strangers).
max_unauthenticated = {}
# Unauthenticated connections at once from one address (IPv4, IPv6 /64).
max_unauthenticated_per_address = {}
# Handshakes per address per minute that did not end as a device's connection.
handshakes_per_address_per_minute = {}
# Enrolment attempts per address per minute.
enrolments_per_address_per_minute = {}
# Seconds to finish the handshake and, when enrolling, to send the request.
unauthenticated_timeout_secs = {}

# Days a device certificate is valid from its issue (docs/SERVER.md, "Device
# certificates"). Devices renew over their sync connection once a third of it
# is left (after 60 of 90 days); one that does not connect in time is refused
# and must be re-enrolled (`fieldseal-server device reenrol ID`).
device_cert_days = {}
# For tests and drills only: seconds instead of days.
# device_cert_secs = 60
# Equivocation (a device signed two different entries with one seq): each is
# refused, raises an ALARM and is counted; the first this many of a device
# are kept in full in devices/<id>/equivocations.log, later ones only counted.
equivocations_kept = {}

# Where verified segment bytes are kept (docs/SERVER.md, "Blobs on S3"): the
# data folder's blobs/ by default, or a bucket of an S3-compatible store
# (Garage, MinIO, AWS S3). Partial uploads stay in the data folder until
# verified. Credentials come from credentials_file (TOML with access_key_id
# and secret_access_key, mode 0600) or from AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY.
# [blobs]
# kind = "s3"
# endpoint = "https://garage.example:3900"
# bucket = "fieldseal-blobs"
# region = "garage"
# credentials_file = "/etc/fieldseal/s3.toml"
"#,
            self.quic_listen,
            self.http_listen,
            names,
            self.enroll_token_ttl_secs,
            self.scrub_interval_secs,
            self.checkpoint_interval_secs,
            self.upload_deadline_secs,
            self.utc_offset_secs,
            self.retention_days,
            self.retention_interval_secs,
            self.max_connections,
            self.max_unauthenticated,
            self.max_unauthenticated_per_address,
            self.handshakes_per_address_per_minute,
            self.enrolments_per_address_per_minute,
            self.unauthenticated_timeout_secs,
            self.device_cert_days,
            self.equivocations_kept,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_file_parses_back() {
        let c = Config {
            server_names: vec!["ingest.example".into()],
            checkpoint_interval_secs: 7,
            retention_days: 365,
            retention_interval_secs: 0,
            max_unauthenticated_per_address: 3,
            unauthenticated_timeout_secs: 4,
            device_cert_days: 30,
            equivocations_kept: 9,
            ..Config::default()
        };
        assert_eq!(toml::from_str::<Config>(&c.commented()).unwrap(), c);
    }

    #[test]
    fn a_limit_of_zero_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = crate::datadir::DataDir::new(dir.path()).config();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "max_unauthenticated_per_address = 0\n").unwrap();
        let e = Config::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("config.toml") && e.contains("max_unauthenticated_per_address must be"),
            "{e}"
        );
        std::fs::write(&file, "max_connections = 5000\n").unwrap();
        assert_eq!(Config::load(dir.path()).unwrap().max_connections, 5000);
    }

    #[test]
    fn device_certificates_last_days_or_for_tests_seconds() {
        let c = Config::default();
        assert_eq!(c.device_cert_validity_secs(), 90 * 86_400);
        let c = Config {
            device_cert_secs: Some(6),
            ..Config::default()
        };
        assert_eq!(c.device_cert_validity_secs(), 6);
        let dir = tempfile::tempdir().unwrap();
        let file = crate::datadir::DataDir::new(dir.path()).config();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        for bad in [
            "device_cert_days = 0\n",
            "device_cert_secs = 0\n",
            "device_cert_days = 40000\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            let e = Config::load(dir.path()).unwrap_err().to_string();
            assert!(e.contains("device_cert_"), "{bad}: {e}");
        }
    }
}
