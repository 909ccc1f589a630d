//! Choosing a width from a compute budget: the most accurate [`Candidate`] whose MACs,
//! parameters, measured latency and accuracy all fit, or an error naming the nearest width
//! and by how much it misses. Without measured accuracy, wider counts as more accurate.
//! Candidates come from the manifest ([`Candidate::from_manifest`]), with latencies from
//! it or from this device's calibration ([`crate::SlimModel::select`]).

use slim_core::Width;
use slim_core::manifest::{Accuracy, Latency, Manifest};

/// One width as a budget judges it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub width: Width,
    pub macs: u64,
    pub params: u64,
    /// Measured top-1 (in [0, 1]) and what it was measured on.
    pub accuracy: Option<Accuracy>,
    /// Measured latency at the budget's batch size, and what measured it.
    pub latency: Option<Latency>,
}

impl Candidate {
    /// Every width of `manifest`, with the manifest's latency at `batch` where it has one.
    pub fn from_manifest(manifest: &Manifest, batch: usize) -> Vec<Candidate> {
        manifest
            .widths
            .iter()
            .map(|e| Candidate {
                width: e.width,
                macs: e.macs,
                params: e.params,
                accuracy: e.accuracy.clone(),
                latency: e.latency.iter().find(|l| l.batch == batch).cloned(),
            })
            .collect()
    }
}

/// Limits a width must meet; `None` means no limit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    pub max_macs: Option<u64>,
    pub max_params: Option<u64>,
    /// Upper bound on the measured p50 latency, in ms, at `latency_batch`.
    pub max_latency_ms: Option<f64>,
    pub latency_batch: usize,
    /// Lower bound on the measured top-1 accuracy, in [0, 1].
    pub min_top1: Option<f64>,
}

/// The chosen width and why it was chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    pub width: Width,
    pub reason: String,
    /// The widths more accurate than the chosen one, most accurate first, with why each
    /// misses the budget; the last is the one that would have been next.
    pub rejected: Vec<Rejected>,
}

/// A width that misses the budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub width: Width,
    pub misses: String,
}

/// No width meets the budget.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("no width fits the budget: the nearest, width {nearest}, misses it: {misses}")]
pub struct NoFit {
    pub nearest: Width,
    pub misses: String,
}

/// How far `e` is from `budget`: a list of misses (empty when it fits) and their summed
/// relative size, which ranks the near misses.
fn misses(e: &Candidate, budget: &Budget) -> (Vec<String>, f64) {
    let mut out = Vec::new();
    let mut size = 0.0;
    let mut over = |what: &str, got: f64, limit: f64, unit: &str| {
        out.push(format!(
            "{what} {got:.4}{unit} over the limit {limit:.4}{unit} by {:.1}%",
            100.0 * (got / limit - 1.0)
        ));
        size += got / limit - 1.0;
    };
    if let Some(m) = budget.max_macs.filter(|&m| e.macs > m) {
        over("MACs", e.macs as f64 / 1e6, m as f64 / 1e6, "M");
    }
    if let Some(p) = budget.max_params.filter(|&p| e.params > p) {
        over("params", e.params as f64 / 1e6, p as f64 / 1e6, "M");
    }
    if let Some(limit) = budget.max_latency_ms {
        match &e.latency {
            Some(l) if l.p50_ms > limit => over("p50 latency", l.p50_ms, limit, " ms"),
            Some(_) => {}
            None => {
                out.push(format!(
                    "no latency measured at batch {} (calibrate: slim-run --calibrate, or \
                     slim-bench --write-manifest)",
                    budget.latency_batch.max(1)
                ));
                size += 1.0;
            }
        }
    }
    if let Some(min) = budget.min_top1 {
        match &e.accuracy {
            Some(a) if a.top1 < min => {
                out.push(format!(
                    "top-1 {:.2}% under the minimum {:.2}%",
                    a.top1 * 100.0,
                    min * 100.0
                ));
                size += min / a.top1.max(1e-9) - 1.0;
            }
            Some(_) => {}
            None => {
                out.push("no accuracy measured in the manifest".into());
                size += 1.0;
            }
        }
    }
    (out, size)
}

/// Measured accuracy, or the width where none was measured (wider counts as better).
fn accuracy(e: &Candidate) -> f64 {
    e.accuracy.as_ref().map_or(e.width.get(), |a| a.top1)
}

fn more_accurate(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    accuracy(a)
        .total_cmp(&accuracy(b))
        .then(a.width.cmp(&b.width))
}

/// What the budget judged of `e`, for the reason of a choice.
fn costs(e: &Candidate, budget: &Budget) -> String {
    let mut out = format!(
        "{:.2} MMACs, {:.3} M params",
        e.macs as f64 / 1e6,
        e.params as f64 / 1e6
    );
    if budget.max_latency_ms.is_some() {
        let batch = budget.latency_batch.max(1);
        if let Some(l) = &e.latency {
            out += &format!(
                ", p50 {:.3} ms at batch {batch} ({} on {})",
                l.p50_ms, l.backend, l.device
            );
        }
    }
    out += &match &e.accuracy {
        Some(a) => format!(", top-1 {:.2}% ({})", a.top1 * 100.0, a.dataset),
        None => ", accuracy not measured (wider counts as more accurate)".into(),
    };
    out
}

/// What `budget` limits, in words.
pub fn describe(budget: &Budget) -> String {
    let mut parts = Vec::new();
    if let Some(m) = budget.max_macs {
        parts.push(format!("MACs <= {:.2} M", m as f64 / 1e6));
    }
    if let Some(p) = budget.max_params {
        parts.push(format!("params <= {:.3} M", p as f64 / 1e6));
    }
    if let Some(l) = budget.max_latency_ms {
        parts.push(format!(
            "p50 latency <= {l} ms at batch {}",
            budget.latency_batch.max(1)
        ));
    }
    if let Some(t) = budget.min_top1 {
        parts.push(format!("top-1 >= {:.2}%", t * 100.0));
    }
    if parts.is_empty() {
        "no limits".into()
    } else {
        parts.join(", ")
    }
}

