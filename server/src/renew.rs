//! Renewal of a device's certificate over its authenticated sync connection
//! (`docs/FORMAT.md` §7.10): the decision as a pure function ([`decide`])
//! and its execution ([`renew`]: issue, record, count, log).
//!
//! Why the connection is enough: its TLS 1.3 handshake proved that the
//! peer holds the private key of the certificate it presented
//! (CertificateVerify), the verifier checked that certificate against the
//! CA, its validity and the allow-list, and the new certificate is for that
//! same key. No key bytes travel, and no signature beyond the handshake's is
//! needed, so a key in a hardware token renews like any other.
//!
//! A renewal is issued only for an enrolled, unrevoked device, while the
//! certificate of the connection is still valid, and once at most half of
//! its validity is left (`fieldseal_proto::renew::renewal_allowed`: a device
//! cannot collect certificates at will). Each certificate issued is recorded
//! in the index (`certs`, [`crate::db::CertRecord`]) before it is sent.

use std::sync::atomic::Ordering;

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::identity::{sha256, DeviceId, Hash32};
use fieldseal_proto::msg::{Detail, Message};
use fieldseal_proto::renew::{
    renewal_allowed, CertBytes, CertRenewed, RenewCert, RenewRefusal, RenewRefused,
};
use fieldseal_proto::x509::Validity;

use crate::db::{CertHow, CertRecord, DeviceRecord};
use crate::Shared;

/// What to do with a renewal request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Issue a certificate with this validity.
    Issue(Validity),
    /// Refuse, with a hint for the log and the device.
    Refuse(RenewRefusal, &'static str),
}

/// The certificate a connection authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// SHA-256 of its DER.
    pub sha256: Hash32,
    /// Its validity.
    pub validity: Validity,
}

impl Presented {
    /// Read a DER certificate.
    ///
    /// # Errors
    /// When it does not parse or its dates cannot be read.
    pub fn from_der(der: &[u8]) -> Result<Presented, fieldseal_proto::x509::CertError> {
        let c = fieldseal_proto::x509::Certificate::parse(der)?;
        Ok(Presented {
            sha256: sha256(der),
            validity: c.validity()?,
        })
    }
}

/// Decide on `req` from the device `device` (its record; `allowed`: still
/// on the allow-list) on a connection that presented `presented`, at `now`
/// (seconds since the epoch). A new certificate is valid `cert_secs` from
/// now, and always begins after the presented one (each has its own
/// serial and record).
pub fn decide(
    req: &RenewCert,
    presented: &Presented,
    device: Option<&DeviceRecord>,
    allowed: bool,
    now: i64,
    cert_secs: i64,
) -> Decision {
    if !allowed || device.is_none_or(|d| d.revoked_us.is_some()) {
        return Decision::Refuse(
            RenewRefusal::Revoked,
            "the device is revoked or not enrolled",
        );
    }
    if !presented.validity.contains(now) {
        return Decision::Refuse(
            RenewRefusal::Expired,
            "the certificate of this connection has expired",
        );
    }
    if req.cert_sha256 != presented.sha256 {
        return Decision::Refuse(
            RenewRefusal::WrongCertificate,
            "that is not the certificate of this connection",
        );
    }
    if !renewal_allowed(&presented.validity, now) {
        return Decision::Refuse(
            RenewRefusal::NotDue,
            "more than half of the certificate's validity is left; ask later",
        );
    }
    let not_before = now.max(presented.validity.not_before + 1);
    Decision::Issue(Validity {
        not_before,
        not_after: not_before.saturating_add(cert_secs),
    })
}

