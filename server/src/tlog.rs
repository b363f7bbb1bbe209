//! The transparency log on the command line: signed checkpoints
//! (`DIR/checkpoints.log`), inclusion proofs of an entry's leaf and
//! consistency proofs, each checkable with `fieldseal-proto` alone
//! (`docs/FORMAT.md` §6).
//!
//! Proofs are made against the latest stored checkpoint, because a root is
//! only worth checking against when it is signed with its size.
//!
//! `checkpoints.log` holds the signed notes one after another, each followed
//! by one empty line (a note itself holds exactly one empty line, between its
//! text and its signatures).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use ed25519_dalek::SigningKey;
use fieldseal_proto::checkpoint::{Checkpoint, CheckpointError, VerifierKey};
use fieldseal_proto::codec::{Decode, DecodeError};
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::receipt::Receipt;
use serde::Serialize;

use crate::chainindex::{ChainIndex, IndexError};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::db::{Db, DbError};

/// Why a checkpoint could not be signed or a proof made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    /// No checkpoint is stored yet.
    #[error("no checkpoint yet: run `log checkpoint` first")]
    NoCheckpoint,
    /// The latest stored checkpoint does not verify with this server's
    /// origin and key.
    #[error("latest checkpoint does not verify: {0}")]
    LatestUnverified(#[source] CheckpointError),
    /// Signing would fork the log: it does not extend the latest checkpoint.
    #[error(
        "the log (size {size}) does not extend the latest checkpoint (size {latest}): \
         not signing"
    )]
    DoesNotExtend {
        /// The log's size now.
        size: u64,
        /// The latest checkpoint's size.
        latest: u64,
    },
    /// The note could not be made (an origin that is not a valid note name).
    #[error(transparent)]
    Note(#[from] CheckpointError),
    /// The entry to prove is not accepted.
    #[error("no accepted entry {seq} of device {device}")]
    NoEntry {
        /// Device.
        device: DeviceId,
        /// Seq.
        seq: u64,
    },
    /// The stored receipt of the entry does not decode.
    #[error("stored receipt: {0}")]
    Receipt(#[from] DecodeError),
    /// The leaf is newer than the latest checkpoint.
    #[error(
        "leaf {index} is not in the latest checkpoint (size {size}): run `log checkpoint` first"
    )]
    NotCovered {
        /// Leaf index.
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// A consistency proof from beyond the latest checkpoint.
    #[error("size {from} is beyond the latest checkpoint (size {size})")]
    Beyond {
        /// The size asked for.
        from: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The index failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// `checkpoints.log` could not be read or written.
    #[error("checkpoints.log: {0}")]
    Io(#[from] io::Error),
}

impl From<IndexError> for TlogError {
    fn from(e: IndexError) -> Self {
        TlogError::Db(e.into())
    }
}

/// The log's origin, also its key name: `log_origin` from config.toml, else
/// `fieldseal/<first server name>` (`fieldseal/localhost` without one).
pub fn origin(cfg: &Config) -> String {
    match (&cfg.log_origin, cfg.server_names.first()) {
        (Some(o), _) => o.clone(),
        (None, Some(n)) => format!("fieldseal/{n}"),
        (None, None) => "fieldseal/localhost".into(),
    }
}

/// The log's verifier key (`docs/FORMAT.md` §6.6): the receipt key, which
/// signs every checkpoint, under the key name [`origin`], as
/// `<origin>+<key id>+<base64(0x01 || key)>`. This is the string to publish
/// so that witnesses and courts can check checkpoints.
///
/// # Errors
/// An origin that is not a valid key name (whitespace, `+`, too long).
pub fn verifier_key(
    cfg: &Config,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<String, CheckpointError> {
    Ok(VerifierKey::new(&origin(cfg), *key)?.to_string())
}

/// The signed notes of `checkpoints.log`, oldest first.
///
/// # Errors
/// I/O errors other than "no file yet".
pub fn checkpoints(dir: &Path) -> io::Result<Vec<String>> {
    let bytes = match std::fs::read(DataDir::new(dir).checkpoints_log()) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // A torn last note (an append a crash cut short) is not part of the log.
    let text = std::str::from_utf8(&bytes[..whole_len(&bytes)])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // Pieces between empty lines alternate: note text, signature lines.
    let pieces: Vec<&str> = text.split("\n\n").filter(|p| !p.is_empty()).collect();
    Ok(pieces
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| format!("{}\n\n{}\n", c[0], c[1].trim_end_matches('\n')))
        .collect())
}

/// The length of the whole notes at the start of `checkpoints.log`: up to
/// the end of the last note followed by its empty line. Each note holds
/// one empty line and is followed by one, so that is the end of every
/// second `\n\n`.
fn whole_len(b: &[u8]) -> usize {
    let (mut seps, mut end, mut i) = (0u64, 0, 0);
    while i + 1 < b.len() {
        if b[i] == b'\n' && b[i + 1] == b'\n' {
            seps += 1;
            i += 2;
            if seps % 2 == 0 {
                end = i;
            }
        } else {
            i += 1;
        }
    }
    end
}

/// The latest checkpoint, verified with the server's key.
///
/// # Errors
/// None stored yet; the latest does not verify.
pub fn latest(
    dir: &Path,
    cfg: &Config,
    key: &SigningKey,
) -> Result<(Checkpoint, String), TlogError> {
    let note = checkpoints(dir)?.pop().ok_or(TlogError::NoCheckpoint)?;
    let cp = Checkpoint::verify(&note, &origin(cfg), &key.verifying_key())
        .map_err(TlogError::LatestUnverified)?;
    Ok((cp, note))
}

/// One checkpoint signer at a time in this process (the timer, the control
/// socket, the shutdown hook): each reads the latest stored checkpoint and
/// appends after it, so two at once could store a smaller tree after a
/// larger one.
static SIGNING: Mutex<()> = Mutex::new(());

/// Sign a checkpoint of the log as it is now and append it to
/// `checkpoints.log` (fsynced). Returns the note.
///
/// # Errors
/// Index or I/O errors; an origin that is not a valid note name; a log that
/// does not extend the latest stored checkpoint (see [`checkpoint_if_grown`]).
pub fn checkpoint(
    dir: &Path,
    db: &Db,
    cfg: &Config,
    key: &SigningKey,
    now_us: i64,
) -> Result<String, TlogError> {
    let _one = SIGNING.lock().unwrap_or_else(PoisonError::into_inner);
    let head = db.log_head()?;
    sign_and_store(dir, db, cfg, key, head, now_us)
}

/// Sign a checkpoint, as [`checkpoint`], only if the log has grown since the
/// latest stored checkpoint (or, without one, if it is not empty): `None`
/// when that one already covers every leaf (no identical repeats from the
/// timer).
///
/// # Errors
/// As [`checkpoint`].
pub fn checkpoint_if_grown(
    dir: &Path,
    db: &Db,
    cfg: &Config,
    key: &SigningKey,
    now_us: i64,
) -> Result<Option<String>, TlogError> {
    let _one = SIGNING.lock().unwrap_or_else(PoisonError::into_inner);
    let head = db.log_head()?;
    let unchanged = match latest_signed(dir, cfg, key)? {
        Some(prev) => prev.size == head.0 && prev.root == head.1,
        // Without a checkpoint yet, only the empty log has not grown.
        None => head.0 == 0,
    };
    if unchanged {
        return Ok(None);
    }
    sign_and_store(dir, db, cfg, key, head, now_us).map(Some)
}

/// The latest stored checkpoint if it verifies with the current origin and
/// key; `None` if there is none, or if it was signed under another origin
/// (`log_origin` changed), which this server can no longer extend anyway.
fn latest_signed(dir: &Path, cfg: &Config, key: &SigningKey) -> io::Result<Option<Checkpoint>> {
    Ok(checkpoints(dir)?
        .pop()
        .and_then(|n| Checkpoint::verify(&n, &origin(cfg), &key.verifying_key()).ok()))
}

fn sign_and_store(
    dir: &Path,
    db: &Db,
    cfg: &Config,
    key: &SigningKey,
    (size, root): (u64, fieldseal_proto::identity::Hash32),
    now_us: i64,
) -> Result<String, TlogError> {
    // A signed checkpoint is a promise that the log will only grow from it:
    // refuse to sign a tree that does not extend the latest one (leaves lost
    // in a crash) rather than publish a fork.
    if let Some(prev) = latest_signed(dir, cfg, key)? {
        let extends = prev.size <= size && db.log_root_at(prev.size).is_ok_and(|r| r == prev.root);
        if !extends {
            return Err(TlogError::DoesNotExtend {
                size,
                latest: prev.size,
            });
        }
    }
    // The leaves are durable in leaves.log before their nodes reach the
    // index (which rebuilds its tree from that file at open); flushing the
    // nodes as well keeps a restart after this checkpoint from having to.
    db.flush()?;
    let origin = origin(cfg);
    let cp = Checkpoint {
        origin: origin.clone(),
        size,
        root,
        time_unix: u64::try_from(now_us.max(0) / 1_000_000).expect("non-negative"),
    };
    let note = cp.sign(&origin, key)?;
    let mut f = crate::fsutil::private()
        .create(true)
        .read(true)
        .append(true)
        .open(DataDir::new(dir).checkpoints_log())?;
    // A note torn by a crash mid-append never verified for anyone: cut it
    // off, or the next note would be glued to it and both be lost.
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    let whole = whole_len(&bytes);
    if whole < bytes.len() {
        tracing::warn!(
            bytes = bytes.len() - whole,
            "cutting a torn note off the end of checkpoints.log"
        );
        f.set_len(u64::try_from(whole).expect("fits"))?;
        f.sync_data()?;
    }
    f.write_all(format!("{note}\n").as_bytes())?;
    f.sync_data()?;
    Ok(note)
}

/// An inclusion proof of one entry's leaf, with what is needed to check it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InclusionOut {
    /// Device id.
    pub device: String,
    /// The entry's seq.
    pub seq: u64,
    /// The stored receipt (hex, `docs/FORMAT.md` §7.6): it gives the leaf's
    /// fields and its index.
    pub receipt: String,
    /// The leaf data (§6.8), hex.
    pub leaf: String,
    /// Its leaf hash (§6.1), hex.
    pub leaf_hash: String,
    /// Leaf index.
    pub leaf_index: u64,
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// The audit path, hex, the leaf's sibling first.
    pub proof: Vec<String>,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: String,
}

/// Prove that the entry `seq` of `device` is in the log of the latest
/// checkpoint.
///
/// # Errors
/// No such entry, no checkpoint, a checkpoint that does not cover it yet,
/// index errors.
pub fn prove(
    dir: &Path,
    db: &Db,
    cfg: &Config,
    key: &SigningKey,
    device: DeviceId,
    seq: u64,
) -> Result<InclusionOut, TlogError> {
    let a = db
        .entry(device, seq)?
        .ok_or(TlogError::NoEntry { device, seq })?;
    let r = Receipt::from_bytes(&a.receipt)?;
    let (cp, note) = latest(dir, cfg, key)?;
    if r.log_index >= cp.size {
        return Err(TlogError::NotCovered {
            index: r.log_index,
            size: cp.size,
        });
    }
    let leaf = Leaf::Entry {
        device,
        seq,
        entry_hash: r.entry_hash,
        server_time_us: r.server_time_us,
    };
    let proof = db.log_inclusion(r.log_index, cp.size)?;
    Ok(InclusionOut {
        device: device.to_string(),
        seq,
        receipt: hex::encode(&a.receipt),
        leaf: hex::encode(fieldseal_proto::codec::Encode::to_bytes(&leaf)),
        leaf_hash: hex::encode(leaf.hash()),
        leaf_index: r.log_index,
        tree_size: cp.size,
        proof: proof.iter().map(hex::encode).collect(),
        checkpoint: note,
    })
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsistencyOut {
    /// The earlier size.
    pub old_size: u64,
    /// Its root, hex.
    pub old_root: String,
    /// The later size: the latest checkpoint's.
    pub new_size: u64,
    /// Its root, hex.
    pub new_root: String,
    /// The proof hashes, hex (§6.3).
    pub proof: Vec<String>,
    /// The signed checkpoint of `new_size`.
    pub checkpoint: String,
}

/// Prove that the log of the latest checkpoint extends its first `from`
/// leaves.
///
/// # Errors
/// No checkpoint; `from` beyond it; index errors.
pub fn consistency(
    dir: &Path,
    db: &Db,
    cfg: &Config,
    key: &SigningKey,
    from: u64,
) -> Result<ConsistencyOut, TlogError> {
    let (cp, note) = latest(dir, cfg, key)?;
    if from > cp.size {
        return Err(TlogError::Beyond {
            from,
            size: cp.size,
        });
    }
    let proof = db.log_consistency(from, cp.size)?;
    Ok(ConsistencyOut {
        old_size: from,
        old_root: hex::encode(db.log_root_at(from)?),
        new_size: cp.size,
        new_root: hex::encode(cp.root),
        proof: proof.iter().map(hex::encode).collect(),
        checkpoint: note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldseal_proto::checkpoint::sign_note;

    #[test]
    fn a_torn_last_note_is_ignored_and_cut_off_by_the_next_append() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        crate::admin::init(dir, &[], Some("pw".into())).unwrap();
        let cfg = Config::load(dir).unwrap();
        let key = crate::admin::load_receipt_key(dir).unwrap();
        let db = Db::open(dir).unwrap();
        let first = checkpoint(dir, &db, &cfg, &key, 1_000_000).unwrap();
        let second = checkpoint(dir, &db, &cfg, &key, 2_000_000).unwrap();
        let path = DataDir::new(dir).checkpoints_log();
        let whole = std::fs::read(&path).unwrap();
        let first_len = first.len() + 1;
        assert_eq!(whole.len(), first_len + second.len() + 1);
        // Every cut inside the second note, even inside the em dash of its
        // signature line, leaves the first alone readable.
        for cut in first_len..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert_eq!(
                checkpoints(dir).unwrap(),
                vec![first.clone()],
                "cut at {cut}"
            );
        }
        let third = checkpoint(dir, &db, &cfg, &key, 3_000_000).unwrap();
        assert_eq!(
            checkpoints(dir).unwrap(),
            vec![first.clone(), third.clone()]
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{first}\n{third}\n")
        );
        Checkpoint::verify(&third, &origin(&cfg), &key.verifying_key()).unwrap();
    }

    #[test]
    fn checkpoints_log_reads_back_notes_with_cosignatures() {
        let tmp = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[1; 32]);
        let witness = SigningKey::from_bytes(&[2; 32]);
        let cp = |size: u8| Checkpoint {
            origin: "fieldseal/test".into(),
            size: u64::from(size),
            root: [size; 32],
            time_unix: 1,
        };
        let one = cp(1).sign("fieldseal/test", &key).unwrap();
        // A witness's cosignature is one more signature line.
        let two = cp(2).sign("fieldseal/test", &key).unwrap();
        let cosig = sign_note(&cp(2).body().unwrap(), "witness", &witness).unwrap();
        let two = format!("{two}{}", cosig.lines().last().unwrap());
        let two = format!("{two}\n");
        std::fs::write(
            DataDir::new(tmp.path()).checkpoints_log(),
            format!("{one}\n{two}\n"),
        )
        .unwrap();
        let got = checkpoints(tmp.path()).unwrap();
        assert_eq!(got, vec![one, two.clone()]);
        let v = Checkpoint::verify(&got[1], "fieldseal/test", &key.verifying_key()).unwrap();
        assert_eq!(v.size, 2);
        assert_eq!(
            got[1].lines().filter(|l| l.starts_with('\u{2014}')).count(),
            2
        );
    }
}
