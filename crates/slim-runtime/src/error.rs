//! The runtime's one error type.

use slim_core::{Variant, Width};
use std::path::PathBuf;

/// Everything the runtime refuses or fails at, naming the file involved where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] slim_core::Error),
    /// An image that cannot be read or decoded (names the file).
    #[error(transparent)]
    Data(#[from] slim_data::Error),
    #[error("{}: {msg}", path.display())]
    Graph { path: PathBuf, msg: String },
    #[error("{backend} failed on {}: {msg}", path.display())]
    Backend {
        backend: &'static str,
        path: PathBuf,
        msg: String,
    },
    #[error("{0}")]
    Unavailable(String),
    /// Settings that cannot work, e.g. an adaptive controller's.
    #[error("{0}")]
    Invalid(String),
    #[error("calibration cache {}: {msg}", path.display())]
    Calibration { path: PathBuf, msg: String },
    #[error(transparent)]
    NoFit(#[from] crate::select::NoFit),
    #[error("model {}: holds no width {width}; it has {available:?}", dir.display())]
    NoSuchWidth {
        dir: PathBuf,
        width: Width,
        available: Vec<Width>,
    },
    /// A width the model has, in a precision it was not exported in.
    #[error("model {}: holds no {} graph of width {}; it has {}", dir.display(), variant.precision, variant.width, available.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "))]
    NoSuchVariant {
        dir: PathBuf,
        variant: Variant,
        available: Vec<Variant>,
    },
    /// A graph whose outputs are NaN or infinite (broken weights, or such an input).
    #[error("{}: width {variant} produced non-finite {output} ({bad} of {total} values){}", path.display(), if *input_finite { "" } else { " from an input that is not finite" })]
    NonFinite {
        path: PathBuf,
        variant: Variant,
        output: &'static str,
        bad: usize,
        total: usize,
        input_finite: bool,
    },
    #[error("input has {got} values, but a batch of {batch} images of {shape:?} needs {want}")]
    InputSize {
        got: usize,
        batch: usize,
        shape: [usize; 3],
        want: usize,
    },
}

impl Error {
    pub(crate) fn graph(path: impl Into<PathBuf>, msg: impl Into<String>) -> Error {
        Error::Graph {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