/// Answer a renewal request of the device `key` on a connection that
/// presented `presented`, at `now_us`: [`Message::CertRenewed`] once the
/// new certificate is recorded, or [`Message::RenewRefused`]. Blocking
/// (index, signing): run it on the blocking pool.
pub fn renew(
    shared: &Shared,
    key: &VerifyingKey,
    presented: &Presented,
    req: &RenewCert,
    now_us: i64,
) -> Message {
    let device = DeviceId::from_key(key);
    let refuse = |code: RenewRefusal, detail: &str| {
        shared
            .counters
            .certs
            .renewals_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%device, ?code, detail, "certificate renewal refused");
        Message::RenewRefused(RenewRefused {
            code,
            detail: Detail::lossy(detail),
        })
    };
    let record = match shared.db.device(device) {
        Ok(r) => r,
        Err(e) => return refuse(RenewRefusal::Internal, &e.to_string()),
    };
    let allowed = shared.allowed.contains(&key.to_bytes());
    let now = now_us.div_euclid(1_000_000);
    let cert_secs = shared.cfg.device_cert_validity_secs();
    let validity = match decide(req, presented, record.as_ref(), allowed, now, cert_secs) {
        Decision::Issue(v) => v,
        Decision::Refuse(code, why) => return refuse(code, why),
    };
    let der = match shared.ca.issue_timed(key.as_bytes(), validity) {
        Ok(d) => d,
        Err(e) => return refuse(RenewRefusal::Internal, &e.to_string()),
    };
    let rec = CertRecord {
        sha256: hex::encode(sha256(&der)),
        not_before: validity.not_before,
        not_after: validity.not_after,
        issued_us: now_us,
        how: CertHow::Renew,
    };
    // Recorded (durably) before it is handed out: no certificate leaves
    // the server unrecorded.
    if let Err(e) = shared.db.put_cert(device, &rec) {
        return refuse(RenewRefusal::Internal, &e.to_string());
    }
    let cert = match CertBytes::new(der) {
        Ok(c) => c,
        Err(e) => return refuse(RenewRefusal::Internal, &e.to_string()),
    };
    shared
        .counters
        .certs
        .renewed
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        %device,
        old_not_after = presented.validity.not_after,
        not_after = validity.not_after,
        sha256 = rec.sha256,
        "device certificate renewed"
    );
    Message::CertRenewed(CertRenewed { cert })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(revoked: bool) -> DeviceRecord {
        let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]).verifying_key();
        DeviceRecord {
            id: DeviceId::from_key(&key),
            name: "cam".into(),
            key,
            enrolled_us: 0,
            revoked_us: revoked.then_some(5),
        }
    }

    const PRESENTED: Presented = Presented {
        sha256: [1; 32],
        validity: Validity {
            not_before: 1000,
            not_after: 1090,
        },
    };

    fn req(h: Hash32) -> RenewCert {
        RenewCert { cert_sha256: h }
    }

    #[test]
    fn issues_for_an_enrolled_device_with_half_its_validity_left() {
        let d = device(false);
        assert_eq!(
            decide(&req([1; 32]), &PRESENTED, Some(&d), true, 1060, 90),
            Decision::Issue(Validity {
                not_before: 1060,
                not_after: 1150
            })
        );
        assert!(matches!(
            decide(&req([1; 32]), &PRESENTED, Some(&d), true, 1044, 90),
            Decision::Refuse(RenewRefusal::NotDue, _)
        ));
        assert!(matches!(
            decide(&req([2; 32]), &PRESENTED, Some(&d), true, 1060, 90),
            Decision::Refuse(RenewRefusal::WrongCertificate, _)
        ));
    }

    #[test]
    fn a_revoked_unknown_or_expired_device_gets_nothing() {
        for (d, allowed) in [
            (Some(device(true)), true),
            (Some(device(true)), false),
            (Some(device(false)), false),
            (None, true),
        ] {
            assert!(
                matches!(
                    decide(&req([1; 32]), &PRESENTED, d.as_ref(), allowed, 1060, 90),
                    Decision::Refuse(RenewRefusal::Revoked, _)
                ),
                "{d:?} allowed {allowed}"
            );
        }
        let d = device(false);
        assert!(matches!(
            decide(&req([1; 32]), &PRESENTED, Some(&d), true, 1091, 90),
            Decision::Refuse(RenewRefusal::Expired, _)
        ));
    }

    #[test]
    fn a_new_certificate_always_begins_after_the_presented_one() {
        // A certificate of no length (both dates in one second): renewal
        // is allowed at once, in the very second it began.
        let p = Presented {
            sha256: [1; 32],
            validity: Validity {
                not_before: 1000,
                not_after: 1000,
            },
        };
        let d = device(false);
        assert_eq!(
            decide(&req([1; 32]), &p, Some(&d), true, 1000, 1),
            Decision::Issue(Validity {
                not_before: 1001,
                not_after: 1002
            })
        );
    }
}
