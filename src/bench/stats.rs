//! Repeated measurements and their summary: every figure is the median of its samples, shown
//! with the smallest and largest sample so the spread is never hidden.

use std::time::Duration;

use serde::Serialize;

/// Samples of one quantity (seconds, requests per second, …) and their summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stat {
    /// Every sample, in the order taken.
    pub samples: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// Summarises `samples` (non-finite values are dropped). Empty input gives zeros.
    pub fn of(samples: Vec<f64>) -> Stat {
        let samples: Vec<f64> = samples.into_iter().filter(|v| v.is_finite()).collect();
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Stat {
            median,
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
            samples,
        }
    }

    /// Durations as seconds.
    pub fn of_durations(samples: &[Duration]) -> Stat {
        Stat::of(samples.iter().map(Duration::as_secs_f64).collect())
    }

    pub fn n(&self) -> usize {
        self.samples.len()
    }

    /// (max − min) / median, in percent: how far apart the samples are.
    pub fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median * 100.0
        }
    }

    /// Every sample and the summary multiplied by `k` (e.g. seconds → milliseconds).
    pub fn scaled(&self, k: f64) -> Stat {
        Stat {
            samples: self.samples.iter().map(|v| v * k).collect(),
            median: self.median * k,
            min: self.min * k,
            max: self.max * k,
        }
    }

    /// `1.23 s [1.20–1.31, n=5]`-style text, with `unit` after the median.
    pub fn show(&self, unit: &str) -> String {
        if self.n() <= 1 {
            return format!("{}{unit} [n={}]", num(self.median), self.n());
        }
        format!(
            "{}{unit} [{}–{}, n={}]",
            num(self.median),
            num(self.min),
            num(self.max),
            self.n()
        )
    }
}

/// A number with about three significant digits, no exponent.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.5}")
    }
}

/// `a / b`, or `None` when `b` is zero or either is not finite.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// The exponent k of `time ∝ size^k` between two points (1 = linear, 2 = quadratic).
pub fn scaling_exponent(size_a: f64, time_a: f64, size_b: f64, time_b: f64) -> Option<f64> {
    if size_a <= 0.0 || size_b <= 0.0 || time_a <= 0.0 || time_b <= 0.0 || size_a == size_b {
        return None;
    }
    Some((time_b / time_a).ln() / (size_b / size_a).ln())
}

/// Least-squares slope of ln(time) over ln(size) across all points (at least two).
pub fn fitted_exponent(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(s, t)| *s > 0.0 && *t > 0.0)
        .map(|(s, t)| (s.ln(), t.ln()))
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let n = logs.len() as f64;
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stat::of(vec![3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.median, s.min, s.max, s.n()), (2.0, 1.0, 3.0, 3));
        let s = Stat::of(vec![4.0, 1.0, 2.0, 3.0]);
        assert_eq!(s.median, 2.5);
        assert_eq!(Stat::of(Vec::new()).median, 0.0);
    }

    #[test]
    fn exponents() {
        let e = scaling_exponent(100.0, 1.0, 1000.0, 100.0).unwrap();
        assert!((e - 2.0).abs() < 1e-9);
        let f = fitted_exponent(&[(10.0, 1.0), (100.0, 10.0), (1000.0, 100.0)]).unwrap();
        assert!((f - 1.0).abs() < 1e-9);
        assert!(scaling_exponent(1.0, 1.0, 1.0, 2.0).is_none());
    }
}
