//! The pretraining optimiser and learning-rate schedule, written out by hand so that every
//! piece of optimiser state is a named tensor a checkpoint can hold (tch's built-in
//! optimisers keep their momentum buffers out of reach, which would break exact resume).
//!
//! SGD with momentum and weight decay, optionally LARS (You et al. 2017): each weight's
//! update is scaled by `eta * |w| / |g|`. As is usual, BatchNorm parameters and biases
//! (the 1-D tensors) get neither weight decay nor the LARS scaling.

use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Lars,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    /// LARS trust coefficient.
    pub eta: f64,
}

/// LARS's trust coefficient in SlimCLR's and SimCLR's runs.
pub const LARS_ETA: f64 = 0.001;

impl OptimizerConfig {
    /// `kind` with momentum and weight decay, LARS's trust coefficient at [`LARS_ETA`].
    pub fn new(kind: OptimizerKind, momentum: f64, weight_decay: f64) -> OptimizerConfig {
        OptimizerConfig {
            kind,
            momentum,
            weight_decay,
            eta: LARS_ETA,
        }
    }
}

/// Named parameters and their momentum buffers.
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<(String, Tensor)>,
    buffers: Vec<Tensor>,
}

/// The trainable variables of `vs` with their names, sorted by name so that the order (and
/// so the checkpointed optimiser state) is the same in every process.
pub fn trainable_named(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut params: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, params: Vec<(String, Tensor)>) -> Optimizer {
        let buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Optimizer {
            config,
            params,
            buffers,
        }
    }
}

/// How a run moves its weights after each backward pass: SGD/LARS in weight space
/// ([`Optimizer`]) or SGD on the coefficients of a checkpoint subspace
/// ([`crate::twa::Subspace`], TWA).
pub trait Update {
    /// The variables whose gradients the backward pass fills, by name.
    fn params_mut(&mut self) -> &mut [(String, Tensor)];
    /// Clears their gradients before the next backward pass.
    fn zero_grad(&mut self) {
        for (_, p) in self.params_mut() {
            p.zero_grad();
        }
    }
    /// One update with learning rate `lr` from the gradients the last backward left.
    fn step(&mut self, lr: f64);
    /// What a checkpoint keeps to continue exactly (momentum buffers, coefficients).
    fn state(&self) -> Vec<(String, &Tensor)>;
    /// Restores every tensor of [`Update::state`] that `get(name)` finds; returns how
    /// many were found.
    fn restore(&mut self, get: &mut dyn FnMut(&str) -> Option<Tensor>) -> usize;
    /// The subspace, for a TWA update.
    fn subspace(&self) -> Option<&crate::twa::Subspace> {
        None
    }
}

impl Update for Optimizer {
    fn params_mut(&mut self) -> &mut [(String, Tensor)] {
        &mut self.params
    }

    /// One update with learning rate `lr` from the gradients the last backward left.
    fn step(&mut self, lr: f64) {
        let c = &self.config;
        tch::no_grad(|| {
            for ((_, p), buf) in self.params.iter_mut().zip(&mut self.buffers) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let decayed = p.dim() > 1;
                let mut update = if decayed && c.weight_decay > 0.0 {
                    &g + &*p * c.weight_decay
                } else {
                    g.shallow_clone()
                };
                if decayed && c.kind == OptimizerKind::Lars {
                    let (pn, un) = (p.norm().double_value(&[]), update.norm().double_value(&[]));
                    if pn > 0.0 && un > 0.0 {
                        update *= c.eta * pn / un;
                    }
                }
                let _ = buf.g_mul_scalar_(c.momentum).g_add_(&update);
                let _ = p.g_sub_(&(&*buf * lr));
            }
        });
    }

    /// The momentum buffers as `(name, tensor)` for a checkpoint.
    fn state(&self) -> Vec<(String, &Tensor)> {
        self.params
            .iter()
            .zip(&self.buffers)
            .map(|((n, _), b)| (n.clone(), b))
            .collect()
    }

    /// Restores the buffer of every parameter found by `get(name)`; returns how many.
    fn restore(&mut self, get: &mut dyn FnMut(&str) -> Option<Tensor>) -> usize {
        let mut n = 0;
        tch::no_grad(|| {
            for ((name, _), buf) in self.params.iter().zip(&mut self.buffers) {
                if let Some(t) = get(name) {
                    buf.copy_(&t);
                    n += 1;
                }
            }
        });
        n
    }
}

