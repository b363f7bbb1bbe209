//! Renewal of a device's client certificate over its authenticated sync
//! connection (protocol version 3; `docs/FORMAT.md` §7.10).
//!
//! Device certificates expire (the server's `device_cert_days`). Before
//! that, on the control stream of a sync connection, the agent sends
//! [`RenewCert`]; the server answers, in order with the entries' answers,
//! [`CertRenewed`] with a new certificate for the **same** key, or
//! [`RenewRefused`]. The agent keeps the new certificate durably and
//! connects with it from then on.
//!
//! The request carries no signature of its own: the TLS 1.3 handshake of
//! the connection it travels on already proved possession of the device
//! key (CertificateVerify, a signature over the handshake transcript), and
//! the server issues the new certificate only for the key of that
//! connection's certificate. So renewal needs nothing of the key but the
//! handshake signature the device makes anyway: a key kept in a hardware
//! token renews as it connects. The request names the SHA-256 of the
//! certificate the device authenticated with, so that the server renews the
//! certificate the device holds, not one it forgot.
//!
//! ```text
//! type  message        payload
//! 0x40  RenewCert      cert_sha256 [32]
//! 0x41  CertRenewed    cert bytes32 (1..=MAX_CERT, DER X.509)
//! 0x42  RenewRefused   code u8 (RenewRefusal), detail text8 (<= MAX_DETAIL)
//! ```
//!
//! When: [`renewal_due`] (the agent asks once less than a third of the
//! validity is left, by the server's clock as its `Welcome` told it) and
//! [`renewal_allowed`] (the server issues once at most half is left, so
//! that the two clocks need not agree closely, and no device can have
//! certificates issued at will).

use crate::codec::{check_len, put, Decode, DecodeError, Encode, Reader};
use crate::enroll::MAX_CERT;
use crate::identity::Hash32;
use crate::msg::{Detail, MAX_DETAIL};
use crate::x509::Validity;

/// The first protocol version with certificate renewal.
pub const RENEW_SINCE_VERSION: u16 = 3;

/// Is renewal due at `now` (seconds since the epoch, the server's clock):
/// less than a third of the validity left? A certificate issued before
/// certificates expired (valid to the year 4096) is never due before then.
pub fn renewal_due(v: &Validity, now: i64) -> bool {
    now >= renew_at(v)
}

/// When renewal becomes due: a third of the validity before its end.
pub fn renew_at(v: &Validity) -> i64 {
    v.not_after - v.length() / 3
}

/// May the server renew at `now`: at most half of the validity left, and
/// not expired?
pub fn renewal_allowed(v: &Validity, now: i64) -> bool {
    now >= v.not_after - v.length() / 2 && now <= v.not_after
}

/// A DER certificate, 1 to [`MAX_CERT`] bytes (not parsed here).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertBytes(Vec<u8>);

impl CertBytes {
    /// Check and wrap.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] above [`MAX_CERT`], [`DecodeError::InvalidValue`]
    /// when empty.
    pub fn new(der: Vec<u8>) -> Result<Self, DecodeError> {
        check_len("certificate", der.len(), MAX_CERT)?;
        if der.is_empty() {
            return Err(DecodeError::InvalidValue {
                what: "certificate length",
                value: 0,
            });
        }
        Ok(CertBytes(der))
    }

    /// The DER.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The DER, owned.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// Agent → server, on the control stream: renew the certificate this
/// connection authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewCert {
    /// SHA-256 of the DER of the certificate the device presented.
    pub cert_sha256: Hash32,
}

/// Server → agent: the new certificate, for the same key, from the same CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRenewed {
    /// DER X.509.
    pub cert: CertBytes,
}

/// Why the server did not renew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RenewRefusal {
    /// The device is revoked or not enrolled: it may not sync, let alone renew.
    Revoked = 1,
    /// The certificate of this connection has expired.
    Expired = 2,
    /// `cert_sha256` is not the certificate of this connection.
    WrongCertificate = 3,
    /// More than half of the validity is left; ask later.
    NotDue = 4,
    /// The server could not issue or record the certificate now; ask later.
    Internal = 5,
}

impl RenewRefusal {
    /// Every code, in wire order.
    pub const ALL: &'static [RenewRefusal] = &[
        RenewRefusal::Revoked,
        RenewRefusal::Expired,
        RenewRefusal::WrongCertificate,
        RenewRefusal::NotDue,
        RenewRefusal::Internal,
    ];

    /// The code on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code of a wire value.
    ///
    /// # Errors
    /// [`DecodeError::InvalidValue`] for a value no code has.
    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        RenewRefusal::ALL
            .iter()
            .copied()
            .find(|c| c.as_u8() == v)
            .ok_or(DecodeError::InvalidValue {
                what: "renewal refusal code",
                value: u64::from(v),
            })
    }
}

/// Server → agent: no new certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewRefused {
    /// Why.
    pub code: RenewRefusal,
    /// A human-readable hint.
    pub detail: Detail,
}

impl Encode for RenewCert {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cert_sha256);
    }
}

