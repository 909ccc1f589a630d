//! The model handle: open an exported model folder with a backend, read its widths and
//! costs, choose a width by budget, preprocess images, run a batch, top-k classes.

use std::ffi::{CString, c_char};
use std::path::Path;

use slim_core::Variant;
use slim_runtime::{Backend, Budget, Outputs, top_k};

use crate::error::{Failure, SlimStatus, guard};
use crate::ptr;

/// An exported model folder opened with one backend. Widths load on first use.
pub struct SlimModel {
    pub(crate) inner: slim_runtime::SlimModel,
    pub(crate) class_names: Vec<CString>,
}

/// What every width shares: the input image and the classes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SlimModelInfo {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Floats in one preprocessed image: `channels * height * width`.
    pub image_len: usize,
    pub classes: usize,
    /// How many widths the model holds.
    pub widths: usize,
}

/// One width and its costs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SlimWidthInfo {
    pub width: f64,
    /// Multiply-accumulates per image.
    pub macs: u64,
    pub params: u64,
    /// Floats in one image's embedding.
    pub embedding_dim: usize,
    /// Measured top-1 in [0, 1] from the manifest, NaN when none was measured.
    pub top1: f64,
    /// p50 latency at batch 1 from the manifest, in ms, NaN when none was measured.
    pub p50_ms: f64,
}

/// Limits a width must meet. Zero means no limit, so `SlimBudget b = {0};` is none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SlimBudget {
    /// Most multiply-accumulates per image.
    pub max_macs: u64,
    pub max_params: u64,
    /// Most p50 latency, in ms, at `latency_batch`: from this device's cached calibration
    /// when there is one, else from the manifest.
    pub max_latency_ms: f64,
    /// Batch size the latency limit is for (0 means 1).
    pub latency_batch: usize,
    /// Least measured top-1, in [0, 1].
    pub min_top1: f64,
}

/// One class of a top-k answer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SlimClass {
    /// Index into the logits and the class names.
    pub index: usize,
    /// Softmax probability.
    pub prob: f32,
    /// The class name, owned by the model (valid until `slim_model_free`).
    pub name: *const c_char,
}

impl SlimBudget {
    pub(crate) fn to_budget(self) -> Result<Budget, Failure> {
        let limit = |v: f64, name: &str, max: f64| match v {
            0.0 => Ok(None),
            v if v > 0.0 && v <= max => Ok(Some(v)),
            v => Err(Failure::invalid(format!(
                "budget.{name} is {v}: use 0 for no limit, or a value in (0, {max}]"
            ))),
        };
        Ok(Budget {
            max_macs: (self.max_macs > 0).then_some(self.max_macs),
            max_params: (self.max_params > 0).then_some(self.max_params),
            max_latency_ms: limit(self.max_latency_ms, "max_latency_ms", f64::MAX)?,
            latency_batch: self.latency_batch.max(1),
            min_top1: limit(self.min_top1, "min_top1", 1.0)?,
            precisions: None,
        })
    }
}

impl SlimModel {
    pub(crate) fn get<'a>(p: *const SlimModel) -> Result<&'a SlimModel, Failure> {
        ptr::reference(p, "model")
    }

    /// The batch at `input`, checked: `batch` whole images.
    pub(crate) fn input<'a>(&self, input: *const f32, batch: usize) -> Result<&'a [f32], Failure> {
        if batch == 0 {
            return Err(Failure::invalid("batch is 0"));
        }
        let len = ptr::product(batch, self.inner.image_len(), "batch x image_len")?;
        ptr::slice(input, len, "input")
    }

    /// Writes a run's outputs into the caller's buffers (each may be NULL).
    pub(crate) fn write_outputs(
        out: &Outputs,
        embedding: *mut f32,
        embedding_capacity: usize,
        logits: *mut f32,
        logits_capacity: usize,
    ) -> Result<(), Failure> {
        let emb = ptr::buffer(embedding, embedding_capacity);
        let log = ptr::buffer(logits, logits_capacity);
        // Both are checked before either is written.
        for (buf, values, name) in [
            (&emb, &out.embedding, "embedding"),
            (&log, &out.logits, "logits"),
        ] {
            if let Some(b) = buf.as_ref().filter(|b| b.len() < values.len()) {
                return Err(Failure::too_small(name, values.len(), b.len()));
            }
        }
        ptr::fill(emb, &out.embedding, "embedding")?;
        ptr::fill(log, &out.logits, "logits")
    }

