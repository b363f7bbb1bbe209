use super::*;

use std::io::Write;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::sha256;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::sample::{self, SampleChain};

const T: i64 = 1_782_896_400_000_000; // 2026-07-01T09:00:00Z
const N: u64 = 183;

fn activity(case: &str, end_us: i64, decided: bool) -> ActivityRef {
    ActivityRef {
        case: case.into(),
        activity: "a1".into(),
        start_us: end_us - 3_600_000_000,
        end_us,
        officers: vec!["CJ-001".into()],
        decided,
        tagged: std::collections::HashSet::new(),
        linked: Vec::new(),
    }
}

fn facts(acts: &[ActivityRef], hold: Option<u64>) -> SegmentFacts<'_> {
    SegmentFacts {
        receipt_us: T,
        activities: acts.iter().collect(),
        hold,
    }
}

fn days(n: i64) -> i64 {
    n * DAY_US
}

#[test]
fn unlinked_media_expires_after_n_days_and_not_before() {
    let f = facts(&[], None);
    let until = T + days(183);
    assert_eq!(
        decide(&f, N, 8 * 3600, until - 1),
        Decision::Keep(Keep::Until(until)),
        "one µs before the boundary"
    );
    assert_eq!(
        decide(&f, N, 8 * 3600, until),
        Decision::Expire("unlinked, ended 2026-07-01, 183 days".into()),
        "exactly N days after its end"
    );
    assert!(matches!(
        decide(&f, N, 8 * 3600, until + days(400)),
        Decision::Expire(_)
    ));
    assert_eq!(
        decide(&f, N, 8 * 3600, T + days(10)),
        Decision::Keep(Keep::Until(until))
    );
}

#[test]
fn linked_media_counts_from_the_latest_activity_end() {
    let acts = [
        activity("C-1", T + days(1), false),
        activity("C-2", T + days(30), false),
    ];
    let f = facts(&acts, None);
    let until = T + days(30) + days(183);
    assert_eq!(
        decide(&f, N, 0, until - 1),
        Decision::Keep(Keep::Until(until))
    );
    assert_eq!(
        decide(&f, N, 0, until),
        Decision::Expire("activity C-2/a1, ended 2026-07-31, 183 days".into())
    );
}

#[test]
fn a_decided_case_keeps_its_media_for_good() {
    let acts = [activity("C-1", T, false), activity("C-9", T, true)];
    let f = facts(&acts, None);
    assert_eq!(
        decide(&f, N, 0, T + days(100 * 365)),
        Decision::Keep(Keep::Decided("C-9".into()))
    );
}

#[test]
fn a_hold_keeps_and_a_released_hold_no_longer_does() {
    let d = DeviceId([5; 8]);
    let mut h = Hold {
        id: 7,
        case: None,
        device: d.to_string(),
        first_seq: 10,
        last_seq: 20,
        reason: "court order".into(),
        by: "cus".into(),
        at_us: T,
        leaf: 1,
        released: None,
    };
    assert!(h.keeps(d, 10) && h.keeps(d, 20));
    assert!(!h.keeps(d, 9) && !h.keeps(d, 21) && !h.keeps(DeviceId([6; 8]), 15));
    let late = T + days(1000);
    let holds = [h.clone()];
    let hold = holds.iter().find(|h| h.keeps(d, 15)).map(|h| h.id);
    assert_eq!(
        decide(&facts(&[], hold), N, 0, late),
        Decision::Keep(Keep::Held(7))
    );
    h.released = Some(Release {
        by: "sup".into(),
        at_us: T,
        reason: "case closed".into(),
        leaf: 2,
    });
    let holds = [h];
    let hold = holds.iter().find(|h| h.keeps(d, 15)).map(|h| h.id);
    assert_eq!(hold, None);
    assert!(matches!(
        decide(&facts(&[], hold), N, 0, late),
        Decision::Expire(_)
    ));
}

