//! `slim-bench --cascade`: the width cascade calibrated on every other image of the
//! labelled set (the calibration half) and measured on the rest (the measured half),
//! next to each fixed width on the same images, one image per call: a cascade answers
//! images as they come, so its cost is per image.

use std::fmt::Write as _;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use slim_core::Width;
use slim_core::cascade::{Cascade, Confidence};
use slim_core::manifest::CalibratedCascade;
use slim_core::stats::LatencySummary;
use slim_runtime::cascade::{Held, Sweep};
use slim_runtime::{Error, SlimModel, top_k};

use crate::evalset::EvalSet;

/// Thresholds drawn as the cascade's curve: 0, 0.05, ..., 1.
pub const SWEEP_STEPS: usize = 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CascadeReport {
    /// The calibrated cascade and what it reached on the calibration half.
    pub calibrated: CalibratedCascade,
    /// Images of the measured half.
    pub images: usize,
    /// Each fixed width, narrowest first, then the cascade, on the measured half.
    pub rows: Vec<Row>,
    /// The calibrated cascade's widths at each of [`SWEEP_STEPS`] + 1 shared thresholds
    /// on the measured half, judged from the fixed widths' outputs.
    pub sweep: Vec<SweepPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The fixed width; `None` for the cascade.
    pub width: Option<Width>,
    pub top1: f64,
    /// Multiply-accumulates per image, averaged (the cascade counts every stage run).
    pub mean_macs: f64,
    /// One image per call.
    pub latency: LatencySummary,
    /// Images answered per stage (the cascade only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answered: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub threshold: f64,
    pub top1: f64,
    pub mean_macs: f64,
}

/// Whether the top class of `logits` (ties to the lower index, as the cascade judges) is
/// `label`.
fn right(logits: &[f32], label: usize) -> bool {
    top_k(logits, 1, &[])
        .first()
        .is_some_and(|c| c.index == label)
}

/// Every width's logits on `set`, narrowest first, in batches of 64.
fn held(model: &SlimModel, widths: &[Width], set: &EvalSet) -> Result<Vec<Held>, Error> {
    widths
        .iter()
        .map(|&width| {
            let mut logits = Vec::with_capacity(set.len());
            for start in (0..set.len()).step_by(64) {
                let n = 64.min(set.len() - start);
                let out = model.run(width, set.batch(start, n), n)?;
                logits.extend((0..n).map(|i| out.logits_row(i).to_vec()));
            }
            let macs = model.entry(width)?.macs;
            Ok(Held {
                width,
                macs,
                logits,
            })
        })
        .collect()
}

