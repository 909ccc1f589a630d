//! The adaptive width controller: holds a latency quantile target by switching width from
//! the latencies it observes (slim-runtime's `Adaptive`, on the system clock).

use std::time::Duration;

use slim_runtime::adaptive::{Config, Switch};
use slim_runtime::{Adaptive, SlimModel as Model};

use crate::error::{Failure, SlimStatus, guard};
use crate::model::SlimModel;
use crate::ptr;

/// An adaptive controller for one model's widths.
pub struct SlimAdaptive {
    inner: Adaptive,
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

fn get<'a>(p: *const SlimAdaptive) -> Result<&'a Adaptive, Failure> {
    Ok(&ptr::reference(p, "adaptive")?.inner)
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
    guard(|| {
        let out = ptr::out(out, "out")?;
        *out = std::ptr::null_mut();
        let model: &Model = &SlimModel::get(model)?.inner;
        let config = ptr::reference(config, "config")?.to_config()?;
        // The C API names a graph by its width alone: float widths only.
        let inner = Adaptive::for_model_widths(model, config, Default::default())?;
        *out = Box::into_raw(Box::new(SlimAdaptive { inner }));
        Ok(())
    })
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

/// The width to run now.
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
/// `*change` (may be NULL) to the change.
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
        let a = get(adaptive)?;
        let s = a.observe(ptr::width(width)?, latency_ms);
        if !switched.is_null() {
            *ptr::out(switched, "switched")? = s.is_some();
        }
        if let (Some(s), false) = (&s, change.is_null()) {
            *ptr::out(change, "change")? = s.into();
        }
        Ok(())
    })
}

/// Runs `batch` images at the controller's current width, timing the call and observing
/// it; `*width_used` gets the width. Outputs as `slim_model_run`; buffers sized for the
/// widest width always suffice.
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
