//! The calibration images of a derived-precision export (`--calibration-data`), read and
//! checked before anything is written, and the int8 activation ranges measured on them.
//!
//! The images are the training split of the dataset, `images` of them evenly spaced over
//! it, preprocessed as for evaluation (no augmentation). Without `resize`, an image whose
//! size or channel count is not the model's input is an error: converting it silently
//! would calibrate on other pixels than the model was trained on.

use std::collections::HashMap;
use std::path::PathBuf;

use slim_core::Preprocessing;
use slim_core::precision::{Calibration, RangeMethod};
use slim_data::Split;
use slim_data::transform::{Normalize, mismatch};

use crate::error::ExportError;
use crate::run::Runner;

/// Bins of the percentile method's histograms (onnxruntime's default).
pub const BINS: usize = 2048;

/// What `--calibration-data` and its options ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationOptions {
    pub data: PathBuf,
    /// Images to use at most (all of them when the data holds fewer).
    pub images: usize,
    pub method: RangeMethod,
    /// Convert images of another size or channel count instead of refusing them.
    pub resize: bool,
}

/// The preprocessed calibration images.
pub struct CalibrationSet {
    /// `len * C * H * W` normalized inputs, back to back.
    pub inputs: Vec<f32>,
    pub len: usize,
    pub record: Calibration,
}

impl CalibrationSet {
    /// Reads the images `options` names for a model taking `input`.
    pub fn load(options: &CalibrationOptions, input: &Preprocessing) -> Result<Self, ExportError> {
        let path = &options.data;
        let fail = |msg: String| ExportError::Calibration {
            path: path.clone(),
            msg,
        };
        let ds = slim_data::open(path, Split::Train).map_err(|e| fail(e.to_string()))?;
        let norm = Normalize::from(input);
        let mut inputs = Vec::new();
        let (mut len, mut skipped) = (0, 0);
        for i in slim_data::evenly_spaced(ds.len(), options.images) {
            let img = match ds.image(i) {
                Ok(img) => img,
                Err(_) => {
                    skipped += 1;
                    continue;
                }
            };
            if !options.resize
                && let Some(m) = mismatch(&img, input)
            {
                return Err(fail(format!(
                    "image {i} is {m}; pass --calibration-resize to convert such images as slim-runtime does (channels converted, shorter side resized, centre crop)"
                )));
            }
            norm.apply(img, &mut inputs);
            len += 1;
        }
        let least = options.method.min_images();
        if len < least {
            return Err(fail(format!(
                "{} decodable images of {} ({skipped} skipped), fewer than the {least} that {} calibration needs",
                len,
                ds.describe(),
                options.method.describe()
            )));
        }
        Ok(CalibrationSet {
            inputs,
            len,
            record: Calibration {
                method: options.method,
                data: path.display().to_string(),
                description: ds.describe(),
                images: len,
                skipped,
            },
        })
    }
}

/// The range (min, max) of each of `points` (tensors of the float graph run by `runner`,
/// which has them as its outputs, in order) over the calibration images, by `method`.
pub(crate) fn ranges(
    runner: &Runner,
    points: &[String],
    set: &CalibrationSet,
    method: RangeMethod,
) -> Result<HashMap<String, (f32, f32)>, String> {
    let n = points.len();
    let extremes = runner
        .fold(
            &set.inputs,
            set.len,
            || vec![(f32::INFINITY, f32::NEG_INFINITY); n],
            |acc, _, outputs| {
                for (r, values) in acc.iter_mut().zip(outputs) {
                    for &v in values {
                        r.0 = r.0.min(v);
                        r.1 = r.1.max(v);
                    }
                }
            },
        )?
        .into_iter()
        .reduce(|a, b| {
            a.iter()
                .zip(&b)
                .map(|(x, y)| (x.0.min(y.0), x.1.max(y.1)))
                .collect()
        })
        .unwrap_or_default();
    let chosen = match method {
        RangeMethod::MinMax => extremes,
        RangeMethod::Percentile { percentile } => {
            let histograms = runner
                .fold(
                    &set.inputs,
                    set.len,
                    || vec![vec![0u64; BINS]; n],
                    |acc, _, outputs| {
                        for ((h, values), &(lo, hi)) in acc.iter_mut().zip(outputs).zip(&extremes) {
                            for &v in values {
                                h[bin(v, lo, hi)] += 1;
                            }
                        }
                    },
                )?
                .into_iter()
                .reduce(|mut a, b| {
                    for (x, y) in a.iter_mut().zip(&b) {
                        for (p, q) in x.iter_mut().zip(y) {
                            *p += q;
                        }
                    }
                    a
                })
                .unwrap_or_default();
            histograms
                .iter()
                .zip(&extremes)
                .map(|(h, &(lo, hi))| cut(h, lo, hi, percentile))
                .collect()
        }
    };
    Ok(points.iter().cloned().zip(chosen).collect())
}

/// The bin of `v` among [`BINS`] equal bins over `[lo, hi]`.
fn bin(v: f32, lo: f32, hi: f32) -> usize {
    if hi <= lo {
        return 0;
    }
    let at = (f64::from(v - lo) / f64::from(hi - lo) * BINS as f64) as usize;
    at.min(BINS - 1)
}

/// The range of a histogram over `[lo, hi]` with `(100 - percentile) / 2` percent of its
/// values cut on each side, at bin edges, within `[lo, hi]` (onnxruntime's
/// `HistogramCalibrater.compute_percentile` for asymmetric ranges). onnxruntime's
/// histogram spans `[-max |v|, max |v|]` instead of the seen range, so its cuts are within
/// one of its (coarser) bins of these (the integration test `ort_reference`).
fn cut(hist: &[u64], lo: f32, hi: f32, percentile: f64) -> (f32, f32) {
    let total: u64 = hist.iter().sum();
    if total == 0 || hi <= lo {
        return (lo, hi);
    }
    let tail = (100.0 - percentile) / 200.0;
    let width = f64::from(hi - lo) / BINS as f64;
    let edge = |i: usize| (f64::from(lo) + width * i as f64) as f32;
    // The first bin whose cumulative share reaches `share` (numpy's searchsorted, left).
    let first_reaching = |share: f64| {
        let mut sum = 0u64;
        hist.iter()
            .position(|&c| {
                sum += c;
                sum as f64 / total as f64 >= share
            })
            .unwrap_or(BINS - 1)
    };
    let left = edge(first_reaching(tail)).max(lo);
    let right = edge(first_reaching(1.0 - tail)).min(hi);
    (left, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cut_each_tail_at_a_bin_edge() {
        // 1000 values: 10 outliers in the last bin, the rest spread over the first half.
        let mut hist = vec![0u64; BINS];
        for b in 0..990 {
            hist[b * (BINS / 2) / 990] += 1;
        }
        hist[BINS - 1] += 10;
        // 1% cut from each side: the lowest 10 values (the first ~10 bins) and the outliers.
        let (lo, hi) = cut(&hist, 0.0, 2.0, 98.0);
        assert!(lo > 0.0 && lo < 0.011, "{lo}");
        assert!(hi > 0.98 && hi <= 1.0, "{hi}");
        // Nothing cut: the whole range.
        assert_eq!(
            cut(&hist, 0.0, 2.0, 100.0).1,
            2.0 * (BINS - 1) as f32 / BINS as f32
        );
        assert_eq!(bin(2.0, 0.0, 2.0), BINS - 1);
        assert_eq!(bin(0.0, 0.0, 2.0), 0);
    }
}
