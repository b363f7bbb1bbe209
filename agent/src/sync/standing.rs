//! The device's standing with its server: the client certificate it
//! connects with (renewed over the sync connection, FORMAT.md §7.10), and
//! the server's refusal of the device (revoked, unknown, or its certificate
//! expired), kept so that the agent stops retrying and says so.
//!
//! - `DIR/client.crt`: replaced by a renewed certificate with
//!   [`write_atomic`] (file and folder fsynced, as at enrolment): after a
//!   power cut it is the old certificate or the new one, both valid.
//! - `DIR/sync-refused.json` ([`REFUSAL_FILE`]): written when the server
//!   refuses the device for good; `run` and `record` then do not sync
//!   (recording goes on, the media stays on the device), `sync` exits at
//!   once, `status` says so. A successful `enroll` removes it.
//!
//! [`Credentials`] is the narrow seam the sync driver writes through, with
//! a folder implementation ([`DirCredentials`]) and an in-memory twin
//! ([`MemCredentials`]) for tests.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::x509::{Certificate, Validity};
use serde::{Deserialize, Serialize};

use crate::spoolfs::{write_atomic, SpoolFs, StdFs};

/// The marker of a refused device, in the data folder.
pub const REFUSAL_FILE: &str = "sync-refused.json";

/// Why the server will not let the device sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// The device was revoked, or the server does not know it (TLS alert
    /// `certificate_revoked`, close codes 0x10 and 0x13, or a renewal
    /// refused as revoked).
    Revoked,
    /// The device's certificate expired before it was renewed (TLS alert
    /// `certificate_expired`, close code 0x17).
    CertificateExpired,
}

/// The server's refusal of the device, as kept in [`REFUSAL_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Why.
    pub kind: RefusalKind,
    /// When the agent learnt it: its wall clock, µs since the epoch.
    pub at_us: i64,
    /// The server (`HOST:PORT`).
    pub server: String,
    /// The device (16 hex digits), for the administrator's command.
    #[serde(default)]
    pub device: String,
    /// The server's words, as the connection reported them.
    pub reason: String,
}

impl Refusal {
    /// One line for a person: what happened and what to do.
    pub fn advice(&self) -> String {
        match self.kind {
            RefusalKind::Revoked => format!(
                "the server {} refused this device as revoked (or unknown): sync is stopped and \
                 is not retried; recording goes on and the media stays on the device. An \
                 administrator who trusts the device again issues a token \
                 (`fieldseal-server device reenrol {}`); then run `fieldseal-agent enroll`",
                self.server,
                self.device_or_id()
            ),
            RefusalKind::CertificateExpired => format!(
                "the server {} refused this device's certificate as expired (it was not renewed \
                 in time): sync is stopped and is not retried; recording goes on and the media \
                 stays on the device. Ask an administrator for a re-enrolment token \
                 (`fieldseal-server device reenrol {}`) and run `fieldseal-agent enroll`",
                self.server,
                self.device_or_id()
            ),
        }
    }

    fn device_or_id(&self) -> &str {
        if self.device.is_empty() {
            "ID"
        } else {
            &self.device
        }
    }

    /// `revoked` or `certificate expired`, for `status`.
    pub fn label(&self) -> &'static str {
        match self.kind {
            RefusalKind::Revoked => "revoked",
            RefusalKind::CertificateExpired => "certificate expired",
        }
    }
}

/// Read the refusal marker of data folder `dir`, if there is one. A marker
/// that does not parse (a torn write cannot leave one: it is written
/// atomically; a hand edit can) still means "refused": the device stays
/// stopped rather than hammer a server that refused it.
///
/// # Errors
/// OS errors other than "not found".
pub fn load_refusal(dir: &Path) -> io::Result<Option<Refusal>> {
    let path = dir.join(REFUSAL_FILE);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).unwrap_or_else(|e| {
            Refusal {
                kind: RefusalKind::Revoked,
                at_us: 0,
                server: "?".into(),
                device: String::new(),
                reason: format!("{} does not parse ({e})", path.display()),
            }
        }))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Keep `r` in `dir` durably.
///
/// # Errors
/// OS errors.
pub fn save_refusal(fs: &dyn SpoolFs, dir: &Path, r: &Refusal) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
    write_atomic(fs, &dir.join(REFUSAL_FILE), &json)
}

