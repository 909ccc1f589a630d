//! Adaptive width while serving: hold a latency target (e.g. p95 <= 20 ms) by switching
//! width from the latencies observed. The steps are graphs, most accurate first: the
//! float widths, or, where a calibration measured every graph, the front of widths and
//! their reduced-precision variants (each step faster than the one before). Down as soon as the window's quantile is over the
//! target (to the widest width predicted to fit), up one step when the quantile predicted
//! for the wider width stays under `target * (1 - margin)` for a cooldown. Hysteresis: a
//! minimum dwell at each width, the margin, and a cooldown that doubles after every failed
//! step up (one undone at once), so a wrong prediction costs a few probes, not a flap.
//!
//! The clock is a trait so that tests drive the controller with simulated time and
//! latencies; [`Adaptive::run`] times real calls with it.

use slim_core::{Variant, Width};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Error, Outputs, SlimModel};
use slim_core::stats::percentile;

/// Monotonic time since some fixed start.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
}

/// The system's monotonic clock.
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The controller's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The latency target in ms, for the `quantile` of the window.
    pub target_ms: f64,
    /// e.g. 0.95 for p95.
    pub quantile: f64,
    /// Latest observations kept.
    pub window: usize,
    /// Observations at a width before any decision.
    pub min_samples: usize,
    /// Up only when the predicted quantile is under `target_ms * (1 - margin)`.
    pub margin: f64,
    /// Least time at a width before switching again.
    pub dwell: Duration,
    /// How long the headroom must last before stepping up (doubled after each failed
    /// step up, up to 32 times).
    pub cooldown: Duration,
}

impl Config {
    /// p95 <= `target_ms`, a window of 64, 16 observations before deciding, a 20% margin,
    /// a dwell of 0.5 s and a cooldown of 2 s.
    pub fn p95(target_ms: f64) -> Config {
        Config {
            target_ms,
            quantile: 0.95,
            window: 64,
            min_samples: 16,
            margin: 0.2,
            dwell: Duration::from_millis(500),
            cooldown: Duration::from_secs(2),
        }
    }
}

/// A change of graph and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    pub at: Duration,
    pub from: Variant,
    pub to: Variant,
    /// The window's quantile at `from` when it switched.
    pub observed_ms: f64,
    /// Predicted quantile at `to`.
    pub predicted_ms: f64,
}

struct State {
    current: usize,
    window: VecDeque<f64>,
    /// When the current width was entered.
    since: Duration,
    /// Whether it was entered by a step up.
    entered_up: bool,
    headroom_since: Option<Duration>,
    backoff: u32,
    switches: Vec<Switch>,
}

const MAX_BACKOFF: u32 = 32;

/// Chooses the graph of each call; `Send + Sync`, shared by all serving threads.
pub struct Adaptive<C: Clock = SystemClock> {
    cfg: Config,
    /// Most accurate first.
    steps: Vec<Variant>,
    /// Predicted latency of each step relative to the others (e.g. MACs or measured).
    cost: Vec<f64>,
    clock: C,
    state: Mutex<State>,
}

impl<C: Clock> Adaptive<C> {
    /// `steps` (widths, or graphs of a width in a precision) most accurate first with
    /// their relative `cost` (any unit, decreasing); starts at the first.
    pub fn new(
        steps: Vec<impl Into<Variant>>,
        cost: Vec<f64>,
        cfg: Config,
        clock: C,
    ) -> Result<Self, Error> {
        let steps: Vec<Variant> = steps.into_iter().map(Into::into).collect();
        let bad = |msg: String| Err(Error::Invalid(format!("adaptive controller: {msg}")));
        if steps.is_empty() || steps.len() != cost.len() {
            return bad(format!("{} widths but {} costs", steps.len(), cost.len()));
        }
        if cost.iter().any(|&c| !(c > 0.0 && c.is_finite())) {
            return bad(format!("costs must be positive: {cost:?}"));
        }
        let target_ok = cfg.target_ms > 0.0 && cfg.target_ms.is_finite();
        if !target_ok || !(0.0..=1.0).contains(&cfg.quantile) {
            return bad(format!(
                "target {} ms and quantile {} must be positive and in [0, 1]",
                cfg.target_ms, cfg.quantile
            ));
        }
        if !(0.0..1.0).contains(&cfg.margin) || cfg.min_samples == 0 || cfg.window < cfg.min_samples
        {
            return bad(format!(
                "margin {} must be in [0, 1) and window {} >= min_samples {} >= 1",
                cfg.margin, cfg.window, cfg.min_samples
            ));
        }
        let since = clock.now();
        Ok(Adaptive {
            state: Mutex::new(State {
                current: 0,
                window: VecDeque::with_capacity(cfg.window),
                since,
                entered_up: false,
                headroom_since: None,
                backoff: 1,
                switches: Vec::new(),
            }),
            cfg,
            steps,
            cost,
            clock,
        })
    }

