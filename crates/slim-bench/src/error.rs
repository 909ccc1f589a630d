//! The one error type of the slim-bench library: every failure names the file it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] slim_data::Error),
    #[error(transparent)]
    Runtime(#[from] slim_runtime::Error),
    #[error(transparent)]
    Core(#[from] slim_core::Error),
    #[error(
        "{path}: its classes {data:?} do not match the model's {model:?}",
        path = path.display()
    )]
    Classes {
        path: PathBuf,
        data: Vec<String>,
        model: Vec<String>,
    },
    #[error("{}: every image failed to decode ({skipped} skipped)", path.display())]
    NothingDecoded { path: PathBuf, skipped: usize },
    #[error("{}: {msg}", path.display())]
    Report { path: PathBuf, msg: String },
    #[error("{}: cannot draw the plot: {msg}", path.display())]
    Plot { path: PathBuf, msg: String },
}
