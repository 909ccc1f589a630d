//! Choosing a graph from a compute budget: the most accurate [`Candidate`] (a width in a
//! precision) whose MACs, parameters, measured latency and accuracy all fit, or an error
//! naming the nearest and by how much it misses. Without measured accuracy, wider counts
//! as more accurate, and at one width more bits (f32, f16, int8). A reduced-precision
//! graph that measures no faster than a float graph at least as wide is [`Dominated`]:
//! never chosen, and said so (an engine may run it in float: tract's QDQ convolutions).
//! Candidates come from the manifest ([`Candidate::from_manifest`]), with latencies from
//! it or from this device's calibration ([`crate::SlimModel::select`]).

use slim_core::manifest::{Accuracy, Latency, Manifest};
use slim_core::{Precision, Variant, Width};

/// One graph as a budget judges it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub width: Width,
    pub precision: Precision,
    pub macs: u64,
    pub params: u64,
    /// Measured top-1 (in [0, 1]) and what it was measured on.
    pub accuracy: Option<Accuracy>,
    /// Measured latency at the budget's batch size, and what measured it.
    pub latency: Option<Latency>,
}

impl Candidate {
    /// Every graph of `manifest` (each width and its variants), with the manifest's
    /// latency at `batch` where it has one.
    pub fn from_manifest(manifest: &Manifest, batch: usize) -> Vec<Candidate> {
        (manifest.variants().into_iter())
            .map(|v| {
                let e = manifest.variant(v).expect("a variant of the manifest");
                Candidate {
                    width: e.width,
                    precision: e.precision,
                    macs: e.macs,
                    params: e.params,
                    accuracy: e.accuracy.clone(),
                    latency: e.latency.iter().find(|l| l.batch == batch).cloned(),
                }
            })
            .collect()
    }

    pub fn variant(&self) -> Variant {
        Variant::new(self.width, self.precision)
    }
}

/// A reduced-precision graph that measured no faster than a float graph at least as wide
/// (same engine, device and batch): it would buy nothing for its rounding.
#[derive(Clone, Debug, PartialEq)]
pub struct Dominated {
    pub variant: Variant,
    pub p50_ms: f64,
    /// The float graph that is at least as wide and as fast.
    pub by: Variant,
    pub by_p50_ms: f64,
    /// What measured both.
    pub backend: String,
}

impl std::fmt::Display for Dominated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "width {} is dominated: its p50 {:.3} ms on {} is no faster than width {}'s {:.3} ms (this engine gains nothing from {}; tract, for one, runs QDQ convolutions in float)",
            self.variant,
            self.p50_ms,
            self.backend,
            self.by,
            self.by_p50_ms,
            self.variant.precision
        )
    }
}

/// The reduced-precision candidates that a float candidate at least as wide matches or
/// beats on latency measured by the same engine on the same device; widest first.
pub fn dominated(candidates: &[Candidate]) -> Vec<Dominated> {
    let mut out = Vec::new();
    for c in candidates.iter().filter(|c| !c.precision.is_f32()) {
        let Some(l) = &c.latency else { continue };
        let rival = (candidates.iter())
            .filter(|f| f.precision.is_f32() && f.width >= c.width)
            .filter_map(|f| Some((f, f.latency.as_ref()?)))
            .filter(|(_, fl)| fl.backend == l.backend && fl.device == l.device)
            .filter(|(_, fl)| fl.p50_ms <= l.p50_ms)
            .max_by(|a, b| a.0.width.cmp(&b.0.width));
        if let Some((f, fl)) = rival {
            out.push(Dominated {
                variant: c.variant(),
                p50_ms: l.p50_ms,
                by: f.variant(),
                by_p50_ms: fl.p50_ms,
                backend: l.backend.clone(),
            });
        }
    }
    out.sort_by_key(|d| d.variant);
    out
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
    /// The precisions to choose among; `None`: every one the model has.
    pub precisions: Option<Vec<Precision>>,
}

