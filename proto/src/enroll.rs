//! Enrolment messages: how a device trades a one-time token for a client
//! certificate (`docs/FORMAT.md`, "Enrolment").
//!
//! Enrolment runs on its own QUIC connection with ALPN `fieldseal-enroll/1`
//! and no client certificate. The agent opens one bidirectional stream, writes
//! one [`EnrollRequest`] and finishes its side; the server writes one
//! [`EnrollResponse`] and finishes. The end of the stream delimits each
//! message, so there is no frame header; a receiver reads at most
//! [`MAX_ENROLL_REQUEST`] / [`MAX_ENROLL_RESPONSE`] bytes.
//!
//! ```text
//! EnrollRequest
//!   version      u8        1
//!   token        text8     <= MAX_TOKEN (the one-time enrolment token)
//!   public_key   [32]      the device's Ed25519 public key (its chain key)
//!
//! EnrollResponse
//!   status       u8        0 = ok, else an EnrollStatus code
//!   if ok:
//!     device_id    [8]     the id the server derived from public_key
//!     receipt_key  [32]    the server's Ed25519 receipt-signing public key
//!     client_cert  bytes32 <= MAX_CERT, DER X.509 certificate for public_key
//!     ca_cert      bytes32 <= MAX_CERT, DER X.509 certificate of the server's CA
//!   else:
//!     detail       text8   <= MAX_DETAIL, a hint for humans
//! ```

use crate::codec::{put, Decode, DecodeError, Encode, Reader};
use crate::identity::{DeviceId, Hash32};
use crate::msg::{Detail, MAX_DETAIL};

/// The ALPN protocol id of enrolment connections.
pub const ALPN_ENROLL: &[u8] = b"fieldseal-enroll/1";
/// The ALPN protocol id of sync connections.
pub const ALPN_SYNC: &[u8] = b"fieldseal/1";
/// Version byte of [`EnrollRequest`].
pub const ENROLL_VERSION: u8 = 1;
/// Longest enrolment token, bytes. Tokens are 32 random bytes in hex (64).
pub const MAX_TOKEN: usize = 128;
/// Largest certificate in a response, bytes of DER. An Ed25519 certificate is
/// about 400 bytes; 16 KiB leaves room for long names without letting a
/// peer make us allocate much.
pub const MAX_CERT: usize = 16 * 1024;
/// Largest encoded request.
pub const MAX_ENROLL_REQUEST: usize = 1 + 1 + MAX_TOKEN + 32;

/// An enrolment token as the administrator hands it to a device:
/// `SECRET.CA_SHA256`, the one-time secret (64 lower-case hex digits) and the
/// SHA-256 of the server's CA certificate (DER, 64 lower-case hex digits),
/// in the manner of `kubeadm join --discovery-token-ca-cert-hash`. The token
/// alone lets a device enrol safely: it trusts only a server whose
/// certificate chain includes that CA and is signed by it, and sends only
/// the secret, in [`EnrollRequest::token`], once the handshake has passed.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollToken {
    /// The one-time secret (what the server checks).
    pub secret: String,
    /// SHA-256 of the server's CA certificate, DER.
    pub ca_sha256: Hash32,
}

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No `.CA_SHA256` part: a token from before tokens named their CA.
    #[error("the token does not name the server's CA (SECRET.CA_SHA256 expected): issue a new one with `fieldseal-server device add`")]
    NoCaHash,
    /// Not 64 hex digits, a dot, 64 hex digits.
    #[error("malformed enrolment token: {0}")]
    Malformed(&'static str),
}