    /// For `model`: with a cached calibration at batch 1, the graphs on its front (most
    /// accurate first, each kept only when it measured faster than the one kept before it,
    /// so a graph no faster than a more accurate one never serves), costed by their
    /// measured p50; without one, its float widths costed by MACs (a variant's speed is
    /// not known before it is measured).
    pub fn for_model(model: &SlimModel, cfg: Config, clock: C) -> Result<Self, Error> {
        Adaptive::among(model, model.variants(), cfg, clock)
    }

    /// [`Adaptive::for_model`] among the float widths only, for callers that name the
    /// graph they ran by its width alone.
    pub fn for_model_widths(model: &SlimModel, cfg: Config, clock: C) -> Result<Self, Error> {
        let floats: Vec<Variant> = model.widths().into_iter().map(Variant::f32).collect();
        Adaptive::among(model, &floats, cfg, clock)
    }

    fn among(model: &SlimModel, graphs: &[Variant], cfg: Config, clock: C) -> Result<Self, Error> {
        let (steps, cost) = match model.cached_calibration(1)? {
            Some(cal) => {
                let mut steps: Vec<Variant> = Vec::new();
                let mut cost: Vec<f64> = Vec::new();
                for &v in graphs {
                    let p50 = cal.variant(v).expect("covers every graph").latency.p50_ms;
                    if cost.last().is_none_or(|&last| p50 < last) {
                        steps.push(v);
                        cost.push(p50);
                    }
                }
                (steps, cost)
            }
            None => (
                model.widths().into_iter().map(Variant::f32).collect(),
                (model.manifest().widths.iter())
                    .map(|e| e.macs as f64)
                    .collect(),
            ),
        };
        Adaptive::new(steps, cost, cfg, clock)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The graph to run now.
    pub fn variant(&self) -> Variant {
        self.steps[self.state().current]
    }

    /// The width of the graph to run now.
    pub fn width(&self) -> Width {
        self.variant().width
    }

    /// The steps it switches among, most accurate first.
    pub fn steps(&self) -> &[Variant] {
        &self.steps
    }

    /// Every switch so far.
    pub fn switches(&self) -> Vec<Switch> {
        self.state().switches.clone()
    }

    /// The configured quantile of the current window, if it holds any observation.
    pub fn observed_ms(&self) -> Option<f64> {
        let mut s = self.state();
        percentile(s.window.make_contiguous(), self.cfg.quantile)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Records that a call of a graph (a width's float graph, or a variant) took
    /// `latency_ms`; switches when the window says so. Observations of a graph other than
    /// the current one (calls that started before a switch) are dropped.
    pub fn observe(&self, graph: impl Into<Variant>, latency_ms: f64) -> Option<Switch> {
        let graph = graph.into();
        let now = self.clock.now();
        let mut s = self.state();
        if graph != self.steps[s.current] || !latency_ms.is_finite() {
            return None;
        }
        if s.window.len() == self.cfg.window {
            s.window.pop_front();
        }
        s.window.push_back(latency_ms);
        let at_width = now.saturating_sub(s.since);
        if s.entered_up && at_width > 2 * self.cfg.dwell.max(self.cfg.cooldown) {
            s.backoff = 1; // the last step up held
            s.entered_up = false;
        }
        if s.window.len() < self.cfg.min_samples || at_width < self.cfg.dwell {
            return None;
        }
        let p = percentile(s.window.make_contiguous(), self.cfg.quantile)?;
        let cur = s.current;
        let predict = |to: usize| p * self.cost[to] / self.cost[cur];
        let target = self.cfg.target_ms;
        let to = if p > target {
            s.headroom_since = None;
            if cur + 1 == self.steps.len() {
                return None; // narrowest already
            }
            if s.entered_up {
                s.backoff = (s.backoff * 2).min(MAX_BACKOFF); // the step up failed
            }
            (cur + 1..self.steps.len())
                .find(|&j| predict(j) <= target)
                .unwrap_or(self.steps.len() - 1)
        } else if cur > 0 && predict(cur - 1) <= target * (1.0 - self.cfg.margin) {
            let since = *s.headroom_since.get_or_insert(now);
            if now.saturating_sub(since) < self.cfg.cooldown * s.backoff {
                return None;
            }
            cur - 1
        } else {
            s.headroom_since = None;
            return None;
        };
        let switch = Switch {
            at: now,
            from: self.steps[cur],
            to: self.steps[to],
            observed_ms: p,
            predicted_ms: predict(to),
        };
        s.entered_up = to < cur;
        s.current = to;
        s.since = now;
        s.window.clear();
        s.headroom_since = None;
        s.switches.push(switch.clone());
        Some(switch)
    }

    /// Runs one batch on the current graph, timing it with the clock; returns the graph
    /// used and the outputs.
    pub fn run(&self, model: &SlimModel, inputs: &[f32]) -> Result<(Variant, Outputs), Error> {
        let graph = self.variant();
        let n = model.batch_of(inputs)?;
        let t = self.clock.now();
        let out = model.run(graph, inputs, n)?;
        let ms = self.clock.now().saturating_sub(t).as_secs_f64() * 1e3;
        self.observe(graph, ms);
        Ok((graph, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Simulated time, advanced by the test.
    #[derive(Clone, Default)]
    struct FakeClock(Arc<AtomicU64>);

    impl FakeClock {
        fn advance(&self, d: Duration) {
            self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    const WIDTHS: [Width; 4] = slim_core::width::DEFAULT_WIDTHS;
    /// The trained ResNet-20's MACs per width.
    const MACS: [f64; 4] = [31_021_952.0, 17_471_136.0, 7_783_872.0, 1_960_160.0];

    fn controller(target_ms: f64) -> (Adaptive<FakeClock>, FakeClock) {
        let clock = FakeClock::default();
        let a = Adaptive::new(
            WIDTHS.into(),
            MACS.into(),
            Config::p95(target_ms),
            clock.clone(),
        );
        (a.unwrap(), clock)
    }

    /// Serves one request every 10 ms of simulated time for `secs`, each taking
    /// `latency(width, t)` ms; returns the share of requests served at each width.
    fn serve(
        a: &Adaptive<FakeClock>,
        clock: &FakeClock,
        secs: f64,
        mut latency: impl FnMut(Width, f64) -> f64,
    ) -> Vec<f64> {
        let mut served = [0usize; 4];
        let n = (secs * 100.0) as usize;
        for _ in 0..n {
            let w = a.width();
            served[WIDTHS.iter().position(|&x| x == w).unwrap()] += 1;
            a.observe(w, latency(w, clock.now().as_secs_f64()));
            clock.advance(Duration::from_millis(10));
        }
        served.iter().map(|&k| k as f64 / n as f64).collect()
    }

    /// Latency proportional to MACs: 2 ms at width 1.0 times `load`.
    fn by_macs(width: Width, load: f64) -> f64 {
        let i = WIDTHS.iter().position(|&x| x == width).unwrap();
        2.0 * load * MACS[i] / MACS[0]
    }

    #[test]
    fn overload_steps_down_and_headroom_steps_back_up() {
        let (a, clock) = controller(3.0);
        serve(&a, &clock, 10.0, |w, _| by_macs(w, 1.0));
        assert!(a.switches().is_empty(), "2 ms under a 3 ms target");
        // Three times the load: 6 ms at width 1.0; 0.75 is predicted at 3.4 ms, 0.5 at 1.5.
        serve(&a, &clock, 10.0, |w, _| by_macs(w, 3.0));
        let s = a.switches();
        assert_eq!(
            (s.len(), s[0].from.width.get(), s[0].to.width.get()),
            (1, 1.0, 0.5),
            "{s:?}"
        );
        assert!(
            s[0].at < Duration::from_secs(11),
            "reacts within a second: {s:?}"
        );
        assert!(s[0].observed_ms > 3.0 && s[0].observed_ms <= 6.0, "{s:?}");
        // Load gone: back up one step at a time, after the cooldown.
        serve(&a, &clock, 20.0, |w, _| by_macs(w, 1.0));
        let s = a.switches();
        let path: Vec<(f64, f64)> = s
            .iter()
            .map(|s| (s.from.width.get(), s.to.width.get()))
            .collect();
        assert_eq!(path, [(1.0, 0.5), (0.5, 0.75), (0.75, 1.0)]);
        assert!(
            s[1].at - s[0].at >= Duration::from_secs(2),
            "cooldown: {s:?}"
        );
        assert_eq!(a.width(), slim_test_utils::width(1.0));
    }

    #[test]
    fn noise_at_the_boundary_does_not_flap() {
        let mut rng = slim_core::rng::SplitMix64(7);
        // Width 1.0 runs at 90..110% of the target: over it at p95.
        let (a, clock) = controller(2.0);
        serve(&a, &clock, 120.0, |w, _| {
            by_macs(w, 0.9 + 0.2 * rng.uniform())
        });
        let s = a.switches();
        assert_eq!(s.len(), 1, "one step down, then stays: {s:?}");
        assert_eq!(a.width(), slim_test_utils::width(0.75));
        // Just under the target: never switches.
        let (a, clock) = controller(2.0);
        serve(&a, &clock, 120.0, |w, _| {
            by_macs(w, 0.8 + 0.19 * rng.uniform())
        });
        assert!(a.switches().is_empty(), "{:?}", a.switches());
        // At 0.75 with width 1.0 predicted at 85..95% of the target: inside the margin,
        // so it stays down.
        let (a, clock) = controller(2.0);
        serve(&a, &clock, 5.0, |w, _| by_macs(w, 1.5));
        assert_eq!(a.width(), slim_test_utils::width(0.75));
        serve(&a, &clock, 120.0, |w, _| {
            by_macs(w, 0.85 + 0.1 * rng.uniform())
        });
        assert_eq!(a.switches().len(), 1, "{:?}", a.switches());
    }

    #[test]
    fn a_wrong_prediction_costs_few_probes_not_a_flap() {
        // Width 1.0 really costs 4.4x width 0.75 (the costs say 1.8x): every step up to it
        // is over the target and undone; the cooldown doubles each time.
        let (a, clock) = controller(2.0);
        let latency = |w: Width, _| if w.is_full() { 3.0 } else { by_macs(w, 0.6) };
        let share = serve(&a, &clock, 300.0, latency);
        let n = a.switches().len();
        // One step down, then probes after 2, 4, 8, 16, 32 and 64 s of headroom, then
        // every 64 s: 8 probes (2 switches each) in 300 s.
        assert!((5..=21).contains(&n), "{n} switches: {:?}", a.switches());
        assert!(share[0] < 0.05, "{share:?} of requests at width 1.0");
        assert_eq!(a.width(), slim_test_utils::width(0.75));
    }

    #[test]
    fn late_observations_of_an_old_width_are_dropped() {
        let (a, clock) = controller(3.0);
        serve(&a, &clock, 2.0, |w, _| by_macs(w, 3.0));
        assert_eq!(a.width(), slim_test_utils::width(0.5));
        for _ in 0..100 {
            clock.advance(Duration::from_millis(10));
            assert_eq!(a.observe(slim_test_utils::width(1.0), 50.0), None);
        }
        assert_eq!(a.width(), slim_test_utils::width(0.5));
        let p = a.observed_ms().unwrap();
        assert!(p < 3.0, "the 50 ms of width 1.0 are not in the window: {p}");
    }

    #[test]
    fn impossible_settings_are_errors() {
        let c = FakeClock::default;
        let cfg = Config::p95(1.0);
        assert!(
            Adaptive::new(
                slim_test_utils::widths(&[1.0]),
                vec![1.0, 2.0],
                cfg.clone(),
                c()
            )
            .is_err()
        );
        assert!(
            Adaptive::new(slim_test_utils::widths(&[1.0]), vec![0.0], cfg.clone(), c()).is_err()
        );
        let bad = Config {
            margin: 1.0,
            ..cfg.clone()
        };
        assert!(Adaptive::new(slim_test_utils::widths(&[1.0]), vec![1.0], bad, c()).is_err());
        let bad = Config {
            target_ms: -1.0,
            ..cfg
        };
        let err = Adaptive::new(slim_test_utils::widths(&[1.0]), vec![1.0], bad, c())
            .err()
            .unwrap();
        assert!(err.to_string().contains("target"), "{err}");
    }
}
