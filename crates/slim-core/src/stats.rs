//! Order statistics of measured samples (latencies, step times): one percentile for the
//! calibration, the adaptive controller, slim-bench and bench-step, and one
//! [`LatencySummary`] of timed calls.

use serde::{Deserialize, Serialize};

/// The `q`-quantile (0 to 1) of `samples`, interpolating linearly between the two nearest
/// order statistics (numpy's default): `q = 0.5` of `[1, 2, 3, 4]` is 2.5. `None` when
/// there are no samples.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(s[lo] + (s[hi] - s[lo]) * (pos - lo as f64))
}

/// Latency of one width at one batch size, in milliseconds per call (warmup excluded): the
/// one summary of timed calls, kept by slim-bench's reports and the runtime's calibration
/// and copied into a manifest's [`crate::manifest::Latency`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub batch: usize,
    /// Timed calls the figures come from.
    pub runs: usize,
    pub min_ms: f64,
    pub p25_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Images per second over all timed calls: `batch * runs / total time`.
    pub images_per_s: f64,
}

impl LatencySummary {
    /// Summarises `samples_ms`, the durations of calls of `batch` images each.
    pub fn new(batch: usize, samples_ms: &[f64]) -> LatencySummary {
        let p = |q| percentile(samples_ms, q).expect("a summary of no samples");
        let total_ms: f64 = samples_ms.iter().sum();
        LatencySummary {
            batch,
            runs: samples_ms.len(),
            min_ms: p(0.0),
            p25_ms: p(0.25),
            p50_ms: p(0.5),
            p75_ms: p(0.75),
            p90_ms: p(0.9),
            p95_ms: p(0.95),
            p99_ms: p(0.99),
            max_ms: p(1.0),
            mean_ms: total_ms / samples_ms.len() as f64,
            images_per_s: (batch * samples_ms.len()) as f64 / (total_ms / 1e3),
        }
    }

    /// Interquartile range, p75 - p25.
    pub fn iqr_ms(&self) -> f64 {
        self.p75_ms - self.p25_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_order_statistics() {
        let s = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&s, 0.5), Some(3.0));
        assert_eq!(percentile(&s, 0.0), Some(1.0));
        assert_eq!(percentile(&s, 1.0), Some(5.0));
        assert!((percentile(&s, 0.9).unwrap() - 4.6).abs() < 1e-12);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn summary_of_known_samples() {
        // 1..=9 ms shuffled: quartiles at 3 and 7, p99 between 8 and 9.
        let s = [5.0, 9.0, 1.0, 7.0, 3.0, 2.0, 8.0, 4.0, 6.0];
        let l = LatencySummary::new(8, &s);
        assert_eq!((l.min_ms, l.p25_ms, l.p50_ms), (1.0, 3.0, 5.0));
        assert_eq!((l.p75_ms, l.max_ms, l.mean_ms), (7.0, 9.0, 5.0));
        assert!((l.p90_ms - 8.2).abs() < 1e-12);
        assert!((l.p95_ms - 8.6).abs() < 1e-12);
        assert!((l.p99_ms - 8.92).abs() < 1e-12);
        assert_eq!(l.iqr_ms(), 4.0);
        assert_eq!(l.runs, 9);
        // 9 calls of 8 images in 45 ms.
        assert!((l.images_per_s - 72.0 / 0.045).abs() < 1e-9);
    }

    #[test]
    fn throughput_counts_total_time_not_the_median() {
        // One slow call in four: the median says 1 ms, the throughput sees 10 ms in all.
        let l = LatencySummary::new(1, &[1.0, 1.0, 1.0, 7.0]);
        assert_eq!(l.p50_ms, 1.0);
        assert!((l.images_per_s - 400.0).abs() < 1e-9);
    }
}
