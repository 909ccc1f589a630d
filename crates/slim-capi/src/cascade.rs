//! The width cascade from C: each image at the narrowest width first, at the next wider
//! one only while its confidence is under the threshold.

use slim_runtime::cascade::Confidence;
use slim_runtime::top_k;

use std::ffi::c_char;

use crate::error::{Failure, SlimStatus, guard};
use crate::model::SlimModel;
use crate::ptr;

/// One image's answer from the cascade.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SlimCascadeAnswer {
    /// The width that answered.
    pub width: f64,
    /// Its stage, 0 for the narrowest.
    pub stage: usize,
    /// The confidence it answered with, in [0, 1].
    pub confidence: f32,
    /// The most probable class at that width.
    pub class_index: usize,
    pub prob: f32,
    /// The class name, owned by the model (valid until `slim_model_free`).
    pub name: *const c_char,
}

/// Runs `batch` preprocessed images (`batch * image_len` floats at `input`) through the
/// cascade. `confidence` NULL: the cascade calibrated into the manifest (`slim-bench
/// --cascade --write-manifest`; `threshold` is not used, and a manifest without one is
/// `SLIM_STATUS_INVALID_ARGUMENT`). Otherwise "max-prob" or "margin", and every width is a
/// stage at `threshold` in [0, 1]. Writes `batch` answers to `answers` and, unless NULL,
/// each answering width's logits (`batch * classes` floats) to `logits`; both capacities
/// are checked before any graph runs.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_cascade(
    model: *const SlimModel,
    confidence: *const c_char,
    threshold: f64,
    input: *const f32,
    batch: usize,
    answers: *mut SlimCascadeAnswer,
    answers_capacity: usize,
    logits: *mut f32,
    logits_capacity: usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let over = match confidence.is_null() {
            true => None,
            false => {
                let c = Confidence::parse(ptr::string(confidence, "confidence")?)
                    .map_err(Failure::invalid)?;
                if !(0.0..=1.0).contains(&threshold) {
                    return Err(Failure::invalid(format!(
                        "threshold is {threshold}: use a value in [0, 1]"
                    )));
                }
                Some((c, threshold))
            }
        };
        let cascade = m.inner.cascade_with(over)?;
        let input = m.input(input, batch)?;
        let out = ptr::buffer(answers, answers_capacity)
            .ok_or_else(|| Failure::invalid("answers is NULL"))?;
        if out.len() < batch {
            return Err(Failure::too_small("answers", batch, out.len()));
        }
        let classes = m.class_names.len();
        let log = ptr::buffer(logits, logits_capacity);
        let needed = ptr::product(batch, classes, "logits")?;
        if let Some(l) = log.as_ref().filter(|l| l.len() < needed) {
            return Err(Failure::too_small("logits", needed, l.len()));
        }
        let got = m.inner.cascade(&cascade, input)?;
        let names = &m.inner.manifest().class_names;
        for (slot, a) in out.iter_mut().zip(&got) {
            let top = top_k(&a.logits, 1, names).remove(0);
            *slot = SlimCascadeAnswer {
                width: a.width.get(),
                stage: a.stage,
                confidence: a.confidence,
                class_index: top.index,
                prob: top.prob,
                name: m.class_names[top.index].as_ptr(),
            };
        }
        if let Some(l) = log {
            for (row, a) in l.chunks_exact_mut(classes).zip(&got) {
                row.copy_from_slice(&a.logits);
            }
        }
        Ok(())
    })
}