/// How the learning rate falls after the warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// One cosine to zero over the rest of the run (SlimCLR's).
    #[default]
    Cosine,
    /// Times 0.1 at half the epochs and again at three quarters (nblt/TWA's `--schedule
    /// step`: `MultiStepLR` at `int(E * 0.5)` and `int(E * 0.75 + 0.9)` epochs).
    Step,
}

impl Decay {
    /// The steps at which a [`Decay::Step`] run of `epochs` epochs of `per_epoch` steps
    /// divides its learning rate by 10.
    pub fn milestones(self, epochs: usize, per_epoch: usize) -> Vec<usize> {
        match self {
            Decay::Cosine => Vec::new(),
            Decay::Step => [epochs as f64 * 0.5, epochs as f64 * 0.75 + 0.9]
                .map(|e| e as usize * per_epoch)
                .to_vec(),
        }
    }
}

/// One clock for the whole run, as SlimCLR's scheduler keeps it: a linear warmup over
/// `warmup_steps`, then one cosine decay to zero over the rest. With a slow start the
/// sub-networks join at `switch.0` and from there the cosine's amplitude is `switch.1`
/// (SlimCLR's `slim_start_lr`): the cosine keeps its phase, nothing anneals to zero before
/// the switch and nothing warms up again after it. With [`Decay::Step`] milestones the
/// rate stays at its peak and falls tenfold at each of them instead (TWA's recipe).
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub base_lr: f64,
    pub total_steps: usize,
    pub warmup_steps: usize,
    /// The step the sub-widths join at and the peak learning rate from there.
    pub switch: Option<(usize, f64)>,
    /// Steps at which the rate falls tenfold; empty: the cosine.
    pub milestones: Vec<usize>,
}

