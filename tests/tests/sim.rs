//! Protocol scenarios on the simulated pair (`fieldseal_tests::sim`): the
//! real sync machine against the real ingest decisions, virtual time, a
//! seeded faulty wire. Each scenario replays from its seed: a failure
//! prints `FIELDSEAL_SEED=…`; set it to run only that seed.
//! `FIELDSEAL_SIM_STEPS` sets the total of the seeded random runs
//! (`make test`: 120,000; `make soak`: more).

use fieldseal_proto::codec::Encode;
use fieldseal_proto::entry::{Body, Clock, Event};
use fieldseal_proto::msg::Message;
use fieldseal_proto::msg::{EntryBytes, SubmitEntry};
use fieldseal_tests::sim::wire::{Body as WireBody, Faults, Packet, Stream, To};
use fieldseal_tests::sim::{Config, Pair};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn seeded_random_faults_lose_nothing() {
    let total = env_u64("FIELDSEAL_SIM_STEPS").unwrap_or(120_000);
    let seeds: Vec<u64> = match env_u64("FIELDSEAL_SEED") {
        Some(s) => vec![s],
        None => (1..=10_000u64).map(|i| 0x5eed_0000 + i).collect(),
    };
    let mut steps = 0;
    let mut runs = 0;
    let mut restarts = 0;
    let mut lost = 0;
    let mut replayed = 0;
    for seed in seeds {
        if steps >= total && env_u64("FIELDSEAL_SEED").is_none() {
            break;
        }
        let mut pair = Pair::new(Config::rough(seed));
        let r = pair.run().unwrap_or_else(|e| panic!("{e}"));
        steps += r.steps;
        runs += 1;
        restarts += r.restarts;
        lost += r.packets.1;
        replayed += r.packets.2;
        assert!(
            r.entries > 0 && r.segments > 0,
            "the scenario records something"
        );
    }
    eprintln!("sim: {runs} seeded runs, {steps} steps, {restarts} server restarts, {lost} packets lost, {replayed} replayed");
    assert!(steps >= total || env_u64("FIELDSEAL_SEED").is_some());
    assert!(
        restarts > 0 && lost > 0 && replayed > 0,
        "the faults happened"
    );
}

#[test]
fn a_perfect_network_drains_without_a_reconnect() {
    let mut pair = Pair::new(Config::calm(7));
    let r = pair.run().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.connections, 1, "one connection serves the whole chain");
    assert_eq!(r.packets.1, 0);
}

#[test]
fn an_upload_cut_at_every_byte_offset_resumes_there() {
    let len = 97u64;
    for k in 0..=len {
        let mut cfg = Config::calm(k);
        cfg.recordings = vec![1];
        cfg.media_len = usize::try_from(len).expect("small");
        let mut pair = Pair::new(cfg);
        for a in &mut pair.agents {
            a.chunk = 10; // several data packets per upload
        }
        pair.cut_upload_after = Some(k);
        let r = pair.run().unwrap_or_else(|e| panic!("cut at {k}: {e}"));
        assert!(r.connections >= 2, "cut at {k}: the connection was cut");
        // The first offset is 0; the one after the cut is where the bytes
        // stopped (the server syncs what arrived when a connection is lost),
        // or the whole segment when every byte had arrived.
        let offsets: Vec<u64> = pair.offsets.iter().map(|o| o.2).collect();
        assert_eq!(offsets.first(), Some(&0), "cut at {k}: {offsets:?}");
        assert_eq!(
            offsets.get(1),
            Some(&k),
            "cut at {k}: resumed from {offsets:?}"
        );
    }
}

