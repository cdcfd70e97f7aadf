//! Timestamps as Kubernetes writes them (RFC 3339, UTC, whole seconds) and
//! kubectl's AGE format.

use chrono::{DateTime, SecondsFormat, Utc};
use std::time::{Duration, SystemTime};

/// The current time as an RFC 3339 string, e.g. "2026-11-24T08:10:28Z".
pub fn now() -> String {
    format(SystemTime::now())
}

/// Formats a time as Kubernetes does.
pub fn format(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses an RFC 3339 timestamp.
pub fn parse(s: &str) -> Option<SystemTime> {
    DateTime::parse_from_rfc3339(s).ok().map(SystemTime::from)
}

/// kubectl's AGE column for a timestamp ("<unknown>" when absent or unparsable).
pub fn age(timestamp: &str) -> String {
    age_at(timestamp, SystemTime::now())
}

/// kubectl's AGE column for a timestamp as seen at `now` (translateTimestampSince):
/// "<unknown>" when absent or unparsable, "<invalid>" when two seconds or more ahead
/// (HumanDuration truncates the seconds toward zero and forgives -1).
pub fn age_at(timestamp: &str, now: SystemTime) -> String {
    match parse(timestamp) {
        Some(t) => match now.duration_since(t) {
            Ok(d) => human_duration(d),
            Err(e) if e.duration() >= Duration::from_secs(2) => "<invalid>".to_string(),
            Err(_) => "0s".to_string(),
        },
        None => "<unknown>".to_string(),
    }
}

/// kubectl's short human duration (k8s.io/apimachinery duration.HumanDuration).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let minutes = secs / 60;
    let hours = secs / 3600;
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let days = hours / 24;
        match days % 365 {
            0 => format!("{}y", days / 365),
            dd => format!("{}y{dd}d", days / 365),
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 120, "3h2m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(s)), want, "{s}s");
        }
    }

    #[test]
    fn round_trips_rfc3339() {
        let s = now();
        assert!(s.ends_with('Z'));
        assert_eq!(format(parse(&s).unwrap()), s);
        assert_eq!(age("nonsense"), "<unknown>");
        let t = parse("2026-01-01T00:00:10Z").unwrap();
        let ahead = |ms| age_at("2026-01-01T00:00:10Z", t - Duration::from_millis(ms));
        assert_eq!(ahead(1_900), "0s", "-1.9 s truncates to -1: almost now");
        assert_eq!(ahead(2_000), "<invalid>");
        assert_eq!(
            age_at("2026-01-01T00:00:10Z", t + Duration::from_millis(1_999)),
            "1s"
        );
    }
}
