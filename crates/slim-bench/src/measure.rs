//! The measurements: top-1/top-5 accuracy through a width's probe, and latency samples
//! with warmup excluded, summarised as percentiles.

use std::time::Instant;

use slim_runtime::{Error, SlimModel};

use crate::evalset::EvalSet;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
}

/// Whether `label` is among the `k` largest of `logits` (ties count against it).
pub fn in_top_k(logits: &[f32], label: usize, k: usize) -> bool {
    let target = logits[label];
    logits
        .iter()
        .enumerate()
        .filter(|&(i, &v)| i != label && v >= target)
        .count()
        < k
}

/// Accuracy of `width` on `set`, in batches of `batch`; `progress` is told images done.
pub fn accuracy(
    model: &SlimModel,
    width: f64,
    set: &EvalSet,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Accuracy, Error> {
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut start = 0;
    while start < set.len() {
        let n = batch.min(set.len() - start);
        let out = model.run(width, set.batch(start, n), n)?;
        for i in 0..n {
            let label = set.labels[start + i];
            top1 += in_top_k(out.logits_row(i), label, 1) as usize;
            top5 += in_top_k(out.logits_row(i), label, 5) as usize;
        }
        start += n;
        progress(n);
    }
    let total = set.len() as f64;
    Ok(Accuracy {
        top1: top1 as f64 / total,
        top5: top5 as f64 / total,
    })
}

/// Latency samples in milliseconds of `runs` calls at `batch`, after `warmup` calls that
/// are not recorded. `input` must hold one batch.
pub fn latency_ms(
    model: &SlimModel,
    width: f64,
    input: &[f32],
    batch: usize,
    warmup: usize,
    runs: usize,
) -> Result<Vec<f64>, Error> {
    for _ in 0..warmup {
        model.run(width, input, batch)?;
    }
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            model.run(width, input, batch)?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

/// The `q`-quantile (0..=1) of `samples` by linear interpolation between order statistics.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    assert!(!samples.is_empty(), "percentile of no samples");
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts_ties_against_the_label() {
        let logits = [0.1, 0.9, 0.5, 0.5];
        assert!(in_top_k(&logits, 1, 1));
        assert!(!in_top_k(&logits, 2, 1));
        assert!(
            !in_top_k(&logits, 2, 2),
            "tied with 3, both can't be second"
        );
        assert!(in_top_k(&logits, 2, 3));
        assert!(!in_top_k(&logits, 0, 3));
    }

    #[test]
    fn percentiles_interpolate() {
        let s = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(percentile(&s, 0.5), 3.0);
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 1.0), 5.0);
        assert!((percentile(&s, 0.9) - 4.6).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