/// Remove the marker durably (after a successful enrolment).
///
/// # Errors
/// OS errors other than "not found".
pub fn clear_refusal(fs: &dyn SpoolFs, dir: &Path) -> io::Result<()> {
    match fs.remove_file(&dir.join(REFUSAL_FILE)) {
        Ok(()) => fs.sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Check a renewed certificate before it replaces `old` (both DER): it must
/// certify `key`, be signed by the CA of `ca` (DER), and end later than
/// `old`. A certificate that fails would lock the device out at its next
/// connection, so it is not kept.
///
/// # Errors
/// What is wrong, for the log.
pub fn check_renewed(
    new: &[u8],
    key: &VerifyingKey,
    ca: &[u8],
    old: &[u8],
) -> Result<Validity, String> {
    let c = Certificate::parse(new).map_err(|e| e.to_string())?;
    if c.subject_key != key.to_bytes() {
        return Err("it certifies another key".into());
    }
    let ca = Certificate::parse(ca).map_err(|e| format!("CA {e}"))?;
    let ca_key = VerifyingKey::from_bytes(&ca.subject_key).map_err(|e| format!("CA key: {e}"))?;
    c.verify_signed_by(&ca_key).map_err(|e| e.to_string())?;
    let v = c.validity().map_err(|e| e.to_string())?;
    if let Ok(o) = Certificate::parse(old).and_then(|o| o.validity()) {
        if v.not_after <= o.not_after {
            return Err(format!(
                "it ends ({}) no later than the certificate it renews ({})",
                v.not_after, o.not_after
            ));
        }
    }
    Ok(v)
}

/// The sync part of `status` for data folder `dir` at `now` (µs since the
/// epoch, the device's clock), as JSON fields:
///
/// - `sync`: `revoked` or `certificate expired` when the server refused the
///   device, else `enabled` when `enrolled`, else `not enrolled`;
/// - `refused`: the [`Refusal`] with its `advice`, or `null`;
/// - `certificate`: the client certificate's `not_before`, `not_after`
///   (seconds since the epoch, and `…_utc` as RFC 3339), `renew_from` (when
///   the agent asks for a new one, by the server's clock), `expired` (by
///   this device's clock) and, when expired, `advice`; `null` when not
///   enrolled.
pub fn status(
    dir: &Path,
    enrolled: bool,
    now_us: i64,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Value};
    let refusal = load_refusal(dir).unwrap_or_else(|e| {
        Some(Refusal {
            kind: RefusalKind::Revoked,
            at_us: 0,
            server: "?".into(),
            device: String::new(),
            reason: format!("{} cannot be read: {e}", dir.join(REFUSAL_FILE).display()),
        })
    });
    let sync = match (&refusal, enrolled) {
        (Some(r), _) => r.label(),
        (None, true) => "enabled",
        (None, false) => "not enrolled",
    };
    let cert = super::read_pem_cert(&dir.join("client.crt"))
        .ok()
        .and_then(|c| {
            let c = Certificate::parse(c.as_ref()).ok()?;
            // Its common name is the device id.
            Some((
                c.validity().ok()?,
                c.subject_cn().unwrap_or_else(|| "ID".into()),
            ))
        });
    let now = now_us.div_euclid(1_000_000);
    let certificate = match cert {
        Some((v, id)) => {
            let expired = now > v.not_after;
            let mut c = json!({
                "not_before": v.not_before,
                "not_after": v.not_after,
                "not_after_utc": utc(v.not_after),
                "renew_from": fieldseal_proto::renew::renew_at(&v),
                "renew_from_utc": utc(fieldseal_proto::renew::renew_at(&v)),
                "expired": expired,
            });
            if expired {
                c["advice"] = Value::from(format!(
                    "the certificate has expired (by this device's clock) without being renewed: \
                     ask an administrator for a re-enrolment token \
                     (`fieldseal-server device reenrol {id}`) and run `fieldseal-agent enroll`"
                ));
            }
            c
        }
        None => Value::Null,
    };
    let refused = refusal.map_or(Value::Null, |r| {
        let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
        v["advice"] = Value::from(r.advice());
        v["at_utc"] = Value::from(utc(r.at_us.div_euclid(1_000_000)));
        v
    });
    let mut m = serde_json::Map::new();
    m.insert("sync".into(), Value::from(sync));
    m.insert("refused".into(), refused);
    m.insert("certificate".into(), certificate);
    m
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
pub fn utc(secs: i64) -> String {
    let (days, s) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Where the sync driver keeps what changes the device's standing.
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// Keep a renewed client certificate (DER), durably, for the next
    /// connections.
    ///
    /// # Errors
    /// OS errors: the renewal is then not used (the old certificate stays).
    fn save_client_cert(&self, der: &[u8]) -> io::Result<()>;

    /// Keep the server's refusal of the device, durably.
    ///
    /// # Errors
    /// OS errors.
    fn save_refusal(&self, r: &Refusal) -> io::Result<()>;
}

/// The data folder's `client.crt` and [`REFUSAL_FILE`].
#[derive(Debug, Clone)]
pub struct DirCredentials {
    dir: PathBuf,
}

impl DirCredentials {
    /// For data folder `dir`.
    pub fn new(dir: &Path) -> Self {
        DirCredentials {
            dir: dir.to_path_buf(),
        }
    }
}

impl Credentials for DirCredentials {
    fn save_client_cert(&self, der: &[u8]) -> io::Result<()> {
        write_atomic(
            &StdFs,
            &self.dir.join("client.crt"),
            super::cert_pem(der).as_bytes(),
        )
    }
    fn save_refusal(&self, r: &Refusal) -> io::Result<()> {
        save_refusal(&StdFs, &self.dir, r)
    }
}

/// An in-memory [`Credentials`]: what was saved, for tests.
#[derive(Debug, Default)]
pub struct MemCredentials {
    saved: Mutex<(Vec<Vec<u8>>, Option<Refusal>)>,
}

impl MemCredentials {
    /// The certificates saved so far, oldest first.
    pub fn certs(&self) -> Vec<Vec<u8>> {
        self.saved.lock().expect("lock").0.clone()
    }
    /// The refusal saved, if any.
    pub fn refusal(&self) -> Option<Refusal> {
        self.saved.lock().expect("lock").1.clone()
    }
}

impl Credentials for MemCredentials {
    fn save_client_cert(&self, der: &[u8]) -> io::Result<()> {
        self.saved.lock().expect("lock").0.push(der.to_vec());
        Ok(())
    }
    fn save_refusal(&self, r: &Refusal) -> io::Result<()> {
        self.saved.lock().expect("lock").1 = Some(r.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spoolfs::MemFs;

    #[test]
    fn the_refusal_marker_survives_power_loss_and_enrolment_clears_it() {
        let fs = MemFs::new(5);
        let dir = Path::new("/data");
        fs.create_dir_all(dir).unwrap();
        let r = Refusal {
            kind: RefusalKind::Revoked,
            at_us: 7,
            server: "example.invalid:4433".into(),
            device: "0011223344556677".into(),
            reason: "invalid peer certificate: Revoked".into(),
        };
        save_refusal(&fs, dir, &r).unwrap();
        fs.power_loss(false);
        let file = fs.files()[&dir.join(REFUSAL_FILE)].clone();
        assert_eq!(serde_json::from_slice::<Refusal>(&file).unwrap(), r);
        clear_refusal(&fs, dir).unwrap();
        fs.power_loss(false);
        assert!(!fs.files().contains_key(&dir.join(REFUSAL_FILE)));
        // Clearing what is not there is no error.
        clear_refusal(&fs, dir).unwrap();
    }

    #[test]
    fn an_unreadable_marker_still_means_refused() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load_refusal(d.path()).unwrap(), None);
        std::fs::write(d.path().join(REFUSAL_FILE), b"{not json").unwrap();
        let r = load_refusal(d.path()).unwrap().unwrap();
        assert_eq!(r.kind, RefusalKind::Revoked);
        assert!(r.reason.contains("does not parse"), "{}", r.reason);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_751_328_000), "2025-07-01T00:00:00Z");
        assert_eq!(utc(951_825_605), "2000-02-29T12:00:05Z");
        assert_eq!(utc(2_524_607_999), "2049-12-31T23:59:59Z");
    }

    #[test]
    fn status_says_revoked_before_anything_else() {
        let d = tempfile::tempdir().unwrap();
        let s = status(d.path(), false, 0);
        assert_eq!(s["sync"], "not enrolled");
        assert!(s["refused"].is_null() && s["certificate"].is_null());
        assert_eq!(status(d.path(), true, 0)["sync"], "enabled");
        save_refusal(
            &StdFs,
            d.path(),
            &Refusal {
                kind: RefusalKind::CertificateExpired,
                at_us: 1_751_328_000_000_000,
                server: "s:1".into(),
                device: String::new(),
                reason: "alert".into(),
            },
        )
        .unwrap();
        let s = status(d.path(), true, 0);
        assert_eq!(s["sync"], "certificate expired");
        assert_eq!(s["refused"]["kind"], "certificate-expired");
        assert_eq!(s["refused"]["at_utc"], "2025-07-01T00:00:00Z");
        assert!(s["refused"]["advice"].as_str().unwrap().contains("enroll"));
    }

    #[test]
    fn the_advice_names_what_to_do() {
        let mut r = Refusal {
            kind: RefusalKind::Revoked,
            at_us: 0,
            server: "s:1".into(),
            device: "0011223344556677".into(),
            reason: String::new(),
        };
        assert!(
            r.advice().contains("device reenrol 0011223344556677") && r.advice().contains("enroll")
        );
        assert_eq!(r.label(), "revoked");
        r.kind = RefusalKind::CertificateExpired;
        assert!(r.advice().contains("expired") && r.advice().contains("enroll"));
        assert_eq!(
            serde_json::to_string(&r.kind).unwrap(),
            "\"certificate-expired\""
        );
    }
}
