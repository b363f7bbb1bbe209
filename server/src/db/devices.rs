//! Devices, enrolment tokens, users and device certificates in the index:
//! not derived from evidence, so `reindex` keeps them. Each is one JSON
//! record in its own sled tree (`devices` by the 8 id bytes, `tokens` by
//! the SHA-256 of the token, `users` by name, `certs` by the device id and
//! the certificate's notBefore); the JSON is part of the archive format,
//! and [`DeviceRecord`] keeps today's shape (hex strings) whatever its Rust
//! types.

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::identity::{DeviceId, Hash32};
use serde::{Deserialize, Serialize};

use super::{Db, DbError};

/// An enrolled (or pending, or revoked) device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id (JSON: 16 hex digits).
    #[serde(with = "hex_device_id")]
    pub id: DeviceId,
    /// Name given by the administrator.
    pub name: String,
    /// Ed25519 public key: the chain key, which its certificate certifies
    /// (JSON: `public_key`, 64 hex digits).
    #[serde(rename = "public_key", with = "hex_key")]
    pub key: VerifyingKey,
    /// When it enrolled, µs since the epoch.
    pub enrolled_us: i64,
    /// When it was revoked, if it was.
    pub revoked_us: Option<i64>,
}

/// An enrolment token, stored under the SHA-256 of the token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// The device name it enrols.
    pub name: String,
    /// Until when it may be used, µs since the epoch.
    pub expires_us: i64,
    /// The device id it enrolled, once used.
    pub used_by: Option<String>,
    /// For a re-enrolment token (`device reenrol`): the only device (16
    /// hex digits) it may enrol, one that is enrolled already (revoked, or
    /// whose certificate expired). Absent for a new device's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// How a device certificate came to be.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CertHow {
    /// At enrolment.
    Enrol,
    /// At a re-enrolment with a token bound to the device.
    Reenrol,
    /// Renewed over a sync connection.
    Renew,
}

/// A certificate issued to a device: one per enrolment, re-enrolment and
/// renewal, so that who could sync as the device, and until when, stays
/// on record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertRecord {
    /// SHA-256 of its DER, hex.
    pub sha256: String,
    /// First second of validity (since the epoch).
    pub not_before: i64,
    /// Last second of validity.
    pub not_after: i64,
    /// When it was issued, µs since the epoch.
    pub issued_us: i64,
    /// How.
    pub how: CertHow,
}

fn cert_key(device: DeviceId, not_before: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&device.0);
    // Certificates of this server begin after 1970: the bytes sort as the times.
    k[8..].copy_from_slice(&u64::try_from(not_before).unwrap_or(0).to_be_bytes());
    k
}

/// A user of the server (the web UI and API come later).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// Role: admin, custodian, supervisor, officer.
    pub role: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// A disabled user cannot log in (users are never deleted: the access
    /// log names them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// For an officer: their enforcement-certificate number, which decides
    /// what "own recordings and cases" means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub officer: Option<String>,
}

