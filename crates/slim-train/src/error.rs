//! The crate's error type: slim-core's errors (config, checkpoint files, each naming the
//! file involved) and libtorch's.

/// Everything that can go wrong in `slim-train`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] slim_core::Error),
    /// libtorch's message is part of this one's, so it is not also a `source` (an error
    /// chain printed with its causes would repeat it).
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    /// A width that is not one of the model's trained widths.
    #[error("width {width} is not one of the model's widths {widths:?}")]
    Width {
        width: slim_core::Width,
        widths: Vec<slim_core::Width>,
    },
    /// Evaluation inputs that do not fit together (a feature set and a model, images and
    /// the model's input channels).
    #[error("evaluation: {0}")]
    Eval(String),
    /// BatchNorm statistics that cannot be recomputed from the images given (too few,
    /// not the model's input).
    #[error("BatchNorm statistics: {0}")]
    BatchNorm(String),
    /// A recalibration that would overwrite its input.
    #[error("recalibrate: {0}")]
    Recalibrate(String),
    #[error(transparent)]
    Data(#[from] slim_data::Error),
    #[error("{}: {io}", path.display())]
    Io {
        path: std::path::PathBuf,
        io: std::io::Error,
    },
    /// A `--resume` that cannot continue the run in its folder.
    #[error("cannot resume from {}: {msg}", path.display())]
    Resume {
        path: std::path::PathBuf,
        msg: String,
    },
    /// Trainable weight averaging inputs that do not fit together (too few checkpoints,
    /// checkpoints of another model, a basis over its memory limit).
    #[error("TWA: {0}")]
    Twa(String),
    /// Ranks of a data-parallel run that cannot work together (different configurations,
    /// out of step), or a collective that failed (a rank gone, a timeout).
    #[error("data-parallel: {0}")]
    DataParallel(String),
    /// The loss stopped being a finite number; the last good checkpoint is kept.
    #[error(
        "the loss became NaN or infinite at step {step}; stopped without saving. The last good checkpoint is {} (if one was written); lower the learning rate and resume from it",
        checkpoint.display()
    )]
    NonFinite {
        step: usize,
        checkpoint: std::path::PathBuf,
    },
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Error {
        Error::Torch(e)
    }
}
