//! What `device list` and `device add` print for people: times in local
//! time with the UTC offset (the command's `TZ`, not UTC here), and an
//! `ALARM` line under a device that equivocated.

use std::path::Path;
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use fieldseal_proto::identity::DeviceId;
use fieldseal_server::db::{Db, DeviceRecord};
use fieldseal_server::equivocation::Equivocations;
use fieldseal_server::localtime::format_us_in;
use jiff::tz::TimeZone;

/// 2026-07-01T09:00:00Z.
const JULY: i64 = 1_782_896_400_000_000;
const HOUR: i64 = 3_600_000_000;

fn server(tz: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldseal-server"))
        .args(args)
        .arg("--data")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env("TZ", tz)
        .output()
        .expect("runs")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn device_list_shows_times_in_local_time_and_equivocations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("a long password".into())).unwrap();
    let keys = [
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    ];
    let ids: Vec<DeviceId> = keys
        .iter()
        .map(|k| DeviceId::from_key(&k.verifying_key()))
        .collect();
    {
        let db = Db::open(&dir).unwrap();
        for (i, (k, name)) in keys.iter().zip(["cam-017", "cam-018"]).enumerate() {
            db.put_device(&DeviceRecord {
                id: ids[i],
                name: name.into(),
                key: k.verifying_key(),
                enrolled_us: JULY,
                revoked_us: (i == 1).then_some(JULY + 2 * HOUR),
            })
            .unwrap();
        }
        let e = Equivocations::open(&dir, 1).unwrap();
        e.record(ids[0], &[(7, b"not an entry, kept as sent")], JULY + HOUR)
            .unwrap();
        e.record(ids[0], &[(9, b"another")], JULY + 3 * HOUR)
            .unwrap();
    }
    for tz in ["CST-8", "EST5EDT,M3.2.0,M11.1.0"] {
        let zone = TimeZone::posix(tz).unwrap();
        let at = |us| format_us_in(us, &zone);
        let out = stdout(&server(tz, &["device", "list"], &dir));
        let want = format!(
            "{}  cam-017   enrolled {}  active\n  ALARM: 2 equivocation(s), the first {}, the latest {} (seq 9); the first 1 kept: GET /api/devices/{}/equivocations\n{}  cam-018   enrolled {}  revoked {}\n",
            ids[0],
            at(JULY),
            at(JULY + HOUR),
            at(JULY + 3 * HOUR),
            ids[0],
            ids[1],
            at(JULY),
            at(JULY + 2 * HOUR),
        );
        // Listed in id order.
        let mut want_lines: Vec<&str> = want.lines().collect();
        if ids[1] < ids[0] {
            want_lines.rotate_left(2);
        }
        assert_eq!(out.lines().collect::<Vec<_>>(), want_lines, "TZ={tz}");
        assert!(!out.contains(&JULY.to_string()), "{out}");
    }
    let out = stdout(&server(
        "CST-8",
        &["device", "add", "--name", "cam-019"],
        &dir,
    ));
    let expires = out.lines().find(|l| l.starts_with("expires: ")).unwrap();
    assert!(expires.ends_with(" +08:00"), "{out}");
}