impl Schedule {
    pub fn lr(&self, step: usize) -> f64 {
        let warmup = self.warmup_steps.min(self.total_steps / 2);
        if step < warmup {
            return self.base_lr * (step + 1) as f64 / warmup as f64;
        }
        let peak = match self.switch {
            Some((at, lr)) if step >= at => lr,
            _ => self.base_lr,
        };
        if !self.milestones.is_empty() {
            let passed = self.milestones.iter().filter(|&&m| step >= m).count();
            return peak * 0.1f64.powi(passed as i32);
        }
        let progress = (step - warmup) as f64 / (self.total_steps - warmup).max(1) as f64;
        peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn one_clock_warms_up_once_and_rescales_the_cosine_at_the_switch() {
        let cosine = |step: f64| 0.5 * (1.0 + (std::f64::consts::PI * (step - 10.0) / 90.0).cos());
        let one = Schedule {
            base_lr: 1.0,
            total_steps: 100,
            warmup_steps: 10,
            switch: None,
            milestones: Vec::new(),
        };
        assert!((one.lr(0) - 0.1).abs() < 1e-12);
        assert!((one.lr(9) - 1.0).abs() < 1e-12);
        for step in [10, 30, 55, 99] {
            assert!((one.lr(step) - cosine(step as f64)).abs() < 1e-12, "{step}");
        }
        // The sub-widths join at 55 with a peak of 2: the same cosine, twice as high, no
        // anneal before and no warmup after.
        let slim = Schedule {
            switch: Some((55, 2.0)),
            ..one.clone()
        };
        assert_eq!(slim.lr(54), one.lr(54));
        assert!(slim.lr(54) > 0.4, "not annealed to zero before the switch");
        for step in [55, 56, 80, 99] {
            assert!(
                (slim.lr(step) - 2.0 * cosine(step as f64)).abs() < 1e-12,
                "{step}"
            );
        }
    }

    #[test]
    fn the_step_decay_falls_tenfold_where_nblt_twa_s_multistep_does() {
        // 10 epochs of 7 steps: MultiStepLR milestones int(5.0) = 5 and int(8.4) = 8.
        assert_eq!(Decay::Step.milestones(10, 7), [35, 56]);
        // 2 epochs: int(1.0) = 1 and int(2.4) = 2, the end: one decay within the run.
        assert_eq!(Decay::Step.milestones(2, 5), [5, 10]);
        assert!(Decay::Cosine.milestones(10, 7).is_empty());
        let s = Schedule {
            base_lr: 2.0,
            total_steps: 70,
            warmup_steps: 0,
            switch: None,
            milestones: Decay::Step.milestones(10, 7),
        };
        for (step, want) in [
            (0, 2.0),
            (34, 2.0),
            (35, 0.2),
            (55, 0.2),
            (56, 0.02),
            (69, 0.02),
        ] {
            assert!((s.lr(step) - want).abs() < 1e-12, "{step}: {}", s.lr(step));
        }
    }

    fn param(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
            .view([1, v.len() as i64])
            .set_requires_grad(true)
    }

    #[test]
    fn sgd_with_momentum_and_decay_by_hand() {
        let p = param(&[1.0, -2.0]);
        let mut opt = Optimizer::new(
            OptimizerConfig::new(OptimizerKind::Sgd, 0.9, 0.1),
            vec![("p".into(), p.shallow_clone())],
        );
        for _ in 0..2 {
            opt.zero_grad();
            (&p * Tensor::from_slice(&[3.0f32, 1.0]).view([1, 2]))
                .sum(Kind::Float)
                .backward();
            opt.step(0.5);
        }
        // step 1: g = [3,1] + 0.1*[1,-2] = [3.1, 0.8]; buf = g; p = [1,-2] - 0.5*g = [-0.55, -2.4]
        // step 2: g = [3,1] + 0.1*p = [2.945, 0.76]; buf = 0.9*[3.1,0.8] + g = [5.735, 1.48]
        //         p = [-0.55 - 2.8675, -2.4 - 0.74] = [-3.4175, -3.14]
        let got = Vec::<f32>::try_from(p.flatten(0, -1)).unwrap();
        assert!(
            (got[0] - (-0.55 - 2.8675)).abs() < 1e-5 && (got[1] - (-2.4 - 0.74)).abs() < 1e-5,
            "{got:?}"
        );
        // Buffers round-trip through state/restore.
        let saved: Vec<Tensor> = opt.state().iter().map(|(_, t)| t.copy()).collect();
        let mut fresh = Optimizer::new(opt.config.clone(), vec![("p".into(), p.shallow_clone())]);
        assert_eq!(fresh.restore(&mut |_| Some(saved[0].shallow_clone())), 1);
        assert_eq!(fresh.state()[0].1, &saved[0].to_device(Device::Cpu));
    }

    #[test]
    fn lars_scales_weight_updates_and_skips_1d_tensors() {
        let w = param(&[3.0, 4.0]); // |w| = 5
        let b = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            OptimizerConfig {
                kind: OptimizerKind::Lars,
                momentum: 0.0,
                weight_decay: 0.0,
                eta: 0.1,
            },
            vec![
                ("w".into(), w.shallow_clone()),
                ("b".into(), b.shallow_clone()),
            ],
        );
        ((&w * 10.0).sum(Kind::Float) + (&b * 10.0).sum(Kind::Float)).backward();
        opt.step(1.0);
        // |g| = 10*sqrt(2); trust = 0.1 * 5 / (10 sqrt 2); update = g * trust = [0.3536, 0.3536]
        let got = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
        assert!((got[0] - (3.0 - 0.353553)).abs() < 1e-5, "{got:?}");
        assert!(
            (b.double_value(&[0]) - (1.0 - 10.0)).abs() < 1e-6,
            "bias unscaled"
        );
    }
}
