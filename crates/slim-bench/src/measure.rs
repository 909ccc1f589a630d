//! The accuracy measurement: top-1/top-5 through a graph's probe (latency samples come
//! from `slim_runtime::calibrate::latency_samples`).

use slim_core::Variant;
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

/// Accuracy of `graph` (a width means its float graph) on `set`, in batches of `batch`;
/// `progress` is told images done.
pub fn accuracy(
    model: &SlimModel,
    graph: impl Into<Variant>,
    set: &EvalSet,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Accuracy, Error> {
    let graph = graph.into();
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut start = 0;
    while start < set.len() {
        let n = batch.min(set.len() - start);
        let out = model.run(graph, set.batch(start, n), n)?;
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
}