    /// Runs `batch` images at `v` into the caller's buffers, both capacities checked
    /// before the graph runs (`slim_model_run`, `slim_model_run_variant`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_into(
        &self,
        v: Variant,
        input: *const f32,
        batch: usize,
        embedding: *mut f32,
        embedding_capacity: usize,
        logits: *mut f32,
        logits_capacity: usize,
    ) -> Result<(), Failure> {
        let input = self.input(input, batch)?;
        let entry = self.inner.entry(v)?;
        let wanted = [
            (
                embedding,
                embedding_capacity,
                entry.embedding_dim,
                "embedding",
            ),
            (logits, logits_capacity, self.class_names.len(), "logits"),
        ];
        for (buf, capacity, per_image, name) in wanted {
            let needed = ptr::product(batch, per_image, name)?;
            if !buf.is_null() && capacity < needed {
                return Err(Failure::too_small(name, needed, capacity));
            }
        }
        let out = self.inner.run(v, input, batch)?;
        SlimModel::write_outputs(&out, embedding, embedding_capacity, logits, logits_capacity)
    }

    /// The top-`k` classes of `batch` images at `v` into `out` (`slim_model_classify`,
    /// `slim_model_classify_variant`).
    pub(crate) fn classify_into(
        &self,
        v: Variant,
        input: *const f32,
        batch: usize,
        k: usize,
        out: *mut SlimClass,
        capacity: usize,
    ) -> Result<(), Failure> {
        let input = self.input(input, batch)?;
        if k == 0 {
            return Err(Failure::invalid("k is 0"));
        }
        let per_image = k.min(self.class_names.len());
        let needed = ptr::product(batch, per_image, "classes")?;
        let buf = ptr::buffer(out, capacity).ok_or_else(|| Failure::invalid("out is NULL"))?;
        if buf.len() < needed {
            return Err(Failure::too_small("out", needed, buf.len()));
        }
        let run = self.inner.run(v, input, batch)?;
        let names = &self.inner.manifest().class_names;
        let classes = (0..batch).flat_map(|i| top_k(run.logits_row(i), per_image, names));
        for (slot, c) in buf.iter_mut().zip(classes) {
            *slot = SlimClass {
                index: c.index,
                prob: c.prob,
                name: self.class_names[c.index].as_ptr(),
            };
        }
        Ok(())
    }
}

/// Opens the folder `dir` that slim-export wrote. `backend`: "tract" (NULL means this),
/// "ort" (ONNX Runtime's CPU provider), "ort-cuda" or "ort-tensorrt"; `fallback` lets a
/// GPU provider that fails to register fall back to ONNX Runtime's CPU provider.
/// `threads`: threads per graph run, 0 for the engine's default. On success `*out` holds
/// the handle; free it with `slim_model_free`.
///
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_open(
    dir: *const c_char,
    backend: *const c_char,
    fallback: bool,
    threads: u32,
    out: *mut *mut SlimModel,
) -> SlimStatus {
    guard(|| {
        let out = ptr::out(out, "out")?;
        *out = std::ptr::null_mut();
        let dir = ptr::string(dir, "dir")?;
        let backend = match backend.is_null() {
            true => "tract",
            false => ptr::string(backend, "backend")?,
        };
        let backend = Backend::from_flags(backend, fallback).map_err(Failure::invalid)?;
        let threads = std::num::NonZeroUsize::new(threads as usize);
        let inner = slim_runtime::SlimModel::open(Path::new(dir), backend)?.with_threads(threads);
        let class_names = inner
            .manifest()
            .class_names
            .iter()
            .map(|n| CString::new(n.replace('\0', " ")).expect("NULs replaced"))
            .collect();
        *out = Box::into_raw(Box::new(SlimModel { inner, class_names }));
        Ok(())
    })
}

/// Frees a model (NULL is ignored). No other call may use it at the same time or after.
///
/// Not thread-safe: the last call on this model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_free(model: *mut SlimModel) {
    // SAFETY: the caller's contract (above).
    unsafe { ptr::free(model) }
}

/// The input shape, class count and width count.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_info(
    model: *const SlimModel,
    out: *mut SlimModelInfo,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let [channels, height, width] = m.inner.input_chw();
        *ptr::out(out, "out")? = SlimModelInfo {
            channels,
            height,
            width,
            image_len: m.inner.image_len(),
            classes: m.class_names.len(),
            widths: m.inner.widths().len(),
        };
        Ok(())
    })
}

/// Every width, widest first, into `out` (`capacity` entries). `*count` is always set to
/// the number of widths; pass `out` NULL to ask for it alone.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_widths(
    model: *const SlimModel,
    out: *mut SlimWidthInfo,
    capacity: usize,
    count: *mut usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let count = ptr::out(count, "count")?;
        let entries = &m.inner.manifest().widths;
        *count = entries.len();
        let info: Vec<SlimWidthInfo> = entries
            .iter()
            .map(|e| SlimWidthInfo {
                width: e.width.get(),
                macs: e.macs,
                params: e.params,
                embedding_dim: e.embedding_dim,
                top1: e.accuracy.as_ref().map_or(f64::NAN, |a| a.top1),
                p50_ms: e
                    .latency
                    .iter()
                    .find(|l| l.batch == 1)
                    .map_or(f64::NAN, |l| l.p50_ms),
            })
            .collect();
        ptr::fill(ptr::buffer(out, capacity), &info, "widths")
    })
}

