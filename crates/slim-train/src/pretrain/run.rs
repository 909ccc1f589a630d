//! The run loop: epochs of batches from the loader, a step each, `metrics.jsonl`,
//! progress, trajectory and periodic checkpoints, and the checkpoint itself. Of a
//! data-parallel run's ranks only rank 0 writes files and reports progress.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use slim_core::Progress;
use slim_core::checkpoint::names;
use tch::Tensor;

use super::{Trainer, checkpoint_path};
use crate::{Error, checkpoint};

/// One logged step (a line of `metrics.jsonl`).
#[derive(Debug, Serialize)]
struct Metrics<'a> {
    step: usize,
    epoch: usize,
    lr: f64,
    loss: f64,
    /// Per width (widest first): contrastive term, and distillation term for sub-widths.
    contrastive: &'a [f64],
    distillation: &'a [f64],
    /// Images of both views per second, over all ranks.
    images_per_s: f64,
    sub_widths_active: bool,
    /// Data-parallel: seconds this step waited in collectives (rank 0's).
    #[serde(skip_serializing_if = "Option::is_none")]
    collective_s: Option<f64>,
}

impl Trainer {
    /// Writes the checkpoint atomically with everything needed to resume (rank 0 of a
    /// data-parallel run; the other ranks only return its path).
    pub fn save(&self) -> Result<PathBuf, Error> {
        let path = checkpoint_path(&self.out);
        if !self.lead() {
            return Ok(path);
        }
        let mut extra = self.trajectory_tensors();
        extra.extend(
            self.update
                .state()
                .into_iter()
                .map(|(n, t)| (format!("{}{n}", names::OPTIMIZER), t.shallow_clone())),
        );
        if let Some(m) = &self.moco {
            extra.extend(m.tensors());
        }
        let refs: Vec<(&str, &Tensor)> = extra.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let state = serde_json::to_string(&self.state).expect("plain data");
        checkpoint::save_with_state(&path, &self.net, &refs, Some(&state))?;
        Ok(path)
    }

    /// Trains to the end (or to `max_steps` more steps), writing checkpoints and
    /// `metrics.jsonl`, reporting each step to `progress`.
    pub fn run(
        &mut self,
        max_steps: Option<usize>,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf, Error> {
        let spe = self.loader.batches_per_epoch();
        let total = self.schedule.total_steps;
        let mut silent = slim_core::progress::Silent;
        let progress = match self.lead() {
            true => progress,
            false => &mut silent,
        };
        progress.begin("pretrain", total as u64, "steps", self.state.step as u64);
        let metrics_path = self.out.join("metrics.jsonl");
        let mut metrics = match self.lead() {
            true => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&metrics_path)
                    .map_err(|e| Error::Io {
                        path: metrics_path.clone(),
                        io: e,
                    })?,
            ),
            false => None,
        };
        let stop_at = max_steps.map_or(total, |m| (self.state.step + m).min(total));
        let every = self.state.config.checkpoint_every.max(1);
        while self.state.step < stop_at {
            let epoch = self.state.epoch;
            let mut batches = self.loader.epoch_from(epoch as u64, self.state.position);
            let mut t = Instant::now();
            let mut exhausted = true;
            for batch in batches.by_ref() {
                for s in &batch.skipped {
                    progress.note(&format!("warning: skipped {s}"));
                }
                self.state.skipped += batch.skipped.len();
                let lr = self.schedule.lr(self.state.step);
                let (loss, contrastive, distillation) = self.step(&batch)?;
                let ranks = self.dp.as_ref().map_or(1, |d| d.ranks());
                let ips = (2 * batch.len() * ranks) as f64 / t.elapsed().as_secs_f64();
                let collective_s = self
                    .dp
                    .as_ref()
                    .map(|d| d.take_collective_time().as_secs_f64());
                t = Instant::now();
                self.state.step += 1;
                self.state.position = batch.position + 1;
                let line = Metrics {
                    step: self.state.step,
                    epoch,
                    lr,
                    loss,
                    contrastive: &contrastive,
                    distillation: &distillation,
                    images_per_s: ips,
                    sub_widths_active: self.sub_widths_active(),
                    collective_s,
                };
                if let Some(metrics) = &mut metrics {
                    writeln!(
                        metrics,
                        "{}",
                        serde_json::to_string(&line).expect("plain data")
                    )
                    .map_err(|e| Error::Io {
                        path: metrics_path.clone(),
                        io: e,
                    })?;
                }
                progress.update(
                    self.state.step as u64,
                    &format!(
                        "step {} epoch {epoch} loss {loss:.3} lr {lr:.4} {ips:.0} img/s",
                        self.state.step
                    ),
                );
                self.keep_trajectory(false)?;
                if self.state.step.is_multiple_of(every) {
                    self.save()?;
                }
                if self.state.step >= stop_at && self.state.position < spe {
                    exhausted = false;
                    break;
                }
            }
            if exhausted {
                self.state.epoch += 1;
                self.state.position = 0;
                self.keep_trajectory(true)?;
            }
        }
        progress.end();
        self.save()
    }
}
