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
            Some((alpha_max, top_k, ramp)) => {
                let alpha =
                    loss::alpha_at(self.state.step, self.schedule.total_steps, alpha_max, ramp);
                loss::smoothed_infonce(logits, alpha, top_k)
            }
            None => loss::infonce(logits),
        };
        match c.framework {
            // MoCo v3 sums both directions, each scaled by 2τ; `l` is their mean.
            Framework::MocoV3 => l * (4.0 * c.temperature),
            _ => l,
        }
    }

    /// Similarity logits (positive in column 0) of width `w` for the two views.
    fn logits(&self, x1: &Tensor, x2: &Tensor, keys: Option<&Keys>, w: Width) -> Tensor {
        let t = self.state.config.temperature;
        let project = |x: &Tensor| self.head.forward(&self.net.forward(x, w, true), w, true);
        match (keys, self.moco.as_ref().and_then(|m| m.queue.as_ref())) {
            (Some(Keys::Queued(k)), Some(queue)) => loss::moco_logits(&project(x1), k, queue, t),
            (Some(Keys::Batch([k1, k2])), _) => {
                let p = self.predictor.as_ref().expect("MoCo v3 has a predictor");
                let q1 = p.forward(&project(x1), w, true);
                let q2 = p.forward(&project(x2), w, true);
                Tensor::cat(
                    &[
                        loss::in_batch_logits(&q1, k2, t),
                        loss::in_batch_logits(&q2, k1, t),
                    ],
                    0,
                )
            }
            _ => loss::nt_xent_logits(&project(x1), &project(x2), t).0,
        }
    }

    /// The slimmable objective on `batch`: (total, MoCo keys, per-width contrastive,
    /// per-width distillation).
    fn objective_of(&self, batch: &Batch) -> (Tensor, Option<Keys>, Vec<f64>, Vec<f64>) {
        self.objective_on(&self.view(batch, 0), &self.view(batch, 1))
    }

    /// The slimmable objective on two views already on the device.
    fn objective_on(&self, x1: &Tensor, x2: &Tensor) -> (Tensor, Option<Keys>, Vec<f64>, Vec<f64>) {
        let c = self.state.config.clone();
        let keys = self.moco.as_ref().map(|m| m.keys(x1, x2));
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
        let full = self.logits(x1, x2, keys.as_ref(), Width::FULL);
        let l_full = self.contrastive(&full);
        let mut total = &l_full * weights.full;
        let mut contrastive = vec![l_full.double_value(&[])];
        let mut distillation = vec![0.0];
        let teacher = full.detach();
        for &w in &active[1..] {
            let logits = self.logits(x1, x2, keys.as_ref(), w);
            let l_c = self.contrastive(&logits);
            total += &l_c * weights.sub_contrastive;
            contrastive.push(l_c.double_value(&[]));
            if c.distill {
                let l_d =
                    loss::distillation(&logits, &teacher, c.distill_t_student, c.distill_t_teacher);
                total += &l_d * weights.sub_distillation;
                distillation.push(l_d.double_value(&[]));
            } else {
                distillation.push(0.0);
            }
        }
        (total, keys, contrastive, distillation)
    }

    /// The mean objective over the first `batches` batches of epoch 0 (the same images
    /// and augmentations every call), without updating anything but BatchNorm's running
    /// statistics.
    pub fn objective(&self, batches: usize) -> f64 {
        let values: Vec<f64> = tch::no_grad(|| {
            self.loader
                .epoch(0)
                .take(batches)
                .map(|b| self.objective_of(&b).0.double_value(&[]))
                .collect()
        });
        values.iter().sum::<f64>() / values.len().max(1) as f64
    }

    /// One slimmable step on `batch`; returns (total, per-width contrastive, per-width
    /// distillation).
    pub(super) fn step(&mut self, batch: &Batch) -> Result<(f64, Vec<f64>, Vec<f64>), Error> {
        let (x1, x2) = (self.view(batch, 0), self.view(batch, 1));
        self.step_on(&x1, &x2)
    }

    /// One training step on two views of a batch, already augmented, normalized and on
    /// the training device (`[N, C, S, S]` each): exactly what [`Trainer::run`] does per
    /// batch (every active width, distillation, re-weighting, backward, update, MoCo's
    /// key encoder and queue), without counting it as a step of the run. Returns the
    /// total loss. `bench-step` times this.
    pub fn train_step(&mut self, x1: &Tensor, x2: &Tensor) -> Result<f64, Error> {
        Ok(self.step_on(x1, x2)?.0)
    }

    fn step_on(&mut self, x1: &Tensor, x2: &Tensor) -> Result<(f64, Vec<f64>, Vec<f64>), Error> {
        let (total, keys, contrastive, distillation) = self.objective_on(x1, x2);
        let value = total.double_value(&[]);
        if !value.is_finite() {
            return Err(Error::NonFinite {
                step: self.state.step,
                checkpoint: checkpoint_path(&self.out),
            });
        }
        self.update.zero_grad();
        total.backward();
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
