//! Continuing a run: the checkpoint in `out` is read and checked against the requested
//! model before anything is built, then its tensors (weights, head, key encoder, queue,
//! optimiser state) are copied into the freshly built trainer.

use std::path::Path;

use slim_core::checkpoint::names;
use slim_core::{Checkpoint, ModelConfig};

use super::{TrainState, Trainer, checkpoint_path};
use crate::{Error, checkpoint};

/// The checkpoint and training state to resume from (`resume`), or nothing for a new
/// run, which must not overwrite a checkpoint already in `out`.
pub(super) fn read(
    out: &Path,
    model: &ModelConfig,
    resume: bool,
) -> Result<Option<(Checkpoint, TrainState)>, Error> {
    let ckpt_path = checkpoint_path(out);
    if resume {
        let c = slim_core::checkpoint::load(&ckpt_path)?;
        if &c.config != model {
            return Err(Error::Resume {
                path: ckpt_path,
                msg: format!(
                    "it holds {} at widths {:?} ({} channels, {} px, {} classes), not the requested {} at {:?} ({} channels, {} px, {} classes)",
                    c.config.backbone.name(),
                    c.config.widths,
                    c.config.input.in_channels,
                    c.config.input.image_size,
                    c.config.num_classes(),
                    model.backbone.name(),
                    model.widths,
                    model.input.in_channels,
                    model.input.image_size,
                    model.num_classes()
                ),
            });
        }
        let text = c.train_state.as_deref().ok_or_else(|| Error::Resume {
            path: ckpt_path.clone(),
            msg: "it holds no training state (not written by slim-train pretrain)".into(),
        })?;
        let state = TrainState::parse(text).map_err(|msg| Error::Resume {
            path: ckpt_path.clone(),
            msg,
        })?;
        Ok(Some((c, state)))
    } else {
        if ckpt_path.exists() {
            return Err(Error::Resume {
                path: ckpt_path,
                msg: "a checkpoint is already there: pass --resume to continue it, or choose another --out".into(),
            });
        }
        Ok(None)
    }
}

impl Trainer {
    /// Copies the tensors of `c` into this trainer and takes over `state`.
    pub(super) fn restore(&mut self, c: &Checkpoint, state: TrainState) -> Result<(), Error> {
        tch::no_grad(|| -> Result<(), Error> {
            // Model tensors keep their names in the checkpoint; the head is under train.
            for (name, mut var) in self.vs.variables() {
                let t = c.tensors.get(&name).ok_or_else(|| Error::Resume {
                    path: checkpoint_path(&self.out),
                    msg: format!("tensor {name} is missing"),
                })?;
                var.f_copy_(&checkpoint::from_core(t, self.device)?)?;
            }
            if let Some(m) = &mut self.moco {
                m.load(c, self.device).map_err(|msg| Error::Resume {
                    path: checkpoint_path(&self.out),
                    msg,
                })?;
            }
            Ok(())
        })?;
        let restored = self.update.restore(&mut |name| {
            checkpoint::train_tensor(c, &format!("{}{name}", names::OPTIMIZER), self.device)
                .ok()
                .flatten()
        });
        if restored == 0 && state.step > 0 {
            return Err(Error::Resume {
                path: checkpoint_path(&self.out),
                msg: "it holds no optimiser state".into(),
            });
        }
        self.state = state;
        Ok(())
    }
}
