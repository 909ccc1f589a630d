//! Graphs by width and precision: a model exported with `slim-export --precision
//! f32,f16,int8` holds, beside each width's float graph, that width in f16 and int8. These
//! calls list every graph, choose among them by budget (optionally kept to some
//! precisions), and run or classify a chosen one. A precision crosses the boundary as its
//! NUL-terminated name, "f32", "f16" or "int8"; the names this library writes are static.

use std::ffi::c_char;

use slim_core::Variant;

use crate::error::{Failure, SlimStatus, guard};
use crate::model::{SlimBudget, SlimClass, SlimModel, write_reason};
use crate::ptr;

/// One graph: a width in a precision.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SlimVariant {
    pub width: f64,
    /// "f32", "f16" or "int8" (static storage).
    pub precision: *const c_char,
}

impl From<Variant> for SlimVariant {
    fn from(v: Variant) -> SlimVariant {
        SlimVariant {
            width: v.width.get(),
            precision: ptr::precision_name(v.precision),
        }
    }
}

/// One graph and its costs, from the manifest.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SlimVariantInfo {
    pub width: f64,
    /// "f32", "f16" or "int8" (static storage).
    pub precision: *const c_char,
    /// Multiply-accumulates per image (the same in every precision of a width).
    pub macs: u64,
    pub params: u64,
    /// Size of the graph's file in bytes, 0 when the manifest does not record it.
    pub bytes: u64,
    /// Floats in one image's embedding.
    pub embedding_dim: usize,
    /// Measured top-1 in [0, 1] from the manifest, NaN when none was measured.
    pub top1: f64,
    /// p50 latency at batch 1 from the manifest, in ms, NaN when none was measured.
    pub p50_ms: f64,
}

/// Every graph, most accurate first (widest first, then "f32", "f16", "int8"), into `out`
/// (`capacity` entries). `*count` is always set to the number of graphs; pass `out` NULL
/// to ask for it alone. A model exported in f32 only lists its widths.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_variants(
    model: *const SlimModel,
    out: *mut SlimVariantInfo,
    capacity: usize,
    count: *mut usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let count = ptr::out(count, "count")?;
        let variants = m.inner.variants();
        *count = variants.len();
        let info = variants
            .iter()
            .map(|&v| {
                let e = m.inner.entry(v)?;
                Ok(SlimVariantInfo {
                    width: v.width.get(),
                    precision: ptr::precision_name(v.precision),
                    macs: e.macs,
                    params: e.params,
                    bytes: e.bytes.unwrap_or(0),
                    embedding_dim: e.embedding_dim,
                    top1: e.accuracy.as_ref().map_or(f64::NAN, |a| a.top1),
                    p50_ms: e
                        .latency
                        .iter()
                        .find(|l| l.batch == 1)
                        .map_or(f64::NAN, |l| l.p50_ms),
                })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        ptr::fill(ptr::buffer(out, capacity), &info, "variants")
    })
}

/// The most accurate graph within `budget` among those in `precisions` (a comma-separated
/// list such as "f32" or "f32,int8"; NULL: every precision the model has) into `*chosen`,
/// and why, as text, into `reason` as `slim_model_select` does. A reduced-precision graph
/// that measured no faster than a float graph at least as wide is never chosen (the
/// reason says so). An unknown precision name or an empty list:
/// `SLIM_STATUS_INVALID_ARGUMENT`; no graph fits (or none in those precisions):
/// `SLIM_STATUS_NO_FIT`, the last error naming the nearest and its misses.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_select_variant(
    model: *const SlimModel,
    budget: *const SlimBudget,
    precisions: *const c_char,
    chosen: *mut SlimVariant,
    reason: *mut c_char,
    reason_capacity: usize,
    reason_len: *mut usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let mut budget = ptr::reference(budget, "budget")?.to_budget()?;
        budget.precisions = ptr::precisions(precisions)?;
        let chosen = ptr::out(chosen, "chosen")?;
        let selection = m.inner.select(&budget)?;
        *chosen = selection.variant().into();
        write_reason(&selection.reason, reason, reason_capacity, reason_len)
    })
}

/// `slim_model_run` of the graph of `width` in `precision` ("f32", "f16" or "int8"; NULL
/// means "f32"). A name that is not a precision: `SLIM_STATUS_INVALID_ARGUMENT`; a graph
/// the model lacks: `SLIM_STATUS_NO_SUCH_WIDTH`, the last error listing the graphs it has.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_run_variant(
    model: *const SlimModel,
    width: f64,
    precision: *const c_char,
    input: *const f32,
    batch: usize,
    embedding: *mut f32,
    embedding_capacity: usize,
    logits: *mut f32,
    logits_capacity: usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let v = ptr::variant(width, precision)?;
        m.run_into(
            v,
            input,
            batch,
            embedding,
            embedding_capacity,
            logits,
            logits_capacity,
        )
    })
}

/// `slim_model_classify` with the graph of `width` in `precision` (as
/// `slim_model_run_variant`).
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_classify_variant(
    model: *const SlimModel,
    width: f64,
    precision: *const c_char,
    input: *const f32,
    batch: usize,
    k: usize,
    out: *mut SlimClass,
    capacity: usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let v = ptr::variant(width, precision)?;
        m.classify_into(v, input, batch, k, out, capacity)
    })
}
