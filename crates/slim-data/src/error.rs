use std::path::{Path, PathBuf};

/// A dataset problem, always naming the file or folder it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {msg}", path.display())]
    At { path: PathBuf, msg: String },
    #[error("{}: {io}", path.display())]
    Io { path: PathBuf, io: std::io::Error },
}

impl Error {
    pub fn at(path: impl AsRef<Path>, msg: impl Into<String>) -> Error {
        Error::At {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    pub(crate) fn io(path: impl AsRef<Path>, io: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            io,
        }
    }
}
