//! `slim_runtime._slim_runtime`: the native half of the Python package (re-exported by
//! `python/slim_runtime/__init__.py`). A `Model` wraps slim-runtime's `SlimModel` (shared
//! with its `Adaptive` controllers); graphs run with the GIL released, on NumPy arrays
//! read in place when they are C-contiguous float32, and results come back as NumPy
//! arrays that own the Rust buffers (no copy either way). A graph is a width in a
//! precision ("f32", "f16", "int8"): calls that take a width run its float graph unless
//! told a `precision`.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use numpy::ndarray::{Array2, Array4};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray4, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyTuple};

use slim_core::cascade::Confidence;
use slim_core::manifest::WidthEntry;
use slim_core::{Precision, Variant, Width};
use slim_runtime::adaptive::{Config, Switch};
use slim_runtime::{Adaptive as Controller, Backend, Budget, Error, Outputs, SlimModel};

create_exception!(
    _slim_runtime,
    SlimError,
    PyException,
    "What slim-runtime refuses or fails at; the message names the file and the problem."
);
create_exception!(
    _slim_runtime,
    NoFitError,
    SlimError,
    "No width meets the budget; the message names the nearest width and its misses."
);

fn raise(e: Error) -> PyErr {
    match e {
        Error::NoFit(_) => NoFitError::new_err(e.to_string()),
        _ => SlimError::new_err(e.to_string()),
    }
}

fn width(w: f64) -> PyResult<Width> {
    Width::new(w).map_err(PyValueError::new_err)
}

/// A precision's name: "f32", "f16" or "int8".
fn precision(name: &str) -> PyResult<Precision> {
    name.parse()
        .map_err(|e| PyValueError::new_err(format!("precision: {e}")))
}

/// A list of precision names, `None` for every one the model has; an empty list is refused.
fn precisions(names: Option<Vec<String>>) -> PyResult<Option<Vec<Precision>>> {
    let Some(names) = names else { return Ok(None) };
    if names.is_empty() {
        return Err(PyValueError::new_err(
            "precisions: an empty list; name some, e.g. [\"f32\", \"int8\"]",
        ));
    }
    let mut list = Vec::new();
    for n in &names {
        let p: Precision = n
            .parse()
            .map_err(|e| PyValueError::new_err(format!("precisions {names:?}: {e}")))?;
        if !list.contains(&p) {
            list.push(p);
        }
    }
    Ok(Some(list))
}

/// `(width, precision)` as Python sees a graph.
fn pair(v: Variant) -> (f64, &'static str) {
    (v.width.get(), v.precision.name())
}

/// An exported model folder opened with one backend.
#[pyclass(frozen, module = "slim_runtime")]
struct Model {
    inner: Arc<SlimModel>,
}

/// A batch in the model's layout, borrowed from NumPy when it already is one.
enum Batch<'py> {
    Borrowed(PyReadonlyArrayDyn<'py, f32>),
    Converted(Bound<'py, PyArrayDyn<f32>>),
}

impl<'py> Batch<'py> {
    /// `images` as float32 `[N, C, H, W]` (or one `[C, H, W]` image): read in place when
    /// C-contiguous float32, else converted once by `numpy.ascontiguousarray`.
    fn of(model: &SlimModel, images: &Bound<'py, PyAny>) -> PyResult<(Batch<'py>, usize)> {
        let batch = match images.extract::<PyReadonlyArrayDyn<'py, f32>>() {
            Ok(a) if a.is_c_contiguous() => Batch::Borrowed(a),
            _ => {
                let np = images.py().import("numpy")?;
                let converted = np
                    .call_method1("ascontiguousarray", (images, "float32"))
                    .map_err(|e| {
                        PyValueError::new_err(format!("images: not a float array: {e}"))
                    })?;
                Batch::Converted(converted.cast_into::<PyArrayDyn<f32>>()?)
            }
        };
        let shape = match &batch {
            Batch::Borrowed(a) => a.shape().to_vec(),
            Batch::Converted(a) => a.shape().to_vec(),
        };
        let chw = model.input_chw();
        let n = match shape.as_slice() {
            [n, c, h, w] if [*c, *h, *w] == chw && *n > 0 => *n,
            [c, h, w] if [*c, *h, *w] == chw => 1,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "images: shape {shape:?}, but the model takes [N, {}, {}, {}] with N >= 1 \
                     (or one [{}, {}, {}] image)",
                    chw[0], chw[1], chw[2], chw[0], chw[1], chw[2]
                )));
            }
        };
        Ok((batch, n))
    }

    fn values(&self) -> &[f32] {
        let slice = match self {
            Batch::Borrowed(a) => a.as_slice(),
            // SAFETY: the converted array is ours alone; nothing else writes it meanwhile.
            Batch::Converted(a) => unsafe { a.as_slice() },
        };
        slice.expect("C-contiguous by construction")
    }
}

