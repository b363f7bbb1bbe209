//! The little of X.509 (RFC 5280) and DER (X.690) an export package needs:
//! read an Ed25519 certificate (RFC 8410), check its issuer's signature over
//! its `TBSCertificate`, and give its subject public key and common name.
//! This is what binds a device key to the server's CA offline, with nothing
//! but std and ed25519-dalek (`docs/FORMAT.md` §10.4).
//!
//! ```text
//! Certificate  ::= SEQUENCE { tbsCertificate TBSCertificate,
//!                             signatureAlgorithm AlgorithmIdentifier,   -- id-Ed25519, no parameters
//!                             signature BIT STRING }                    -- 0 unused bits, 64 bytes
//! TBSCertificate ::= SEQUENCE { [0] EXPLICIT version OPTIONAL, serialNumber INTEGER,
//!                   signature AlgorithmIdentifier, issuer Name, validity Validity,
//!                   subject Name, subjectPublicKeyInfo SEQUENCE, [1] [2] [3] OPTIONAL }
//! ```
//!
//! Not checked by [`Certificate::parse`]: validity dates (a court checks
//! evidence years later; the binding is what the CA signed), extensions,
//! name constraints. [`Certificate::validity`] reads the dates for those
//! who need them (a device deciding when to renew its certificate,
//! FORMAT.md §7.10). DER rules that are checked: definite, minimal lengths;
//! no bytes after the certificate.

use ed25519_dalek::{Signature, VerifyingKey};

/// DER of the AlgorithmIdentifier of Ed25519 (OID 1.3.101.112, no parameters).
const ED25519_ALG: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the OID of the common name attribute (2.5.4.3).
const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];

