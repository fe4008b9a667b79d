//! Human durations as they appear in profiles: `90s`, `30m`, `12h`, `395d`, or bare seconds (`3600`,
//! as SPIRE's `-ttl` takes them).

use std::fmt;
use std::time::Duration;

/// Parses `<digits><unit>` with unit `s`, `m`, `h` or `d`, or plain seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" is not a duration: expected a whole number and a unit s, m, h or d, like 12h"))?;
    let seconds_per_unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "\"{text}\" has unit \"{other}\": expected s, m, h or d, like 12h"
            ));
        }
    };
    amount
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("\"{text}\" is too long a duration"))
}

/// Formats a duration in the largest unit that divides it exactly (`12h`, `395d`, `90s`).
pub fn format(duration: Duration) -> String {
    let secs = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= size && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    if duration.subsec_nanos() == 0 {
        format!("{secs}s")
    } else {
        format!("{:.3}s", duration.as_secs_f64())
    }
}

/// A profile duration: deserialises from `"12h"` or from an integer number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 12h, 30d, 90s, or whole seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(|v| HumanDuration(Duration::from_secs(v)))
                    .map_err(|_| {
                        E::custom(format!("{v} is negative: expected a duration like 12h"))
                    })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse(v).map(HumanDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(parse("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse("395d"), Ok(Duration::from_secs(395 * 86_400)));
        assert_eq!(parse("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert!(
            parse("12 hours")
                .unwrap_err()
                .contains("expected s, m, h or d")
        );
        assert!(parse("h").unwrap_err().contains("not a duration"));
        assert!(parse("-5s").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format(Duration::from_secs(43_200)), "12h");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_secs(86_400 * 30)), "30d");
    }
}
