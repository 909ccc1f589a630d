//! The exporter's errors. Every message names the file involved and what is wrong with it,
//! so that `slim-export` can print it as is.

use std::path::PathBuf;

/// Everything that can make an export fail. An export that fails leaves no file behind
/// that it created (see [`crate::export()`]).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The checkpoint file cannot be opened or read (missing, a folder, no permission).
    #[error("cannot read checkpoint {}: {io}", path.display())]
    ReadCheckpoint { path: PathBuf, io: std::io::Error },
    /// The checkpoint was read but is unusable: not a slim checkpoint, truncated, a config
    /// that does not match its weights, or no such width. The message names the file.
    #[error(transparent)]
    Checkpoint(slim_core::Error),
    /// The checkpoint passed `slim_core`'s checks but a tensor the exporter needs is
    /// missing or malformed (e.g. reference outputs of the wrong shape).
    #[error("checkpoint {}: {msg}", path.display())]
    Tensors { path: PathBuf, msg: String },
    /// The output folder cannot be created (e.g. a path below a regular file).
    #[error("cannot create output folder {}: {io}", path.display())]
    OutputDir { path: PathBuf, io: std::io::Error },
    /// The options ask for something they cannot give (e.g. int8 without calibration data).
    #[error("{0}")]
    Options(String),
    /// The calibration images cannot be used: unreadable, empty, too few for the method,
    /// or not the model's input.
    #[error("--calibration-data {}: {msg}", path.display())]
    Calibration { path: PathBuf, msg: String },
    /// A derived graph could not be made, run, or stay within its tolerance of the float
    /// graph.
    #[error("the {precision} graph of width {width}: {msg}")]
    Derive {
        width: slim_core::Width,
        precision: slim_core::Precision,
        msg: String,
    },
    /// Writing a graph, test tensor or the manifest failed; the inner error names the file.
    #[error("cannot write the export: {0}")]
    Write(slim_core::Error),
}

impl ExportError {
    pub(crate) fn derive(
        width: slim_core::Width,
        precision: slim_core::Precision,
        msg: String,
    ) -> ExportError {
        ExportError::Derive {
            width,
            precision,
            msg,
        }
    }

    /// Classifies an error of `slim_core::checkpoint::load`.
    pub(crate) fn from_load(e: slim_core::Error) -> ExportError {
        match e {
            slim_core::Error::Io { path, io } => ExportError::ReadCheckpoint { path, io },
            other => ExportError::Checkpoint(other),
        }
    }
}