#[test]
fn a_server_restart_at_any_step_loses_nothing() {
    // A short calm run, restarted once at each of its first steps in turn.
    let mut cfg = Config::calm(11);
    cfg.recordings = vec![2, 1];
    cfg.media_len = 3000;
    let base = Pair::new(cfg.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"))
        .steps;
    for at in 0..base {
        let mut pair = Pair::new(cfg.clone());
        while pair.steps < at {
            assert!(pair.step().unwrap_or_else(|e| panic!("{e}")));
        }
        pair.restart_server();
        let r = pair
            .run()
            .unwrap_or_else(|e| panic!("restart at step {at}: {e}"));
        assert_eq!(r.restarts, 1);
    }
}

#[test]
fn receipts_lost_on_the_way_are_answered_again_with_one_leaf() {
    // Every receipt on the first connection is lost: the connection breaks
    // after each commit; the device resubmits and gets the stored receipt.
    let mut cfg = Config::calm(3);
    cfg.faults = Faults {
        lose: 300,
        ..Faults::none()
    };
    let mut pair = Pair::new(cfg);
    let r = pair.run().unwrap_or_else(|e| panic!("{e}"));
    assert!(r.packets.1 > 0 && r.connections > 1, "{r:?}");
    // `check_final` proved one leaf per entry and byte-identical chains.
}

#[test]
fn equivocation_is_refused_and_kept_as_evidence() {
    let mut pair = Pair::new(Config::calm(5));
    pair.run().unwrap_or_else(|e| panic!("{e}"));
    let a = &pair.agents[0];
    let device = a.device;
    let conn = a.conn.expect("connected");
    let head = pair.server.head(device);
    // The device key signs a different entry 2 (a stolen key or a bug).
    let forged = {
        use fieldseal_proto::codec::Decode;
        let e1 = fieldseal_proto::entry::SignedEntry::from_bytes(&a.store.entries[1]).expect("ok");
        let mut h = fieldseal_proto::entry::ChainHead::after(&e1);
        h.append(
            &a.key,
            Clock {
                wall_us: 1,
                mono_us: 1,
                boot: 9,
            },
            None,
            Body::Event(Event::AgentStarted {
                software: "forged".into(),
            }),
        )
        .expect("valid")
    };
    assert_eq!(forged.seq(), 2);
    let now = pair.now;
    pair.wire.deliver(
        now,
        1,
        Packet {
            conn,
            stream: Stream::Control,
            to: To::Server,
            body: WireBody::Msg(Message::SubmitEntry(SubmitEntry {
                entry: EntryBytes::new(forged.to_bytes()).expect("fits"),
            })),
        },
    );
    let mut rejected = None;
    for _ in 0..100 {
        pair.step().unwrap_or_else(|e| panic!("{e}"));
        if let Some(a) = pair.agents.first() {
            if a.fatal.is_some() {
                rejected = a.fatal.clone();
                break;
            }
        }
    }
    // The honest device gets the rejection (the answer goes to its
    // connection) and stops: a human must look.
    let why = rejected.expect("the device saw the refusal");
    assert!(why.contains("Equivocation"), "{why}");
    assert_eq!(pair.server.equivocations[&device], vec![forged.to_bytes()]);
    assert_eq!(pair.server.head(device), head, "the chain is unchanged");
    let chain = &pair.server.chain_logs[&device];
    assert_eq!(chain, &pair.agents[0].store.entries);
}

#[test]
fn tampered_media_is_refused_and_never_released() {
    let mut cfg = Config::calm(9);
    cfg.recordings = vec![3];
    let mut pair = Pair::new(cfg);
    // Segment 2's file is damaged on the device before it is read back.
    let seq = 2;
    pair.agents[0]
        .pending_media_mut(seq)
        .expect("entry 2 is a segment")[10] ^= 1;
    pair.heal();
    for _ in 0..20_000 {
        if pair.agents[0].machine.failed_uploads().contains(&seq) && pair.agents[0].is_drained() {
            break;
        }
        pair.step().unwrap_or_else(|e| panic!("{e}"));
    }
    let a = &pair.agents[0];
    assert!(
        a.machine.failed_uploads().contains(&seq),
        "the server refused the bytes"
    );
    assert!(!a.store.acked.contains(&seq), "the device keeps them");
    assert!(a.store.media.contains_key(&seq));
    let (hash, _) = a.store.signed_media[&seq];
    assert!(!pair.server.holds_media(a.device, seq, &hash));
    // Every other segment went through.
    for (s, (h, _)) in &a.store.signed_media {
        if *s != seq {
            assert!(pair.server.holds_media(a.device, *s, h), "segment {s}");
        }
    }
}

#[test]
fn a_device_revoked_mid_upload_is_cut_off_and_keeps_its_media() {
    let mut cfg = Config::calm(13);
    cfg.recordings = vec![4];
    cfg.media_len = 40_000;
    let mut pair = Pair::new(cfg);
    for a in &mut pair.agents {
        a.chunk = 1000;
    }
    // Run until an upload is under way, then revoke.
    let device = pair.agents[0].device;
    for _ in 0..10_000 {
        pair.step().unwrap_or_else(|e| panic!("{e}"));
        if pair.offsets.iter().any(|o| o.0 == device) {
            break;
        }
    }
    assert!(!pair.offsets.is_empty(), "an upload started");
    let held_before: Vec<u64> = pair.agents[0].store.acked.iter().copied().collect();
    let replies = pair.server.revoke(device);
    assert_eq!(replies.len(), 1, "the live connection is closed");
    let conn = replies[0].0;
    pair.break_conn(conn, 1);
    let next_before = pair.server.head(device).next_seq;
    for _ in 0..5_000 {
        if pair.step().unwrap_or_else(|e| panic!("{e}")) {
            continue;
        }
        break;
    }
    let a = &pair.agents[0];
    assert!(a.conn.is_none() || a.conn != Some(conn));
    assert_eq!(
        pair.server.head(device).next_seq,
        next_before,
        "nothing accepted after revocation"
    );
    // Whatever was not acknowledged is still on the device.
    for seq in a.store.signed_media.keys() {
        assert!(
            a.store.acked.contains(seq) || a.store.media.contains_key(seq),
            "segment {seq}"
        );
    }
    for seq in held_before {
        assert!(a.store.acked.contains(&seq));
    }
}

#[test]
fn replayed_entries_and_uploads_change_nothing() {
    // A drained device; then every entry and a whole upload are replayed on
    // its connection, as a peer that recorded the traffic would.
    let mut cfg = Config::calm(17);
    cfg.recordings = vec![2];
    let mut pair = Pair::new(cfg);
    pair.run().unwrap_or_else(|e| panic!("{e}"));
    let leaves = pair.server.leaves.len();
    let chain = pair.server.chain_logs[&pair.agents[0].device].clone();
    let conn = pair.agents[0].conn.expect("connected");
    let entries = pair.agents[0].store.entries.clone();
    let (seq, (hash, len)) = pair.agents[0]
        .store
        .signed_media
        .iter()
        .next()
        .map(|(s, m)| (*s, *m))
        .expect("a segment");
    let now = pair.now;
    for (i, e) in entries.iter().enumerate() {
        pair.wire.deliver(
            now,
            1 + i as u64,
            Packet {
                conn,
                stream: Stream::Control,
                to: To::Server,
                body: WireBody::Msg(Message::SubmitEntry(SubmitEntry {
                    entry: EntryBytes::new(e.clone()).expect("fits"),
                })),
            },
        );
    }
    let query = fieldseal_proto::msg::UploadQuery {
        seq,
        media_hash: hash,
        media_len: len,
    };
    pair.wire.deliver(
        now,
        1,
        Packet {
            conn,
            stream: Stream::Upload(1 << 40),
            to: To::Server,
            body: WireBody::Msg(Message::UploadQuery(query)),
        },
    );
    for _ in 0..200 {
        if !pair.step().unwrap_or_else(|e| panic!("{e}")) {
            break;
        }
    }
    // Stored receipts come back (the device takes the extra answers as a
    // broken server and reconnects), the upload is answered as complete,
    // and nothing new is logged, chained or stored.
    assert!(
        pair.offsets.iter().any(|o| o.1 == seq && o.2 == len),
        "the replayed query was answered with the whole length: {:?}",
        pair.offsets
    );
    assert_eq!(pair.server.leaves.len(), leaves, "no second leaf");
    assert_eq!(pair.server.chain_logs[&pair.agents[0].device], chain);
    pair.heal();
    for _ in 0..20_000 {
        if pair.all_drained() {
            break;
        }
        pair.step().unwrap_or_else(|e| panic!("{e}"));
    }
    pair.check_final().unwrap_or_else(|e| panic!("{e}"));
}
