//! Trajectory checkpoints (the model and heads every N steps or epochs, with a MoCo run's
//! key encoder and queue, for TWA): what a run will write, and writing one when it is due.

use slim_core::checkpoint::names;
use tch::Tensor;

use super::{Trainer, TrajectoryPlan, TrajectoryUnit};
use crate::twa::trajectory_dir;
use crate::{Error, checkpoint};

impl Trainer {
    /// The trajectory checkpoints this run has still to write and their size.
    pub fn trajectory_plan(&self) -> Option<TrajectoryPlan> {
        let t = self.state.config.trajectory.as_ref()?;
        let every = t.every.max(1);
        let count = match t.unit {
            TrajectoryUnit::Steps => self.schedule.total_steps / every - self.state.step / every,
            TrajectoryUnit::Epochs => self.state.config.epochs / every - self.state.epoch / every,
        };
        let numel: usize = self
            .snapshot_tensors()
            .iter()
            .map(|(_, t)| t.numel())
            .sum::<usize>()
            + self
                .net
                .named_tensors()
                .iter()
                .map(|(_, t)| t.numel())
                .sum::<usize>();
        Some(TrajectoryPlan {
            dir: trajectory_dir(&self.out),
            count,
            bytes_each: numel * t.precision.bytes(),
        })
    }

    /// The heads' variables, named as in the checkpoint without `train.`.
    pub(super) fn trajectory_tensors(&self) -> Vec<(String, Tensor)> {
        self.vs
            .variables()
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix(names::TRAIN).map(|n| (n.to_string(), t)))
            .collect()
    }

    /// What a trajectory checkpoint keeps besides the model: the heads, and a MoCo run's
    /// key encoder and queue (which TWA's objective needs as they were).
    fn snapshot_tensors(&self) -> Vec<(String, Tensor)> {
        let mut all = self.trajectory_tensors();
        if let Some(m) = &self.moco {
            all.extend(m.tensors());
        }
        all
    }

    /// Writes a trajectory checkpoint of the model and head now, if one is due after
    /// `epoch_done` (an epoch just ended) or this step (rank 0 of a data-parallel run).
    pub(super) fn keep_trajectory(&self, epoch_done: bool) -> Result<(), Error> {
        let Some(t) = self
            .state
            .config
            .trajectory
            .as_ref()
            .filter(|_| self.lead())
        else {
            return Ok(());
        };
        let every = t.every.max(1);
        let due = match t.unit {
            TrajectoryUnit::Steps => !epoch_done && self.state.step.is_multiple_of(every),
            TrajectoryUnit::Epochs => epoch_done && self.state.epoch.is_multiple_of(every),
        };
        if !due {
            return Ok(());
        }
        let dir = trajectory_dir(&self.out);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            io: e,
        })?;
        let tensors = self.snapshot_tensors();
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let state = serde_json::to_string(&self.state).expect("plain data");
        checkpoint::save_snapshot(
            &dir.join(format!("step-{:08}.safetensors", self.state.step)),
            &self.net,
            &refs,
            &state,
            t.precision,
        )
    }
}