fn hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl EnrollToken {
    /// Parse `SECRET.CA_SHA256` (surrounding white space ignored).
    ///
    /// # Errors
    /// [`TokenError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<EnrollToken, TokenError> {
        let s = s.trim();
        let Some((secret, ca)) = s.split_once('.') else {
            return Err(if hex64(s) {
                TokenError::NoCaHash
            } else {
                TokenError::Malformed("expected SECRET.CA_SHA256")
            });
        };
        if !hex64(secret) {
            return Err(TokenError::Malformed(
                "the secret is not 64 lower-case hex digits",
            ));
        }
        if !hex64(ca) {
            return Err(TokenError::Malformed(
                "the CA hash is not 64 lower-case hex digits",
            ));
        }
        let mut ca_sha256 = [0u8; 32];
        for (i, b) in ca_sha256.iter_mut().enumerate() {
            *b = u8::from_str_radix(&ca[2 * i..2 * i + 2], 16)
                .map_err(|_| TokenError::Malformed("the CA hash is not hex"))?;
        }
        Ok(EnrollToken {
            secret: secret.to_owned(),
            ca_sha256,
        })
    }
}

impl core::fmt::Display for EnrollToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.", self.secret)?;
        self.ca_sha256.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The secret is not shown in debug output (logs).
impl core::fmt::Debug for EnrollToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnrollToken")
            .field("secret", &"…")
            .field("ca_sha256", &self.ca_sha256)
            .finish()
    }
}
/// Largest encoded response.
pub const MAX_ENROLL_RESPONSE: usize = 1 + 8 + 32 + 2 * (4 + MAX_CERT);

/// Agent → server: enrol this key with this token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollRequest {
    /// The one-time token the administrator handed out.
    pub token: String,
    /// The device's Ed25519 public key.
    pub public_key: [u8; 32],
}

impl Encode for EnrollRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        assert!(self.token.len() <= MAX_TOKEN, "token bounded by MAX_TOKEN");
        out.push(ENROLL_VERSION);
        put::text8(out, &self.token);
        out.extend_from_slice(&self.public_key);
    }
}

impl Decode for EnrollRequest {
    const NAME: &'static str = "enrol request";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != ENROLL_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "enrol request",
                version,
            });
        }
        let token = r.text8("token", MAX_TOKEN)?;
        let public_key = r.array()?;
        Ok(EnrollRequest { token, public_key })
    }
}

macro_rules! status {
    ($($variant:ident = $v:expr, $doc:expr;)+) => {
        /// Why an enrolment failed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum EnrollStatus {
            $(#[doc = $doc] $variant = $v,)+
        }
        impl EnrollStatus {
            /// The code on the wire.
            pub fn as_u8(self) -> u8 { self as u8 }
            /// The status of a wire code (never 0, which is success).
            ///
            /// # Errors
            /// [`DecodeError::InvalidValue`] for an unknown code.
            pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
                match v {
                    $($v => Ok(EnrollStatus::$variant),)+
                    _ => Err(DecodeError::InvalidValue { what: "enrol status", value: u64::from(v) }),
                }
            }
        }
    };
}

status! {
    UnknownToken = 1, "No such token (mistyped, or never issued).";
    ExpiredToken = 2, "The token's validity ended.";
    UsedToken = 3, "The token was already used to enrol a device.";
    AlreadyEnrolled = 4, "This key is already enrolled (or revoked).";
    Malformed = 5, "The request could not be decoded.";
    Internal = 6, "The server failed; retry later.";
}

/// Server → agent: the certificate, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollResponse {
    /// Enrolled.
    Ok {
        /// The device id of the enrolled key.
        device_id: DeviceId,
        /// The server's receipt-signing public key.
        receipt_key: [u8; 32],
        /// DER certificate for the device key, issued by the CA.
        client_cert: Vec<u8>,
        /// DER certificate of the CA.
        ca_cert: Vec<u8>,
    },
    /// Refused.
    Refused {
        /// Why.
        status: EnrollStatus,
        /// A hint for humans.
        detail: Detail,
    },
}