/// A device id as its 16 hex digits (`DeviceId`'s `Display` and `FromStr`).
mod hex_device_id {
    use fieldseal_proto::identity::DeviceId;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &DeviceId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// An Ed25519 public key as 64 hex digits.
mod hex_key {
    use ed25519_dalek::VerifyingKey;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(k: &VerifyingKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(k.as_bytes()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VerifyingKey, D::Error> {
        let s = String::deserialize(d)?;
        let b: [u8; 32] = hex::decode(&s)
            .map_err(D::Error::custom)?
            .try_into()
            .map_err(|_| D::Error::custom("a device key is 32 bytes"))?;
        VerifyingKey::from_bytes(&b).map_err(D::Error::custom)
    }
}

impl Db {
    /// A device by id.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn device(&self, id: DeviceId) -> Result<Option<DeviceRecord>, DbError> {
        match self.devices.get(id.0)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Store a device.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_device(&self, d: &DeviceRecord) -> Result<(), DbError> {
        self.devices.insert(d.id.0, serde_json::to_vec(d)?)?;
        Ok(())
    }

    /// Every device.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, DbError> {
        self.devices
            .iter()
            .map(|kv| Ok(serde_json::from_slice(&kv?.1)?))
            .collect()
    }

    /// A token by the SHA-256 of its text.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn token(&self, token_hash: &Hash32) -> Result<Option<TokenRecord>, DbError> {
        match self.tokens.get(token_hash)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Store a token.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_token(&self, token_hash: &Hash32, t: &TokenRecord) -> Result<(), DbError> {
        self.tokens.insert(token_hash, serde_json::to_vec(t)?)?;
        Ok(())
    }

    /// Use a token and enrol a device in one transaction, so that two
    /// concurrent enrolments cannot both use one token. Returns the token as
    /// it was before; the caller checks it and the closure decides.
    ///
    /// # Errors
    /// sled errors, or the error `check` returns (nothing is changed then).
    pub fn enroll<E>(
        &self,
        token_hash: &Hash32,
        cert: &CertRecord,
        check: impl Fn(Option<TokenRecord>) -> Result<(TokenRecord, DeviceRecord), E>,
    ) -> Result<Result<DeviceRecord, E>, DbError> {
        use sled::Transactional;
        let cj = serde_json::to_vec(cert)?;
        let res =
            (&self.tokens, &self.devices, &self.certs).transaction(|(tokens, devices, certs)| {
                let current = match tokens.get(token_hash)? {
                    Some(v) => Some(serde_json::from_slice::<TokenRecord>(&v).map_err(|e| {
                        sled::transaction::ConflictableTransactionError::Abort(e.to_string())
                    })?),
                    None => None,
                };
                match check(current) {
                    Err(e) => Ok(Err(e)),
                    Ok((tok, dev)) => {
                        let id = dev.id;
                        if devices.get(id.0)?.is_some() {
                            return Ok(Ok(None));
                        }
                        let tj = serde_json::to_vec(&tok).expect("serialisable");
                        let dj = serde_json::to_vec(&dev).expect("serialisable");
                        tokens.insert(token_hash.as_slice(), tj)?;
                        devices.insert(id.0.as_slice(), dj)?;
                        certs.insert(&cert_key(id, cert.not_before), cj.clone())?;
                        Ok(Ok(Some(dev)))
                    }
                }
            });
        match res {
            Ok(Ok(Some(dev))) => {
                self.flush()?;
                Ok(Ok(dev))
            }
            Ok(Ok(None)) => Err(DbError::AlreadyEnrolled),
            Ok(Err(e)) => Ok(Err(e)),
            Err(sled::transaction::TransactionError::Abort(e)) => Err(DbError::Corrupt(e)),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Re-enrol an enrolled device with a token bound to it, in one
    /// transaction as [`Db::enroll`]: the token is used, the device record
    /// replaced (its revocation lifted) and the new certificate recorded
    /// together, or none of it.
    ///
    /// # Errors
    /// sled errors, or the error `check` returns (nothing is changed then).
    pub fn reenroll<E>(
        &self,
        token_hash: &Hash32,
        id: DeviceId,
        cert: &CertRecord,
        check: impl Fn(
            Option<TokenRecord>,
            Option<DeviceRecord>,
        ) -> Result<(TokenRecord, DeviceRecord), E>,
    ) -> Result<Result<DeviceRecord, E>, DbError> {
        use sled::Transactional;
        let abort = |e: serde_json::Error| {
            sled::transaction::ConflictableTransactionError::Abort(e.to_string())
        };
        let cj = serde_json::to_vec(cert)?;
        let res =
            (&self.tokens, &self.devices, &self.certs).transaction(|(tokens, devices, certs)| {
                let tok = match tokens.get(token_hash)? {
                    Some(v) => Some(serde_json::from_slice::<TokenRecord>(&v).map_err(abort)?),
                    None => None,
                };
                let dev = match devices.get(id.0)? {
                    Some(v) => Some(serde_json::from_slice::<DeviceRecord>(&v).map_err(abort)?),
                    None => None,
                };
                match check(tok, dev) {
                    Err(e) => Ok(Err(e)),
                    Ok((tok, dev)) => {
                        let tj = serde_json::to_vec(&tok).expect("serialisable");
                        let dj = serde_json::to_vec(&dev).expect("serialisable");
                        tokens.insert(token_hash.as_slice(), tj)?;
                        devices.insert(id.0.as_slice(), dj)?;
                        certs.insert(&cert_key(id, cert.not_before), cj.clone())?;
                        Ok(Ok(dev))
                    }
                }
            });
        match res {
            Ok(Ok(dev)) => {
                self.flush()?;
                Ok(Ok(dev))
            }
            Ok(Err(e)) => Ok(Err(e)),
            Err(sled::transaction::TransactionError::Abort(e)) => Err(DbError::Corrupt(e)),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Record a certificate issued to `device` (durable on return).
    ///
    /// # Errors
    /// sled errors.
    pub fn put_cert(&self, device: DeviceId, c: &CertRecord) -> Result<(), DbError> {
        self.certs
            .insert(cert_key(device, c.not_before), serde_json::to_vec(c)?)?;
        self.flush()
    }

    /// The certificates issued to `device`, oldest first.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn certs(&self, device: DeviceId) -> Result<Vec<CertRecord>, DbError> {
        self.certs
            .scan_prefix(device.0)
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    /// The newest certificate issued to `device`, if any was recorded
    /// (devices enrolled before certificates expired have none).
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn current_cert(&self, device: DeviceId) -> Result<Option<CertRecord>, DbError> {
        match self.certs.scan_prefix(device.0).next_back() {
            Some(kv) => Ok(Some(serde_json::from_slice(&kv?.1)?)),
            None => Ok(None),
        }
    }

    /// A user by name.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, DbError> {
        match self.users.get(name)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Every user, by name.
    ///
    /// # Errors
    /// sled errors; a damaged record.
    pub fn users(&self) -> Result<Vec<UserRecord>, DbError> {
        self.users
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    /// Store a user.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_user(&self, u: &UserRecord) -> Result<(), DbError> {
        self.users
            .insert(u.name.as_bytes(), serde_json::to_vec(u)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record exactly as the code before typed records wrote it (hex
    /// strings, field `public_key`): existing indexes must keep opening, and
    /// what is written back is byte for byte the same.
    #[test]
    fn device_record_json_is_unchanged() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let id = DeviceId::from_key(&key);
        let old = format!(
            r#"{{"id":"{id}","name":"cam 1","public_key":"{}","enrolled_us":5,"revoked_us":null}}"#,
            hex::encode(key.as_bytes())
        );
        let d: DeviceRecord = serde_json::from_str(&old).unwrap();
        assert_eq!(d.id, id);
        assert_eq!(d.key, key);
        assert_eq!(d.name, "cam 1");
        assert_eq!(serde_json::to_string(&d).unwrap(), old);
        let revoked = old.replace("null", "9");
        let d: DeviceRecord = serde_json::from_str(&revoked).unwrap();
        assert_eq!(d.revoked_us, Some(9));
        assert_eq!(serde_json::to_string(&d).unwrap(), revoked);
    }

    /// Two enrolments of one key: the one that loses the transaction gets
    /// a typed `AlreadyEnrolled`, and its token stays unused.
    #[test]
    fn enrolling_an_enrolled_key_is_refused_and_uses_no_token() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(d.path()).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        let dev = DeviceRecord {
            id: DeviceId::from_key(&key),
            name: "cam".into(),
            key,
            enrolled_us: 1,
            revoked_us: None,
        };
        db.put_device(&dev).unwrap();
        let tok = TokenRecord {
            name: "cam".into(),
            expires_us: 10,
            used_by: None,
            device: None,
        };
        let th = [3; 32];
        db.put_token(&th, &tok).unwrap();
        let cert = CertRecord {
            sha256: "00".repeat(32),
            not_before: 1,
            not_after: 2,
            issued_us: 1_000_000,
            how: CertHow::Enrol,
        };
        let res = db.enroll(&th, &cert, |t| -> Result<_, ()> {
            let t = t.expect("token stored");
            Ok((
                TokenRecord {
                    used_by: Some(dev.id.to_string()),
                    ..t
                },
                dev.clone(),
            ))
        });
        assert!(matches!(res, Err(DbError::AlreadyEnrolled)), "{res:?}");
        assert_eq!(db.token(&th).unwrap(), Some(tok));
        assert_eq!(db.devices().unwrap(), vec![dev]);
        assert!(db.certs(DeviceId::from_key(&key)).unwrap().is_empty());
    }

    #[test]
    fn certificates_are_kept_per_device_in_time_order() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(d.path()).unwrap();
        let (a, b) = (DeviceId([1; 8]), DeviceId([2; 8]));
        let rec = |nb: i64, how| CertRecord {
            sha256: hex::encode([u8::try_from(nb % 256).unwrap(); 32]),
            not_before: nb,
            not_after: nb + 90,
            issued_us: nb * 1_000_000,
            how,
        };
        // 300 sorts after 2 only as a big-endian number, not as text.
        db.put_cert(a, &rec(300, CertHow::Renew)).unwrap();
        db.put_cert(a, &rec(2, CertHow::Enrol)).unwrap();
        db.put_cert(b, &rec(5, CertHow::Enrol)).unwrap();
        assert_eq!(
            db.certs(a).unwrap(),
            vec![rec(2, CertHow::Enrol), rec(300, CertHow::Renew)]
        );
        assert_eq!(db.current_cert(a).unwrap(), Some(rec(300, CertHow::Renew)));
        assert_eq!(db.current_cert(DeviceId([3; 8])).unwrap(), None);
        let json = serde_json::to_string(&rec(2, CertHow::Reenrol)).unwrap();
        assert!(json.contains(r#""how":"reenrol""#), "{json}");
    }

    #[test]
    fn device_record_refuses_bad_ids_and_keys() {
        let key = hex::encode([7u8; 32]);
        let rec = |id: &str, k: &str| {
            format!(
                r#"{{"id":"{id}","name":"n","public_key":"{k}","enrolled_us":0,"revoked_us":null}}"#
            )
        };
        let ok = DeviceId::from_key(&VerifyingKey::from_bytes(&[0; 32]).unwrap()).to_string();
        assert!(serde_json::from_str::<DeviceRecord>(&rec("xyz", &key)).is_err());
        assert!(serde_json::from_str::<DeviceRecord>(&rec(&ok.to_uppercase(), &key)).is_err());
        assert!(serde_json::from_str::<DeviceRecord>(&rec(&ok, "abcd")).is_err());
        assert!(serde_json::from_str::<DeviceRecord>(&rec(&ok, &"zz".repeat(32))).is_err());
    }
}