#[test]
fn belonging_needs_custody_by_an_officer_and_overlap() {
    let d = DeviceId([1; 8]);
    let acts = [activity("C-1", T, false)];
    let a = &acts[0];
    let custody = |officer: &str, from: i64, to: Option<i64>| Custody {
        device: d,
        officer: officer.into(),
        from_us: from,
        to_us: to,
    };
    let inside = (a.start_us + 10, a.start_us + 20);
    let carried = [custody("CJ-001", 0, None)];
    assert_eq!(activities_of(&acts, &carried, d, 0, inside).len(), 1);
    assert!(activities_of(&acts, &carried, DeviceId([2; 8]), 0, inside).is_empty());
    assert!(activities_of(&acts, &carried, d, 0, (a.end_us, a.end_us + 5)).is_empty());
    let other = [custody("CJ-002", 0, None)];
    assert!(activities_of(&acts, &other, d, 0, inside).is_empty());
    let returned_before = [custody("CJ-001", 0, Some(a.start_us))];
    assert!(activities_of(&acts, &returned_before, d, 0, inside).is_empty());
}

#[test]
fn command_line_times_parse() {
    assert_eq!(parse_time("1782896400000000"), Some(T));
    assert_eq!(parse_time("2026-07-01T09:00:00Z"), Some(T));
    assert_eq!(parse_time("2026-07-01T17:00:00+08:00"), Some(T));
    assert_eq!(parse_time("2026-07-01T09:00:00.25Z"), Some(T + 250_000));
    for bad in [
        "",
        "2026-07-01",
        "2026-07-01T25:00:00Z",
        "2026-13-01T00:00:00Z",
        "x",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

// The executor, on a data folder filled through the real ingest path.

fn shared() -> (tempfile::TempDir, Arc<Shared>) {
    let dir = tempfile::tempdir().unwrap();
    crate::admin::init(dir.path(), &[], Some("test-password-long".into())).unwrap();
    let cfg = crate::config::Config::load(dir.path()).unwrap();
    let s = Arc::new(Shared::load(dir.path(), cfg).unwrap());
    (dir, s)
}

/// A device's sample chain with every segment's bytes, through ingest.
fn fill(sh: &Shared, seed: u8, recordings: &[u32]) -> (DeviceId, SampleChain) {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let device = DeviceId::from_key(&key.verifying_key());
    sh.db
        .put_device(&crate::db::DeviceRecord {
            id: device,
            name: format!("cam{seed}"),
            key: key.verifying_key(),
            enrolled_us: 0,
            revoked_us: None,
        })
        .unwrap();
    let chain = sample::build(&key, recordings, 1000);
    for e in &chain.entries {
        let m = crate::ingest::submit_blocking(sh, key.verifying_key(), &e.to_bytes());
        assert!(
            matches!(m, fieldseal_proto::msg::Message::EntryReceipt(_)),
            "{m:?}"
        );
        if let Some(bytes) = chain.media.get(&e.seq()) {
            let mut f = sh.storage.open_partial(device, e.seq(), 0).unwrap();
            f.write_all(bytes).unwrap();
            drop(f);
            sh.storage
                .commit_partial(device, e.seq(), &sha256(bytes), sh.blobs.as_ref())
                .unwrap();
            sh.db.put_media(device, e.seq()).unwrap();
        }
    }
    (device, chain)
}

fn segments(c: &SampleChain) -> Vec<u64> {
    c.media.keys().copied().collect()
}

fn held_blobs(sh: &Shared, c: &SampleChain) -> usize {
    c.media
        .values()
        .filter(|b| sh.blobs.stat(&sha256(b)).unwrap().is_some())
        .count()
}

#[test]
fn the_job_removes_expired_bytes_only_and_keeps_shared_and_held_ones() {
    let (_d, sh) = shared();
    // Device A: two recordings, linked to nothing. Device B: one recording
    // whose bytes are the same as A's first (the sample's media depends on
    // the recording and part only), under a legal hold.
    let (a, ca) = fill(&sh, 0x42, &[3, 2]);
    let (b, cb) = fill(&sh, 0x43, &[3]);
    sh.db
        .put_hold(&Hold {
            id: 1,
            case: None,
            device: b.to_string(),
            first_seq: 0,
            last_seq: 100,
            reason: "court order".into(),
            by: "cus".into(),
            at_us: 0,
            leaf: 0,
            released: None,
        })
        .unwrap();
    let later = crate::now_us() + days(183) + 60_000_000;
    let log0 = sh.db.log_size().unwrap();

    // Not yet due: nothing.
    let o = run(&sh, crate::now_us() + days(182), false).unwrap();
    assert!(o.expired.is_empty() && o.blobs_deleted.is_empty(), "{o:?}");
    assert_eq!((o.kept_recent, o.kept_held), (5, 3));

    // A dry run says what would go and changes nothing.
    let dry = run(&sh, later, true).unwrap();
    assert_eq!(dry.expired.len(), 1, "{}", dry.human());
    assert_eq!(dry.expired[0].segments, segments(&ca));
    assert_eq!(dry.expired[0].leaf, None);
    assert_eq!(
        dry.blobs_deleted.len(),
        2,
        "only the second recording's bytes are A's alone"
    );
    assert_eq!(sh.db.log_size().unwrap(), log0, "a dry run wrote a leaf");
    assert_eq!(held_blobs(&sh, &ca), 5);
    for s in segments(&ca) {
        assert!(sh.db.has_media(a, s).unwrap() && sh.db.expired(a, s).unwrap().is_none());
    }

    let o = run(&sh, later, false).unwrap();
    assert_eq!(o.expired.len(), 1);
    let r = &o.expired[0];
    let leaf = r.leaf.unwrap();
    assert_eq!(
        sh.db.log_size().unwrap(),
        log0 + 1,
        "one leaf for one contiguous run"
    );
    assert_eq!(o.blobs_deleted, dry.blobs_deleted);
    assert_eq!(o.kept_held, 3);
    // The leaf: expire, by retention, the range, why.
    let bytes = sh.db.leaves_from(leaf).unwrap();
    let Leaf::Custody {
        action,
        actor,
        device,
        first_seq,
        last_seq,
        detail,
        ..
    } = Leaf::from_bytes(&bytes[0]).unwrap()
    else {
        panic!("not a custody leaf")
    };
    assert_eq!(
        (action, actor.as_str(), device),
        (CustodyAction::Expire, ACTOR, a)
    );
    let segs = segments(&ca);
    assert_eq!((first_seq, last_seq), (segs[0], *segs.last().unwrap()));
    assert!(detail.unwrap().starts_with("unlinked, ended "));
    // Bytes: A's own gone, the shared ones kept for B; entries and receipts stay.
    assert_eq!(held_blobs(&sh, &ca), 3);
    assert_eq!(held_blobs(&sh, &cb), 3);
    for s in segs {
        assert!(!sh.db.has_media(a, s).unwrap());
        assert_eq!(sh.db.expired(a, s).unwrap().map(|e| e.leaf), Some(leaf));
        assert!(
            sh.db.entry(a, s).unwrap().is_some(),
            "entry or receipt gone"
        );
    }
    assert!(
        sh.db.missing_media(a, 100).unwrap().is_empty(),
        "expired media asked for again"
    );
    assert_eq!(
        archive::accepted_chain(&sh.dir, &sh.db, a).unwrap().len(),
        ca.entries.len()
    );
    for s in segments(&cb) {
        assert!(sh.db.has_media(b, s).unwrap());
    }
    // Verify: the chain and receipts still pass; the expiry is listed.
    let v = archive::verify(
        &sh.dir,
        &sh.db,
        sh.blobs.as_ref(),
        None,
        later,
        &Default::default(),
    )
    .unwrap();
    assert!(v.ok, "{}", v.human());
    assert!(
        v.human()
            .contains(&format!("expired under retention (leaf {leaf})")),
        "{}",
        v.human()
    );
    assert_eq!(v.expired.len(), 1);
    assert_eq!(v.expired[0].segments, 5);

    // A second run finds nothing more to do.
    let again = run(&sh, later, false).unwrap();
    assert!(
        again.expired.is_empty() && again.blobs_deleted.is_empty(),
        "{again:?}"
    );
    assert_eq!(sh.db.log_size().unwrap(), log0 + 1);

    // Once the hold is released, B's media goes too, and the shared bytes with it.
    let mut h = sh.db.hold(1).unwrap().unwrap();
    h.released = Some(Release {
        by: "sup".into(),
        at_us: 0,
        reason: "closed".into(),
        leaf: 0,
    });
    sh.db.put_hold(&h).unwrap();
    let o = run(&sh, later, false).unwrap();
    assert_eq!(o.expired.len(), 1);
    assert_eq!(o.blobs_deleted.len(), 3);
    assert_eq!(held_blobs(&sh, &ca) + held_blobs(&sh, &cb), 0);
}

#[test]
fn media_of_a_decided_case_survives_the_job() {
    let (_d, sh) = shared();
    let (a, ca) = fill(&sh, 0x42, &[2]);
    let officer = crate::cases::OfficerRecord {
        certificate: "CJ-001".into(),
        name: "王五".into(),
        auxiliary: false,
        valid_from: "2026-01-01".into(),
        valid_until: "2027-12-31".into(),
    };
    sh.db.put_officer(&officer).unwrap();
    sh.db
        .put_custody(&Custody {
            device: a,
            officer: "CJ-001".into(),
            from_us: 0,
            to_us: None,
        })
        .unwrap();
    let now = crate::now_us();
    let mut case: Case = serde_json::from_value(serde_json::json!({
        "number": "CJ-1", "body": "b", "officers": ["CJ-001"],
        "activities": [{"id": "a1", "kind": "seizure",
            "start_us": 0, "end_us": now + days(1), "officers": ["CJ-001"]}],
    }))
    .unwrap();
    sh.db.put_case(&case).unwrap();
    let late = now + days(1) + days(183);
    // The activity's end counts, not the receipt.
    let o = run(&sh, late - 1, true).unwrap();
    assert!(o.expired.is_empty(), "{}", o.human());
    let o = run(&sh, late, true).unwrap();
    assert_eq!(o.expired.len(), 1, "{}", o.human());
    assert!(
        o.expired[0].detail.starts_with("activity CJ-1/a1, ended"),
        "{}",
        o.human()
    );
    case.stages.push(crate::cases::StageRecord {
        kind: StageKind::Decision,
        at_us: now,
        text: "决定".into(),
        attachments: vec![],
        by: "cus".into(),
    });
    sh.db.put_case(&case).unwrap();
    let o = run(&sh, late + days(3650), false).unwrap();
    assert!(o.expired.is_empty(), "{}", o.human());
    assert_eq!(o.kept_decided, 2);
    assert_eq!(held_blobs(&sh, &ca), 2);
}

#[test]
fn belonging_by_signed_tags_needs_overlap_and_a_link_needs_neither() {
    let d = DeviceId([1; 8]);
    let mut acts = [activity("C-1", T, false)];
    let (start, end) = (acts[0].start_us, acts[0].end_us);
    let inside = (start + 10, start + 20);
    let nobody: [Custody; 0] = [];
    assert!(activities_of(&acts, &nobody, d, 7, inside).is_empty());
    acts[0].tagged.insert((d, 7));
    assert_eq!(activities_of(&acts, &nobody, d, 7, inside).len(), 1);
    assert!(
        activities_of(&acts, &nobody, d, 8, inside).is_empty(),
        "another seq"
    );
    assert!(
        activities_of(&acts, &nobody, d, 7, (end, end + 5)).is_empty(),
        "tagged, but outside the window"
    );
    acts[0].linked.push((d, 100, 200));
    let far = (end + 1_000_000, end + 2_000_000);
    assert_eq!(activities_of(&acts, &nobody, d, 150, far).len(), 1);
    assert!(activities_of(&acts, &nobody, d, 201, far).is_empty());
    assert!(activities_of(&acts, &nobody, DeviceId([2; 8]), 150, far).is_empty());
}