/// A `[rows, columns]` float32 NumPy array.
type Array<'py> = Bound<'py, PyArray2<f32>>;

/// `(embedding [N, D], logits [N, K])`, owning the run's buffers.
type Pair<'py> = (Array<'py>, Array<'py>);

/// `(widths [N], confidences [N], logits [N, K])` of a cascade.
type CascadeAnswers<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f32>>,
    Array<'py>,
);

fn to_numpy(py: Python<'_>, out: Outputs) -> PyResult<Pair<'_>> {
    let n = out.batch;
    let as_2d = |v: Vec<f32>| {
        let d = v.len() / n;
        Array2::from_shape_vec((n, d), v)
            .map(|a| a.into_pyarray(py))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    };
    Ok((as_2d(out.embedding)?, as_2d(out.logits)?))
}

impl Model {
    fn width_or_widest(&self, w: Option<f64>) -> PyResult<Width> {
        match w {
            Some(w) => width(w),
            None => Ok(self.inner.widths()[0]),
        }
    }

    /// The graph of `w` (default the widest) in `p`.
    fn graph(&self, w: Option<f64>, p: &str) -> PyResult<Variant> {
        Ok(Variant::new(self.width_or_widest(w)?, precision(p)?))
    }
}

fn cost_dict<'py>(py: Python<'py>, e: &WidthEntry) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("width", e.width.get())?;
    d.set_item("precision", e.precision.name())?;
    d.set_item("macs", e.macs)?;
    d.set_item("params", e.params)?;
    d.set_item("bytes", e.bytes)?;
    d.set_item("embedding_dim", e.embedding_dim)?;
    d.set_item("top1", e.accuracy.as_ref().map(|a| a.top1))?;
    Ok(d)
}

/// The graph a budget chose: `width`, `precision` and `reason`. It unpacks as
/// `(width, reason)`, as `select` answered before graphs had precisions.
#[pyclass(frozen, module = "slim_runtime")]
struct Selection {
    #[pyo3(get)]
    width: f64,
    /// "f32", "f16" or "int8".
    #[pyo3(get)]
    precision: String,
    #[pyo3(get)]
    reason: String,
}

#[pymethods]
impl Selection {
    /// `(width, precision)`.
    #[getter]
    fn variant(&self) -> (f64, String) {
        (self.width, self.precision.clone())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        (self.width, self.reason.clone())
            .into_pyobject(py)?
            .as_any()
            .try_iter()
    }

