use std::path::PathBuf;

/// Everything that can go wrong in `slim-core`; each variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {io}", path.display())]
    Io { path: PathBuf, io: std::io::Error },
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    #[error("manifest {}: {msg}", path.display())]
    Manifest { path: PathBuf, msg: String },
    #[error("invalid model config: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, io: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            io,
        }
    }
}
