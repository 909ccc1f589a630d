//! The slimmable objective of one batch, and one training step on it: every active width
//! on the same two views, SlimCLR's distillation from the full width and re-weighting, one
//! backward pass, one update.

use slim_core::Width;
use slim_data::loader::Batch;
use tch::Tensor;

use super::moco::{Keys, momentum_at};
use super::{Framework, Trainer, checkpoint_path};
use crate::Error;
use crate::loss::{self, LossWeights};
use crate::model::channels_last;

/// SlimCLR's distillation of a sub-width's contrastive logits (`student`) toward the full
/// width's (`teacher`), on what its reference code distils: for SimCLR and MoCo v2 the raw
/// similarities (its InfoNCE hands back the logits before the division by τ, so ours are
/// multiplied back by τ), for MoCo v3 its logits `q·k / τ` of each direction, the two
/// directions' terms summed as its two losses are (ours hold both directions' rows, which
/// [`loss::distillation`] averages: times 2).
fn distillation_term(c: &super::PretrainConfig, student: &Tensor, teacher: &Tensor) -> Tensor {
    let temperatures = (c.distill_t_student, c.distill_t_teacher);
    distillation_of(c.framework, c.temperature, temperatures, student, teacher)
}

fn distillation_of(
    framework: Framework,
    tau: f64,
    (t_student, t_teacher): (f64, f64),
    student: &Tensor,
    teacher: &Tensor,
) -> Tensor {
    let kd = |s: &Tensor, t: &Tensor| loss::distillation(s, t, t_student, t_teacher);
    match framework {
        Framework::MocoV3 => kd(student, teacher) * 2.0,
        Framework::Simclr | Framework::MocoV2 => kd(&(student * tau), &(teacher * tau)),
    }
}

/// A batch's slimmable objective: (total, MoCo keys, per-width contrastive, per-width
/// distillation).
type Objective = (Tensor, Option<Keys>, Vec<f64>, Vec<f64>);

impl Trainer {
    pub(super) fn sub_widths_active(&self) -> bool {
        self.state.epoch >= self.state.config.slow_start_epoch
    }

    /// View `v` of `batch` on the device, color-augmented there if the loader left
    /// that to the device, in the model's memory order.
    fn view(&self, batch: &Batch, v: usize) -> Tensor {
        let m = self.net.config();
        let x = Tensor::from_slice(&batch.images[v])
            .view([
                batch.len() as i64,
                m.input.in_channels as i64,
                m.input.image_size as i64,
                m.input.image_size as i64,
            ])
            .to_device(self.device);
        let x = match self.state.config.augment_on_device {
            true => crate::color::apply(&x, &batch.color[v], &m.input.mean, &m.input.std),
            false => x,
        };
        match self.state.config.channels_last {
            true => channels_last(&x),
            false => x,
        }
    }

    fn contrastive(&self, logits: &Tensor) -> Tensor {
        let c = &self.state.config;
        let l = match c.smoothed {
            Some(s) => {
                let alpha = s.schedule.alpha_at(self.state.epoch, c.epochs, s.alpha);
                loss::smoothed_infonce(logits, alpha, s.top_k)
            }
            None => loss::infonce(logits),
        };
        match c.framework {
            // MoCo v3 sums both directions, each scaled by 2τ; `l` is their mean.
            Framework::MocoV3 => l * (4.0 * c.temperature),
            _ => l,
        }
    }

    /// Every rank's rows of `local` in a data-parallel run, `local` itself in one process.
    fn global(&self, local: Tensor) -> Result<Tensor, Error> {
        super::data_parallel::global(self.dp.as_ref(), local)
    }

    /// Similarity logits (positive in column 0) of width `w` for the two views; SimCLR's
    /// and MoCo v3's over the global batch of a data-parallel run.
    fn logits(
        &self,
        x1: &Tensor,
        x2: &Tensor,
        keys: Option<&Keys>,
        w: Width,
    ) -> Result<Tensor, Error> {
        let t = self.state.config.temperature;
        let project = |x: &Tensor| self.head.forward(&self.net.forward(x, w, true), w, true);
        Ok(
            match (keys, self.moco.as_ref().and_then(|m| m.queue.as_ref())) {
                (Some(Keys::Queued(k)), Some(queue)) => {
                    loss::moco_logits(&self.global(project(x1))?, k, queue, t)
                }
                (Some(Keys::Batch([k1, k2])), _) => {
                    let p = self.predictor.as_ref().expect("MoCo v3 has a predictor");
                    let q1 = self.global(p.forward(&project(x1), w, true))?;
                    let q2 = self.global(p.forward(&project(x2), w, true))?;
                    Tensor::cat(
                        &[
                            loss::in_batch_logits(&q1, k2, t),
                            loss::in_batch_logits(&q2, k1, t),
                        ],
                        0,
                    )
                }
                _ => {
                    let (z1, z2) = (self.global(project(x1))?, self.global(project(x2))?);
                    loss::nt_xent_logits(&z1, &z2, t).0
                }
            },
        )
    }

