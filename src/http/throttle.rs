//! Failed web sign-ins, counted per name and per client address: past the limit within the
//! window, sign-in answers 429 until the window ends (a right password included). Held in
//! memory, per process; time comes from the injected clock.

use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// Failures allowed per name within the window.
pub const PER_NAME: u32 = 5;
/// Failures allowed per address within the window (several people may share one).
pub const PER_ADDRESS: u32 = 20;
/// How long failures count, and how long a throttled name or address waits.
pub const WINDOW_MINUTES: i64 = 15;
/// Keys tracked at most; the oldest windows go first beyond it.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, (u32, DateTime<Utc>)>>,
}

/// Whether a sign-in may be tried now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused until this long from now.
    Throttled {
        retry_after_seconds: i64,
    },
}

fn keys(name: &str, address: &str) -> [(String, u32); 2] {
    [
        (format!("name:{name}"), PER_NAME),
        (format!("addr:{address}"), PER_ADDRESS),
    ]
}

impl SignInThrottle {
    pub fn check(&self, name: &str, address: &str, now: DateTime<Utc>) -> Verdict {
        let window = Duration::minutes(WINDOW_MINUTES);
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = 0;
        for (key, limit) in keys(name, address) {
            if let Some((count, since)) = failures.get(&key)
                && *count >= limit
                && now < *since + window
            {
                wait = wait.max((*since + window - now).num_seconds().max(1));
            }
        }
        if wait > 0 {
            Verdict::Throttled {
                retry_after_seconds: wait,
            }
        } else {
            Verdict::Allowed
        }
    }

    /// Counts a failure; true when it is the one that starts throttling (worth one log line).
    pub fn failed(&self, name: &str, address: &str, now: DateTime<Utc>) -> bool {
        let window = Duration::minutes(WINDOW_MINUTES);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, (_, since)| now < *since + window);
        }
        let mut started = false;
        for (key, limit) in keys(name, address) {
            let entry = failures.entry(key).or_insert((0, now));
            if now >= entry.1 + window {
                *entry = (0, now);
            }
            entry.0 += 1;
            started |= entry.0 == limit;
        }
        started
    }

    /// A successful sign-in clears the name's failures (not the address's).
    pub fn succeeded(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&format!("name:{name}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-10T05:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_name_is_throttled_after_its_failures_until_the_window_ends() {
        let throttle = SignInThrottle::default();
        for i in 0..PER_NAME {
            assert_eq!(throttle.check("ann", "10.0.0.1", t0()), Verdict::Allowed);
            assert_eq!(throttle.failed("ann", "10.0.0.1", t0()), i + 1 == PER_NAME);
        }
        assert_eq!(
            throttle.check("ann", "10.0.0.2", t0() + Duration::minutes(5)),
            Verdict::Throttled {
                retry_after_seconds: 600
            }
        );
        // Another name from the same address is not throttled yet.
        assert_eq!(throttle.check("bob", "10.0.0.1", t0()), Verdict::Allowed);
        assert_eq!(
            throttle.check("ann", "10.0.0.1", t0() + Duration::minutes(WINDOW_MINUTES)),
            Verdict::Allowed
        );
    }

    #[test]
    fn an_address_is_throttled_after_failures_over_many_names() {
        let throttle = SignInThrottle::default();
        for i in 0..PER_ADDRESS {
            throttle.failed(&format!("guess{i}"), "10.0.0.9", t0());
        }
        assert!(matches!(
            throttle.check("anyone", "10.0.0.9", t0()),
            Verdict::Throttled { .. }
        ));
        assert_eq!(throttle.check("anyone", "10.0.0.8", t0()), Verdict::Allowed);
    }
}