impl Encode for EnrollResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            EnrollResponse::Ok {
                device_id,
                receipt_key,
                client_cert,
                ca_cert,
            } => {
                assert!(client_cert.len() <= MAX_CERT && ca_cert.len() <= MAX_CERT);
                out.push(0);
                out.extend_from_slice(&device_id.0);
                out.extend_from_slice(receipt_key);
                put::bytes32(out, client_cert);
                put::bytes32(out, ca_cert);
            }
            EnrollResponse::Refused { status, detail } => {
                out.push(status.as_u8());
                put::text8(out, detail.as_str());
            }
        }
    }
}

impl Decode for EnrollResponse {
    const NAME: &'static str = "enrol response";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => {
                let device_id = DeviceId(r.array()?);
                let receipt_key = r.array()?;
                let client_cert = r.bytes32("client certificate", MAX_CERT)?.to_vec();
                let ca_cert = r.bytes32("CA certificate", MAX_CERT)?.to_vec();
                Ok(EnrollResponse::Ok {
                    device_id,
                    receipt_key,
                    client_cert,
                    ca_cert,
                })
            }
            code => {
                let status = EnrollStatus::from_u8(code)?;
                let detail = r.text8("detail", MAX_DETAIL)?;
                Ok(EnrollResponse::Refused {
                    status,
                    detail: Detail::new(detail)?,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_ca_and_old_or_bent_ones_are_refused() {
        let secret = "ab".repeat(32);
        let t = EnrollToken::parse(&format!(" {secret}.{} \n", "0f".repeat(32))).unwrap();
        assert_eq!(t.secret, secret);
        assert_eq!(t.ca_sha256, [0x0f; 32]);
        assert_eq!(EnrollToken::parse(&t.to_string()).unwrap(), t);
        assert!(!format!("{t:?}").contains(&secret), "no secret in logs");
        assert_eq!(EnrollToken::parse(&secret), Err(TokenError::NoCaHash));
        for bad in [
            String::new(),
            "xyz".into(),
            format!("{secret}."),
            format!("{secret}.{}", "0F".repeat(32)),
            format!("{}.{}", "ab".repeat(31), "0f".repeat(32)),
            format!("{secret}.{}", "0f".repeat(33)),
            format!("{secret}.{}.", "0f".repeat(32)),
        ] {
            assert!(
                matches!(EnrollToken::parse(&bad), Err(TokenError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
    use proptest::prelude::*;

    #[test]
    fn request_round_trips_and_rejects_trailing_data() {
        let req = EnrollRequest {
            token: "ab".repeat(32),
            public_key: [7; 32],
        };
        let b = req.to_bytes();
        assert_eq!(b.len(), 1 + 1 + 64 + 32);
        assert_eq!(EnrollRequest::from_bytes(&b), Ok(req));
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(
            EnrollRequest::from_bytes(&long),
            Err(DecodeError::TrailingData { .. })
        ));
        assert!(EnrollRequest::from_bytes(&b[..b.len() - 1])
            .unwrap_err()
            .is_incomplete());
    }

    #[test]
    fn oversized_certificate_is_rejected_before_reading_it() {
        let mut b = vec![0u8];
        b.extend_from_slice(&[1; 8]);
        b.extend_from_slice(&[2; 32]);
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            EnrollResponse::from_bytes(&b),
            Err(DecodeError::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn responses_round_trip(cert in proptest::collection::vec(any::<u8>(), 0..600),
                                status in 1u8..=6, detail in "[a-z ]{0,40}", ok: bool) {
            let resp = if ok {
                EnrollResponse::Ok { device_id: DeviceId([3; 8]), receipt_key: [4; 32],
                    client_cert: cert.clone(), ca_cert: cert }
            } else {
                EnrollResponse::Refused { status: EnrollStatus::from_u8(status).unwrap(),
                    detail: Detail::new(detail).unwrap() }
            };
            let b = resp.to_bytes();
            prop_assert!(b.len() <= MAX_ENROLL_RESPONSE);
            prop_assert_eq!(EnrollResponse::from_bytes(&b), Ok(resp));
        }
    }
}