impl Budget {
    /// This budget kept to `model`'s float graphs, for callers that name a graph by its
    /// width alone (the C API, the Python package); unchanged for a model that has no
    /// other graphs, so that its reasons read as before.
    pub fn floats_of(mut self, model: &crate::SlimModel) -> Budget {
        if model.variants().len() > model.widths().len() {
            self.precisions = Some(vec![Precision::F32]);
        }
        self
    }
}

/// The chosen graph and why it was chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    pub width: Width,
    pub precision: Precision,
    pub reason: String,
    /// The graphs more accurate than the chosen one, most accurate first, with why each
    /// misses the budget; the last is the one that would have been next.
    pub rejected: Vec<Rejected>,
    /// The graphs left out before ranking because a float graph at least as wide is as
    /// fast ([`dominated`]).
    pub dominated: Vec<Dominated>,
}

impl Selection {
    pub fn variant(&self) -> Variant {
        Variant::new(self.width, self.precision)
    }
}

/// A graph that misses the budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub width: Width,
    pub precision: Precision,
    pub misses: String,
}

impl Rejected {
    pub fn variant(&self) -> Variant {
        Variant::new(self.width, self.precision)
    }
}

/// No graph meets the budget.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("no width fits the budget: the nearest, width {nearest}, misses it: {misses}")]
pub struct NoFit {
    pub nearest: Variant,
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

/// Measured accuracy first, then [`Variant`]'s order (wider, then more bits).
fn more_accurate(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    accuracy(a)
        .total_cmp(&accuracy(b))
        .then(b.variant().cmp(&a.variant()))
}

/// What the budget judged of `e`, for the reason of a choice.
fn costs(e: &Candidate, budget: &Budget) -> String {
    let graph = match e.precision {
        Precision::F32 => String::new(),
        p => format!("{p} graph, "),
    };
    let mut out = format!(
        "{graph}{:.2} MMACs, {:.3} M params",
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
    if let Some(list) = &budget.precisions {
        let names: Vec<&str> = list.iter().map(|p| p.name()).collect();
        parts.push(format!("precision {}", names.join(" or ")));
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

/// The most accurate of `candidates` (at least one) within `budget`, the
/// [`dominated`] ones left out.
pub fn choose(candidates: &[Candidate], budget: &Budget) -> Result<Selection, NoFit> {
    let allowed = |c: &&Candidate| {
        (budget.precisions.as_ref()).is_none_or(|list| list.contains(&c.precision))
    };
    let all = candidates;
    let candidates: Vec<Candidate> = all.iter().filter(allowed).cloned().collect();
    if candidates.is_empty() {
        return Err(NoFit {
            nearest: all.first().expect("at least one candidate").variant(),
            misses: format!(
                "the model has no graph in the budget's {}",
                describe(budget)
            ),
        });
    }
    let dominated = dominated(&candidates);
    let mut ranked: Vec<&Candidate> = (candidates.iter())
        .filter(|c| !dominated.iter().any(|d| d.variant == c.variant()))
        .collect();
    ranked.sort_by(|a, b| more_accurate(b, a));
    let mut rejected = Vec::new();
    for &e in &ranked {
        let (m, _) = misses(e, budget);
        if m.is_empty() {
            return Ok(Selection {
                width: e.width,
                precision: e.precision,
                reason: format!(
                    "{}; the most accurate width within the budget ({})",
                    costs(e, budget),
                    describe(budget)
                ),
                rejected,
                dominated,
            });
        }
        rejected.push(Rejected {
            width: e.width,
            precision: e.precision,
            misses: m.join("; "),
        });
    }
    let (e, (m, _)) = ranked
        .iter()
        .map(|e| (e, misses(e, budget)))
        .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .expect("at least one candidate, and a float one is never dominated");
    Err(NoFit {
        nearest: e.variant(),
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
        assert_eq!(err.nearest, Variant::f32(slim_test_utils::width(0.25)));
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
        assert_eq!(err.nearest, Variant::f32(slim_test_utils::width(1.0)));
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

    /// `m` with an int8 variant of width `w` measured at `p50` ms (same engine).
    fn with_int8(mut m: Manifest, w: f64, p50: f64, top1: Option<f64>) -> Manifest {
        let e = (m.widths.iter_mut())
            .find(|e| e.width == slim_test_utils::width(w))
            .unwrap();
        let mut v = e.clone();
        v.precision = Precision::Int8;
        v.file = format!("w{w}-int8/model.onnx");
        v.latency[0].p50_ms = p50;
        if let (Some(a), Some(t)) = (v.accuracy.as_mut(), top1) {
            a.top1 = t;
        }
        e.variants.push(v);
        m
    }

    #[test]
    fn a_faster_int8_graph_is_chosen_by_latency_and_a_slow_one_is_dominated() {
        let w = slim_test_utils::width;
        let latency = |ms| Budget {
            max_latency_ms: Some(ms),
            latency_batch: 1,
            ..Budget::default()
        };
        // Width 0.75 in int8 at 1.2 ms: faster than 0.5 in float (1.3 ms), so under a
        // 1.25 ms budget it beats 0.5's float graph.
        let m = with_int8(manifest(), 0.75, 1.2, Some(0.795));
        let s = select(&m, &latency(1.25)).unwrap();
        assert_eq!(s.variant(), Variant::new(w(0.75), Precision::Int8));
        assert!(s.reason.starts_with("int8 graph, "), "{}", s.reason);
        assert!(s.dominated.is_empty());
        // Without a latency limit the float graph of the same width ranks first.
        assert_eq!(
            select(&m, &Budget::default()).unwrap().variant(),
            Variant::f32(w(1.0))
        );
        let b = Budget {
            max_macs: Some(20_000_000),
            ..Budget::default()
        };
        assert_eq!(select(&m, &b).unwrap().variant(), Variant::f32(w(0.75)));

        // Width 0.5 in int8 at 2.1 ms: slower than 0.75's float graph (2.0 ms): dominated,
        // never chosen, and the selection says so.
        let m = with_int8(manifest(), 0.5, 2.1, None);
        let s = select(&m, &latency(2.5)).unwrap();
        assert_eq!(s.variant(), Variant::f32(w(0.75)));
        assert_eq!(s.dominated.len(), 1);
        let d = &s.dominated[0];
        assert_eq!(
            (d.variant, d.by),
            (Variant::new(w(0.5), Precision::Int8), Variant::f32(w(0.75)))
        );
        let text = d.to_string();
        assert!(
            text.contains("width 0.5/int8 is dominated: its p50 2.100 ms on tract is no faster than width 0.75's 2.000 ms"),
            "{text}"
        );
        let s = select(&m, &latency(0.5)).unwrap_err();
        assert_eq!(s.nearest, Variant::f32(w(0.25)));
        // A budget may keep to some precisions.
        let m2 = with_int8(manifest(), 0.75, 1.2, None);
        let floats = Budget {
            precisions: Some(vec![Precision::F32]),
            ..latency(1.35)
        };
        let s = select(&m2, &floats).unwrap();
        assert_eq!(s.variant(), Variant::f32(w(0.5)));
        assert!(s.reason.contains("precision f32"), "{}", s.reason);
        let none = Budget {
            precisions: Some(vec![Precision::F16]),
            ..Budget::default()
        };
        let e = select(&m2, &none).unwrap_err();
        assert!(
            e.misses.contains("no graph in the budget's precision f16"),
            "{e}"
        );
        // Latencies of different engines are not compared.
        let mut m = m;
        m.widths[2].variants[0].latency[0].backend = "ort".into();
        assert!(dominated(&Candidate::from_manifest(&m, 1)).is_empty());
    }

    #[test]
    fn measured_accuracy_ranks_a_variant_like_any_graph() {
        let w = slim_test_utils::width;
        // Width 1.0 in int8: 1.0 ms and 80.5% top-1, between the float 1.0 and 0.75.
        let m = with_int8(manifest(), 1.0, 1.0, Some(0.805));
        let b = Budget {
            max_latency_ms: Some(1.5),
            latency_batch: 1,
            min_top1: Some(0.79),
            ..Budget::default()
        };
        let s = select(&m, &b).unwrap();
        assert_eq!(s.variant(), Variant::new(w(1.0), Precision::Int8));
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(s.rejected[0].variant(), Variant::f32(w(1.0)));
        assert!(s.reason.contains("top-1 80.50%"), "{}", s.reason);
    }
}