    fn __len__(&self) -> usize {
        2
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyAny>> {
        let t: Bound<'py, PyTuple> = (self.width, self.reason.clone()).into_pyobject(py)?;
        t.as_any().get_item(index)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let width = self.width.into_pyobject(py)?.repr()?;
        let precision = self.precision.as_str().into_pyobject(py)?.repr()?;
        let reason = self.reason.as_str().into_pyobject(py)?.repr()?;
        Ok(format!(
            "Selection(width={width}, precision={precision}, reason={reason})"
        ))
    }
}

#[pymethods]
impl Model {
    /// Opens the folder slim-export wrote. `backend`: "tract", "ort", "ort-cuda" or
    /// "ort-tensorrt"; `fallback` lets a GPU provider that fails to register fall back to
    /// ONNX Runtime's CPU provider; `threads` per graph run (None: the engine's default).
    #[new]
    #[pyo3(signature = (path, backend = "tract", fallback = false, threads = None))]
    fn new(
        path: PathBuf,
        backend: &str,
        fallback: bool,
        threads: Option<usize>,
    ) -> PyResult<Model> {
        let backend = Backend::from_flags(backend, fallback).map_err(PyValueError::new_err)?;
        let threads = match threads {
            Some(0) => return Err(PyValueError::new_err("threads: must be at least 1")),
            t => t.and_then(NonZeroUsize::new),
        };
        let inner = SlimModel::open(&path, backend).map_err(raise)?;
        Ok(Model {
            inner: Arc::new(inner.with_threads(threads)),
        })
    }

    /// The widths, widest first.
    #[getter]
    fn widths(&self) -> Vec<f64> {
        self.inner.widths().iter().map(|w| w.get()).collect()
    }

    /// Every graph, most accurate first (widest first, then "f32", "f16", "int8"), as
    /// `(width, precision)` pairs. A model exported in f32 only lists its widths.
    #[getter]
    fn variants(&self) -> Vec<(f64, &'static str)> {
        self.inner.variants().iter().map(|&v| pair(v)).collect()
    }

    /// The precisions the model has graphs in, e.g. ["f32", "f16", "int8"].
    #[getter]
    fn precisions(&self) -> Vec<&'static str> {
        let all = self.inner.variants();
        (Precision::ALL.into_iter())
            .filter(|p| all.iter().any(|v| v.precision == *p))
            .map(Precision::name)
            .collect()
    }

