//! Alipay's clock is Beijing time (UTC+8, no daylight saving) for `yyyy-MM-dd HH:mm:ss` strings and
//! epoch milliseconds for `utc_timestamp` and `auth_time`. We store UTC.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

pub const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Reads `yyyy-MM-dd HH:mm:ss` as Beijing time.
pub fn parse_beijing(text: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), FORMAT).ok()?;
    beijing()
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Formats an instant as Alipay's `timestamp` parameter wants it.
pub fn format_beijing(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing()).format(FORMAT).to_string()
}

pub fn from_epoch_millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_round_trip() {
        let t = parse_beijing("2024-06-10 13:01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-06-10T05:01:00+00:00");
        assert_eq!(format_beijing(t), "2024-06-10 13:01:00");
        assert!(parse_beijing("2024-06-10T13:01:00").is_none());
    }
}
