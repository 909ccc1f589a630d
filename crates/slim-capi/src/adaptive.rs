//! The adaptive width controller: holds a latency quantile target by switching width from
//! the latencies it observes (slim-runtime's `Adaptive`, on the system clock). One from
//! `slim_adaptive_new` switches among the float widths; one from
//! `slim_adaptive_new_variants` among every graph (width and precision), reported by the
//! `_variant` calls.

use std::ffi::c_char;
use std::time::Duration;

use slim_runtime::adaptive::{Config, Switch};
use slim_runtime::{Adaptive, SlimModel as Model};

use crate::error::{Failure, SlimStatus, guard};
use crate::model::SlimModel;
use crate::ptr;
use crate::variant::SlimVariant;

/// An adaptive controller for one model's widths (or graphs: width and precision).
pub struct SlimAdaptive {
    inner: Adaptive,
    /// Made by `slim_adaptive_new_variants`: its steps may be reduced-precision graphs.
    variants: bool,
}

/// The controller's settings; `slim_adaptive_config_p95` gives the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SlimAdaptiveConfig {
    /// The latency target in ms, for `quantile` of the window.
    pub target_ms: f64,
    /// e.g. 0.95 for p95.
    pub quantile: f64,
    /// Latest observations kept.
    pub window: usize,
    /// Observations at a width before any decision.
    pub min_samples: usize,
    /// Step up only when the predicted quantile is under `target_ms * (1 - margin)`.
    pub margin: f64,
    /// Least time at a width before switching again, in ms.
    pub dwell_ms: f64,
    /// How long headroom must last before stepping up, in ms.
    pub cooldown_ms: f64,
}

/// A change of width and why.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SlimSwitch {
    pub from: f64,
    pub to: f64,
    /// The window's quantile at `from` when it switched, in ms.
    pub observed_ms: f64,
    /// The quantile predicted at `to`, in ms.
    pub predicted_ms: f64,
}

/// A change of graph (width and precision) and why.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SlimVariantSwitch {
    pub from: SlimVariant,
    pub to: SlimVariant,
    /// The window's quantile at `from` when it switched, in ms.
    pub observed_ms: f64,
    /// The quantile predicted at `to`, in ms.
    pub predicted_ms: f64,
}

impl From<&Config> for SlimAdaptiveConfig {
    fn from(c: &Config) -> SlimAdaptiveConfig {
        SlimAdaptiveConfig {
            target_ms: c.target_ms,
            quantile: c.quantile,
            window: c.window,
            min_samples: c.min_samples,
            margin: c.margin,
            dwell_ms: c.dwell.as_secs_f64() * 1e3,
            cooldown_ms: c.cooldown.as_secs_f64() * 1e3,
        }
    }
}

impl SlimAdaptiveConfig {
    fn to_config(self) -> Result<Config, Failure> {
        let duration = |ms: f64, name: &str| {
            Duration::try_from_secs_f64(ms / 1e3)
                .map_err(|_| Failure::invalid(format!("config.{name} is {ms}: not a duration")))
        };
        Ok(Config {
            target_ms: self.target_ms,
            quantile: self.quantile,
            window: self.window,
            min_samples: self.min_samples,
            margin: self.margin,
            dwell: duration(self.dwell_ms, "dwell_ms")?,
            cooldown: duration(self.cooldown_ms, "cooldown_ms")?,
        })
    }
}

impl From<&Switch> for SlimSwitch {
    fn from(s: &Switch) -> SlimSwitch {
        SlimSwitch {
            from: s.from.width.get(),
            to: s.to.width.get(),
            observed_ms: s.observed_ms,
            predicted_ms: s.predicted_ms,
        }
    }
}

impl From<&Switch> for SlimVariantSwitch {
    fn from(s: &Switch) -> SlimVariantSwitch {
        SlimVariantSwitch {
            from: s.from.into(),
            to: s.to.into(),
            observed_ms: s.observed_ms,
            predicted_ms: s.predicted_ms,
        }
    }
}

fn get<'a>(p: *const SlimAdaptive) -> Result<&'a Adaptive, Failure> {
    Ok(&ptr::reference(p, "adaptive")?.inner)
}