    /// The slimmable objective on `batch`: (total, MoCo keys, per-width contrastive,
    /// per-width distillation).
    fn objective_of(&self, batch: &Batch) -> Result<Objective, Error> {
        self.objective_on(&self.view(batch, 0), &self.view(batch, 1), batch.position)
    }

    /// The slimmable objective on two views already on the device, of the batch at
    /// `position` (which every rank of a data-parallel run must be at).
    fn objective_on(&self, x1: &Tensor, x2: &Tensor, position: usize) -> Result<Objective, Error> {
        if let Some(dp) = &self.dp {
            dp.begin_step(position, x1.size()[0] as usize)?;
        }
        let c = self.state.config.clone();
        // A shuffle of the keys that a resumed run draws again: from the seed and step.
        let shuffle = self.state.config.seed ^ (self.state.step as u64).rotate_left(32);
        let keys = match &self.moco {
            Some(m) => Some(m.keys(x1, x2, shuffle, self.dp.as_ref())?),
            None => None,
        };
        if let Some(w) = c.alone {
            let l = self.contrastive(&self.logits(x1, x2, keys.as_ref(), w)?);
            let value = l.double_value(&[]);
            if let Some(dp) = &self.dp {
                dp.check_sync()?;
            }
            return Ok((l, keys, vec![value], vec![0.0]));
        }
        let widths = self.net.widths().to_vec();
        let active = if self.sub_widths_active() {
            &widths[..]
        } else {
            &widths[..1]
        };
        let weights = if active.len() == 1 {
            LossWeights::uniform(false)
        } else if c.reweight {
            LossWeights::reweighted(&widths, c.distill)
        } else {
            LossWeights::uniform(c.distill)
        };
        let full = self.logits(x1, x2, keys.as_ref(), Width::FULL)?;
        let l_full = self.contrastive(&full);
        let mut total = &l_full * weights.full;
        let mut contrastive = vec![l_full.double_value(&[])];
        let mut distillation = vec![0.0];
        let teacher = full.detach();
        for &w in &active[1..] {
            let logits = self.logits(x1, x2, keys.as_ref(), w)?;
            let l_c = self.contrastive(&logits);
            total += &l_c * weights.sub_contrastive;
            contrastive.push(l_c.double_value(&[]));
            if c.distill {
                let l_d = distillation_term(&c, &logits, &teacher);
                total += &l_d * weights.sub_distillation;
                distillation.push(l_d.double_value(&[]));
            } else {
                distillation.push(0.0);
            }
        }
        if let Some(dp) = &self.dp {
            dp.check_sync()?;
        }
        Ok((total, keys, contrastive, distillation))
    }

    /// The mean objective over the first `batches` batches of epoch 0 (the same images
    /// and augmentations every call), without updating anything but BatchNorm's running
    /// statistics.
    pub fn objective(&self, batches: usize) -> Result<f64, Error> {
        let values: Vec<f64> = tch::no_grad(|| {
            self.loader
                .epoch(0)
                .take(batches)
                .map(|b| Ok(self.objective_of(&b)?.0.double_value(&[])))
                .collect::<Result<_, Error>>()
        })?;
        Ok(values.iter().sum::<f64>() / values.len().max(1) as f64)
    }

    /// One slimmable step on `batch`; returns (total, per-width contrastive, per-width
    /// distillation).
    pub(super) fn step(&mut self, batch: &Batch) -> Result<(f64, Vec<f64>, Vec<f64>), Error> {
        let (x1, x2) = (self.view(batch, 0), self.view(batch, 1));
        self.step_on(&x1, &x2, batch.position)
    }

