//! Counters for the gateway and the inbox, rendered in Prometheus text format at `/metrics`.
//! Plain atomics: the label sets are small and fixed.

use std::fmt::Write as _;
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
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub received: AtomicU64,
    pub verified_v1: AtomicU64,
    pub verified_v2: AtomicU64,
    rejected: [AtomicU64; 7],
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
        out
    }
}