    /// Each width's costs, widest first: dicts of width, precision ("f32"), macs, params,
    /// bytes (the graph file's size; None when the manifest does not record it),
    /// embedding_dim and top1 (None when not measured). `variants=True`: every graph, as
    /// `variants` lists them.
    #[pyo3(signature = (variants = false))]
    fn costs<'py>(&self, py: Python<'py>, variants: bool) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let graphs: Vec<Variant> = match variants {
            true => self.inner.variants().to_vec(),
            false => self.inner.widths().into_iter().map(Variant::f32).collect(),
        };
        graphs
            .into_iter()
            .map(|v| cost_dict(py, self.inner.entry(v).map_err(raise)?))
            .collect()
    }

    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.inner.manifest().class_names.clone()
    }

    /// `(C, H, W)` of one input image.
    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.inner.input_chw();
        (c, h, w)
    }

    /// The most accurate graph within the budget, a `Selection` (`width`, `precision`,
    /// `reason`; it unpacks as `(width, reason)`). `precisions`: the precisions to choose
    /// among, e.g. `["f32", "int8"]` or `model.precisions`; None (the default) keeps to the
    /// float graphs, which `run(x, width)` runs. A reduced-precision graph that measured no
    /// faster than a float graph at least as wide is never chosen. Raises NoFitError
    /// naming the nearest graph when none fits.
    #[pyo3(signature = (max_mmacs = None, max_mparams = None, max_ms = None, batch = 1, min_top1 = None, precisions = None))]
    #[allow(clippy::too_many_arguments)]
    fn select(
        &self,
        max_mmacs: Option<f64>,
        max_mparams: Option<f64>,
        max_ms: Option<f64>,
        batch: usize,
        min_top1: Option<f64>,
        precisions: Option<Vec<String>>,
    ) -> PyResult<Selection> {
        let positive = |v: Option<f64>, name: &str| match v {
            Some(x) if !(x > 0.0 && x.is_finite()) => Err(PyValueError::new_err(format!(
                "{name}: {x} is not a positive number"
            ))),
            v => Ok(v),
        };
        let count = |v: Option<f64>, name| -> PyResult<Option<u64>> {
            Ok(positive(v, name)?.map(|x| (x * 1e6) as u64))
        };
        if let Some(t) = min_top1.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(PyValueError::new_err(format!(
                "min_top1: {t} is outside [0, 1]"
            )));
        }
        let precisions = self::precisions(precisions)?;
        let budget = Budget {
            max_macs: count(max_mmacs, "max_mmacs")?,
            max_params: count(max_mparams, "max_mparams")?,
            max_latency_ms: positive(max_ms, "max_ms")?,
            latency_batch: batch.max(1),
            min_top1,
            precisions: None,
        };
        let budget = match precisions {
            Some(list) => Budget {
                precisions: Some(list),
                ..budget
            },
            // Without a list, the float graphs: what a width alone names.
            None => budget.floats_of(&self.inner),
        };
        let s = self.inner.select(&budget).map_err(raise)?;
        Ok(Selection {
            width: s.width.get(),
            precision: s.precision.name().to_string(),
            reason: s.reason,
        })
    }

    /// Runs a float32 batch `[N, C, H, W]` (or one `[C, H, W]` image), preprocessed as
    /// `preprocess` does, at `width` (default the widest) in `precision` ("f32", "f16" or
    /// "int8"; a graph the model lacks raises SlimError): `(embedding, logits)`. The GIL
    /// is released while the graph runs.
    #[pyo3(signature = (images, width = None, precision = "f32"))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        width: Option<f64>,
        precision: &str,
    ) -> PyResult<Pair<'py>> {
        let w = self.graph(width, precision)?;
        let (batch, n) = Batch::of(&self.inner, images)?;
        let values = batch.values();
        let model = &self.inner;
        let out = py.detach(|| model.run(w, values, n)).map_err(raise)?;
        to_numpy(py, out)
    }

    /// Reads, decodes and normalizes image files into a float32 `[N, C, H, W]` batch.
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let model = &self.inner;
        let values = py
            .detach(|| model.preprocess_files(&paths))
            .map_err(raise)?;
        let [c, h, w] = model.input_chw();
        let a = Array4::from_shape_vec((paths.len(), c, h, w), values)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(a.into_pyarray(py))
    }

    /// The `top_k` most probable classes of each image file at `width` (default the
    /// widest) in `precision` (as `run`): per image a list of `(name, probability,
    /// index)`, most probable first.
    #[pyo3(signature = (paths, top_k = 5, width = None, precision = "f32"))]
    fn classify(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
        top_k: usize,
        width: Option<f64>,
        precision: &str,
    ) -> PyResult<Vec<Vec<(String, f32, usize)>>> {
        let w = self.graph(width, precision)?;
        if top_k == 0 || paths.is_empty() {
            return Err(PyValueError::new_err(
                "classify: needs top_k >= 1 and an image",
            ));
        }
        let model = &self.inner;
        let classes = py
            .detach(|| {
                let inputs = model.preprocess_files(&paths)?;
                model.classify(w, &inputs, top_k)
            })
            .map_err(raise)?;
        Ok(classes
            .into_iter()
            .map(|cs| cs.into_iter().map(|c| (c.name, c.prob, c.index)).collect())
            .collect())
    }

    /// Runs a float32 batch through the width cascade: each image at the narrowest width
    /// first, at the next wider one only while its confidence is under the threshold.
    /// Without `threshold`, the cascade calibrated into the manifest (`slim-bench
    /// --cascade --write-manifest`); with it, every width at `threshold` in [0, 1] judged
    /// by `confidence` ("max-prob" or "margin"). Returns `(widths, confidences, logits)`:
    /// per image the width that answered (float64 `[N]`), its confidence (float32 `[N]`)
    /// and its logits (float32 `[N, K]`). The GIL is released while the graphs run.
    #[pyo3(signature = (images, threshold = None, confidence = "max-prob"))]
    fn cascade<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        threshold: Option<f64>,
        confidence: &str,
    ) -> PyResult<CascadeAnswers<'py>> {
        let confidence = Confidence::parse(confidence).map_err(PyValueError::new_err)?;
        let cascade = self
            .inner
            .cascade_with(threshold.map(|t| (confidence, t)))
            .map_err(raise)?;
        let (batch, n) = Batch::of(&self.inner, images)?;
        let values = batch.values();
        let model = &self.inner;
        let answers = py
            .detach(|| model.cascade(&cascade, values))
            .map_err(raise)?;
        let k = model.manifest().class_names.len();
        let widths: Vec<f64> = answers.iter().map(|a| a.width.get()).collect();
        let conf: Vec<f32> = answers.iter().map(|a| a.confidence).collect();
        let logits: Vec<f32> = answers.into_iter().flat_map(|a| a.logits).collect();
        let logits = Array2::from_shape_vec((n, k), logits)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok((
            widths.into_pyarray(py),
            conf.into_pyarray(py),
            logits.into_pyarray(py),
        ))
    }

    /// The cascade calibrated into the manifest, as a dict (`confidence`, `stages` as
    /// `(width, threshold)` pairs, `target_top1`, `top1`, `mean_macs`, `dataset`,
    /// `samples`), or None.
    #[getter]
    fn calibrated_cascade<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(c) = &self.inner.manifest().cascade else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("confidence", c.cascade.confidence().name())?;
        let stages: Vec<(f64, f64)> = c
            .cascade
            .stages()
            .iter()
            .map(|s| (s.width.get(), s.threshold))
            .collect();
        d.set_item("stages", stages)?;
        d.set_item("target_top1", c.target_top1)?;
        d.set_item("top1", c.top1)?;
        d.set_item("mean_macs", c.mean_macs)?;
        d.set_item("dataset", &c.dataset)?;
        d.set_item("samples", c.samples)?;
        Ok(Some(d))
    }

    /// An adaptive controller that holds the `quantile` of latency under `target_ms` by
    /// switching width (see slim-runtime's `adaptive`); it starts at the widest.
    /// `variants=True`: among every graph, width and precision: with this device's cached
    /// calibration at batch 1 (`slim-run --calibrate`), along its front (each step
    /// measured faster than the one before); without one, the float widths by MACs.
    #[pyo3(signature = (target_ms, quantile = 0.95, window = 64, min_samples = 16, margin = 0.2, dwell_ms = 500.0, cooldown_ms = 2000.0, variants = false))]
    #[allow(clippy::too_many_arguments)]
    fn adaptive(
        &self,
        target_ms: f64,
        quantile: f64,
        window: usize,
        min_samples: usize,
        margin: f64,
        dwell_ms: f64,
        cooldown_ms: f64,
        variants: bool,
    ) -> PyResult<Adaptive> {
        let duration = |ms: f64, name: &str| {
            Duration::try_from_secs_f64(ms / 1e3)
                .map_err(|_| PyValueError::new_err(format!("{name}: {ms} is not a duration")))
        };
        let cfg = Config {
            target_ms,
            quantile,
            window,
            min_samples,
            margin,
            dwell: duration(dwell_ms, "dwell_ms")?,
            cooldown: duration(cooldown_ms, "cooldown_ms")?,
        };
        let inner = match variants {
            true => Controller::for_model(&self.inner, cfg, Default::default()),
            false => Controller::for_model_widths(&self.inner, cfg, Default::default()),
        }
        .map_err(raise)?;
        Ok(Adaptive {
            model: self.inner.clone(),
            inner,
            variants,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Model({:?}, backend={:?}, widths={:?})",
            self.inner.dir().display().to_string(),
            self.inner.backend().name(),
            self.widths()
        )
    }
}

