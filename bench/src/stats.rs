//! Percentiles and medians of samples.

use std::time::Duration;

/// Sorted samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted_ms: Vec<f64>,
}

impl Samples {
    /// From durations, in any order.
    pub fn from_durations(durations: &[Duration]) -> Self {
        Self::from_ms(durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect())
    }

    /// From milliseconds, in any order; NaNs are dropped.
    pub fn from_ms(mut ms: Vec<f64>) -> Self {
        ms.retain(|v| !v.is_nan());
        ms.sort_by(f64::total_cmp);
        Self { sorted_ms: ms }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.sorted_ms.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted_ms.is_empty()
    }

    /// The `p`-th percentile (0–100) by the nearest-rank method; NaN without samples.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.sorted_ms.is_empty() {
            return f64::NAN;
        }
        let n = self.sorted_ms.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted_ms[rank.clamp(1, n) - 1]
    }

    /// The median (50th percentile).
    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    /// The largest sample.
    pub fn max(&self) -> f64 {
        self.sorted_ms.last().copied().unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = Samples::from_ms((1..=100).rev().map(f64::from).collect());
        assert_eq!(samples.percentile(50.0), 50.0);
        assert_eq!(samples.percentile(99.0), 99.0);
        assert_eq!(samples.percentile(100.0), 100.0);
        assert_eq!(samples.percentile(0.0), 1.0);
        assert_eq!(samples.max(), 100.0);
    }

    #[test]
    fn small_and_empty_sets() {
        let samples = Samples::from_ms(vec![3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples.median(), 2.0);
        assert_eq!(samples.percentile(99.0), 3.0);
        assert!(Samples::default().median().is_nan());
        let samples = Samples::from_durations(&[Duration::from_millis(5), Duration::from_micros(1500)]);
        assert_eq!(samples.median(), 1.5);
    }
}
