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

/// HTTP requests by (method, route pattern, status).
type HttpStats = BTreeMap<(String, String, u16), Latency>;

#[derive(Debug, Default)]
pub struct Metrics {
    alipay: Mutex<AlipayStats>,
    http: Mutex<HttpStats>,
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
    /// Background jobs restarted by their supervisor after a panic or an unexpected end.
    pub job_restarts: AtomicU64,
    /// Token checks (`auth.token.app.query`) Alipay did not answer: the authorization stayed
    /// active.
    pub token_check_faults: AtomicU64,
    /// Sum of (applied_at - received_at) in milliseconds over applied messages.
    pub apply_lag_ms_sum: AtomicU64,
    pub merchant_syncs_accepted: AtomicU64,
    pub merchant_syncs_delivered: AtomicU64,
    /// Deadline, warning and query rows the scheduler fired (claimed and handled).
    pub deadlines_fired: AtomicU64,
    /// Implementation-deadline warnings raised.
    pub deadlines_warned: AtomicU64,
    /// Warnings before a service's last period ends (`service_expiry_warning`).
    pub service_expiry_warnings: AtomicU64,
    /// Deadline rules applied past the grace period without Alipay's agreement.
    pub transitions_inferred: AtomicU64,
    /// Applied gateway messages deleted by the retention purge.
    pub messages_purged: AtomicU64,
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

    /// One HTTP request: `route` is the matched pattern (`/admin/api/orders/{id}`), or
    /// `unmatched`, so label values stay few whatever paths clients send.
    pub fn http_request(
        &self,
        method: &str,
        route: &str,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let Ok(mut stats) = self.http.lock() else {
            return;
        };
        let secs = elapsed.as_secs_f64();
        let latency = stats
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                latency.buckets[i] += 1;
            }
        }
        latency.count += 1;
        latency.sum += secs;
    }

    fn render_http(&self, out: &mut String) {
        let Ok(stats) = self.http.lock() else {
            return;
        };
        let _ = writeln!(
            out,
            "# HELP isv_http_request_duration_seconds HTTP request latency, by method, route and status.\n# TYPE isv_http_request_duration_seconds histogram"
        );
        for ((method, route, status), l) in stats.iter() {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{status}\"",
                label(method),
                label(route)
            );
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "isv_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    l.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "isv_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                l.count
            );
            let _ = writeln!(
                out,
                "isv_http_request_duration_seconds_sum{{{labels}}} {}",
                l.sum
            );
            let _ = writeln!(
                out,
                "isv_http_request_duration_seconds_count{{{labels}}} {}",
                l.count
            );
        }
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
        render_unlabelled("gauge", gauges)
    }

    /// Counters kept outside `Metrics` (the pool's statements), in Prometheus text format.
    pub fn render_counters(counters: &[(&str, &str, f64)]) -> String {
        render_unlabelled("counter", counters)
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
        let _ = writeln!(
            out,
            "# HELP isv_inbox_apply_lag_seconds_total Sum of receive-to-apply delays.\n# TYPE isv_inbox_apply_lag_seconds_total counter\nisv_inbox_apply_lag_seconds_total {}",
            self.apply_lag_ms_sum.load(Relaxed) as f64 / 1000.0
        );
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
            "isv_job_restarts_total",
            "Background jobs restarted after a panic or an unexpected end.",
            &[("", self.job_restarts.load(Relaxed))],
        );
        counter(
            "isv_token_check_faults_total",
            "Token checks (auth.token.app.query) Alipay did not answer; the authorization stayed active.",
            &[("", self.token_check_faults.load(Relaxed))],
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
            "isv_service_expiry_warnings_total",
            "Warnings raised before a service's last period ends.",
            &[("", self.service_expiry_warnings.load(Relaxed))],
        );
        counter(
            "isv_transitions_inferred_total",
            "Deadline rules applied past the grace period without Alipay.",
            &[("", self.transitions_inferred.load(Relaxed))],
        );
        counter(
            "isv_messages_purged_total",
            "Applied gateway messages deleted by the retention purge.",
            &[("", self.messages_purged.load(Relaxed))],
        );
        self.render_alipay(&mut out);
        self.render_http(&mut out);
        render_build_info(&mut out);
        render_process(&mut out);
        out
    }
}

/// `isv_build_info{version=...} 1`.
fn render_unlabelled(kind: &str, samples: &[(&str, &str, f64)]) -> String {
    let mut out = String::new();
    for (name, help, value) in samples {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

fn render_build_info(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP isv_build_info The running build.\n# TYPE isv_build_info gauge\nisv_build_info{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
}

/// Linux reports CPU times and start times in /proc in USER_HZ ticks, which the kernel ABI fixes
/// at 100 a second for user space on every architecture we build for.
const USER_HZ: f64 = 100.0;

/// The standard `process_*` metrics, read from /proc/self (absent where /proc is not).
fn render_process(out: &mut String) {
    let mut gauge = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // `fields[0]` is field 3 (state): utime is field 14, stime 15, starttime 22.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        gauge(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (utime + stime) / USER_HZ,
        );
    }
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(start), Some(boot)) = (field(22), boot_time) {
        gauge(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start / USER_HZ,
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
    };
    if let Some(rss) = kib("VmRSS:") {
        gauge(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss * 1024.0,
        );
    }
    if let Some(size) = kib("VmSize:") {
        gauge(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            size * 1024.0,
        );
    }
    if let Some(threads) = kib("Threads:") {
        gauge(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            threads,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            dir.count() as f64,
        );
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    if let Some(max) = max_fds {
        gauge(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
}