/// Switches a model's width (or graph: width and precision) to hold a latency target.
#[pyclass(frozen, module = "slim_runtime")]
struct Adaptive {
    model: Arc<SlimModel>,
    inner: Controller,
    /// Made with `variants=True`: its steps may be reduced-precision graphs.
    variants: bool,
}

fn switch_dict<'py>(py: Python<'py>, s: &Switch) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("at_s", s.at.as_secs_f64())?;
    d.set_item("from", s.from.width.get())?;
    d.set_item("from_precision", s.from.precision.name())?;
    d.set_item("to", s.to.width.get())?;
    d.set_item("to_precision", s.to.precision.name())?;
    d.set_item("observed_ms", s.observed_ms)?;
    d.set_item("predicted_ms", s.predicted_ms)?;
    Ok(d)
}

#[pymethods]
impl Adaptive {
    /// The width to run now.
    #[getter]
    fn width(&self) -> f64 {
        self.inner.width().get()
    }

    /// The graph to run now: `(width, precision)`.
    #[getter]
    fn variant(&self) -> (f64, &'static str) {
        pair(self.inner.variant())
    }

    /// The graphs it switches among, most accurate first: `(width, precision)` pairs.
    #[getter]
    fn steps(&self) -> Vec<(f64, &'static str)> {
        self.inner.steps().iter().map(|&v| pair(v)).collect()
    }

