//! Counters of the running server for `/metrics` (Prometheus text): what
//! ingest accepted and refused, equivocation alarms, media stored, and the
//! latency of receipts (from a `SubmitEntry` read to its answer, group
//! commit and fsyncs included) as a histogram. Lock-free; nothing here
//! reads a clock (the callers pass durations).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the receipt-latency buckets, µs: from well under the
/// group commit's fsync to the seconds of an overloaded server.
pub const LATENCY_BOUNDS_US: [u64; 10] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

/// Why a QUIC connection was refused, as labels of
/// `fieldseal_quic_refused_total` (`quic::limits::Refusal::index` places
/// each reason here).
pub const REFUSAL_REASONS: [&str; 6] = [
    "total",
    "unauthenticated",
    "per_address",
    "handshake_rate",
    "busy",
    "enrolment_rate",
];

/// Steps before authentication that have a deadline, as labels of
/// `fieldseal_quic_timeouts_total`: the handshake, and on the enrolment
/// ALPN reading the request.
pub const TIMEOUT_STAGES: [&str; 2] = ["handshake", "enrolment"];

/// A cumulative histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One count per bound, plus the last for everything above.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Record one duration.
    pub fn observe(&self, us: u64) {
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The histogram in Prometheus text, in seconds.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = *b as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BOUNDS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Device certificates: issued, renewals refused, and handshakes refused
/// for an expired certificate or a revoked (or unknown) device. Shared
/// with the TLS verifier (`pki::DeviceVerifier`), hence its own `Arc`.
#[derive(Debug, Default)]
pub struct CertCounters {
    /// Certificates issued at enrolment (and re-enrolment).
    pub enrolled: AtomicU64,
    /// Certificates issued by renewal over a sync connection.
    pub renewed: AtomicU64,
    /// Renewal requests refused (revoked, expired, not due, wrong
    /// certificate, failed).
    pub renewals_refused: AtomicU64,
    /// Handshakes refused because the device's certificate had expired.
    pub refused_expired: AtomicU64,
    /// Handshakes refused because the device is revoked or not enrolled.
    pub refused_revoked: AtomicU64,
    /// Sync connections closed when their certificate expired.
    pub closed_expired: AtomicU64,
}

impl CertCounters {
    fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP fieldseal_device_certs_issued_total Device certificates issued, by \
             how: at enrolment or re-enrolment, or renewed over a sync connection.\n\
             # TYPE fieldseal_device_certs_issued_total counter\n\
             fieldseal_device_certs_issued_total{{how=\"enrol\"}} {}\n\
             fieldseal_device_certs_issued_total{{how=\"renew\"}} {}",
            get(&self.enrolled),
            get(&self.renewed),
        );
        counter(
            out,
            "fieldseal_device_cert_renewals_refused_total",
            "counter",
            "Certificate renewal requests refused (see the log for why).",
            get(&self.renewals_refused),
        );
        let _ = writeln!(
            out,
            "# HELP fieldseal_device_handshakes_refused_total Sync handshakes refused, by \
             reason: an expired device certificate (TLS alert certificate_expired), or a \
             revoked or unknown device (certificate_revoked).\n\
             # TYPE fieldseal_device_handshakes_refused_total counter\n\
             fieldseal_device_handshakes_refused_total{{reason=\"expired\"}} {}\n\
             fieldseal_device_handshakes_refused_total{{reason=\"revoked\"}} {}",
            get(&self.refused_expired),
            get(&self.refused_revoked),
        );
        counter(
            out,
            "fieldseal_device_connections_expired_total",
            "counter",
            "Sync connections closed when the certificate they were made with expired.",
            get(&self.closed_expired),
        );
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Entries answered with a receipt (new or resent).
    pub receipts: AtomicU64,
    /// Entries refused (bad signature, broken link, malformed, …).
    pub refused: AtomicU64,
    /// Equivocations: a device signed two entries with one seq (ALARM).
    pub equivocations: AtomicU64,
    /// Segments stored after verification.
    pub segments_stored: AtomicU64,
    /// Their bytes.
    pub media_bytes: AtomicU64,
    /// Upload streams that opened pipelined (`UploadBegin` at offset 0 and
    /// the bytes, no query; protocol version 4).
    pub uploads_pipelined: AtomicU64,
    /// Receipt latency.
    pub receipt_latency: Histogram,
    /// Entries refused because they did not verify (signature, link,
    /// format, device): part of `refused`.
    pub entry_verification_failures: AtomicU64,
    /// Uploads whose bytes did not hash to the signed media hash.
    pub segment_hash_mismatches: AtomicU64,
    /// Access-log leaves written by this process (`audit::record*`).
    pub access_leaves: AtomicU64,
    /// QUIC connections refused by the admission limits, by
    /// [`REFUSAL_REASONS`].
    pub quic_refused: [AtomicU64; REFUSAL_REASONS.len()],
    /// QUIC Retry packets sent to make a client prove its address.
    pub quic_address_validations: AtomicU64,
    /// Unauthenticated connections closed at their deadline, by
    /// [`TIMEOUT_STAGES`].
    pub quic_timeouts: [AtomicU64; TIMEOUT_STAGES.len()],
    /// Device certificates (shared with the TLS verifier).
    pub certs: std::sync::Arc<CertCounters>,
}

/// One counter line.
pub fn counter(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

impl Counters {
    /// Count one answer to a `SubmitEntry` that took `us`.
    pub fn answered(&self, m: &fieldseal_proto::msg::Message, us: u64) {
        use fieldseal_proto::msg::{Message, RejectCode};
        match m {
            Message::EntryReceipt(_) => {
                self.receipts.fetch_add(1, Ordering::Relaxed);
                self.receipt_latency.observe(us);
            }
            Message::EntryRejected(r) if r.code == RejectCode::Equivocation => {
                self.equivocations.fetch_add(1, Ordering::Relaxed);
            }
            Message::EntryRejected(r) if r.code != RejectCode::Internal => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                if matches!(
                    r.code,
                    RejectCode::BadSignature
                        | RejectCode::BrokenLink
                        | RejectCode::Malformed
                        | RejectCode::WrongDevice
                ) {
                    self.entry_verification_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    /// The counters in Prometheus text.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            out,
            "fieldseal_receipts_total",
            "counter",
            "Entries answered with a signed receipt.",
            get(&self.receipts),
        );
        counter(
            out,
            "fieldseal_entries_refused_total",
            "counter",
            "Entries that failed verification (signature, link, format).",
            get(&self.refused),
        );
        counter(
            out,
            "fieldseal_equivocations_total",
            "counter",
            "Equivocation alarms: two entries signed with one seq.",
            get(&self.equivocations),
        );
        counter(
            out,
            "fieldseal_segments_stored_total",
            "counter",
            "Segments stored after verification.",
            get(&self.segments_stored),
        );
        counter(
            out,
            "fieldseal_media_bytes_total",
            "counter",
            "Bytes of verified segments stored.",
            get(&self.media_bytes),
        );
        counter(
            out,
            "fieldseal_uploads_pipelined_total",
            "counter",
            "Upload streams opened with UploadBegin and the bytes, without a query (protocol 4).",
            get(&self.uploads_pipelined),
        );
        let _ = writeln!(
            out,
            "# HELP fieldseal_verification_failures_total Evidence that did not verify on \
             arrival: entries (bad signature, broken link, malformed, wrong device) and \
             segment uploads whose bytes did not match their signed hash.\n\
             # TYPE fieldseal_verification_failures_total counter\n\
             fieldseal_verification_failures_total{{what=\"entry\"}} {}\n\
             fieldseal_verification_failures_total{{what=\"segment\"}} {}",
            get(&self.entry_verification_failures),
            get(&self.segment_hash_mismatches),
        );
        counter(
            out,
            "fieldseal_access_log_leaves_total",
            "counter",
            "Access-log (custody) leaves written by this process.",
            get(&self.access_leaves),
        );
        self.render_limits(out);
        self.certs.render(out);
        self.receipt_latency.render(
            out,
            "fieldseal_receipt_latency_seconds",
            "From a SubmitEntry read to its durable answer.",
        );
    }
}

impl Counters {
    fn render_limits(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP fieldseal_quic_refused_total QUIC connections refused by the admission \
             limits (before the handshake, or an enrolment over its rate).\n\
             # TYPE fieldseal_quic_refused_total counter"
        );
        for (reason, c) in REFUSAL_REASONS.iter().zip(&self.quic_refused) {
            let _ = writeln!(
                out,
                "fieldseal_quic_refused_total{{reason=\"{reason}\"}} {}",
                get(c)
            );
        }
        counter(
            out,
            "fieldseal_quic_address_validations_total",
            "counter",
            "QUIC Retry packets sent to make a client prove its address under load.",
            get(&self.quic_address_validations),
        );
        let _ = writeln!(
            out,
            "# HELP fieldseal_quic_timeouts_total Unauthenticated QUIC connections closed at \
             their deadline, by the step they had not finished.\n\
             # TYPE fieldseal_quic_timeouts_total counter"
        );
        for (stage, c) in TIMEOUT_STAGES.iter().zip(&self.quic_timeouts) {
            let _ = writeln!(
                out,
                "fieldseal_quic_timeouts_total{{stage=\"{stage}\"}} {}",
                get(c)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_do_not_verify_are_counted_as_verification_failures() {
        use fieldseal_proto::msg::{EntryRejected, Message, RejectCode};
        let c = Counters::default();
        let no = |code| {
            Message::EntryRejected(EntryRejected {
                seq: 1,
                code,
                detail: fieldseal_proto::msg::Detail::lossy(""),
            })
        };
        for code in [
            RejectCode::BadSignature,
            RejectCode::BrokenLink,
            RejectCode::OutOfOrder,
            RejectCode::Equivocation,
            RejectCode::Internal,
        ] {
            c.answered(&no(code), 1);
        }
        c.segment_hash_mismatches.fetch_add(3, Ordering::Relaxed);
        let mut out = String::new();
        c.render(&mut out);
        assert!(
            out.contains("fieldseal_verification_failures_total{what=\"entry\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("fieldseal_verification_failures_total{what=\"segment\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("fieldseal_entries_refused_total 3\n"), "{out}");
    }

    #[test]
    fn the_histogram_is_cumulative_and_in_seconds() {
        let h = Histogram::default();
        for us in [500, 1_500, 1_500, 7_000_000] {
            h.observe(us);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.002\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(
            out.contains("x_count 4\n") && out.contains("x_sum 7.0035\n"),
            "{out}"
        );
    }
}