    /// One training step on two views of a batch, already augmented, normalized and on
    /// the training device (`[N, C, S, S]` each): exactly what [`Trainer::run`] does per
    /// batch (every active width, distillation, re-weighting, backward, update, MoCo's
    /// key encoder and queue), without counting it as a step of the run. Returns the
    /// total loss. `bench-step` times this.
    pub fn train_step(&mut self, x1: &Tensor, x2: &Tensor) -> Result<f64, Error> {
        Ok(self.step_on(x1, x2, self.state.position)?.0)
    }

    fn step_on(
        &mut self,
        x1: &Tensor,
        x2: &Tensor,
        position: usize,
    ) -> Result<(f64, Vec<f64>, Vec<f64>), Error> {
        let (total, keys, contrastive, distillation) = self.objective_on(x1, x2, position)?;
        let value = total.double_value(&[]);
        if !value.is_finite() {
            return Err(Error::NonFinite {
                step: self.state.step,
                checkpoint: checkpoint_path(&self.out),
            });
        }
        self.update.zero_grad();
        // Fallible: a synchronised BatchNorm all-reduces in the backward pass too.
        total.f_backward()?;
        if let Some(dp) = &self.dp {
            dp.check_sync()?;
            dp.sum_gradients(self.update.params_mut())?;
        }
        self.update.step(self.schedule.lr(self.state.step));
        let momentum = momentum_at(
            &self.state.config,
            self.state.step,
            self.schedule.total_steps,
        );
        if let Some(m) = &mut self.moco {
            m.follow(momentum, keys, &mut self.state.queue_ptr);
        }
        Ok((value, contrastive, distillation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// SlimCLR's `kd_distill_loss_v2`, written from its reference: `-Σ softmax(t / T_t) ·
    /// log_softmax(s / T_s)` averaged over rows, times `T_s²`.
    fn reference_kd(s: &Tensor, t: &Tensor, ts: f64, tt: f64) -> f64 {
        let p = (t / tt).softmax(-1, Kind::Double);
        let log_q = (s / ts).log_softmax(-1, Kind::Double);
        -(p * log_q)
            .sum_dim_intlist(1, false, Kind::Double)
            .mean(Kind::Double)
            .double_value(&[])
            * ts
            * ts
    }

    /// The teacher's entropy at `T_t`, times `T_s · T_t`: what the KL leaves out of the
    /// cross-entropy (a constant of the student, so the same gradient).
    fn entropy_term(t: &Tensor, ts: f64, tt: f64) -> f64 {
        let p = (t / tt).softmax(-1, Kind::Double);
        -(&p * p.log())
            .sum_dim_intlist(1, false, Kind::Double)
            .mean(Kind::Double)
            .double_value(&[])
            * ts
            * tt
    }

    #[test]
    fn distillation_reads_what_the_reference_distils() {
        tch::manual_seed(3);
        let cos_s = Tensor::rand([4, 7], (Kind::Double, Device::Cpu)) * 2.0 - 1.0;
        let cos_t = Tensor::rand([4, 7], (Kind::Double, Device::Cpu)) * 2.0 - 1.0;
        // SimCLR, tau 0.5, KD 5/5: the reference distils the raw cosines.
        let simclr = |s: &Tensor, t: &Tensor| {
            distillation_of(Framework::Simclr, 0.5, (5.0, 5.0), s, t).double_value(&[])
        };
        let ours = simclr(&(&cos_s / 0.5), &(&cos_t / 0.5));
        let want = reference_kd(&cos_s, &cos_t, 5.0, 5.0) - entropy_term(&cos_t, 5.0, 5.0);
        assert!((ours - want).abs() < 1e-9, "{ours} vs {want}");
        // Distilling cos / tau instead (as before) is a different, 2x sharper term.
        let sharper = reference_kd(&(&cos_s / 0.5), &(&cos_t / 0.5), 5.0, 5.0)
            - entropy_term(&(&cos_t / 0.5), 5.0, 5.0);
        assert!((ours - sharper).abs() > 1e-3);
        // MoCo v3, tau 1, KD 1/1: the two directions' terms summed.
        let ours =
            distillation_of(Framework::MocoV3, 1.0, (1.0, 1.0), &cos_s, &cos_t).double_value(&[]);
        let half = |x: &Tensor, i: i64| x.narrow(0, 2 * i, 2);
        let want: f64 = (0..2)
            .map(|i| {
                reference_kd(&half(&cos_s, i), &half(&cos_t, i), 1.0, 1.0)
                    - entropy_term(&half(&cos_t, i), 1.0, 1.0)
            })
            .sum();
        assert!((ours - want).abs() < 1e-9, "{ours} vs {want}");
    }
}