impl Decode for RenewCert {
    const NAME: &'static str = "renew cert";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RenewCert {
            cert_sha256: r.array()?,
        })
    }
}

impl Encode for CertRenewed {
    fn encode(&self, out: &mut Vec<u8>) {
        put::bytes32(out, self.cert.as_bytes());
    }
}

impl Decode for CertRenewed {
    const NAME: &'static str = "cert renewed";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let der = r.bytes32("certificate", MAX_CERT)?;
        Ok(CertRenewed {
            cert: CertBytes::new(der.to_vec())?,
        })
    }
}

impl Encode for RenewRefused {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code.as_u8());
        put::text8(out, self.detail.as_str());
    }
}

impl Decode for RenewRefused {
    const NAME: &'static str = "renew refused";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = RenewRefusal::from_u8(r.u8()?)?;
        let detail = Detail::new(r.text8("detail", MAX_DETAIL)?)?;
        Ok(RenewRefused { code, detail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Message, MessageType};

    fn v(not_before: i64, not_after: i64) -> Validity {
        Validity {
            not_before,
            not_after,
        }
    }

    #[test]
    fn due_with_a_third_left_allowed_with_half() {
        // 90 days: due from day 60, allowed from day 45, until the last second.
        let day = 86_400;
        let cert = v(0, 90 * day);
        assert_eq!(renew_at(&cert), 60 * day);
        assert!(!renewal_due(&cert, 60 * day - 1));
        assert!(renewal_due(&cert, 60 * day));
        assert!(!renewal_allowed(&cert, 45 * day - 1));
        assert!(renewal_allowed(&cert, 45 * day));
        assert!(renewal_allowed(&cert, 90 * day));
        assert!(!renewal_allowed(&cert, 90 * day + 1));
        // What the agent asks for, the server allows.
        for now in 0..=90 {
            if renewal_due(&cert, now * day) && now * day <= cert.not_after {
                assert!(renewal_allowed(&cert, now * day));
            }
        }
        // A certificate of before expiry (to 4096) is never due in practice.
        let old = v(157_766_400, 67_090_118_400);
        assert!(!renewal_due(&old, 4_000_000_000));
    }

    #[test]
    fn messages_round_trip_through_frames() {
        let msgs = [
            Message::RenewCert(RenewCert {
                cert_sha256: [7; 32],
            }),
            Message::CertRenewed(CertRenewed {
                cert: CertBytes::new(vec![0x30; MAX_CERT]).unwrap(),
            }),
            Message::RenewRefused(RenewRefused {
                code: RenewRefusal::NotDue,
                detail: Detail::new("ask later").unwrap(),
            }),
        ];
        for m in msgs {
            let b = m.to_bytes();
            assert_eq!(Message::from_bytes(&b), Ok(m));
        }
    }

    #[test]
    fn decoders_refuse_malformed_payloads() {
        let dec = Message::decode_payload;
        // RenewCert: exactly 32 bytes.
        assert!(dec(MessageType::RenewCert, &[0; 32]).is_ok());
        assert!(dec(MessageType::RenewCert, &[0; 31]).is_err());
        assert!(matches!(
            dec(MessageType::RenewCert, &[0; 33]),
            Err(DecodeError::TrailingData { .. })
        ));
        // CertRenewed: an empty certificate, a length past MAX_CERT (checked
        // before reading), a length past the payload, trailing bytes.
        assert!(matches!(
            dec(MessageType::CertRenewed, &[0, 0, 0, 0]),
            Err(DecodeError::InvalidValue { .. })
        ));
        let too_long = u32::try_from(MAX_CERT + 1).unwrap().to_be_bytes();
        assert!(matches!(
            dec(MessageType::CertRenewed, &too_long),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(dec(MessageType::CertRenewed, &[0, 0, 0, 5, 1, 2]).is_err());
        assert!(matches!(
            dec(MessageType::CertRenewed, &[0, 0, 0, 1, 0x30, 0]),
            Err(DecodeError::TrailingData { .. })
        ));
        // RenewRefused: unknown codes, bad text, trailing bytes.
        assert!(dec(MessageType::RenewRefused, &[4, 0]).is_ok());
        for code in [0u8, 6, 255] {
            assert!(
                dec(MessageType::RenewRefused, &[code, 0]).is_err(),
                "{code}"
            );
        }
        assert!(dec(MessageType::RenewRefused, &[1, 2, b'a', 0x07]).is_err());
        assert!(dec(MessageType::RenewRefused, &[1, 1, 0xff]).is_err());
        assert!(dec(MessageType::RenewRefused, &[1, 0, 0]).is_err());
        assert!(dec(MessageType::RenewRefused, &[1]).is_err());
    }

    #[test]
    fn cert_bytes_enforce_their_bounds() {
        assert!(CertBytes::new(vec![1]).is_ok());
        assert!(CertBytes::new(Vec::new()).is_err());
        assert!(CertBytes::new(vec![1; MAX_CERT + 1]).is_err());
        for c in RenewRefusal::ALL {
            assert_eq!(RenewRefusal::from_u8(c.as_u8()), Ok(*c));
        }
    }
}