    /// Every switch so far, as dicts (at_s, from, from_precision, to, to_precision,
    /// observed_ms, predicted_ms).
    #[getter]
    fn switches<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let all = self.inner.switches();
        all.iter().map(|s| switch_dict(py, s)).collect()
    }

    /// Records that a call at `width` (in `precision`; a controller made with
    /// `variants=True` needs it named) took `latency_ms` (timed by the caller); returns the
    /// switch it caused, or None. Calls of another graph than the current one are dropped.
    #[pyo3(signature = (width, latency_ms, precision = None))]
    fn observe<'py>(
        &self,
        py: Python<'py>,
        width: f64,
        latency_ms: f64,
        precision: Option<&str>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let w = self::width(width)?;
        let p = match precision {
            Some(p) => self::precision(p)?,
            None if self.variants => {
                return Err(PyValueError::new_err(
                    "observe: this controller switches among precisions too (variants=True), \
                     so name the graph that ran: observe(width, latency_ms, precision=...)",
                ));
            }
            None => Precision::F32,
        };
        let s = self.inner.observe(Variant::new(w, p), latency_ms);
        s.map(|s| switch_dict(py, &s)).transpose()
    }

    /// Runs a batch at the current width, timed and observed (GIL released):
    /// `(width, embedding, logits)`.
    fn run<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<(f64, Array<'py>, Array<'py>)> {
        let (batch, _) = Batch::of(&self.model, images)?;
        let values = batch.values();
        let (model, inner) = (&self.model, &self.inner);
        let (w, out) = py.detach(|| inner.run(model, values)).map_err(raise)?;
        let (embedding, logits) = to_numpy(py, out)?;
        Ok((w.width.get(), embedding, logits))
    }

    /// As `run`, naming the graph that ran: `(width, precision, embedding, logits)`.
    fn run_variant<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<(f64, &'static str, Array<'py>, Array<'py>)> {
        let (batch, _) = Batch::of(&self.model, images)?;
        let values = batch.values();
        let (model, inner) = (&self.model, &self.inner);
        let (v, out) = py.detach(|| inner.run(model, values)).map_err(raise)?;
        let (embedding, logits) = to_numpy(py, out)?;
        Ok((v.width.get(), v.precision.name(), embedding, logits))
    }
}

#[pymodule]
fn _slim_runtime(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Adaptive>()?;
    m.add_class::<Selection>()?;
    m.add("SlimError", m.py().get_type::<SlimError>())?;
    m.add("NoFitError", m.py().get_type::<NoFitError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
