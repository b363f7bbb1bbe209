//! Set-up shared by the benchmark examples: the officer, the device in
//! their custody, and a case with one seizure over the whole recording.

use fieldseal_proto::codec::Decode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sample::SampleChain;
use fieldseal_server::cases::{Case, Custody, OfficerRecord};
use fieldseal_server::catalogue::Catalogue;
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::timeline::{device_timeline, Known};
use fieldseal_server::Shared;

/// The case number the examples use.
pub const CASE: &str = "CJ-2026-0001";
/// The officer's certificate number.
pub const OFFICER: &str = "CJ-001";

/// The officer, the device in their custody, and the case with one seizure
/// (`activity`) over the whole recording, placed in server time as
/// compliance places it.
pub fn put_case(
    shared: &Shared,
    device: DeviceId,
    chain: &SampleChain,
    activity: &str,
) -> anyhow::Result<Case> {
    let db = &shared.db;
    let officer: OfficerRecord = serde_json::from_value(serde_json::json!({
        "certificate": OFFICER, "name": "王五",
        "valid_from": "2026-01-01", "valid_until": "2027-12-31"
    }))?;
    db.put_officer(&officer)?;
    let mut known = Vec::with_capacity(chain.entries.len());
    for e in &chain.entries {
        let a = db.entry(device, e.seq())?.expect("ingested");
        known.push(Known {
            entry: e,
            receipt_us: Some(Receipt::from_bytes(&a.receipt)?.server_time_us),
            verified: true,
            media_us: e.entry.segment().map(|_| 0),
            expired: false,
        });
    }
    let spans = device_timeline(device, &known, |_| None).spans;
    let (start, end) = (spans[0].start_us, spans[spans.len() - 1].end_us);
    db.put_custody(&Custody {
        device,
        officer: OFFICER.into(),
        from_us: start - 3_600_000_000,
        to_us: Some(end + 3_600_000_000),
    })?;
    let case: Case = serde_json::from_value(serde_json::json!({
        "number": CASE, "body": "bench", "officers": [OFFICER],
        "activities": [{"id": activity, "kind": "seizure", "place": "bench",
            "start_us": start, "end_us": end, "officers": [OFFICER]}]
    }))?;
    case.check(&Catalogue::article_27(), |o| o == OFFICER)?;
    db.put_case(&case)?;
    Ok(case)
}
