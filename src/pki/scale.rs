//! [`TtlScale`]: how much shorter workload certificates live in the lab than the profile says.
//!
//! # Contract
//!
//! A profile promises production lifetimes (TradePulse: 12 h workload certificates). Waiting half
//! a day for a renewal is not a test, so the lab divides the profile's workload TTL by a whole
//! factor, `1:N`: with the default N = [`DEFAULT_FACTOR`] (4320) a 12 h TTL becomes 10 s, and a
//! renewal at half-life happens 5 s after each issue — quick enough for the whole checklist to
//! observe one within its 10 s budget, and still far from the milliseconds a renewal takes, so a
//! loaded machine does not turn it into an expiry. The result is never shorter than
//! [`MIN_LAB_TTL`]: a 1 h TTL at 1:4320 would be under a second, which leaves a
//! scheduler hiccup no margin; such a profile gets [`MIN_LAB_TTL`] and reports say so.
//!
//! The factor is set with the environment variable [`ENV`] (`MESHPROOF_LAB_TTL_SCALE=3600`, a
//! whole number ≥ 1; `1` keeps the profile's TTL). Anything else is an error naming the variable
//! and the expected form, never a silent default. Reports print [`TtlScale::describe`].

use std::fmt;
use std::time::Duration;

/// The environment variable that sets the factor.
pub const ENV: &str = "MESHPROOF_LAB_TTL_SCALE";
/// The default factor: one lab second stands for 72 minutes.
pub const DEFAULT_FACTOR: u32 = 4320;
/// The shortest workload TTL the lab issues, whatever the factor.
pub const MIN_LAB_TTL: Duration = Duration::from_secs(10);

/// The lab's TTL scale (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlScale {
    factor: u32,
}

impl Default for TtlScale {
    fn default() -> Self {
        TtlScale {
            factor: DEFAULT_FACTOR,
        }
    }
}

impl TtlScale {
    /// `1:factor`; `None` for 0.
    pub fn new(factor: u32) -> Option<TtlScale> {
        (factor >= 1).then_some(TtlScale { factor })
    }

    /// From [`ENV`], or the default when it is unset.
    pub fn from_env() -> Result<TtlScale, String> {
        match std::env::var(ENV) {
            Ok(text) => TtlScale::parse(&text),
            Err(std::env::VarError::NotPresent) => Ok(TtlScale::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "{ENV} is not valid UTF-8: expected a whole number ≥ 1, like 1800"
            )),
        }
    }

    /// `"1800"` or `"1:1800"`.
    pub fn parse(text: &str) -> Result<TtlScale, String> {
        let trimmed = text.trim();
        let digits = trimmed.strip_prefix("1:").unwrap_or(trimmed);
        digits
            .parse::<u32>()
            .ok()
            .and_then(TtlScale::new)
            .ok_or_else(|| {
                format!(
                    "{ENV}={text:?}: expected a whole number ≥ 1 (the lab TTL is the profile's \
                     divided by it), like 1800"
                )
            })
    }

    pub fn factor(self) -> u32 {
        self.factor
    }

    /// The lab TTL for a profile TTL: divided by the factor, never below [`MIN_LAB_TTL`] (nor
    /// above the profile's own TTL).
    pub fn lab_ttl(self, profile_ttl: Duration) -> Duration {
        let scaled = profile_ttl / self.factor;
        // Whole seconds: that is what X.509 validity can express.
        let scaled = Duration::from_secs(scaled.as_secs());
        scaled.max(MIN_LAB_TTL).min(profile_ttl)
    }

    /// For reports: `1:4320 (workload TTL 12h → 10s in the lab, renewed at half-life: 5s)`.
    pub fn describe(self, profile_ttl: Duration) -> String {
        let lab = self.lab_ttl(profile_ttl);
        let floor = if lab == MIN_LAB_TTL && profile_ttl / self.factor < MIN_LAB_TTL {
            " (the lab's minimum)"
        } else {
            ""
        };
        format!(
            "{self} (workload TTL {} → {}{floor} in the lab, renewed at half-life: {})",
            crate::duration::format(profile_ttl),
            crate::duration::format(lab),
            crate::duration::format(lab / 2)
        )
    }
}

impl fmt::Display for TtlScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1:{}", self.factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H12: Duration = Duration::from_secs(12 * 3600);

    #[test]
    fn the_default_turns_twelve_hours_into_ten_seconds() {
        let scale = TtlScale::default();
        assert_eq!(scale.lab_ttl(H12), Duration::from_secs(10));
        assert_eq!(
            scale.describe(H12),
            "1:4320 (workload TTL 12h → 10s in the lab, renewed at half-life: 5s)"
        );
    }

    #[test]
    fn short_profile_ttls_stop_at_the_minimum_and_say_so() {
        let scale = TtlScale::default();
        let hour = Duration::from_secs(3600);
        assert_eq!(scale.lab_ttl(hour), MIN_LAB_TTL);
        assert!(scale.describe(hour).contains("10s (the lab's minimum)"));
        // Never longer than the profile's own TTL.
        assert_eq!(
            scale.lab_ttl(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn one_keeps_the_profile_ttl() {
        assert_eq!(TtlScale::parse("1").unwrap().lab_ttl(H12), H12);
    }

    #[test]
    fn parse_accepts_whole_factors_and_names_the_variable_otherwise() {
        assert_eq!(TtlScale::parse("3600").unwrap().factor(), 3600);
        assert_eq!(TtlScale::parse(" 1:60 ").unwrap().factor(), 60);
        for bad in ["0", "", "-5", "1.5", "fast", "1:0", "99999999999"] {
            let err = TtlScale::parse(bad).unwrap_err();
            assert!(err.contains(ENV) && err.contains("whole number"), "{err}");
        }
    }
}