/// `*out = NULL`, then a controller for `model` with `config`: among every graph when
/// `variants`, else among the float widths.
fn new_controller(
    model: *const SlimModel,
    config: *const SlimAdaptiveConfig,
    out: *mut *mut SlimAdaptive,
    variants: bool,
) -> Result<(), Failure> {
    let out = ptr::out(out, "out")?;
    *out = std::ptr::null_mut();
    let model: &Model = &SlimModel::get(model)?.inner;
    let config = ptr::reference(config, "config")?.to_config()?;
    let inner = match variants {
        true => Adaptive::for_model(model, config, Default::default())?,
        // The width-only calls name a graph by its width alone: float widths only.
        false => Adaptive::for_model_widths(model, config, Default::default())?,
    };
    *out = Box::into_raw(Box::new(SlimAdaptive { inner, variants }));
    Ok(())
}

/// The defaults for a p95 target of `target_ms`: a window of 64, 16 observations before
/// deciding, a 20% margin, a dwell of 500 ms and a cooldown of 2000 ms.
///
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn slim_adaptive_config_p95(target_ms: f64) -> SlimAdaptiveConfig {
    (&Config::p95(target_ms)).into()
}

/// A controller for `model`'s widths, starting at the widest. Widths are costed by this
/// device's cached calibration at batch 1 when there is one, else by MACs. Free it with
/// `slim_adaptive_free`; it does not hold on to `model`.
///
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_new(
    model: *const SlimModel,
    config: *const SlimAdaptiveConfig,
    out: *mut *mut SlimAdaptive,
) -> SlimStatus {
    guard(|| new_controller(model, config, out, false))
}

/// A controller for every graph of `model` (each width and, where exported, its f16 and
/// int8 graphs), starting at the most accurate. With this device's cached calibration at
/// batch 1 (e.g. from `slim-run --calibrate`), it steps along the calibrated front: most
/// accurate first, each graph kept only when it measured faster than the one kept before
/// it, so a graph no faster than a more accurate one never serves. Without one, the float
/// widths by MACs, as `slim_adaptive_new`. Report and observe its graphs with
/// `slim_adaptive_variant`, `slim_adaptive_observe_variant` and `slim_adaptive_run_variant`
/// (`slim_adaptive_observe` refuses it: a width alone does not name its graph). Free it
/// with `slim_adaptive_free`; it does not hold on to `model`.
///
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_new_variants(
    model: *const SlimModel,
    config: *const SlimAdaptiveConfig,
    out: *mut *mut SlimAdaptive,
) -> SlimStatus {
    guard(|| new_controller(model, config, out, true))
}

/// Frees a controller (NULL is ignored). No other call may use it at the same time or
/// after.
///
/// Not thread-safe: the last call on this controller.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_free(adaptive: *mut SlimAdaptive) {
    // SAFETY: the caller's contract (above).
    unsafe { ptr::free(adaptive) }
}

/// The width to run now (of a controller from `slim_adaptive_new_variants`, the width of
/// its graph: `slim_adaptive_variant` says the precision too).
///
/// Thread-safe: any number of threads may call it on one controller at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_width(
    adaptive: *const SlimAdaptive,
    width: *mut f64,
) -> SlimStatus {
    guard(|| {
        *ptr::out(width, "width")? = get(adaptive)?.width().get();
        Ok(())
    })
}

/// Records that a call at `width` took `latency_ms` (timed by the caller, e.g. including
/// its queue). `*switched` (may be NULL) is set to whether the width changed, and then
/// `*change` (may be NULL) to the change. A controller from `slim_adaptive_new_variants`
/// is refused (`SLIM_STATUS_INVALID_ARGUMENT`): use `slim_adaptive_observe_variant`.
///
/// Thread-safe: any number of threads may call it on one controller at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_observe(
    adaptive: *const SlimAdaptive,
    width: f64,
    latency_ms: f64,
    switched: *mut bool,
    change: *mut SlimSwitch,
) -> SlimStatus {
    guard(|| {
        let handle = ptr::reference(adaptive, "adaptive")?;
        if handle.variants {
            return Err(Failure::invalid(
                "adaptive: this controller switches among precisions too \
                 (slim_adaptive_new_variants), so a width alone does not name the graph that \
                 ran: use slim_adaptive_observe_variant",
            ));
        }
        let s = handle.inner.observe(ptr::width(width)?, latency_ms);
        write_outcome(s.as_ref(), switched, change)
    })
}

