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

#[cfg(test)]
mod tests {
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
