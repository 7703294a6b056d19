//! Timestamps: microseconds since the Unix epoch in storage, RFC 3339 on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A point in time, to the microsecond, UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// From microseconds since the Unix epoch (as stored).
    pub fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since the Unix epoch (as stored).
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// From a `time` date and time.
    pub fn from_datetime(dt: OffsetDateTime) -> Self {
        Self((dt.unix_timestamp_nanos() / 1_000) as i64)
    }

    /// As a `time` date and time.
    pub fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// This time plus `seconds` (minus, if negative), saturating.
    pub fn add_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1_000_000)))
    }

    /// From RFC 3339 text (as the API writes it).
    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339).map(Self::from_datetime)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime().format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "@{}us", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// A duration as the API and the configuration write it: 1 to 9 digits, the first not 0, and
/// an optional unit (`s`, the default, `m`, `h`, `d` or `w`). Nothing else, not even spaces:
/// [`DURATION_PATTERN`] is the same rule.
pub fn parse_duration_secs(s: &str) -> Result<i64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let shown: String = s.chars().take(32).collect();
    if num.is_empty() || num.len() > 9 || num.starts_with('0') {
        return Err(format!("invalid duration {shown:?}: expected 1 to 9 digits and a unit, e.g. 30m, 1h, 7d"));
    }
    let n: i64 = num.parse().map_err(|_| format!("invalid duration {shown:?}: expected e.g. 30m, 1h, 7d"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("invalid duration unit in {shown:?}: use s, m, h, d or w")),
    };
    Ok(n * mult)
}

/// [`parse_duration_secs`]'s rule as a pattern, for the API document.
pub const DURATION_PATTERN: &str = "^[1-9][0-9]{0,8}[smhdw]?$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let s = t.to_string();
        assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), t);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("1h").unwrap(), 3600);
        assert_eq!(parse_duration_secs("7d").unwrap(), 604_800);
        assert_eq!(parse_duration_secs("45").unwrap(), 45);
        assert!(parse_duration_secs("0s").is_err());
        assert!(parse_duration_secs("1y").is_err());
        assert!(parse_duration_secs("h").is_err());
        for bad in [" 1h", "1h ", "01h", "1234567890s", "", "-1s", "1.5h"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration_secs("999999999w").unwrap(), 999_999_999 * 604_800);
    }
}
