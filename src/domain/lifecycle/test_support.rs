//! Helpers shared by the lifecycle tests.

use chrono::{DateTime, Duration, Utc};

use super::LifecycleRules;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub(super) fn t0() -> DateTime<Utc> {
    at("2024-06-10T05:01:00Z")
}

pub(super) fn days(n: i64) -> Duration {
    Duration::days(n)
}

pub(super) fn hours(n: i64) -> Duration {
    Duration::hours(n)
}

pub(super) fn rules() -> LifecycleRules {
    LifecycleRules::default()
}
