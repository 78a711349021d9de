//! Counters for the gateway and the inbox, rendered in Prometheus text format at `/metrics`.
//! Plain atomics: the label sets are small and fixed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Rejection reasons, in the order of `alipay::Rejection::code`.
pub const REJECTION_CODES: &[&str] = &[
    "malformed_form",
    "duplicate_key",
    "missing_sign",
    "sign_encoding",
    "sign_type",
    "bad_signature",
    "not_utf8",
    "unknown_charset",
    "not_in_charset",
    "unknown_cert_sn",
];

/// Upper bounds (seconds) of the Alipay call latency histogram.
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct AlipayStats {
    latency: BTreeMap<&'static str, Latency>,
    /// (method, result) → calls; result is `10000`, Alipay's `sub_code` (else `code`), or the
    /// kind of failure (`transport`, `http_502`, `bad_response`, `decode`).
    results: BTreeMap<(&'static str, String), u64>,
}

/// Prometheus label values escape `\`, `"` and newlines.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Debug, Default)]
pub struct Metrics {
    alipay: Mutex<AlipayStats>,
    pub received: AtomicU64,
    pub verified_v1: AtomicU64,
    pub verified_v2: AtomicU64,
    rejected: [AtomicU64; REJECTION_CODES.len()],
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub quarantined: AtomicU64,
    pub store_failures: AtomicU64,
    pub applied: AtomicU64,
    pub apply_failures: AtomicU64,
    /// Sum of (applied_at - received_at) in milliseconds over applied messages.
    pub apply_lag_ms_sum: AtomicU64,
    pub merchant_syncs_accepted: AtomicU64,
    pub merchant_syncs_delivered: AtomicU64,
    /// Deadline, warning and query rows the scheduler fired (claimed and handled).
    pub deadlines_fired: AtomicU64,
    /// Implementation-deadline warnings raised.
    pub deadlines_warned: AtomicU64,
    /// Deadline rules applied past the grace period without Alipay's agreement.
    pub transitions_inferred: AtomicU64,
}

impl Metrics {
    pub fn reject(&self, code: &str) {
        if let Some(i) = REJECTION_CODES.iter().position(|c| *c == code) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    /// One Alipay OpenAPI call: its latency and its result.
    pub fn alipay_call(&self, method: &'static str, elapsed: std::time::Duration, result: &str) {
        let Ok(mut stats) = self.alipay.lock() else {
            return;
        };
        let secs = elapsed.as_secs_f64();
        let latency = stats.latency.entry(method).or_default();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                latency.buckets[i] += 1;
            }
        }
        latency.count += 1;
        latency.sum += secs;
        *stats
            .results
            .entry((method, result.to_string()))
            .or_insert(0) += 1;
    }

    /// The Alipay call histogram and results, in Prometheus text format.
    fn render_alipay(&self, out: &mut String) {
        let Ok(stats) = self.alipay.lock() else {
            return;
        };
        let _ = writeln!(
            out,
            "# HELP isv_alipay_call_seconds Alipay OpenAPI call latency, retries included.\n# TYPE isv_alipay_call_seconds histogram"
        );
        for (method, l) in &stats.latency {
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "isv_alipay_call_seconds_bucket{{method=\"{method}\",le=\"{bound}\"}} {}",
                    l.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "isv_alipay_call_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                l.count
            );
            let _ = writeln!(
                out,
                "isv_alipay_call_seconds_sum{{method=\"{method}\"}} {}",
                l.sum
            );
            let _ = writeln!(
                out,
                "isv_alipay_call_seconds_count{{method=\"{method}\"}} {}",
                l.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP isv_alipay_calls_total Alipay OpenAPI calls by result (10000, sub_code or failure kind).\n# TYPE isv_alipay_calls_total counter"
        );
        for ((method, result), n) in &stats.results {
            let _ = writeln!(
                out,
                "isv_alipay_calls_total{{method=\"{method}\",result=\"{}\"}} {n}",
                label(result)
            );
        }
    }

    /// Gauges measured at scrape time (backlogs), in Prometheus text format.
    pub fn render_gauges(gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }

    pub fn rejected(&self, code: &str) -> u64 {
        REJECTION_CODES
            .iter()
            .position(|c| *c == code)
            .map(|i| self.rejected[i].load(Relaxed))
            .unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        };
        counter(
            "isv_gateway_messages_received_total",
            "Gateway requests received.",
            &[("", self.received.load(Relaxed))],
        );
        counter(
            "isv_gateway_messages_verified_total",
            "Gateway messages whose signature verified, by sign variant.",
            &[
                ("sign_variant=\"v1\"", self.verified_v1.load(Relaxed)),
                ("sign_variant=\"v2\"", self.verified_v2.load(Relaxed)),
            ],
        );
        let rejected: Vec<(String, u64)> = REJECTION_CODES
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("reason=\"{c}\""), self.rejected[i].load(Relaxed)))
            .collect();
        let rejected: Vec<(&str, u64)> = rejected.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            "isv_gateway_messages_rejected_total",
            "Gateway messages refused, by reason.",
            &rejected,
        );
        counter(
            "isv_gateway_messages_stored_total",
            "New gateway messages committed.",
            &[("", self.stored.load(Relaxed))],
        );
        counter(
            "isv_gateway_messages_duplicate_total",
            "Redeliveries of stored messages.",
            &[("", self.duplicates.load(Relaxed))],
        );
        counter(
            "isv_gateway_messages_quarantined_total",
            "Verified messages stored but not applied.",
            &[("", self.quarantined.load(Relaxed))],
        );
        counter(
            "isv_gateway_store_failures_total",
            "Messages answered fail because they could not be stored.",
            &[("", self.store_failures.load(Relaxed))],
        );
        counter(
            "isv_inbox_applied_total",
            "Messages applied.",
            &[("", self.applied.load(Relaxed))],
        );
        counter(
            "isv_inbox_apply_failures_total",
            "Failed apply attempts.",
            &[("", self.apply_failures.load(Relaxed))],
        );
        counter(
            "isv_inbox_apply_lag_milliseconds_total",
            "Sum of receive-to-apply delays.",
            &[("", self.apply_lag_ms_sum.load(Relaxed))],
        );
        counter(
            "isv_merchant_syncs_accepted_total",
            "Merchant-order syncs queued for delivery.",
            &[("", self.merchant_syncs_accepted.load(Relaxed))],
        );
        counter(
            "isv_merchant_syncs_delivered_total",
            "Merchant-order syncs delivered to Alipay.",
            &[("", self.merchant_syncs_delivered.load(Relaxed))],
        );
        counter(
            "isv_deadlines_fired_total",
            "Deadline, warning and query rows fired by the scheduler.",
            &[("", self.deadlines_fired.load(Relaxed))],
        );
        counter(
            "isv_deadlines_warned_total",
            "Implementation-deadline warnings raised.",
            &[("", self.deadlines_warned.load(Relaxed))],
        );
        counter(
            "isv_transitions_inferred_total",
            "Deadline rules applied past the grace period without Alipay.",
            &[("", self.transitions_inferred.load(Relaxed))],
        );
        self.render_alipay(&mut out);
        out
    }
}
