//! The human form of `fieldseal-agent status`: the JSON the running
//! recorder (or the folder) gives, as lines for a person, times in local
//! time. `--json` prints the JSON itself.

/// `status` for people: times in local time (`tz`), the acknowledgements
/// that prove nothing named so that a custodian notices.
pub fn render(data: &serde_json::Value, tz: &jiff::tz::TimeZone) -> String {
    use std::fmt::Write as _;
    let g = |k: &str| {
        data.get(k)
            .map(|v| v.to_string().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let n = |k: &str| data.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "device {}: {}", g("device"), g("state"));
    let secs = |v: &serde_json::Value| {
        v.as_i64().map_or_else(
            || "?".to_string(),
            |s| crate::localtime::format_us_in(s.saturating_mul(1_000_000), tz),
        )
    };
    // A refusal first and loud: nothing of this device reaches the server
    // any more until someone acts.
    let refused = data.get("refused").filter(|r| !r.is_null());
    if let Some(r) = refused {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let at = r["at_us"].as_i64().map_or_else(
            || "?".to_string(),
            |us| crate::localtime::format_us_in(us, tz),
        );
        let _ = writeln!(
            out,
            "  SYNC REFUSED: {} by {} at {at} ({})",
            g("sync").to_uppercase(),
            s("server"),
            s("reason")
        );
        let _ = writeln!(out, "  {}", s("advice"));
    }
    if let Some(c) = data.get("certificate").filter(|c| !c.is_null()) {
        let expired = c["expired"].as_bool() == Some(true);
        if expired && refused.is_some() {
            // What to do is said above.
            let _ = writeln!(out, "  certificate: expired at {}", secs(&c["not_after"]));
        } else if expired {
            let _ = writeln!(
                out,
                "  CERTIFICATE EXPIRED at {}: {}",
                secs(&c["not_after"]),
                c["advice"].as_str().unwrap_or_default()
            );
        } else {
            let _ = writeln!(
                out,
                "  certificate: valid until {}; renewed over sync from {} (server's clock)",
                secs(&c["not_after"]),
                secs(&c["renew_from"])
            );
        }
    }
    let recent: crate::activity::Activity =
        serde_json::from_value(data["recent"].clone()).unwrap_or_default();
    if recent.recordings.is_empty() && recent.events.is_empty() {
        let _ = writeln!(out, "  nothing recorded yet");
    } else {
        out.push_str(&recent.render(tz, "  "));
    }
    let _ = writeln!(out, "  chain: next seq {}", g("next_seq"));
    let _ = writeln!(out, "  spool: {} bytes", g("spool_bytes"));
    let _ = writeln!(
        out,
        "  sync:  {}; {} entries without receipt, {} segments not acknowledged",
        g("sync"),
        g("entries_without_receipt"),
        g("segments_not_acknowledged")
    );
    let (bad, refused) = (n("bad_acks"), n("acks_refused"));
    let _ = write!(
        out,
        "  acks:  {} kept as proof of hand-over",
        n("acks_kept")
    );
    if bad > 0 {
        let _ = write!(
            out,
            "; ALARM {bad} in acks.log prove nothing (bad-ack: `fieldseal-agent verify` names them)"
        );
    }
    if refused > 0 {
        let _ = write!(
            out,
            "; ALARM {refused} refused from the server since start (not signed by its receipt key, or naming another segment)"
        );
    }
    out.push('\n');
    out
}