/// A certificate this reader refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate: {0}")]
pub struct CertError(pub &'static str);

/// One DER element: its tag, its content, and its whole encoding.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Read the next element off `r`.
fn next<'a>(r: &mut &'a [u8]) -> Result<Tlv<'a>, CertError> {
    let bytes = *r;
    let (&tag, rest) = bytes.split_first().ok_or(CertError("ends early"))?;
    if tag & 0x1f == 0x1f {
        return Err(CertError("multi-byte tags are not used"));
    }
    let (&first, rest) = rest.split_first().ok_or(CertError("ends early"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(CertError("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        // DER: the shortest form, no leading zero byte.
        if len < 0x80 || rest[0] == 0 {
            return Err(CertError("length not in its shortest form"));
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(CertError("ends early"));
    }
    let head = bytes.len() - rest.len();
    *r = &rest[len..];
    Ok(Tlv {
        tag,
        content: &rest[..len],
        whole: &bytes[..head + len],
    })
}

fn expect<'a>(r: &mut &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, CertError> {
    let t = next(r)?;
    if t.tag == tag {
        Ok(t)
    } else {
        Err(CertError(what))
    }
}

/// An Ed25519 certificate, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate<'a> {
    /// The DER of the TBSCertificate: what the issuer signed.
    pub tbs: &'a [u8],
    /// The issuer's Ed25519 signature over `tbs`.
    pub signature: [u8; 64],
    /// DER of the issuer Name.
    pub issuer: &'a [u8],
    /// DER of the subject Name.
    pub subject: &'a [u8],
    /// The content of the Validity SEQUENCE (read by [`Certificate::validity`]).
    pub validity: &'a [u8],
    /// The subject's Ed25519 public key (32 bytes, not yet checked as a point).
    pub subject_key: [u8; 32],
}

impl<'a> Certificate<'a> {
    /// Parse the DER of one certificate whose key and signature are Ed25519.
    ///
    /// # Errors
    /// [`CertError`] naming what is not as above.
    pub fn parse(der: &'a [u8]) -> Result<Certificate<'a>, CertError> {
        let mut r = der;
        let cert = expect(&mut r, 0x30, "not a SEQUENCE")?;
        if !r.is_empty() {
            return Err(CertError("bytes after the certificate"));
        }
        let mut c = cert.content;
        let tbs = expect(&mut c, 0x30, "TBSCertificate is not a SEQUENCE")?;
        let alg = expect(&mut c, 0x30, "signatureAlgorithm is not a SEQUENCE")?;
        let sig = expect(&mut c, 0x03, "signature is not a BIT STRING")?;
        if !c.is_empty() {
            return Err(CertError("extra fields after the signature"));
        }
        if alg.whole != ED25519_ALG {
            return Err(CertError("signature algorithm is not Ed25519"));
        }
        let [0, s @ ..] = sig.content else {
            return Err(CertError("signature BIT STRING has unused bits"));
        };
        let signature: [u8; 64] = s
            .try_into()
            .map_err(|_| CertError("Ed25519 signature is not 64 bytes"))?;
        let mut t = tbs.content;
        let mut field = next(&mut t)?;
        if field.tag == 0xa0 {
            field = next(&mut t)?; // the version; the serial follows
        }
        if field.tag != 0x02 {
            return Err(CertError("no serial number"));
        }
        let inner_alg = expect(&mut t, 0x30, "TBS signature is not a SEQUENCE")?;
        if inner_alg.whole != ED25519_ALG {
            return Err(CertError("TBS signature algorithm is not Ed25519"));
        }
        let issuer = expect(&mut t, 0x30, "issuer is not a Name")?;
        let validity = expect(&mut t, 0x30, "validity is not a SEQUENCE")?;
        let subject = expect(&mut t, 0x30, "subject is not a Name")?;
        let spki = expect(&mut t, 0x30, "subjectPublicKeyInfo is not a SEQUENCE")?;
        Ok(Certificate {
            tbs: tbs.whole,
            signature,
            issuer: issuer.whole,
            subject: subject.whole,
            validity: validity.content,
            subject_key: ed25519_spki(spki.content)?,
        })
    }

    /// Check that `issuer_key` signed this certificate (strict Ed25519).
    ///
    /// # Errors
    /// When the signature does not verify.
    pub fn verify_signed_by(&self, issuer_key: &VerifyingKey) -> Result<(), CertError> {
        issuer_key
            .verify_strict(self.tbs, &Signature::from_bytes(&self.signature))
            .map_err(|_| CertError("signature does not verify with the issuer's key"))
    }

    /// The subject's common name, if it has exactly one that is a UTF8String
    /// or PrintableString.
    pub fn subject_cn(&self) -> Option<String> {
        common_name(self.subject).ok().flatten()
    }

    /// The validity period, seconds since the Unix epoch (RFC 5280 §4.1.2.5:
    /// UTCTime `YYMMDDHHMMSSZ` for the years 1950–2049, GeneralizedTime
    /// `YYYYMMDDHHMMSSZ` otherwise; both in UTC, with seconds, without
    /// fractions).
    ///
    /// # Errors
    /// A date that is not in one of those two forms, or `notAfter` before
    /// `notBefore`.
    pub fn validity(&self) -> Result<Validity, CertError> {
        let mut v = self.validity;
        let not_before = der_time(next(&mut v)?)?;
        let not_after = der_time(next(&mut v)?)?;
        if !v.is_empty() {
            return Err(CertError("extra fields in the validity"));
        }
        if not_after < not_before {
            return Err(CertError("notAfter is before notBefore"));
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }
}

/// When a certificate is valid: from `not_before` to `not_after`
/// inclusive, seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First second of validity.
    pub not_before: i64,
    /// Last second of validity.
    pub not_after: i64,
}

impl Validity {
    /// The length of the period, seconds.
    pub fn length(&self) -> i64 {
        self.not_after - self.not_before
    }

    /// Is `now` (seconds since the epoch) inside the period?
    pub fn contains(&self, now: i64) -> bool {
        (self.not_before..=self.not_after).contains(&now)
    }
}

/// A UTCTime or GeneralizedTime (RFC 5280 §4.1.2.5) as seconds since the epoch.
fn der_time(t: Tlv<'_>) -> Result<i64, CertError> {
    let (year, rest) = match (t.tag, t.content.len()) {
        (0x17, 13) => {
            let yy = digits(&t.content[..2])?;
            (
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                &t.content[2..],
            )
        }
        (0x18, 15) => (digits(&t.content[..4])?, &t.content[4..]),
        _ => {
            return Err(CertError(
                "a validity date is not UTCTime or GeneralizedTime",
            ))
        }
    };
    if rest[10] != b'Z' {
        return Err(CertError("a validity date is not in UTC"));
    }
    let [month, day, hour, min, sec] =
        [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]).unwrap_or(-1));
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(CertError("a validity date has no such month")),
    };
    if !(1..=days_in_month).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&min)
        || !(0..60).contains(&sec)
    {
        return Err(CertError("a validity date has no such day or time"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// ASCII decimal digits as a number.
fn digits(b: &[u8]) -> Result<i64, CertError> {
    b.iter().try_fold(0i64, |a, &d| {
        if d.is_ascii_digit() {
            Ok(a * 10 + i64::from(d - b'0'))
        } else {
            Err(CertError("a validity date is not digits"))
        }
    })
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The 32 key bytes of an Ed25519 SubjectPublicKeyInfo's content.
fn ed25519_spki(mut s: &[u8]) -> Result<[u8; 32], CertError> {
    let alg = expect(&mut s, 0x30, "key algorithm is not a SEQUENCE")?;
    let key = expect(&mut s, 0x03, "key is not a BIT STRING")?;
    if alg.whole != ED25519_ALG || !s.is_empty() {
        return Err(CertError("subject key is not Ed25519"));
    }
    match key.content {
        [0, k @ ..] => k
            .try_into()
            .map_err(|_| CertError("Ed25519 key is not 32 bytes")),
        _ => Err(CertError("key BIT STRING has unused bits")),
    }
}

/// The one CN of a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn common_name(name: &[u8]) -> Result<Option<String>, CertError> {
    let mut r = expect(&mut &name[..], 0x30, "not a Name")?.content;
    let mut found = None;
    while !r.is_empty() {
        let mut set = expect(&mut r, 0x31, "RDN is not a SET")?.content;
        while !set.is_empty() {
            let mut atv = expect(&mut set, 0x30, "attribute is not a SEQUENCE")?.content;
            let oid = expect(&mut atv, 0x06, "attribute type is not an OID")?;
            let value = next(&mut atv)?;
            if oid.whole == CN_OID {
                if found.is_some() || !matches!(value.tag, 0x0c | 0x13) {
                    return Ok(None);
                }
                found = std::str::from_utf8(value.content).ok().map(str::to_owned);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made by hand: tbs = SEQUENCE { [0] { INTEGER 2 },
    /// INTEGER 1, alg, issuer, validity (empty), subject, spki }.
    fn cert(issuer_key: &ed25519_dalek::SigningKey, subject_key: &[u8; 32], cn: &str) -> Vec<u8> {
        use ed25519_dalek::Signer;
        fn tlv(tag: u8, c: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            let len = u16::try_from(c.len()).unwrap().to_be_bytes();
            match len {
                [0, l] if l < 0x80 => out.push(l),
                [0, l] => out.extend_from_slice(&[0x81, l]),
                [h, l] => out.extend_from_slice(&[0x82, h, l]),
            }
            out.extend_from_slice(c);
            out
        }
        let name = |cn: &str| {
            let atv = tlv(0x30, &[CN_OID.to_vec(), tlv(0x0c, cn.as_bytes())].concat());
            tlv(0x30, &tlv(0x31, &atv))
        };
        let spki = tlv(
            0x30,
            &[
                ED25519_ALG.to_vec(),
                tlv(0x03, &[&[0u8][..], subject_key].concat()),
            ]
            .concat(),
        );
        let tbs = tlv(
            0x30,
            &[
                tlv(0xa0, &tlv(0x02, &[2])),
                tlv(0x02, &[1]),
                ED25519_ALG.to_vec(),
                name("ca"),
                tlv(0x30, &[]),
                name(cn),
                spki,
            ]
            .concat(),
        );
        let sig = issuer_key.sign(&tbs).to_bytes();
        tlv(
            0x30,
            &[
                tbs,
                ED25519_ALG.to_vec(),
                tlv(0x03, &[&[0u8][..], &sig].concat()),
            ]
            .concat(),
        )
    }

    #[test]
    fn reads_key_name_and_checks_the_issuer() {
        let ca = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let der = cert(&ca, &[9; 32], "fbde642ca462ee6f");
        let c = Certificate::parse(&der).unwrap();
        assert_eq!(c.subject_key, [9; 32]);
        assert_eq!(c.subject_cn().as_deref(), Some("fbde642ca462ee6f"));
        c.verify_signed_by(&ca.verifying_key()).unwrap();
        assert!(c.verify_signed_by(&other.verifying_key()).is_err());
        // Any byte of the TBS changed: the signature no longer holds (or the
        // DER no longer parses).
        let at = c.tbs.as_ptr() as usize - der.as_ptr() as usize;
        for i in 0..c.tbs.len() {
            let mut bad = der.clone();
            bad[at + i] ^= 1;
            let ok = Certificate::parse(&bad)
                .is_ok_and(|c| c.verify_signed_by(&ca.verifying_key()).is_ok());
            assert!(!ok, "byte {i}");
        }
    }

    #[test]
    fn refuses_non_der_and_trailing_bytes() {
        let ca = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let der = cert(&ca, &[9; 32], "x");
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(
            Certificate::parse(&trailing),
            Err(CertError("bytes after the certificate"))
        );
        // A long-form length for a short content is not DER.
        let mut r: &[u8] = &[0x30, 0x81, 0x01, 0x00];
        assert!(next(&mut r).is_err());
        assert!(Certificate::parse(&der[..der.len() - 1]).is_err());
    }

    fn validity_of(content: &[u8]) -> Result<Validity, CertError> {
        let c = Certificate {
            tbs: &[],
            signature: [0; 64],
            issuer: &[],
            subject: &[],
            validity: content,
            subject_key: [0; 32],
        };
        c.validity()
    }

    fn time(tag: u8, s: &str) -> Vec<u8> {
        let mut v = vec![tag, u8::try_from(s.len()).unwrap()];
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // rcgen's defaults: 1975-01-01 (UTCTime) to 4096-01-01 (GeneralizedTime).
        let v = validity_of(&[time(0x17, "750101000000Z"), time(0x18, "40960101000000Z")].concat())
            .unwrap();
        assert_eq!((v.not_before, v.not_after), (157_766_400, 67_090_118_400));
        let v = validity_of(&[time(0x17, "250701000000Z"), time(0x17, "491231235959Z")].concat())
            .unwrap();
        assert_eq!((v.not_before, v.not_after), (1_751_328_000, 2_524_607_999));
        assert_eq!(v.length(), 2_524_607_999 - 1_751_328_000);
        assert!(v.contains(1_751_328_000) && v.contains(2_524_607_999));
        assert!(!v.contains(1_751_327_999) && !v.contains(2_524_608_000));
        let leap =
            validity_of(&[time(0x18, "20000229120005Z"), time(0x18, "20000229120005Z")].concat());
        assert_eq!(leap.unwrap().not_before, 951_825_605);
    }

    #[test]
    fn refuses_dates_that_are_not_dates() {
        let ok = time(0x17, "250701000000Z");
        for bad in [
            time(0x17, "251301000000Z"), // month 13
            time(0x17, "250230000000Z"), // 30 February
            time(0x17, "250229000000Z"), // 2025 is not a leap year
            time(0x17, "250701240000Z"), // hour 24
            time(0x17, "2507010000+0Z"), // not digits
            time(0x17, "250701000000+"), // not UTC
            time(0x17, "2507010000Z"),   // no seconds
            time(0x18, "250701000000Z"), // GeneralizedTime of UTCTime's length
            time(0x04, "250701000000Z"), // another type
        ] {
            assert!(
                validity_of(&[ok.clone(), bad.clone()].concat()).is_err(),
                "{bad:?}"
            );
        }
        // Backwards, missing or extra dates.
        let later = time(0x17, "260701000000Z");
        assert!(validity_of(&[later.clone(), ok.clone()].concat()).is_err());
        assert!(validity_of(&ok).is_err());
        assert!(validity_of(&[ok.clone(), later.clone(), ok.clone()].concat()).is_err());
    }
}