/// The name of class `index` (owned by the model, valid until `slim_model_free`).
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_class_name(
    model: *const SlimModel,
    index: usize,
    out: *mut *const c_char,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let name = m.class_names.get(index).ok_or_else(|| {
            Failure::invalid(format!(
                "class index {index}: the model has {} classes",
                m.class_names.len()
            ))
        })?;
        *ptr::out(out, "out")? = name.as_ptr();
        Ok(())
    })
}

/// The most accurate width within `budget` into `*width`, and why, as text, into
/// `reason` (`reason_capacity` bytes; NULL: not wanted). `*reason_len` (may be NULL) is
/// set to the bytes the reason needs, its NUL included. No width fits:
/// `SLIM_STATUS_NO_FIT`, and the last error names the nearest width and its misses. A
/// reason buffer too small: `SLIM_STATUS_BUFFER_TOO_SMALL`, with `*width` still set.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_select(
    model: *const SlimModel,
    budget: *const SlimBudget,
    width: *mut f64,
    reason: *mut c_char,
    reason_capacity: usize,
    reason_len: *mut usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        // The C API names a graph by its width alone: its float graph.
        let budget = ptr::reference(budget, "budget")?
            .to_budget()?
            .floats_of(&m.inner);
        let width = ptr::out(width, "width")?;
        let chosen = m.inner.select(&budget)?;
        *width = chosen.width.get();
        write_reason(&chosen.reason, reason, reason_capacity, reason_len)
    })
}

/// Writes a selection's reason, NUL-terminated, into the caller's buffer (NULL: not
/// wanted), and the bytes it needs into `*reason_len` (may be NULL).
pub(crate) fn write_reason(
    text: &str,
    reason: *mut c_char,
    reason_capacity: usize,
    reason_len: *mut usize,
) -> Result<(), Failure> {
    let text = CString::new(text.replace('\0', " ")).expect("NULs replaced");
    let bytes = text.as_bytes_with_nul();
    if !reason_len.is_null() {
        *ptr::out(reason_len, "reason_len")? = bytes.len();
    }
    ptr::fill(
        ptr::buffer(reason.cast::<u8>(), reason_capacity),
        bytes,
        "reason",
    )
}

/// Decodes the image file at `path` (JPEG, PNG, WebP, BMP; gray or colour) and writes its
/// preprocessed input (`image_len` floats, see `slim_model_info`) to `out`.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_preprocess_file(
    model: *const SlimModel,
    path: *const c_char,
    out: *mut f32,
    capacity: usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let path = Path::new(ptr::string(path, "path")?);
        let values = m.inner.preprocess_files(&[path])?;
        fill_image(out, capacity, &values)
    })
}

/// As `slim_model_preprocess_file`, from the `len` bytes of an encoded image in memory;
/// `name` (may be NULL) names it in errors.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_preprocess_image(
    model: *const SlimModel,
    bytes: *const u8,
    len: usize,
    name: *const c_char,
    out: *mut f32,
    capacity: usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let bytes = ptr::slice(bytes, len, "bytes")?;
        let name = match name.is_null() {
            true => "image in memory",
            false => ptr::string(name, "name")?,
        };
        let mut values = Vec::with_capacity(m.inner.image_len());
        m.inner.preprocess(Path::new(name), bytes, &mut values)?;
        fill_image(out, capacity, &values)
    })
}

fn fill_image(out: *mut f32, capacity: usize, values: &[f32]) -> Result<(), Failure> {
    match ptr::buffer(out, capacity) {
        None => Err(Failure::invalid("out is NULL")),
        buf => ptr::fill(buf, values, "out"),
    }
}

/// Runs `batch` preprocessed images (`batch * image_len` floats at `input`) at `width`.
/// Writes `batch * embedding_dim` floats to `embedding` and `batch * classes` to `logits`,
/// row-major; either may be NULL. Both capacities are checked before the graph runs.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_run(
    model: *const SlimModel,
    width: f64,
    input: *const f32,
    batch: usize,
    embedding: *mut f32,
    embedding_capacity: usize,
    logits: *mut f32,
    logits_capacity: usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let v = Variant::from(ptr::width(width)?);
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

/// The `k` most probable classes of each of `batch` images at `width`, most probable
/// first: `batch * min(k, classes)` entries into `out` (`capacity` entries), image after
/// image.
///
/// Thread-safe: any number of threads may call it on one model at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_model_classify(
    model: *const SlimModel,
    width: f64,
    input: *const f32,
    batch: usize,
    k: usize,
    out: *mut SlimClass,
    capacity: usize,
) -> SlimStatus {
    guard(|| {
        let m = SlimModel::get(model)?;
        let v = Variant::from(ptr::width(width)?);
        m.classify_into(v, input, batch, k, out, capacity)
    })
}
