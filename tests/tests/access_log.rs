//! The access log checked the way an outside witness would: with nothing
//! but the published verifier key, the public HTTP endpoints and
//! `fieldseal-proto`'s own verification code (what `fieldseal-verify` uses).
//!
//! While devices sync (entry leaves), people log in, fail to, are refused
//! and read evidence (custody leaves) over the real HTTP listener. Then the
//! witness pages through `GET /api/audit`: every custody leaf's inclusion
//! proof must verify against a checkpoint whose signature verifies, every
//! later checkpoint must be consistent with every earlier one it saw (the
//! public consistency endpoint), and the leaves must be exactly the events
//! that happened, in order, each counted once.
//!
//! `FIELDSEAL_AUDIT_ROUNDS` sets the number of rounds (default 40; the soak
//! runs thousands).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use fieldseal_proto::checkpoint::{Checkpoint, VerifierKey};
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle;
use fieldseal_server::ingest::submit_blocking;
use fieldseal_tests::http::{login, request};
use fieldseal_tests::{Harness, ADMIN_PASSWORD};
use serde_json::{json, Value};

fn rounds() -> usize {
    std::env::var("FIELDSEAL_AUDIT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn hex32(v: &Value) -> Hash32 {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let a = request(addr, method, path, token, body.as_deref()).unwrap();
    let v = if a.body.is_empty()
        || a.header("content-type")
            .is_some_and(|c| !c.contains("json"))
    {
        Value::Null
    } else {
        a.json()
    };
    (a.status, v)
}

/// What the witness holds: the checkpoints it has seen, by size.
struct Witness {
    key: VerifierKey,
    http: SocketAddr,
    seen: BTreeMap<u64, Checkpoint>,
}

impl Witness {
    /// Verify a signed note and that it is consistent with every checkpoint
    /// seen before (proof fetched from the public endpoint).
    fn accept(&mut self, note: &str) -> Checkpoint {
        let cp = self
            .key
            .verify_checkpoint(note)
            .expect("checkpoint signature");
        let sizes: Vec<u64> = self.seen.keys().copied().collect();
        for old in sizes {
            let before = &self.seen[&old];
            if old > cp.size {
                continue;
            }
            let (st, v) = call(
                self.http,
                "GET",
                &format!("/api/log/proof/consistency?from={old}"),
                None,
                None,
            );
            assert_eq!(st, 200, "{v}");
            let latest = self
                .key
                .verify_checkpoint(v["checkpoint"].as_str().unwrap())
                .unwrap();
            let proof: Vec<Hash32> = v["proof"].as_array().unwrap().iter().map(hex32).collect();
            merkle::verify_consistency(old, latest.size, &before.root, &latest.root, &proof)
                .unwrap_or_else(|e| panic!("{old} → {}: {e}", latest.size));
            if latest.size == cp.size {
                assert_eq!(latest.root, cp.root, "two roots for one size");
            }
        }
        self.seen.insert(cp.size, cp.clone());
        cp
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_verifies_for_an_outside_witness() {
    let h = Harness::start().await.unwrap();
    let http = h.server.http_addr;
    let shared = h.server.shared.clone();
    // The published verifier key is all the witness takes from the server.
    let published = VerifierKey::new(
        &fieldseal_server::tlog::origin(&shared.cfg),
        shared.receipt_key.verifying_key(),
    )
    .unwrap()
    .to_string();
    let key: VerifierKey = published.parse().unwrap();

    // A device whose chain grows in the background: entry leaves interleave
    // with the custody leaves.
    let dev = fieldseal_tests::key(9);
    h.enroll(&dev).await.unwrap();
    let chain = fieldseal_proto::sample::build(&dev, &[20, 20, 20], 1024);
    let ingest = {
        let shared = shared.clone();
        let entries: Vec<Vec<u8>> = chain.entries.iter().map(|e| e.to_bytes()).collect();
        let key = dev.verifying_key();
        std::thread::spawn(move || {
            for bytes in entries {
                submit_blocking(&shared, key, &bytes);
                std::thread::sleep(std::time::Duration::from_millis(40));
            }
        })
    };

    let admin = tokio::task::block_in_place(|| login(http, "admin", ADMIN_PASSWORD));
    let (st, _) = tokio::task::block_in_place(|| {
        call(
            http,
            "POST",
            "/api/users",
            Some(&admin),
            Some(
                json!({"user": "keeper", "role": "custodian", "password": "correct horse battery"}),
            ),
        )
    });
    assert_eq!(st, 201);
    // What must be in the log, in order: (action, actor).
    let mut want: Vec<(String, String)> = vec![
        ("login".into(), "admin".into()),
        ("account".into(), "admin".into()),
    ];
    let n = rounds();
    let device = chain.entries[0].entry.device;
    tokio::task::block_in_place(|| {
        let mut t = String::new();
        for i in 0..n {
            // A login every tenth round (argon2 is slow on purpose).
            if i % 10 == 0 {
                if !t.is_empty() {
                    assert_eq!(call(http, "POST", "/api/logout", Some(&t), None).0, 204);
                }
                t = login(http, "keeper", "correct horse battery");
                want.push(("login".into(), "keeper".into()));
            }
            // A custodian may not manage users: refused, and logged.
            assert_eq!(call(http, "GET", "/api/users", Some(&t), None).0, 403);
            want.push(("denied".into(), "keeper".into()));
            // Reading the evidence is logged (once the entry has arrived).
            let seq = 2 + (i as u64 % 10);
            let (st, v) = call(
                http,
                "GET",
                &format!("/api/devices/{device}/entries/{seq}"),
                Some(&t),
                None,
            );
            if st == 200 {
                want.push(("view".into(), "keeper".into()));
            } else {
                assert_eq!(st, 404, "{v}");
            }
        }
    });

    // The witness pages through the whole access log.
    let mut w = Witness {
        key,
        http,
        seen: BTreeMap::new(),
    };
    let mut got: Vec<(String, String)> = Vec::new();
    let mut from = 0u64;
    let mut last_index = None;
    let mut proofs = 0usize;
    loop {
        let (st, page) = tokio::task::block_in_place(|| {
            call(
                http,
                "GET",
                &format!("/api/audit?from={from}&limit=37"),
                Some(&admin),
                None,
            )
        });
        assert_eq!(st, 200, "{page}");
        let cp = w.accept(page["checkpoint"].as_str().unwrap());
        let leaves = page["leaves"].as_array().unwrap();
        for l in leaves {
            let index = l["index"].as_u64().unwrap();
            assert!(last_index.is_none_or(|p| index > p), "leaves in log order");
            last_index = Some(index);
            let data = hex::decode(l["leaf"].as_str().unwrap()).unwrap();
            let Leaf::Custody { action, actor, .. } = Leaf::from_bytes(&data).unwrap() else {
                panic!("an entry leaf in the access log")
            };
            assert_eq!(
                l["actor"],
                actor.as_str(),
                "the JSON says what the leaf says"
            );
            let proof: Vec<Hash32> = l["proof"].as_array().unwrap().iter().map(hex32).collect();
            merkle::verify_inclusion(&merkle::leaf_hash(&data), index, cp.size, &proof, &cp.root)
                .unwrap_or_else(|e| panic!("leaf {index}: {e}"));
            proofs += 1;
            let name = serde_json::to_value(action).unwrap();
            got.push((name.as_str().unwrap().to_owned(), actor));
        }
        match page["next_from"].as_u64() {
            Some(next) if !leaves.is_empty() => {
                from = next;
                // Let the device's chain grow meanwhile: the next page comes
                // with a later checkpoint, which must extend this one.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            _ => break,
        }
    }
    // Exactly the events above, in order: nothing lost, nothing twice, and
    // the witness's own reads of the log not in it.
    assert_eq!(got, want);
    ingest.join().unwrap();
    eprintln!(
        "{} custody leaves proved against {} checkpoints (log of {} leaves), {} rounds",
        proofs,
        w.seen.len(),
        w.seen.keys().max().unwrap(),
        n
    );
    assert!(
        w.seen.len() >= 2,
        "the log grew between pages: consistency was checked"
    );
    h.server.shutdown().await;
}
