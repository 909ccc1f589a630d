//! Where TWA's inputs live and how its parameters group: the trajectory folder of a
//! pretraining run, the checkpoint files given on the command line, and the layer block
//! of each parameter (for per-block coefficients).

use std::path::{Path, PathBuf};

use slim_core::{Layer, Network};

use crate::Error;
use crate::pretrain::TrainState;

/// The layer block a parameter belongs to: the stem or another plain conv layer, a
/// residual block (named after its first conv's prefix), `probe` or `head`.
pub fn block_of(network: &Network, name: &str) -> String {
    if name.starts_with("probe.") {
        return "probe".into();
    }
    if name.starts_with(slim_core::checkpoint::names::TRAIN) {
        return "head".into();
    }
    for layer in &network.layers {
        let (convs, label): (Vec<&slim_core::ConvBn>, String) = match layer {
            Layer::ConvBn(c) => (vec![c], c.name.clone()),
            Layer::MaxPool { .. } => continue,
            Layer::Residual { body, shortcut, .. } => {
                let first = &body[0].name;
                let label = first.rsplit_once('.').map_or(first.as_str(), |p| p.0);
                (body.iter().chain(shortcut).collect(), label.to_string())
            }
        };
        if convs.iter().any(|c| {
            name.strip_prefix(c.name.as_str())
                .is_some_and(|r| r.starts_with('.'))
        }) {
            return label;
        }
    }
    "other".into()
}

/// Checkpoint files named by `paths`: files as given, folders as their `*.safetensors`
/// files in name order.
pub fn list_checkpoints(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::Io {
                    path: p.clone(),
                    io: e,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::Twa(format!(
                "{}: no such file or folder",
                p.display()
            )));
        }
    }
    Ok(out)
}

/// The checkpoint files of a pretraining run's trajectory folder.
pub fn trajectory_dir(out: &Path) -> PathBuf {
    out.join("trajectory")
}

/// The checkpoints whose span TWA trains in: those taken at or after `from_step`, or
/// without it from the slow start's switch on (`slow_start_epoch`: the checkpoints whose
/// state is at that epoch or later), as each file's header records. At least two; a
/// `from_step` after the last checkpoint is refused naming the flag.
pub fn basis_checkpoints(
    files: &[PathBuf],
    from_step: Option<usize>,
    slow_start_epoch: usize,
) -> Result<Vec<PathBuf>, Error> {
    let mut kept = Vec::new();
    let mut last_step = 0;
    for f in files {
        let text = slim_core::checkpoint::train_state(f)?.ok_or_else(|| {
            Error::Twa(format!(
                "{}: holds no pretraining state: not a trajectory checkpoint of `slim-train pretrain`",
                f.display()
            ))
        })?;
        let s = TrainState::parse(&text)
            .map_err(|msg| Error::Twa(format!("{}: {msg}", f.display())))?;
        last_step = last_step.max(s.step);
        let keep = match from_step {
            Some(n) => s.step >= n,
            None => s.epoch >= slow_start_epoch,
        };
        if keep {
            kept.push(f.clone());
        }
    }
    if let Some(n) = from_step.filter(|&n| n > last_step) {
        return Err(Error::Twa(format!(
            "--from-step {n} is after the last checkpoint (step {last_step}): no checkpoint to build the basis from"
        )));
    }
    if kept.len() < 2 {
        return Err(Error::Twa(format!(
            "{} of {} checkpoints are {}: TWA needs at least two to span anything (lower --from-step, or keep trajectory checkpoints more often)",
            kept.len(),
            files.len(),
            match from_step {
                Some(n) => format!("at or after step {n} (--from-step)"),
                None => format!(
                    "from the slow start's switch on (epoch {slow_start_epoch}; --from-step picks another start)"
                ),
            }
        )));
    }
    Ok(kept)
}
