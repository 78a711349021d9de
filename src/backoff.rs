//! The one retry schedule: every queue (inbox, deadlines, builds, merchant syncs) and the Alipay
//! client wait `base · 2^attempt`, capped, with jitter so that work failing together does not
//! retry together.

use std::time::Duration;

/// The exponential window for attempt `attempt` (0-based): `min(cap, base · 2^attempt)`.
pub fn window(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// How to spread retries inside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, window]` (for quick in-process retries of one call).
    Full,
    /// Uniform in `[window, 1.5 · window]` (for queued work: never sooner than the window).
    Half,
}

/// The delay before retry `attempt` (0-based).
pub fn backoff(base: Duration, cap: Duration, attempt: u32, jitter: Jitter) -> Duration {
    let window = window(base, cap, attempt);
    let micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
    let extra = match jitter {
        Jitter::Full => rand::random::<u64>() % (micros + 1),
        Jitter::Half => micros + rand::random::<u64>() % (micros / 2 + 1),
    };
    Duration::from_micros(extra)
}

/// Queued work (a message, a build step, a merchant sync): 1 s, 2 s, 4 s … up to `cap`, never
/// sooner than the window.
pub fn queued(attempts: i32, cap: Duration) -> chrono::Duration {
    let attempt = u32::try_from(attempts).unwrap_or(0);
    let delay = backoff(Duration::from_secs(1), cap, attempt, Jitter::Half);
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}

/// How a queue treats an item whose attempt failed: retried after [`queued`]'s wait, or, once
/// `max_attempts` attempts have failed, given up (left in a state support sees). Every queue
/// (inbox, deadlines, builds, merchant deliveries) settles its failures through this one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The longest wait between two attempts.
    pub cap: Duration,
    /// Give up after this many failed attempts; `None` never gives up (deadlines: the rule's own
    /// grace period decides when to stop asking Alipay).
    pub max_attempts: Option<i32>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again this long from now; the item has now failed `attempts` times.
    Retry {
        wait: chrono::Duration,
        attempts: i32,
    },
    /// Stop trying: the item has failed `attempts` times.
    GiveUp { attempts: i32 },
}

impl RetryPolicy {
    /// The decision after an attempt failed, for an item that had failed `failed_before` times.
    pub fn after_failure(&self, failed_before: i32) -> AfterFailure {
        let attempts = failed_before.saturating_add(1);
        match self.max_attempts {
            Some(max) if attempts >= max => AfterFailure::GiveUp { attempts },
            Some(_) | None => AfterFailure::Retry {
                wait: self.wait(failed_before),
                attempts,
            },
        }
    }

    /// The wait before the next attempt of an item that has failed `failed_before` times.
    pub fn wait(&self, failed_before: i32) -> chrono::Duration {
        queued(failed_before, self.cap)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_policy_retries_with_the_queued_wait_then_gives_up_at_its_limit() {
        let policy = RetryPolicy {
            cap: Duration::from_secs(60),
            max_attempts: Some(3),
        };
        for failed_before in [0, 1] {
            let AfterFailure::Retry { wait, attempts } = policy.after_failure(failed_before) else {
                panic!("attempt {} should be retried", failed_before + 1);
            };
            assert_eq!(attempts, failed_before + 1);
            let window = chrono::Duration::from_std(window(
                Duration::from_secs(1),
                policy.cap,
                failed_before as u32,
            ))
            .unwrap();
            assert!(wait >= window && wait <= window * 3 / 2, "{wait:?}");
        }
        assert_eq!(
            policy.after_failure(2),
            AfterFailure::GiveUp { attempts: 3 }
        );
        let forever = RetryPolicy {
            max_attempts: None,
            ..policy
        };
        assert!(matches!(
            forever.after_failure(1_000),
            AfterFailure::Retry {
                attempts: 1_001,
                ..
            }
        ));
    }
    use super::*;

    #[test]
    fn window_doubles_up_to_the_cap() {
        let (base, cap) = (Duration::from_millis(200), Duration::from_secs(5));
        assert_eq!(window(base, cap, 0), base);
        assert_eq!(window(base, cap, 3), Duration::from_millis(1600));
        assert_eq!(window(base, cap, 5), cap);
        assert_eq!(window(base, cap, 40), cap);
    }

    #[test]
    fn queued_work_waits_at_least_the_window_and_at_most_half_again() {
        let cap = Duration::from_secs(3600);
        for attempts in [0, 1, 5, 11, 12, 30, -1] {
            let w = window(
                Duration::from_secs(1),
                cap,
                u32::try_from(attempts).unwrap_or(0),
            );
            let d = queued(attempts, cap).to_std().unwrap();
            assert!(
                d >= w && d <= w + w / 2,
                "attempt {attempts}: {d:?} outside {w:?}"
            );
        }
    }

    #[test]
    fn full_jitter_stays_inside_the_window() {
        let (base, cap) = (Duration::from_millis(200), Duration::from_secs(5));
        for attempt in 0..8 {
            assert!(backoff(base, cap, attempt, Jitter::Full) <= window(base, cap, attempt));
        }
    }
}