/// An observation's outcome into the caller's optional outputs: whether the controller
/// switched and, when it did, the switch (`SlimSwitch` or `SlimVariantSwitch`).
fn write_outcome<C>(
    switch: Option<&Switch>,
    switched: *mut bool,
    change: *mut C,
) -> Result<(), Failure>
where
    for<'a> &'a Switch: Into<C>,
{
    if !switched.is_null() {
        *ptr::out(switched, "switched")? = switch.is_some();
    }
    if let (Some(s), false) = (switch, change.is_null()) {
        *ptr::out(change, "change")? = s.into();
    }
    Ok(())
}

/// Runs `batch` images at the controller's current width, timing the call and observing
/// it; `*width_used` gets the width (of a controller from `slim_adaptive_new_variants`,
/// the width of the graph that ran: `slim_adaptive_run_variant` says its precision too).
/// Outputs as `slim_model_run`; buffers sized for the widest width always suffice.
///
/// Thread-safe: any number of threads may call it on one controller at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_run(
    adaptive: *const SlimAdaptive,
    model: *const SlimModel,
    input: *const f32,
    batch: usize,
    width_used: *mut f64,
    embedding: *mut f32,
    embedding_capacity: usize,
    logits: *mut f32,
    logits_capacity: usize,
) -> SlimStatus {
    guard(|| {
        let a = get(adaptive)?;
        let m = SlimModel::get(model)?;
        let width_used = ptr::out(width_used, "width_used")?;
        let input = m.input(input, batch)?;
        let (w, out) = a.run(&m.inner, input)?;
        *width_used = w.width.get();
        SlimModel::write_outputs(&out, embedding, embedding_capacity, logits, logits_capacity)
    })
}

/// The graph (width and precision) to run now.
///
/// Thread-safe: any number of threads may call it on one controller at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_variant(
    adaptive: *const SlimAdaptive,
    out: *mut SlimVariant,
) -> SlimStatus {
    guard(|| {
        *ptr::out(out, "out")? = get(adaptive)?.variant().into();
        Ok(())
    })
}

/// The graphs the controller switches among, most accurate first, into `out` (`capacity`
/// entries). `*count` is always set to their number; pass `out` NULL to ask for it alone.
///
/// Thread-safe: any number of threads may call it on one controller at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_steps(
    adaptive: *const SlimAdaptive,
    out: *mut SlimVariant,
    capacity: usize,
    count: *mut usize,
) -> SlimStatus {
    guard(|| {
        let a = get(adaptive)?;
        let count = ptr::out(count, "count")?;
        *count = a.steps().len();
        let steps: Vec<SlimVariant> = a.steps().iter().map(|&v| v.into()).collect();
        ptr::fill(ptr::buffer(out, capacity), &steps, "steps")
    })
}

/// Records that a call of the graph of `width` in `precision` ("f32", "f16", "int8"; NULL
/// means "f32") took `latency_ms`. `*switched` (may be NULL) is set to whether the graph
/// changed, and then `*change` (may be NULL) to the change. Observations of a graph other
/// than the current one (calls that started before a switch) are dropped.
///
/// Thread-safe: any number of threads may call it on one controller at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_observe_variant(
    adaptive: *const SlimAdaptive,
    width: f64,
    precision: *const c_char,
    latency_ms: f64,
    switched: *mut bool,
    change: *mut SlimVariantSwitch,
) -> SlimStatus {
    guard(|| {
        let a = get(adaptive)?;
        let s = a.observe(ptr::variant(width, precision)?, latency_ms);
        write_outcome(s.as_ref(), switched, change)
    })
}

/// `slim_adaptive_run`, with `*used` set to the graph that ran (width and precision).
///
/// Thread-safe: any number of threads may call it on one controller at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slim_adaptive_run_variant(
    adaptive: *const SlimAdaptive,
    model: *const SlimModel,
    input: *const f32,
    batch: usize,
    used: *mut SlimVariant,
    embedding: *mut f32,
    embedding_capacity: usize,
    logits: *mut f32,
    logits_capacity: usize,
) -> SlimStatus {
    guard(|| {
        let a = get(adaptive)?;
        let m = SlimModel::get(model)?;
        let used = ptr::out(used, "used")?;
        let input = m.input(input, batch)?;
        let (v, out) = a.run(&m.inner, input)?;
        *used = v.into();
        SlimModel::write_outputs(&out, embedding, embedding_capacity, logits, logits_capacity)
    })
}
