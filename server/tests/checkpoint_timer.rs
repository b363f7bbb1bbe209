//! Checkpoints signed on a timer (`checkpoint_interval_secs`): a new one
//! appears once the log grows, covers the new leaves and verifies with
//! `fieldseal-proto` alone; an idle log gets none; a clean shutdown signs the
//! last leaves.

use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use fieldseal_proto::checkpoint::Checkpoint;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{verify_consistency, verify_inclusion};
use fieldseal_proto::msg::Message;
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sample;
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::datadir::DataDir;
use fieldseal_server::db::DeviceRecord;
use fieldseal_server::{quic, tlog, RunOptions, Running};

const ORIGIN: &str = "fieldseal/localhost";

fn set_interval(dir: &Path, secs: u64) {
    let cfg = std::fs::read_to_string(DataDir::new(dir).config()).unwrap();
    let cfg = cfg.replace(
        "checkpoint_interval_secs = 300\n",
        &format!("checkpoint_interval_secs = {secs}\n"),
    );
    assert!(cfg.contains(&format!("checkpoint_interval_secs = {secs}\n")));
    std::fs::write(DataDir::new(dir).config(), cfg).unwrap();
}

async fn server(dir: &Path) -> Running {
    fieldseal_server::start(
        dir,
        RunOptions {
            quic: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .unwrap()
}

fn enrol(r: &Running, key: &SigningKey) {
    r.shared
        .db
        .put_device(&DeviceRecord {
            id: DeviceId::from_key(&key.verifying_key()),
            name: "cam1".into(),
            key: key.verifying_key(),
            enrolled_us: 0,
            revoked_us: None,
        })
        .unwrap();
}

fn submit(r: &Running, key: &SigningKey, e: &fieldseal_proto::entry::SignedEntry) -> Receipt {
    match quic::submit_blocking(&r.shared, key.verifying_key(), &e.to_bytes()) {
        Message::EntryReceipt(rc) => rc,
        m => panic!("not accepted: {m:?}"),
    }
}

fn stored(dir: &Path, r: &Running) -> Vec<Checkpoint> {
    let key = r.shared.receipt_key.verifying_key();
    tlog::checkpoints(dir)
        .unwrap()
        .iter()
        .map(|n| Checkpoint::verify(n, ORIGIN, &key).expect("stored checkpoint verifies"))
        .collect()
}

/// Wait until the latest stored checkpoint is of `size` leaves (the timer is
/// 1 s; the bound only keeps a broken timer from hanging the test). The
/// sizes stored must grow strictly: the timer never repeats a checkpoint.
async fn wait_for_size(dir: &Path, r: &Running, size: u64) -> Vec<Checkpoint> {
    let t0 = Instant::now();
    loop {
        let cps = stored(dir, r);
        for w in cps.windows(2) {
            assert!(w[0].size < w[1].size, "{cps:?}");
        }
        if cps.last().is_some_and(|c| c.size == size) {
            return cps;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no checkpoint of size {size} from the timer: {cps:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_included(rc: &Receipt, cp: &Checkpoint, r: &Running) {
    let leaf = Leaf::Entry {
        device: rc.device_id,
        seq: rc.seq,
        entry_hash: rc.entry_hash,
        server_time_us: rc.server_time_us,
    };
    assert!(rc.log_index < cp.size, "leaf {} not covered", rc.log_index);
    let proof = r.shared.db.log_inclusion(rc.log_index, cp.size).unwrap();
    verify_inclusion(&leaf.hash(), rc.log_index, cp.size, &proof, &cp.root)
        .expect("the leaf is in the checkpoint's tree");
}

// Virtual time: the waits of seconds below pass at once, and the timer
// fires when the runtime is idle, as it would after that long.
#[tokio::test(start_paused = true)]
async fn timer_signs_a_checkpoint_only_when_the_log_grew() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("pw".into())).unwrap();
    set_interval(&dir, 1);
    let key = SigningKey::from_bytes(&[9; 32]);
    let chain = sample::build(&key, &[2, 2], 1000);
    let n = chain.entries.len();
    assert!(n >= 6, "{n}");
    let r = server(&dir).await;
    enrol(&r, &key);

    // An empty log: nothing to sign, however long we wait.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(stored(&dir, &r).is_empty(), "an empty log was checkpointed");

    let first: Vec<Receipt> = chain.entries[..3]
        .iter()
        .map(|e| submit(&r, &key, e))
        .collect();
    let cps = wait_for_size(&dir, &r, 3).await;
    let cp3 = cps.last().unwrap().clone();
    assert_eq!(cp3.root, r.shared.db.log_root_at(3).unwrap());
    for rc in &first {
        assert_included(rc, &cp3, &r);
    }

    // No growth, no repeat.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stored(&dir, &r), cps, "a checkpoint without growth");

    let second: Vec<Receipt> = chain.entries[3..n - 1]
        .iter()
        .map(|e| submit(&r, &key, e))
        .collect();
    let size = (n - 1) as u64;
    let cps = wait_for_size(&dir, &r, size).await;
    let latest = cps.last().unwrap();
    for rc in first.iter().chain(&second) {
        assert_included(rc, latest, &r);
    }
    let proof = r.shared.db.log_consistency(3, size).unwrap();
    verify_consistency(3, size, &cp3.root, &latest.root, &proof).unwrap();

    // One more entry, then a clean shutdown at once: the shutdown signs it
    // unless a tick came first; either way exactly one checkpoint more, and
    // it covers the entry.
    let last = submit(&r, &key, &chain.entries[n - 1]);
    let receipt_key = r.shared.receipt_key.verifying_key();
    r.shutdown().await;
    let notes = tlog::checkpoints(&dir).unwrap();
    assert_eq!(notes.len(), cps.len() + 1, "{notes:?}");
    let cp = Checkpoint::verify(notes.last().unwrap(), ORIGIN, &receipt_key).unwrap();
    assert_eq!(cp.size, n as u64);
    assert!(last.log_index < cp.size);
}

// Virtual time: the waits of seconds below pass at once, and the timer
// fires when the runtime is idle, as it would after that long.
#[tokio::test(start_paused = true)]
async fn interval_zero_signs_nothing_and_a_clean_shutdown_of_an_unchanged_log_adds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("pw".into())).unwrap();
    set_interval(&dir, 0);
    let key = SigningKey::from_bytes(&[10; 32]);
    let chain = sample::build(&key, &[2], 1000);
    let r = server(&dir).await;
    enrol(&r, &key);
    for e in &chain.entries {
        submit(&r, &key, e);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(tlog::checkpoints(&dir).unwrap().is_empty());
    r.shutdown().await;
    assert!(
        tlog::checkpoints(&dir).unwrap().is_empty(),
        "interval 0 signed at shutdown"
    );

    // With the timer on, a log already under the latest checkpoint gets no
    // new one at shutdown.
    set_interval_from(&dir, 0, 300);
    let r = server(&dir).await;
    let note = tlog::checkpoint(
        &dir,
        &r.shared.db,
        &r.shared.cfg,
        &r.shared.receipt_key,
        fieldseal_server::now_us(),
    )
    .unwrap();
    r.shutdown().await;
    assert_eq!(tlog::checkpoints(&dir).unwrap(), vec![note]);
}

fn set_interval_from(dir: &Path, from: u64, to: u64) {
    let cfg = std::fs::read_to_string(DataDir::new(dir).config()).unwrap();
    let old = format!("checkpoint_interval_secs = {from}\n");
    assert!(cfg.contains(&old));
    let cfg = cfg.replace(&old, &format!("checkpoint_interval_secs = {to}\n"));
    std::fs::write(DataDir::new(dir).config(), cfg).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_lost_leaves_is_not_signed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("pw".into())).unwrap();
    let key = SigningKey::from_bytes(&[11; 32]);
    let chain = sample::build(&key, &[2], 1000);
    let r = server(&dir).await;
    enrol(&r, &key);
    for e in &chain.entries {
        submit(&r, &key, e);
    }
    let sign = |r: &Running| {
        tlog::checkpoint(
            &dir,
            &r.shared.db,
            &r.shared.cfg,
            &r.shared.receipt_key,
            fieldseal_server::now_us(),
        )
    };
    sign(&r).unwrap();
    // A checkpoint of a larger tree than the log holds (as if leaves it
    // covered were lost): the server must not sign a smaller tree after it.
    let (size, _) = r.shared.db.log_head().unwrap();
    let forged = Checkpoint {
        origin: ORIGIN.into(),
        size: size + 5,
        root: [7; 32],
        time_unix: 1,
    }
    .sign(ORIGIN, &r.shared.receipt_key)
    .unwrap();
    let mut text = std::fs::read_to_string(DataDir::new(&dir).checkpoints_log()).unwrap();
    text.push_str(&forged);
    text.push('\n');
    std::fs::write(DataDir::new(&dir).checkpoints_log(), text).unwrap();
    let err = sign(&r).unwrap_err().to_string();
    assert!(err.contains("does not extend"), "{err}");
    let err = tlog::checkpoint_if_grown(
        &dir,
        &r.shared.db,
        &r.shared.cfg,
        &r.shared.receipt_key,
        fieldseal_server::now_us(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not extend"), "{err}");
    assert_eq!(tlog::checkpoints(&dir).unwrap().len(), 2);
    r.shutdown().await;
}