/// The most accurate width of `manifest` within `budget`, judging latency by the
/// manifest's figures.
pub fn select(manifest: &Manifest, budget: &Budget) -> Result<Selection, NoFit> {
    choose(
        &Candidate::from_manifest(manifest, budget.latency_batch.max(1)),
        budget,
    )
}

/// The most accurate of `candidates` (at least one) within `budget`.
pub fn choose(candidates: &[Candidate], budget: &Budget) -> Result<Selection, NoFit> {
    let mut ranked: Vec<&Candidate> = candidates.iter().collect();
    ranked.sort_by(|a, b| more_accurate(b, a));
    let mut rejected = Vec::new();
    for e in ranked {
        let (m, _) = misses(e, budget);
        if m.is_empty() {
            return Ok(Selection {
                width: e.width,
                reason: format!(
                    "{}; the most accurate width within the budget ({})",
                    costs(e, budget),
                    describe(budget)
                ),
                rejected,
            });
        }
        rejected.push(Rejected {
            width: e.width,
            misses: m.join("; "),
        });
    }
    let (e, (m, _)) = candidates
        .iter()
        .map(|e| (e, misses(e, budget)))
        .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .expect("at least one candidate");
    Err(NoFit {
        nearest: e.width,
        misses: m.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slim_core::manifest::{FORMAT, WidthEntry};

    fn manifest() -> Manifest {
        let entry = |w: Width, macs: u64, top1: Option<f64>, p50: f64| WidthEntry {
            width: w,
            file: format!("w{w}/model.onnx"),
            macs,
            params: macs / 100,
            embedding_dim: 64,
            accuracy: top1.map(|t| Accuracy {
                top1: t,
                top5: 0.99,
                dataset: "test".into(),
                samples: 100,
            }),
            latency: vec![Latency {
                backend: "tract".into(),
                device: "cpu".into(),
                batch: 1,
                p50_ms: p50,
                p90_ms: p50,
                p99_ms: p50,
            }],
            precision: Default::default(),
            bytes: None,
            derived: None,
            variants: vec![],
        };
        Manifest {
            format: FORMAT.into(),
            backbone: "resnet20".into(),
            input: slim_core::Preprocessing {
                in_channels: 1,
                image_size: 28,
                mean: vec![0.3],
                std: vec![0.3],
            },
            class_names: vec!["a".into(), "b".into()],
            checkpoint_sha256: "x".into(),
            cascade: None,
            widths: vec![
                entry(slim_test_utils::width(1.0), 31_000_000, Some(0.81), 2.6),
                entry(slim_test_utils::width(0.75), 17_000_000, Some(0.80), 2.0),
                entry(slim_test_utils::width(0.5), 7_800_000, Some(0.79), 1.3),
                entry(slim_test_utils::width(0.25), 2_000_000, Some(0.75), 0.8),
            ],
        }
    }

    #[test]
    fn picks_the_most_accurate_width_that_fits() {
        let m = manifest();
        assert_eq!(
            select(&m, &Budget::default()).unwrap().width,
            slim_test_utils::width(1.0)
        );
        let b = Budget {
            max_macs: Some(20_000_000),
            ..Budget::default()
        };
        let s = select(&m, &b).unwrap();
        assert_eq!(s.width, slim_test_utils::width(0.75));
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(s.rejected[0].width, slim_test_utils::width(1.0));
        assert!(
            s.rejected[0]
                .misses
                .contains("MACs 31.0000M over the limit 20.0000M"),
            "{:?}",
            s.rejected
        );
        assert!(s.reason.contains("MACs <= 20.00 M"), "{}", s.reason);
        let b = Budget {
            max_latency_ms: Some(1.5),
            latency_batch: 1,
            ..Budget::default()
        };
        assert_eq!(select(&m, &b).unwrap().width, slim_test_utils::width(0.5));
        let b = Budget {
            max_params: Some(100_000),
            min_top1: Some(0.7),
            ..Budget::default()
        };
        assert_eq!(select(&m, &b).unwrap().width, slim_test_utils::width(0.5));
    }

    #[test]
    fn accuracy_beats_width_when_measured() {
        let mut m = manifest();
        m.widths[0].accuracy.as_mut().unwrap().top1 = 0.70; // a badly trained full width
        assert_eq!(
            select(&m, &Budget::default()).unwrap().width,
            slim_test_utils::width(0.75)
        );
    }

    #[test]
    fn no_fit_names_the_nearest_width_and_the_miss() {
        let m = manifest();
        let b = Budget {
            max_macs: Some(1_000_000),
            ..Budget::default()
        };
        let err = select(&m, &b).unwrap_err();
        assert_eq!(err.nearest, slim_test_utils::width(0.25));
        assert!(
            err.misses
                .contains("MACs 2.0000M over the limit 1.0000M by 100.0%"),
            "{err}"
        );
        let b = Budget {
            min_top1: Some(0.9),
            ..Budget::default()
        };
        let err = select(&m, &b).unwrap_err();
        assert_eq!(err.nearest, slim_test_utils::width(1.0));
        assert!(
            err.to_string().contains("under the minimum 90.00%"),
            "{err}"
        );
        let b = Budget {
            max_latency_ms: Some(1.0),
            latency_batch: 8,
            ..Budget::default()
        };
        assert!(
            select(&m, &b)
                .unwrap_err()
                .misses
                .contains("no latency measured at batch 8")
        );
    }
}