/// Calibrates on the calibration half for `target_top1` (default: the widest width's
/// top-1 there less half a point), then times every fixed width and the cascade on each
/// image of the measured half in turn, after `warmup` untimed images. `progress` is told
/// the measured images done.
pub fn measure(
    model: &SlimModel,
    set: &EvalSet,
    confidence: Confidence,
    target_top1: Option<f64>,
    warmup: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<CascadeReport, Error> {
    if set.len() < 4 {
        return Err(Error::Invalid(format!(
            "--cascade needs at least 4 labelled images (2 to calibrate on, 2 to measure), \
             not {}",
            set.len()
        )));
    }
    let (calibration, measured) = set.halves();
    let mut widths = model.widths();
    widths.sort();
    let held_cal = held(model, &widths, &calibration)?;
    let sweep = Sweep::new(&held_cal, &calibration.labels, confidence)?;
    let target = match target_top1 {
        Some(t) => t,
        None => {
            let widest = widths.last().expect("a model has a width");
            let alone = Cascade::shared(confidence, &[*widest], 0.0).map_err(Error::Invalid)?;
            (sweep.judge(&alone)?.top1 - 0.005).max(0.0)
        }
    };
    let (cascade, reached) = sweep.calibrate(target)?;
    let calibrated = CalibratedCascade {
        cascade: cascade.clone(),
        target_top1: target,
        top1: reached.top1,
        mean_macs: reached.mean_macs,
        dataset: format!("{} (calibration half)", set.description),
        samples: calibration.len(),
    };
    let (rows, held_measured) =
        time_each_image(model, &widths, &cascade, &measured, warmup, |n| {
            progress(n, measured.len())
        })?;
    let judge = Sweep::new(&held_measured, &measured.labels, confidence)?;
    let widths: Vec<Width> = cascade.stages().iter().map(|s| s.width).collect();
    let sweep = (0..=SWEEP_STEPS)
        .map(|i| {
            let t = i as f64 / SWEEP_STEPS as f64;
            let c = Cascade::shared(confidence, &widths, t).map_err(Error::Invalid)?;
            let r = judge.judge(&c)?;
            Ok(SweepPoint {
                threshold: t,
                top1: r.top1,
                mean_macs: r.mean_macs,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(CascadeReport {
        calibrated,
        images: measured.len(),
        rows,
        sweep,
    })
}

/// The rows of [`CascadeReport`] and each width's outputs on `set`, one image per call,
/// every configuration timed on an image before the next image.
fn time_each_image(
    model: &SlimModel,
    widths: &[Width],
    cascade: &Cascade,
    set: &EvalSet,
    warmup: usize,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<Row>, Vec<Held>), Error> {
    let macs: Vec<u64> = widths
        .iter()
        .map(|&w| Ok(model.entry(w)?.macs))
        .collect::<Result<_, Error>>()?;
    for i in 0..warmup.min(set.len()) {
        for &w in widths {
            model.run(w, set.batch(i, 1), 1)?;
        }
        model.cascade(cascade, set.batch(i, 1))?;
    }
    let k = widths.len();
    // Per configuration (each width, then the cascade): milliseconds, hits, MACs.
    let mut ms = vec![Vec::with_capacity(set.len()); k + 1];
    let mut hits = vec![0usize; k + 1];
    let mut total_macs = vec![0u64; k + 1];
    // MACs of an image answered at each stage: every stage up to it ran.
    let mut stage_macs = Vec::with_capacity(cascade.stages().len());
    for s in cascade.stages() {
        let before = stage_macs.last().copied().unwrap_or(0);
        stage_macs.push(before + model.entry(s.width)?.macs);
    }
    let mut answered = vec![0usize; stage_macs.len()];
    let mut logits: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(set.len()); k];
    for i in 0..set.len() {
        let (image, label) = (set.batch(i, 1), set.labels[i]);
        for (j, &w) in widths.iter().enumerate() {
            let t = Instant::now();
            let out = model.run(w, image, 1)?;
            ms[j].push(t.elapsed().as_secs_f64() * 1e3);
            hits[j] += usize::from(right(out.logits_row(0), label));
            total_macs[j] += macs[j];
            logits[j].push(out.logits_row(0).to_vec());
        }
        let t = Instant::now();
        let answer = model.cascade(cascade, image)?.remove(0);
        ms[k].push(t.elapsed().as_secs_f64() * 1e3);
        hits[k] += usize::from(right(&answer.logits, label));
        total_macs[k] += stage_macs[answer.stage];
        answered[answer.stage] += 1;
        progress(i + 1);
    }
    let n = set.len() as f64;
    let rows = (0..=k)
        .map(|j| Row {
            width: widths.get(j).copied(),
            top1: hits[j] as f64 / n,
            mean_macs: total_macs[j] as f64 / n,
            latency: LatencySummary::new(1, &ms[j]),
            answered: if j == k { answered.clone() } else { Vec::new() },
        })
        .collect();
    let held = widths
        .iter()
        .zip(macs)
        .zip(logits)
        .map(|((&width, macs), logits)| Held {
            width,
            macs,
            logits,
        })
        .collect();
    Ok((rows, held))
}

impl CascadeReport {
    /// The calibration line and a Markdown table of the rows.
    pub fn to_table(&self) -> String {
        let c = &self.calibrated;
        let full = self
            .rows
            .iter()
            .filter(|r| r.width.is_some())
            .map(|r| r.mean_macs)
            .fold(0.0, f64::max);
        let mut s = format!(
            "cascade {}: calibrated on {} images of {} for top-1 >= {:.2}%, where it \
             reached {:.2}% at {:.3} mean MMACs\nmeasured on the other {} images, one \
             image per call:\n\n| | top-1 | mean MMACs | MACs / widest | mean ms | p99 ms | \
             answered per stage |\n|---|---:|---:|---:|---:|---:|---|\n",
            c.cascade.describe(),
            c.samples,
            c.dataset,
            c.target_top1 * 100.0,
            c.top1 * 100.0,
            c.mean_macs / 1e6,
            self.images,
        );
        for r in &self.rows {
            let name = r
                .width
                .map_or("cascade".to_string(), |w| format!("width {w}"));
            let answered: Vec<String> = r.answered.iter().map(|n| n.to_string()).collect();
            let _ = writeln!(
                s,
                "| {name} | {:.2}% | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
                r.top1 * 100.0,
                r.mean_macs / 1e6,
                r.mean_macs / full,
                r.latency.mean_ms,
                r.latency.p99_ms,
                answered.join(" / ")
            );
        }
        s
    }
}
